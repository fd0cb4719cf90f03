//! Secret detectors: provider keys by their documented prefix and length, private keys by their
//! PEM armor, JWTs by their three segments, and high-entropy values assigned to a secret name.

use super::decode;
use super::{DetectSet, Detector, Hit};

/// Example values from providers' documentation and tutorials: never reported.
const EXAMPLES: &[&str] = &[
    // AWS's documented example access key id.
    "AKIAIOSFODNN7EXAMPLE",
    "AKIAI44QH8DHBEXAMPLE",
    "ASIAIOSFODNN7EXAMPLE",
    // AWS's documented example secret access key.
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    // Stripe's documentation test keys.
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "sk_test_BQokikJOvBiI2HlWgH4olfQ2",
    "rk_test_4eC39HqLyjWDarjtT1zdp7dc",
    // Slack's documentation example bot token.
    "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
    // Google's (Firebase) documentation sample key.
    "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
];

/// The payload of jwt.io's example token (`{"sub":"1234567890","name":"John Doe",...}`).
const JWT_EXAMPLE_PAYLOADS: &[&str] = &[
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ",
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiYWRtaW4iOnRydWUsImlhdCI6MTUxNjIzOTAyMn0",
];

/// Words that mark a placeholder, not a key (compared lower-case).
const PLACEHOLDERS: &[&str] = &[
    "example",
    "xxxx",
    "your",
    "dummy",
    "sample",
    "placeholder",
    "redacted",
    "changeme",
    "replace",
    "fake",
    "0000",
    "insert",
    "test_key",
];

/// Key names whose value is a secret (a substring of the lower-case name).
const SECRET_NAMES: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "accesskey",
    "private_key",
    "privatekey",
    "credential",
    "authorization",
];

/// Names holding a secret name that are not secrets: pagination cursors, counts, types.
const NOT_SECRET_NAMES: &[&str] = &[
    "page",
    "cursor",
    "next",
    "continuation",
    "csrf",
    "tokens",
    "_count",
    "_type",
    "_url",
    "_uri",
    "_path",
    "_file",
    "_name",
    "_ttl",
    "expire",
];

const SPECIFIC: &[Detector] = &[
    Detector::AWS_ACCESS_KEY,
    Detector::GITHUB_TOKEN,
    Detector::SLACK_TOKEN,
    Detector::STRIPE_KEY,
    Detector::GOOGLE_API_KEY,
    Detector::OPENAI_KEY,
    Detector::ANTHROPIC_KEY,
    Detector::JWT,
];

/// `[A-Za-z0-9_-]`, by table: this runs on every byte of every string.
static WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        i += 1;
    }
    t
};

fn is_word(b: u8) -> bool {
    WORD[usize::from(b)]
}

