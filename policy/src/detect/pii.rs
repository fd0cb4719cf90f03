//! Personal-data detectors: card numbers (Luhn), IBANs (mod 97), email addresses, phone numbers
//! in international form, and national identifiers from a table.

use super::{DetectSet, Detector, Hit};

/// Test card numbers published by card networks and payment providers: never reported.
const TEST_CARDS: &[&str] = &[
    "4111111111111111",
    "4242424242424242",
    "4012888888881881",
    "4000056655665556",
    "4222222222222",
    "5555555555554444",
    "5105105105105100",
    "5200828282828210",
    "2223003122003222",
    "378282246310005",
    "371449635398431",
    "378734493671000",
    "6011111111111117",
    "6011000990139424",
    "3530111333300000",
    "3566002020360505",
    "30569309025904",
    "38520000023237",
    "6200000000000005",
];

/// IBANs used as examples in standards and bank documentation: never reported.
const EXAMPLE_IBANS: &[&str] = &[
    "GB82WEST12345698765432",
    "GB29NWBK60161331926819",
    "DE89370400440532013000",
    "FR1420041010050500013M02606",
];

/// Domains reserved for documentation (RFC 2606, RFC 6761): addresses there are not anyone's.
const RESERVED_DOMAINS: &[&str] = &["example.com", "example.org", "example.net"];
const RESERVED_TLDS: &[&str] = &["example", "test", "invalid", "localhost", "local"];
/// File extensions that look like top-level domains in `name@2x.png`.
const FILE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "js", "mjs", "ts", "tsx", "jsx", "css", "py", "rs",
    "go", "md", "json", "yaml", "yml", "txt", "html", "lock", "toml", "zip", "gz", "tar", "sh",
];

/// Number prefixes (digits after `+`) reserved for fiction and documentation: North America's
/// 555-0100 to 555-0199 (checked apart), the UK's drama ranges.
const FICTIONAL_PHONES: &[&str] =
    &["447700900", "442079460", "441134960", "441614960", "442890180", "61491570"];

/// IBAN length by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// A national identifier written as digit groups joined by one separator.
pub(super) struct NationalId {
    /// Its detector (a name in `DETECTORS`).
    pub detector: Detector,
    /// The digits in each group.
    pub groups: &'static [usize],
    /// The separators it is written with (one of them throughout).
    pub separators: &'static [u8],
    /// Whether the digits (all groups, without separators) can be an identifier.
    pub valid: fn(&[u8]) -> bool,
    /// Published example numbers, never reported.
    pub examples: &'static [&'static str],
}

/// National identifiers. To add one: a name in `detect::DETECTORS` (group `Pii`), a
/// `Detector` constant, and a row here.
pub(super) const NATIONAL_IDS: &[NationalId] = &[NationalId {
    detector: Detector::US_SSN,
    groups: &[3, 2, 4],
    separators: b"-",
    valid: us_ssn_valid,
    // The Woolworth wallet card, a 1940s advertisement, and the usual placeholder.
    examples: &["078-05-1120", "219-09-9999", "123-45-6789"],
}];

/// SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000.
fn us_ssn_valid(d: &[u8]) -> bool {
    let num = |r: std::ops::Range<usize>| {
        d.get(r).map_or(0, |s| s.iter().fold(0u32, |n, &x| n * 10 + u32::from(x)))
    };
    let (area, group, serial) = (num(0..3), num(3..5), num(5..9));
    d.len() == 9 && area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// The bytes a finding here can start with: digits, upper-case letters, `+` and `@` (a table:
/// every byte of every string is looked up).
static STARTS: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_digit() || b.is_ascii_uppercase() || b == b'+' || b == b'@';
        i += 1;
    }
    t
};

