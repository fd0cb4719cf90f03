//! The two encodings a value is decoded from once before it is scanned again: base64 (standard
//! or URL-safe) and percent-encoding.

/// The shortest base64 run that is decoded.
const MIN_RUN: usize = 20;

/// Each byte's base64 value (either alphabet), 0xff for none: a table, since the run finder
/// looks at every byte of every string.
static B64: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0u8;
    while i < 26 {
        t[(b'A' + i) as usize] = i;
        t[(b'a' + i) as usize] = i + 26;
        i += 1;
    }
    let mut d = 0u8;
    while d < 10 {
        t[(b'0' + d) as usize] = d + 52;
        d += 1;
    }
    t[b'+' as usize] = 62;
    t[b'-' as usize] = 62;
    t[b'/' as usize] = 63;
    t[b'_' as usize] = 63;
    t
};

fn b64_value(b: u8) -> Option<u8> {
    let v = B64[usize::from(b)];
    (v != 0xff).then_some(v)
}

/// Decodes base64 without padding (either alphabet; `=` at the end is ignored).
pub(super) fn base64(text: &[u8]) -> Option<Vec<u8>> {
    let text = match text.iter().position(|&b| b == b'=') {
        Some(p) if text.get(p..)?.iter().all(|&b| b == b'=') => text.get(..p)?,
        Some(_) => return None,
        None => text,
    };
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in text {
        acc = (acc << 6) | u32::from(b64_value(b)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// Whether decoded bytes read as text: UTF-8 without control characters other than tab and
/// line breaks.
fn printable(bytes: Vec<u8>) -> Option<String> {
    let text = String::from_utf8(bytes).ok()?;
    text.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t')).then_some(text)
}

/// Calls `f(start, end, decoded)` for each run of 20+ base64 characters of `text` that decodes
/// to printable text.
pub(super) fn base64_runs(text: &str, mut f: impl FnMut(usize, usize, &str)) {
    let b = text.as_bytes();
    let mut i = 0;
    let is_b64 = |c: u8| B64[usize::from(c)] != 0xff;
    while i < b.len() {
        if !is_b64(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_b64(b[i]) {
            i += 1;
        }
        // Too short, or hex digits only (a hash or an id: base64 of text has other letters).
        if i - start < MIN_RUN || b.get(start..i).is_some_and(|r| r.iter().all(u8::is_ascii_hexdigit)) {
            continue;
        }
        let mut end = i;
        while end < b.len() && b[end] == b'=' && end - i < 2 {
            end += 1;
        }
        let run = b.get(start..end).unwrap_or_default();
        let mixed =
            run.iter().any(|c| matches!(c, b'+' | b'/')) && run.iter().any(|c| matches!(c, b'-' | b'_'));
        if i - start >= MIN_RUN
            && !mixed
            && let Some(decoded) = base64(run).and_then(printable)
        {
            f(start, end, &decoded);
        }
        i = end.max(i + 1);
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `text` percent-decoded, when it holds at least one `%XX` and decodes to UTF-8.
pub(super) fn percent(text: &str) -> Option<String> {
    if !text.contains('%') {
        return None;
    }
    let b = text.as_bytes();
    let escape_at = |i: usize| -> Option<u8> {
        if b.get(i) != Some(&b'%') {
            return None;
        }
        Some(hex_value(*b.get(i + 1)?)? * 16 + hex_value(*b.get(i + 2)?)?)
    };
    let first = (0..b.len()).find(|&i| escape_at(i).is_some())?;
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(b.get(..first)?);
    let mut i = first;
    while i < b.len() {
        match escape_at(i) {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}
