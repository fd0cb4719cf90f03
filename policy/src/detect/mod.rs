//! Finding secrets and personal data in a call's params (`detect:` in a rule's `match`).
//!
//! Every string of the params is scanned, at any depth, and scanned again once decoded where it
//! is obviously encoded: a run of 20 or more base64 characters that decodes to printable UTF-8,
//! or a string holding `%XX` (percent-decoded). Nothing is decoded twice. Each detector looks
//! for one documented format by its prefix and length or its checksum (no regular expression),
//! and passes over the well-known example values of the providers' documentation and obvious
//! placeholders. A finding names the detector and where, never the value.
//!
//! Paths are written from the params object `$`: `.name` for a key made of ASCII letters,
//! digits and `_` (not starting with a digit), `["any other key"]` (a JSON string) otherwise,
//! and `[n]` for the n-th item of a list (from 0): `$.headers.authorization`,
//! `$.items[2].token`, `$["x-api-key"]`.

pub mod aimed;
mod decode;
mod pii;
mod secrets;
#[cfg(test)]
mod tests;

use faramesh_proto::Finding;
use serde_json::{Map, Value};

/// A detector: one kind of secret or personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Detector(u8);

/// Which family a detector belongs to (`detect: secrets` or `detect: pii`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Credentials: keys, tokens, private keys.
    Secrets,
    /// Personal data: card numbers, bank accounts, addresses, phone numbers, national ids.
    Pii,
}

/// Every detector, by name, in the order findings are reported.
const DETECTORS: &[(&str, Group)] = &[
    ("aws_access_key", Group::Secrets),
    ("private_key", Group::Secrets),
    ("github_token", Group::Secrets),
    ("slack_token", Group::Secrets),
    ("stripe_key", Group::Secrets),
    ("google_api_key", Group::Secrets),
    ("openai_key", Group::Secrets),
    ("anthropic_key", Group::Secrets),
    ("jwt", Group::Secrets),
    ("high_entropy_assignment", Group::Secrets),
    ("card_number", Group::Pii),
    ("iban", Group::Pii),
    ("email", Group::Pii),
    ("phone", Group::Pii),
    // National identifiers: one per row of `pii::NATIONAL_IDS`.
    ("us_ssn", Group::Pii),
];

impl Detector {
    pub(crate) const AWS_ACCESS_KEY: Detector = Detector(0);
    pub(crate) const PRIVATE_KEY: Detector = Detector(1);
    pub(crate) const GITHUB_TOKEN: Detector = Detector(2);
    pub(crate) const SLACK_TOKEN: Detector = Detector(3);
    pub(crate) const STRIPE_KEY: Detector = Detector(4);
    pub(crate) const GOOGLE_API_KEY: Detector = Detector(5);
    pub(crate) const OPENAI_KEY: Detector = Detector(6);
    pub(crate) const ANTHROPIC_KEY: Detector = Detector(7);
    pub(crate) const JWT: Detector = Detector(8);
    pub(crate) const HIGH_ENTROPY: Detector = Detector(9);
    pub(crate) const CARD_NUMBER: Detector = Detector(10);
    pub(crate) const IBAN: Detector = Detector(11);
    pub(crate) const EMAIL: Detector = Detector(12);
    pub(crate) const PHONE: Detector = Detector(13);
    pub(crate) const US_SSN: Detector = Detector(14);

    /// The detector's name as the policy and findings write it.
    pub fn name(self) -> &'static str {
        DETECTORS.get(usize::from(self.0)).map_or("unknown", |(n, _)| n)
    }

    /// Its family.
    pub fn group(self) -> Group {
        DETECTORS.get(usize::from(self.0)).map_or(Group::Secrets, |(_, g)| *g)
    }

    /// Every detector.
    pub fn all() -> impl Iterator<Item = Detector> {
        (0..DETECTORS.len()).filter_map(|i| u8::try_from(i).ok()).map(Detector)
    }

    /// The detector named `name`.
    pub fn by_name(name: &str) -> Option<Detector> {
        Detector::all().find(|d| d.name() == name)
    }
}

/// A set of detectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DetectSet(u32);

impl DetectSet {
    /// No detector.
    pub const NONE: DetectSet = DetectSet(0);