fn alnum(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn url_safe(s: &str) -> bool {
    s.bytes().all(is_word)
}

/// Whether `s` looks like random key material rather than a placeholder: enough distinct
/// characters, no long run of one character or of consecutive ones, no placeholder word.
pub(super) fn looks_random(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 8 {
        return false;
    }
    let mut seen = [false; 256];
    let mut distinct = 0usize;
    for &c in b {
        if !seen[usize::from(c)] {
            seen[usize::from(c)] = true;
            distinct += 1;
        }
    }
    if distinct < (b.len() / 4).clamp(4, 10) {
        return false;
    }
    let (mut same, mut up, mut down) = (1, 1, 1);
    for w in b.windows(2) {
        same = if w[0] == w[1] { same + 1 } else { 1 };
        up = if w[1] == w[0].wrapping_add(1) { up + 1 } else { 1 };
        down = if w[0] == w[1].wrapping_add(1) { down + 1 } else { 1 };
        if same >= 5 || up >= 6 || down >= 6 {
            return false;
        }
    }
    let lower = s.to_ascii_lowercase();
    !PLACEHOLDERS.iter().any(|p| lower.contains(p))
}

fn not_example(s: &str) -> bool {
    !EXAMPLES.contains(&s)
}

/// Runs the secret detectors of `set` on `text`.
pub(super) fn scan(text: &str, set: DetectSet, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    if SPECIFIC.iter().any(|d| set.contains(*d)) {
        let mut i = 0;
        while i < b.len() {
            if !is_word(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && is_word(b[i]) {
                i += 1;
            }
            if i - start >= 20
                && let Some((d, end)) = word(text, start, i)
                && set.contains(d)
                && let Some(hit) = Hit::raw(d, text, start, end)
            {
                i = end;
                out.push(hit);
            }
        }
    }
    // A PEM block and an option (`--password`) need a `-`; an assignment a `=` or `:`.
    let (mut dash, mut assign) = (false, false);
    for &c in b {
        dash |= c == b'-';
        assign |= c == b'=' || c == b':';
    }
    if dash && set.contains(Detector::PRIVATE_KEY) {
        private_keys(text, out);
    }
    if (dash || assign) && set.contains(Detector::HIGH_ENTROPY) {
        assignments(text, out);
    }
}

/// The detector a word (`text[start..end]`, a maximal run of `[A-Za-z0-9_-]`) is a key of, and
/// where the key ends (past the word for a JWT).
fn word(text: &str, start: usize, end: usize) -> Option<(Detector, usize)> {
    let w = text.get(start..end)?;
    let found = |d: Detector, tail: &str| (looks_random(tail) && not_example(w)).then_some((d, end));
    // AWS: access key ids are 20 upper-case letters and digits, `AKIA` (long-term) or `ASIA`
    // (temporary) first ("Understanding unique ID prefixes", IAM User Guide).
    if w.len() == 20
        && (w.starts_with("AKIA") || w.starts_with("ASIA"))
        && w.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return found(Detector::AWS_ACCESS_KEY, w.get(4..)?);
    }
    // GitHub: `ghp_` (personal), `gho_` (OAuth), `ghu_` (user-to-server), `ghs_` (server-to-
    // server), `ghr_` (refresh) and 36+ letters and digits; `github_pat_` (fine-grained) and
    // 82 of `[A-Za-z0-9_]` ("About authentication to GitHub", token formats).
    for prefix in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
        if let Some(tail) = w.strip_prefix(prefix) {
            return if tail.len() >= 36 && tail.len() <= 251 && alnum(tail) {
                found(Detector::GITHUB_TOKEN, tail)
            } else {
                None
            };
        }
    }
    if let Some(tail) = w.strip_prefix("github_pat_") {
        let ok = tail.len() >= 70 && tail.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        return if ok { found(Detector::GITHUB_TOKEN, tail) } else { None };
    }
    // Slack: `xoxb-` (bot), `xoxp-` (user), `xoxa-`/`xoxr-` (app and refresh), `xoxs-`, `xoxe-`
    // and app-level `xapp-`: dash-separated parts, digits first, a long random part last.
    for prefix in ["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxe-", "xapp-"] {
        if let Some(tail) = w.strip_prefix(prefix) {
            let parts: Vec<&str> = tail.split('-').collect();
            let last = parts.last().copied().unwrap_or_default();
            let ok = parts.len() >= 3
                && parts.first().is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                && parts.iter().all(|p| !p.is_empty() && alnum(p))
                && last.len() >= 20;
            return if ok { found(Detector::SLACK_TOKEN, last) } else { None };
        }
    }
    // Stripe: secret keys `sk_live_`/`sk_test_` and restricted keys `rk_live_`/`rk_test_`, then
    // 24 to 247 letters and digits ("API keys", Stripe docs). Publishable `pk_` keys are public.
    for prefix in ["sk_live_", "sk_test_", "rk_live_", "rk_test_"] {
        if let Some(tail) = w.strip_prefix(prefix) {
            let ok = tail.len() >= 24 && tail.len() <= 247 && alnum(tail);
            return if ok { found(Detector::STRIPE_KEY, tail) } else { None };
        }
    }
    // Google Cloud API keys: `AIza` and 35 of `[A-Za-z0-9_-]`, 39 in all.
    if w.len() == 39 && w.starts_with("AIza") {
        return found(Detector::GOOGLE_API_KEY, w.get(4..)?);
    }
    // Anthropic: `sk-ant-` then the kind and version (`api03-`, `admin01-`, `oat01-`), then
    // 80+ of `[A-Za-z0-9_-]` (an API key is 108 characters in all).
    if let Some(rest) = w.strip_prefix("sk-ant-") {
        let (kind, tail) = rest.split_once('-')?;
        let known = ["api", "admin", "oat", "ort", "sid"].iter().any(|k| {
            kind.strip_prefix(k).is_some_and(|v| v.len() == 2 && v.bytes().all(|b| b.is_ascii_digit()))
        });
        let ok = known && tail.len() >= 80 && url_safe(tail);
        return if ok { found(Detector::ANTHROPIC_KEY, tail) } else { None };
    }
    // OpenAI (no published format): `sk-` and 48 letters and digits with the marker `T3BlbkFJ`
    // (base64 of "OpenAI"), or the project, service-account and admin prefixes and 40+ more.
    if let Some(rest) = w.strip_prefix("sk-") {
        let scoped = ["proj-", "svcacct-", "admin-", "None-"]
            .iter()
            .find_map(|p| rest.strip_prefix(p))
            .filter(|t| t.len() >= 40);
        let legacy = (rest.len() >= 40 && rest.contains("T3BlbkFJ")).then_some(rest);
        return scoped.or(legacy).and_then(|tail| found(Detector::OPENAI_KEY, tail));
    }
    // JWT: base64url JSON header naming an `alg`, a JSON payload, a signature.
    if w.starts_with("eyJ") {
        return jwt(text, start, end).map(|e| (Detector::JWT, e));
    }
    None
}