fn alnum_at(b: &[u8], i: usize) -> bool {
    b.get(i).is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Runs the personal-data detectors of `set` on `text`, in one pass.
pub(super) fn scan(text: &str, set: DetectSet, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    let cards = set.contains(Detector::CARD_NUMBER);
    let ibans = set.contains(Detector::IBAN);
    let emails = set.contains(Detector::EMAIL);
    let phones = set.contains(Detector::PHONE);
    let ids = NATIONAL_IDS.iter().any(|n| set.contains(n.detector));
    if !(cards || ibans || emails || phones || ids) {
        return;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        // Only a digit, an upper-case letter, `+` or `@` starts anything found here.
        if !STARTS[usize::from(c)] {
            i += 1;
            continue;
        }
        let boundary = i == 0 || !alnum_at(b, i - 1);
        let after_sep =
            matches!(i.checked_sub(1).and_then(|p| b.get(p)), Some(b'.' | b'+' | b'-' | b'_' | b'/'));
        let hit = if c.is_ascii_digit() && boundary && !after_sep {
            let h = if cards { card(text, i) } else { None };
            h.or_else(|| if ids { national_id(text, i, set) } else { None })
        } else if c == b'+' && phones && boundary {
            phone(text, i)
        } else if c == b'@' && emails {
            email(text, i)
        } else if c.is_ascii_uppercase() && ibans && boundary {
            iban(text, i)
        } else {
            None
        };
        let mut next = i + 1;
        match hit {
            Some(h) => {
                next = h.end;
                out.push(h);
            }
            // Past the rest of a number that is nothing.
            None if c.is_ascii_digit() => {
                while next < b.len() && b[next].is_ascii_digit() {
                    next += 1;
                }
            }
            None => {}
        }
        i = next.max(i + 1);
    }
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether the number's first digits and length are a card network's.
fn card_network(d: &[u8]) -> bool {
    let prefix = |n: usize| d.get(..n).map_or(0, |s| s.iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x)));
    let len = d.len();
    match d.first() {
        Some(4) => matches!(len, 13 | 16 | 19),                     // Visa
        Some(5) => (51..=55).contains(&prefix(2)) && len == 16,     // Mastercard
        Some(2) => (2221..=2720).contains(&prefix(4)) && len == 16, // Mastercard
        Some(3) if matches!(prefix(2), 34 | 37) => len == 15,       // Amex
        Some(3) if (3528..=3589).contains(&prefix(4)) => (16..=19).contains(&len), // JCB
        Some(3) => matches!(prefix(2), 30 | 36 | 38 | 39) && (14..=19).contains(&len), // Diners
        Some(6) => {
            (prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3)) || prefix(2) == 62)
                && (16..=19).contains(&len)
        }
        _ => false,
    }
}

/// A card number at `start`: 13 to 19 digits, in groups joined by single spaces or dashes (one
/// kind throughout), of a card network, passing the Luhn check.
fn card(text: &str, start: usize) -> Option<Hit> {
    let b = text.as_bytes();
    let mut digits = Vec::with_capacity(19);
    let mut groups = Vec::with_capacity(6);
    let mut sep = None;
    let mut j = start;
    loop {
        let g = j;
        while j < b.len() && b[j].is_ascii_digit() {
            digits.push(b[j] - b'0');
            j += 1;
        }
        groups.push(j - g);
        if digits.len() > 19 {
            return None;
        }
        match (b.get(j), b.get(j + 1)) {
            (Some(&s @ (b' ' | b'-')), Some(n)) if n.is_ascii_digit() && sep.is_none_or(|x| x == s) => {
                sep = Some(s);
                j += 1;
            }
            _ => break,
        }
    }
    // Not part of a longer token or a decimal number.
    if alnum_at(b, j)
        || (matches!(b.get(j), Some(b'.' | b',')) && b.get(j + 1).is_some_and(u8::is_ascii_digit))
    {
        return None;
    }
    let grouped_ok = groups.len() == 1
        || groups
            .split_last()
            .is_some_and(|(last, rest)| rest.iter().all(|g| (4..=6).contains(g)) && (1..=6).contains(last));
    if !(13..=19).contains(&digits.len()) || !grouped_ok || !card_network(&digits) || !luhn(&digits) {
        return None;
    }
    let compact: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    let same = digits.iter().all(|d| Some(d) == digits.first());
    if same || TEST_CARDS.contains(&compact.as_str()) {
        return None;
    }
    Hit::raw(Detector::CARD_NUMBER, text, start, j)
}

/// A national identifier of the table at `start`.
fn national_id(text: &str, start: usize, set: DetectSet) -> Option<Hit> {
    let b = text.as_bytes();
    'ids: for id in NATIONAL_IDS.iter().filter(|n| set.contains(n.detector)) {
        let mut j = start;
        let mut digits = Vec::new();
        let mut sep = None;
        for (n, &len) in id.groups.iter().enumerate() {
            if n > 0 {
                match b.get(j) {
                    Some(s) if id.separators.contains(s) && sep.is_none_or(|x| x == *s) => {
                        sep = Some(*s);
                        j += 1;
                    }
                    _ => continue 'ids,
                }
            }
            for _ in 0..len {
                match b.get(j) {
                    Some(d) if d.is_ascii_digit() => {
                        digits.push(d - b'0');
                        j += 1;
                    }
                    _ => continue 'ids,
                }
            }
        }
        let longer = alnum_at(b, j)
            || (matches!(b.get(j), Some(b'-' | b'.' | b'/')) && b.get(j + 1).is_some_and(u8::is_ascii_digit));
        let written = text.get(start..j).unwrap_or_default();
        if !longer && (id.valid)(&digits) && !id.examples.contains(&written) {
            return Hit::raw(id.detector, text, start, j);
        }
    }
    None
}