    /// The set of one detector.
    pub fn of(d: Detector) -> DetectSet {
        DetectSet(1u32 << d.0)
    }

    /// Every detector of `group`.
    pub fn group(group: Group) -> DetectSet {
        Detector::all().filter(|d| d.group() == group).fold(DetectSet::NONE, |s, d| s | DetectSet::of(d))
    }

    /// Every detector.
    pub fn all() -> DetectSet {
        Detector::all().fold(DetectSet::NONE, |s, d| s | DetectSet::of(d))
    }

    /// What a name in `detect:` stands for: `secrets`, `pii`, or one detector.
    pub fn named(name: &str) -> Option<DetectSet> {
        match name {
            "secrets" => Some(DetectSet::group(Group::Secrets)),
            "pii" => Some(DetectSet::group(Group::Pii)),
            _ => Detector::by_name(name).map(DetectSet::of),
        }
    }

    /// The names `detect:` accepts.
    pub fn names() -> Vec<&'static str> {
        let mut names = vec!["secrets", "pii"];
        names.extend(Detector::all().map(Detector::name));
        names
    }

    /// Whether `d` is in the set.
    pub fn contains(self, d: Detector) -> bool {
        self.0 & (1u32 << d.0) != 0
    }

    /// Whether the two sets share a detector.
    pub fn intersects(self, other: DetectSet) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether every detector of `self` is in `other`.
    pub fn is_subset(self, other: DetectSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether any finding is by a detector of the set.
    pub fn any_in(self, findings: &[Finding]) -> bool {
        findings.iter().any(|f| Detector::by_name(&f.detector).is_some_and(|d| self.contains(d)))
    }
}