/// The end of the JWT starting at `start` whose header segment ends at `end`.
fn jwt(text: &str, start: usize, end: usize) -> Option<usize> {
    let b = text.as_bytes();
    let segment_end = |from: usize| (from..b.len()).find(|&i| !is_word(b[i])).unwrap_or(b.len());
    if b.get(end) != Some(&b'.') {
        return None;
    }
    let payload_end = segment_end(end + 1);
    let payload = text.get(end + 1..payload_end)?;
    if !payload.starts_with("eyJ") || b.get(payload_end) != Some(&b'.') {
        return None;
    }
    let sig_end = segment_end(payload_end + 1);
    if sig_end - (payload_end + 1) < 16 || JWT_EXAMPLE_PAYLOADS.contains(&payload) {
        return None;
    }
    let header = decode::base64(text.get(start..end)?.as_bytes())?;
    let header = String::from_utf8(header).ok()?;
    (header.trim_start().starts_with('{') && header.contains("\"alg\"")).then_some(sig_end)
}

/// PEM private keys: `-----BEGIN … PRIVATE KEY-----` (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP
/// … PRIVATE KEY BLOCK) followed by at least 64 base64 characters of key material.
fn private_keys(text: &str, out: &mut Vec<Hit>) {
    const BEGIN: &str = "-----BEGIN ";
    let mut from = 0;
    while let Some(p) = text.get(from..).and_then(|t| t.find(BEGIN)) {
        let start = from + p;
        let label_start = start + BEGIN.len();
        let Some(label_len) = text.get(label_start..).and_then(|t| t.find("-----")) else { return };
        let label = text.get(label_start..label_start + label_len).unwrap_or_default();
        let body_start = label_start + label_len + 5;
        from = body_start;
        if label.len() > 40 || !(label.ends_with("PRIVATE KEY") || label.ends_with("PRIVATE KEY BLOCK")) {
            continue;
        }
        let rest = text.get(body_start..).unwrap_or_default();
        let (body, end) = match rest.find("-----END") {
            Some(e) => {
                let after = body_start + e + 8;
                let close =
                    text.get(after..).and_then(|t| t.find("-----")).map_or(text.len(), |c| after + c + 5);
                (rest.get(..e).unwrap_or_default(), close)
            }
            None => (rest, text.len()),
        };
        let material: String = body
            .lines()
            .filter(|l| !l.contains(": "))
            .flat_map(|l| l.chars())
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/'))
            .collect();
        if material.len() >= 64 && looks_random(&material) {
            out.extend(Hit::raw(Detector::PRIVATE_KEY, text, start, end));
        }
        from = end.max(body_start);
    }
}