/// A phone number in international form at `start` (on the `+`): a country code not starting
/// with 0, 10 to 15 digits in all, in at most 6 groups joined by spaces, dashes, dots or
/// parentheses.
fn phone(text: &str, start: usize) -> Option<Hit> {
    let b = text.as_bytes();
    if !b.get(start + 1).is_some_and(|c| (b'1'..=b'9').contains(c)) {
        return None;
    }
    let mut digits = Vec::with_capacity(15);
    let mut groups = 0;
    let mut seps = 0;
    let mut end = start + 1;
    let mut j = start + 1;
    while j < b.len() {
        let c = b[j];
        if c.is_ascii_digit() {
            if seps > 0 || digits.is_empty() {
                groups += 1;
            }
            seps = 0;
            digits.push(c - b'0');
            j += 1;
            end = j;
        } else if matches!(c, b' ' | b'-' | b'.' | b'(' | b')') && seps < 2 {
            seps += 1;
            j += 1;
        } else {
            break;
        }
        if digits.len() > 15 {
            return None;
        }
    }
    if alnum_at(b, end) || !(10..=15).contains(&digits.len()) || groups > 6 {
        return None;
    }
    let number: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    // North America's 555-0100 to 555-0199 are for fiction.
    let nanp_fiction = number.len() == 11
        && number.starts_with('1')
        && number.get(4..9).is_some_and(|s| s.starts_with("55501"));
    if nanp_fiction || FICTIONAL_PHONES.iter().any(|p| number.starts_with(p)) {
        return None;
    }
    Hit::raw(Detector::PHONE, text, start, end)
}

fn email_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn email_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// An email address around the `@` at `at`, outside the documentation domains.
fn email(text: &str, at: usize) -> Option<Hit> {
    let b = text.as_bytes();
    let mut s = at;
    while s > 0 && email_local(b[s - 1]) {
        s -= 1;
    }
    // `user:password@host` in a URL, a path.
    if s > 0 && matches!(b[s - 1], b':' | b'/') {
        return None;
    }
    let mut e = at + 1;
    while e < b.len() && email_domain(b[e]) {
        e += 1;
    }
    while e > at + 1 && matches!(b[e - 1], b'.' | b'-') {
        e -= 1;
    }
    let local = text.get(s..at)?;
    let domain = text.get(at + 1..e)?;
    if local.is_empty()
        || local.len() > 64
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return None;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-');
    let tld = labels.last().copied().unwrap_or_default().to_ascii_lowercase();
    if labels.len() < 2
        || !labels.iter().all(label_ok)
        || !(2..=24).contains(&tld.len())
        || !tld.bytes().all(|c| c.is_ascii_alphabetic())
        || FILE_EXTENSIONS.contains(&tld.as_str())
        || RESERVED_TLDS.contains(&tld.as_str())
    {
        return None;
    }
    let domain = domain.to_ascii_lowercase();
    let local_lower = local.to_ascii_lowercase();
    let reserved = RESERVED_DOMAINS.iter().any(|d| domain == *d || domain.ends_with(&format!(".{d}")));
    let machine = local_lower == "git" || local_lower.contains("noreply") || local_lower.contains("no-reply");
    if reserved || machine || domain.ends_with("users.noreply.github.com") {
        return None;
    }
    Hit::raw(Detector::EMAIL, text, s, e)
}

/// An IBAN at `start`: a country's code and length, 2 check digits, upper-case letters and
/// digits (in groups of 4 separated by single spaces, or none), mod 97 = 1.
fn iban(text: &str, start: usize) -> Option<Hit> {
    let b = text.as_bytes();
    let country = text.get(start..start + 2)?;
    let len = IBAN_LENGTHS.iter().find(|(c, _)| *c == country)?.1;
    if !b.get(start + 2..start + 4)?.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut compact = Vec::with_capacity(len);
    let mut j = start;
    while compact.len() < len {
        match b.get(j) {
            Some(&c) if c.is_ascii_uppercase() || c.is_ascii_digit() => {
                compact.push(c);
                j += 1;
            }
            Some(b' ') if compact.len() % 4 == 0 && compact.len() < len && alnum_at(b, j + 1) => j += 1,
            _ => return None,
        }
    }
    if alnum_at(b, j) {
        return None;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for &c in tail.iter().chain(head) {
        let v = if c.is_ascii_digit() { u32::from(c - b'0') } else { u32::from(c - b'A') + 10 };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    let compact = String::from_utf8(compact).ok()?;
    if rem != 1 || EXAMPLE_IBANS.contains(&compact.as_str()) {
        return None;
    }
    Hit::raw(Detector::IBAN, text, start, j)
}