impl std::ops::BitOr for DetectSet {
    type Output = DetectSet;
    fn bitor(self, rhs: DetectSet) -> DetectSet {
        DetectSet(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for DetectSet {
    fn bitor_assign(&mut self, rhs: DetectSet) {
        self.0 |= rhs.0;
    }
}

/// One value found in one string: bytes `start..end` of the string are replaced when the
/// params are redacted; `secret` is the value itself (decoded when it was found decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    pub detector: Detector,
    pub start: usize,
    pub end: usize,
    pub secret: String,
}

impl Hit {
    fn raw(detector: Detector, s: &str, start: usize, end: usize) -> Option<Hit> {
        let secret = s.get(start..end)?.to_owned();
        Some(Hit { detector, start, end, secret })
    }
}

/// Runs the detectors of `set` on `text` as written (no decoding).
fn scan_raw(text: &str, set: DetectSet, out: &mut Vec<Hit>) {
    secrets::scan(text, set, out);
    pii::scan(text, set, out);
}

/// What the detectors of `set` find in one string, the value of key `key` (if in an object).
pub(crate) fn hits(text: &str, key: Option<&str>, set: DetectSet) -> Vec<Hit> {
    let mut out = Vec::new();
    if set.is_empty() {
        return out;
    }
    scan_raw(text, set, &mut out);
    if let Some(key) = key
        && set.contains(Detector::HIGH_ENTROPY)
    {
        secrets::keyed(text, key, &mut out);
    }
    let raw = out.len();
    decode::base64_runs(text, |start, end, decoded| {
        let mut inner = Vec::new();
        scan_raw(decoded, set, &mut inner);
        out.extend(inner.into_iter().map(|h| Hit { start, end, ..h }));
    });
    if let Some(decoded) = decode::percent(text) {
        let mut inner = Vec::new();
        scan_raw(&decoded, set, &mut inner);
        out.extend(inner.into_iter().map(|h| Hit { start: 0, end: text.len(), ..h }));
    }
    if out.is_empty() {
        return out;
    }
    // A value found both as written and decoded (a key in a URL) counts once, as written.
    let (plain, decoded) = out.split_at(raw);
    let decoded: Vec<Hit> = decoded
        .iter()
        .filter(|d| !plain.iter().any(|p| p.detector == d.detector && p.secret == d.secret))
        .cloned()
        .collect();
    out.truncate(raw);
    out.extend(decoded);
    // A value a specific detector names is not also a generic high-entropy assignment.
    let specific: Vec<(usize, usize)> =
        out.iter().filter(|h| h.detector != Detector::HIGH_ENTROPY).map(|h| (h.start, h.end)).collect();
    out.retain(|h| {
        h.detector != Detector::HIGH_ENTROPY || !specific.iter().any(|&(s, e)| s < h.end && h.start < e)
    });
    out
}

/// What the detectors of `set` find in `params`: each detector once per path, in the order of
/// the paths (keys in canonical order) and then of [`DETECTORS`].
pub fn scan(params: &Value, set: DetectSet) -> Vec<Finding> {
    let mut found: Vec<(String, Detector)> = Vec::new();
    if set.is_empty() {
        return Vec::new();
    }
    let mut at: Vec<Step<'_>> = Vec::new();
    walk(params, None, &mut at, &mut |text, key, at| {
        let mut ds: Vec<Detector> = hits(text, key, set).into_iter().map(|h| h.detector).collect();
        if ds.is_empty() {
            return;
        }
        ds.sort_unstable();
        ds.dedup();
        // The path is written only for a value where something was found.
        let mut path = String::from("$");
        for step in at {
            match step {
                // A key that itself holds something found is not written out: `[*]`.
                Step::Key(k) if !hits(k, None, set).is_empty() => path.push_str("[*]"),
                Step::Key(k) => push_key(&mut path, k),
                Step::Index(i) => {
                    use std::fmt::Write as _;
                    let _ = write!(path, "[{i}]");
                }
            }
        }
        found.extend(ds.into_iter().map(|d| (path.clone(), d)));
    });
    found.into_iter().map(|(path, d)| Finding { detector: d.name().to_owned(), path }).collect()
}

/// One step of the path to a value: an object's key or an array's index.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// What [`walk`] calls for each string: the string, its key (in an object), the path to it.
type Visit<'f, 'a> = dyn FnMut(&str, Option<&str>, &[Step<'a>]) + 'f;

fn walk<'a>(value: &'a Value, key: Option<&'a str>, at: &mut Vec<Step<'a>>, f: &mut Visit<'_, 'a>) {
    match value {
        Value::String(s) => f(s, key, at),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                at.push(Step::Index(i));
                walk(item, None, at, f);
                at.pop();
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                at.push(Step::Key(k));
                walk(v, Some(k), at, f);
                at.pop();
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn push_key(path: &mut String, key: &str) {
    let plain = key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plain {
        path.push('.');
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&Value::String(key.to_owned()).to_string());
        path.push(']');
    }
}

/// A copy of `params` where each value the detectors of `set` find is replaced by
/// `token(detector, value)`. A value found decoded replaces its whole encoded run (base64)
/// or the whole string (percent-encoding); overlapping values are replaced together, under
/// the first one's token.
pub fn redact(params: &Value, set: DetectSet, token: &dyn Fn(Detector, &str) -> String) -> Value {
    redact_value(params, None, set, token)
}

fn redact_value(
    value: &Value,
    key: Option<&str>,
    set: DetectSet,
    token: &dyn Fn(Detector, &str) -> String,
) -> Value {
    match value {
        Value::String(s) => Value::String(redact_text(s, key, set, token)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| redact_value(v, None, set, token)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), redact_value(v, Some(k), set, token)))
                .collect::<Map<String, Value>>(),
        ),
        other => other.clone(),
    }
}

fn redact_text(
    text: &str,
    key: Option<&str>,
    set: DetectSet,
    token: &dyn Fn(Detector, &str) -> String,
) -> String {
    let mut found = hits(text, key, set);
    if found.is_empty() {
        return text.to_owned();
    }
    found.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
    // Merge overlapping spans; each keeps the token of its first value.
    let mut spans: Vec<(usize, usize, String)> = Vec::new();
    for h in found {
        match spans.last_mut() {
            Some(last) if h.start < last.1 => last.1 = last.1.max(h.end),
            _ => spans.push((h.start, h.end, token(h.detector, &h.secret))),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end, tok) in spans {
        // Spans fall on character boundaries (they start and end at ASCII bytes or the ends);
        // a span that does not is replaced with the rest of the string, never left readable.
        match (text.get(at..start), text.get(end..)) {
            (Some(before), Some(_)) => {
                out.push_str(before);
                out.push_str(&tok);
                at = end;
            }
            _ => {
                out.push_str(&tok);
                return out;
            }
        }
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}