/// Whether `hay` contains `needle` (lower-case ASCII), ignoring ASCII case.
fn contains_folded(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    n.len() <= h.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// Whether a key name is a secret's.
pub(super) fn secret_name(name: &str) -> bool {
    SECRET_NAMES.iter().any(|s| contains_folded(name, s))
        && !NOT_SECRET_NAMES.iter().any(|s| contains_folded(name, s))
}

fn value_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+/=_.~-!@#$%^*".contains(&b)
}

fn is_uuid(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Shannon entropy of `v` in bits per character.
fn entropy(v: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in v.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = v.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| f64::from(c) / n).map(|p| -p * p.log2()).sum()
}

/// Whether `v` is a random-looking secret value: 16 to 512 characters without spaces, letters
/// and digits, high entropy (3.5 bits per character; 3.0 for 32+ hex digits), not a UUID, not a
/// placeholder or a reference (`$VAR`).
pub(super) fn high_entropy(v: &str) -> bool {
    if v.len() < 16 || v.len() > 512 || !v.bytes().all(value_byte) || v.starts_with('$') || is_uuid(v) {
        return false;
    }
    if !v.bytes().any(|b| b.is_ascii_digit()) || !v.bytes().any(|b| b.is_ascii_alphabetic()) {
        return false;
    }
    let hex = v.bytes().all(|b| b.is_ascii_hexdigit());
    let bar = if hex { 3.0 } else { 3.5 };
    (!hex || v.len() >= 32) && entropy(v) >= bar && looks_random(v) && not_example(v)
}

/// The value of an object key with a secret name (`{"api_key": "…"}`), after an HTTP
/// authorization scheme (`Bearer …`).
pub(super) fn keyed(text: &str, key: &str, out: &mut Vec<Hit>) {
    if !secret_name(key) {
        return;
    }
    let trimmed = text.trim_end();
    let mut start = text.len() - text.trim_start().len();
    for scheme in ["Bearer ", "bearer ", "Basic ", "basic ", "Token ", "token "] {
        if let Some(rest) = trimmed.get(start..).and_then(|t| t.strip_prefix(scheme)) {
            start = trimmed.len() - rest.len();
            break;
        }
    }
    if let Some(value) = trimmed.get(start..)
        && high_entropy(value)
    {
        out.extend(Hit::raw(Detector::HIGH_ENTROPY, text, start, trimmed.len()));
    }
}

/// `name = value`, `name: value` and `--name value` in text, where the name is a secret's and
/// the value is random-looking (`AWS_SECRET_ACCESS_KEY=…`, `"password": "…"`,
/// `Authorization: Bearer …`, `--password '…'`).
fn assignments(text: &str, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c != b'=' && c != b':' && c != b' ' {
            continue;
        }
        // `=` and `:`, or the space after a command-line option (`--password …`).
        let flag = c == b' ' && i > 0 && is_word(b[i - 1]);
        if c == b' ' && !flag {
            continue;
        }
        // The name: back over up to 2 quotes or spaces, then name characters.
        let mut j = i;
        while !flag && j > 0 && i - j < 2 && matches!(b[j - 1], b'"' | b'\'' | b' ') {
            j -= 1;
        }
        let name_end = j;
        while j > 0 && (b[j - 1].is_ascii_alphanumeric() || matches!(b[j - 1], b'_' | b'-' | b'.')) {
            j -= 1;
        }
        let name = text.get(j..name_end).unwrap_or_default();
        if name.len() < 3 || (flag && !name.starts_with('-')) || !secret_name(name) {
            continue;
        }
        // The value: forward over spaces and a quote, an authorization scheme, then value bytes.
        let mut k = i + 1;
        while k < b.len() && k - i <= 3 && matches!(b[k], b' ' | b'"' | b'\'') {
            k += 1;
        }
        for scheme in ["Bearer ", "Basic ", "Token ", "bearer ", "token "] {
            if text.get(k..).is_some_and(|t| t.starts_with(scheme)) {
                k += scheme.len();
                break;
            }
        }
        let vs = k;
        while k < b.len() && value_byte(b[k]) {
            k += 1;
        }
        if let Some(value) = text.get(vs..k)
            && high_entropy(value)
        {
            out.extend(Hit::raw(Detector::HIGH_ENTROPY, text, vs, k));
        }
    }
}
