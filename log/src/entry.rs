//! Log entries: sealing a body into a hash-chained record, opening and checking a record,
//! redaction of secrets in params, and timestamps.
//!
//! `entry_hash = blake3(prev_hash ‖ canonical(body))`, where `body` is the entry without its
//! `prev_hash` and `entry_hash` fields. The stored record is the canonical JSON of the body plus
//! both hashes (lower-case hex).

use faramesh_proto::canonical::CanonicalError;
use faramesh_proto::canonical_json;
use serde_json::{Map, Value};

/// The `prev_hash` of entry 1.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// Params keys whose values are never stored (matched case-insensitively, as substrings).
pub const DEFAULT_REDACT_KEYS: &[&str] = &["password", "token", "secret", "api_key", "authorization"];

/// What replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// A sealed entry ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The record bytes (canonical JSON, UTF-8).
    pub record: String,
    /// This entry's hash.
    pub entry_hash: [u8; 32],
}

/// `blake3(prev ‖ canonical_body)`.
pub fn chain_hash(prev: &[u8; 32], canonical_body: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(canonical_body);
    *h.finalize().as_bytes()
}

/// Seals `body` (which must already hold `seq`) after `prev`.
pub fn seal(prev: &[u8; 32], mut body: Map<String, Value>) -> Result<Sealed, EntryError> {
    body.remove("prev_hash");
    body.remove("entry_hash");
    let body_value = Value::Object(body);
    let canonical = canonical_json(&body_value)?;
    let entry_hash = chain_hash(prev, canonical.as_bytes());
    let Value::Object(mut full) = body_value else { return Err(EntryError::NotObject) };
    full.insert("prev_hash".into(), Value::String(hex(prev)));
    full.insert("entry_hash".into(), Value::String(hex(&entry_hash)));
    let record = canonical_json(&Value::Object(full))?;
    Ok(Sealed { record, entry_hash })
}

/// A body already in canonical form, with the places marked where the writer's fields go: the
/// expensive part of sealing, done by the appender before the entry reaches the single writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedBody {
    /// The fields, canonical and sorted by key, each followed by a comma.
    text: String,
    /// Where each of [`WRITER_KEYS`] goes in `text`: before the first field whose key is not
    /// less than it.
    cuts: [usize; 5],
    /// The span of the body's own `id` field, replaced when the writer assigns an id.
    own_id: Option<(usize, usize)>,
}

impl PreparedBody {
    /// About how many bytes the sealed record will take (the fields without the writer's).
    pub fn approx_len(&self) -> usize {
        self.text.len()
    }

    /// Writes the object with `extra` fields (each `"key":value,`, in [`WRITER_KEYS`] order)
    /// spliced in at their places.
    fn assemble(&self, extra: [Option<&str>; 5]) -> String {
        let len = self.text.len() + extra.iter().flatten().map(|f| f.len()).sum::<usize>();
        let mut out = String::with_capacity(len + 2);
        out.push('{');
        let mut at = 0;
        for (i, field) in extra.iter().enumerate() {
            let Some(field) = field else { continue };
            let cut = self.cuts[i];
            out.push_str(self.text.get(at..cut).unwrap_or_default());
            out.push_str(field);
            at = cut;
            if i == ID && self.own_id.is_some_and(|(start, _)| start == cut) {
                at = self.own_id.map_or(at, |(_, end)| end);
            }
        }
        out.push_str(self.text.get(at..).unwrap_or_default());
        if out.ends_with(',') {
            out.pop();
        }
        out.push('}');
        out
    }
}

/// Fields the writer sets; removed from a body given to [`prepare`].
pub const RESERVED: [&str; 4] = ["seq", "ts", "prev_hash", "entry_hash"];

/// Every field the writer may add, sorted (the order of canonical JSON).
const WRITER_KEYS: [&str; 5] = ["entry_hash", "id", "prev_hash", "seq", "ts"];
const ID: usize = 1;

/// Canonicalizes `body` (without the reserved fields) and marks where the writer's go.
pub fn prepare(mut body: Map<String, Value>) -> Result<PreparedBody, EntryError> {
    for key in RESERVED {
        body.remove(key);
    }
    let mut fields = body
        .iter()
        .map(|(k, v)| {
            canonical_json(v)
                .map(|text| (k, text))
                .map_err(|source| EntryError::Field { field: k.clone(), source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut text = String::with_capacity(fields.iter().map(|(k, v)| k.len() + v.len() + 4).sum());
    let mut cuts = [0usize; 5];
    let mut own_id = None;
    let mut next = 0;
    for (key, value) in &fields {
        while next < WRITER_KEYS.len() && WRITER_KEYS[next] <= key.as_str() {
            cuts[next] = text.len();
            next += 1;
        }
        let start = text.len();
        faramesh_proto::canonical::write_string(&mut text, key);
        text.push(':');
        text.push_str(value);
        text.push(',');
        if key.as_str() == "id" {
            own_id = Some((start, text.len()));
        }
    }
    for cut in cuts.iter_mut().skip(next) {
        *cut = text.len();
    }
    Ok(PreparedBody { text, cuts, own_id })
}

/// `"key":value,` for a string value.
fn string_field(key: &str, value: &str) -> String {
    let mut out = String::with_capacity(key.len() + value.len() + 8);
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
    faramesh_proto::canonical::write_string(&mut out, value);
    out.push(',');
    out
}

/// Seals a prepared body as entry `seq` at time `ts` after `prev` (with the writer's `id`, which
/// replaces any the body has): the same bytes as [`seal`] on the equivalent map.
pub fn seal_prepared(prev: &[u8; 32], body: &PreparedBody, seq: u64, ts: &str, id: Option<&str>) -> Sealed {
    let seq_field = format!("\"seq\":{seq},");
    let ts_field = string_field("ts", ts);
    let id_field = id.map(|id| string_field("id", id));
    let id_field = id_field.as_deref();
    let canonical_body = body.assemble([None, id_field, None, Some(&seq_field), Some(&ts_field)]);
    let entry_hash = chain_hash(prev, canonical_body.as_bytes());
    let prev_field = string_field("prev_hash", &hex(prev));
    let entry_field = string_field("entry_hash", &hex(&entry_hash));
    let record =
        body.assemble([Some(&entry_field), id_field, Some(&prev_field), Some(&seq_field), Some(&ts_field)]);
    Sealed { record, entry_hash }
}

/// Why an entry cannot be sealed, or a stored record does not check out.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EntryError {
    /// A value with no canonical form (a number that is not finite).
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    /// A field's value has no canonical form.
    #[error("`{field}`: {source}")]
    Field {
        /// The top-level field.
        field: String,
        /// Why.
        #[source]
        source: CanonicalError,
    },
    /// The record's bytes are not UTF-8.
    #[error("record is not UTF-8")]
    NotUtf8,
    /// The record is not JSON.
    #[error("record is not JSON: {0}")]
    NotJson(#[source] std::sync::Arc<serde_json::Error>),
    /// The record is JSON but not the one canonical text of itself.
    #[error("record is not in canonical form")]
    NotCanonical,
    /// The record or body is not a JSON object.
    #[error("record is not an object")]
    NotObject,
    /// A required field (`seq`, `prev_hash`, `entry_hash`) is missing or malformed.
    #[error("record has no valid `{0}`")]
    Missing(&'static str),
    /// `entry_hash` is not the hash of the record's body.
    #[error("entry_hash does not match the entry's contents")]
    HashMismatch,
}

/// A stored record, parsed and checked for internal consistency.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The `seq` field.
    pub seq: u64,
    /// The `prev_hash` field.
    pub prev_hash: [u8; 32],
    /// The `entry_hash` field, equal to the recomputed hash.
    pub entry_hash: [u8; 32],
    /// The whole record.
    pub value: Map<String, Value>,
}

/// Parses a record and checks that it is canonical and that its `entry_hash` is the hash of its
/// body after its own `prev_hash`. Chain linkage (prev_hash = previous entry_hash) is the
/// caller's to check.
pub fn open(record: &[u8]) -> Result<Opened, EntryError> {
    let text = std::str::from_utf8(record).map_err(|_| EntryError::NotUtf8)?;
    let value: Value = serde_json::from_str(text).map_err(|e| EntryError::NotJson(std::sync::Arc::new(e)))?;
    let recanonical = canonical_json(&value)?;
    if recanonical != text {
        return Err(EntryError::NotCanonical);
    }
    let Value::Object(map) = value else { return Err(EntryError::NotObject) };
    let seq = map.get("seq").and_then(Value::as_u64).ok_or(EntryError::Missing("seq"))?;
    let field_hash = |name: &'static str| -> Result<[u8; 32], EntryError> {
        map.get(name).and_then(Value::as_str).and_then(unhex32).ok_or(EntryError::Missing(name))
    };
    let prev_hash = field_hash("prev_hash")?;
    let entry_hash = field_hash("entry_hash")?;
    let mut body = map.clone();
    body.remove("prev_hash");
    body.remove("entry_hash");
    let canonical = canonical_json(&Value::Object(body))?;
    if chain_hash(&prev_hash, canonical.as_bytes()) != entry_hash {
        return Err(EntryError::HashMismatch);
    }
    Ok(Opened { seq, prev_hash, entry_hash, value: map })
}

/// Lower-case hex of 32 bytes.
pub fn hex(bytes: &[u8]) -> String {
    faramesh_proto::canonical::to_hex(bytes)
}

/// Parses exactly 64 lower-case hex characters (upper case is refused: the stored text must be
/// the one form that was hashed).
pub fn unhex32(text: &str) -> Option<[u8; 32]> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// A copy of `value` with the values of secret-looking keys replaced by `[REDACTED]`, at any
/// depth. A key is secret when it contains one of `keys`, ignoring case.
pub fn redact(value: &Value, keys: &[String]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    if keys.iter().any(|s| lower.contains(s.as_str())) {
                        (k.clone(), Value::String(REDACTED.to_owned()))
                    } else {
                        (k.clone(), redact(v, keys))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| redact(v, keys)).collect()),
        other => other.clone(),
    }
}

/// What replaces a value a detector found (`detect:` in the policy):
/// `[REDACTED:<detector>:<first 16 hex of HMAC-SHA256(key, value)>]`, with the log's
/// [`crate::keys::LogKey::redaction_key`]. Equal values give equal tokens in one log, so they
/// can be linked, and cannot be read back.
pub fn redaction_token(key: &[u8; 32], detector: &str, value: &str) -> String {
    use hmac::{KeyInit, Mac};
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return format!("{REDACTED_PREFIX}{detector}]");
    };
    mac.update(value.as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("{REDACTED_PREFIX}{detector}:{}]", faramesh_proto::canonical::to_hex(&digest[..8]))
}

/// How a value-redaction token starts.
pub const REDACTED_PREFIX: &str = "[REDACTED:";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// RFC 3339 UTC with milliseconds: `2026-11-21T22:01:29.123Z` (fixed width, so text order is
/// time order). Past year 9999 (not a time the clock gives) it writes the latest one.
pub fn rfc3339(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc());
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parses an RFC 3339 time (what [`rfc3339`] writes, with or without fractional seconds, any
/// offset) to milliseconds since the Unix epoch; `None` for anything else or a time before 1970.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redaction_tokens_link_equal_values_under_one_log_key_only() {
        use crate::keys::LogKey;
        let key = LogKey::from_seed(&[1u8; 32]).redaction_key();
        let other = LogKey::from_seed(&[2u8; 32]).redaction_key();
        let token = redaction_token(&key, "email", "anna.k@gmail.com");
        assert_eq!(token, redaction_token(&key, "email", "anna.k@gmail.com"));
        assert_ne!(token, redaction_token(&key, "email", "anna.k@gmail.org"));
        assert_ne!(token, redaction_token(&other, "email", "anna.k@gmail.com"));
        let hex = token.strip_prefix("[REDACTED:email:").and_then(|t| t.strip_suffix(']')).unwrap();
        assert!(hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
        // The key is the log's, whatever name the signing key is given.
        assert_eq!(LogKey::from_seed(&[1u8; 32]).named("host.example/log").redaction_key(), key);
    }

    #[test]
    fn seal_then_open_round_trips() {
        let body = json!({"seq": 1, "kind": "test", "x": 1.5}).as_object().unwrap().clone();
        let sealed = seal(&GENESIS, body).unwrap();
        let opened = open(sealed.record.as_bytes()).unwrap();
        assert_eq!(opened.seq, 1);
        assert_eq!(opened.entry_hash, sealed.entry_hash);
        assert_eq!(opened.prev_hash, GENESIS);
    }

    #[test]
    fn sealing_a_prepared_body_gives_the_same_bytes() {
        let ts = "2026-11-21T22:01:29.123Z";
        let bodies = [
            json!({"kind": "decision", "z": [1.50, {"b": 1, "a": "é\n"}], "agent_id": "a", "seq": 99}),
            json!({}),
            json!({"a": 1, "entry": 2, "f": 3, "i": 4, "id": "mine", "idx": 5, "p": 6, "prev": 7, "q": 8,
                   "s": 9, "sequence": 10, "t": 11, "tz": 12, "z\"": 13, "ts": "dropped", "entry_hash": "x"}),
            json!({"zzz": true}),
            json!({"id": "only"}),
        ];
        for body in bodies {
            let map = body.as_object().unwrap().clone();
            let prepared = prepare(map.clone()).unwrap();
            for id in [None, Some("00ff00ff00ff00ff")] {
                let fast = seal_prepared(&[4u8; 32], &prepared, 7, ts, id);
                let mut full = map.clone();
                full.insert("seq".into(), json!(7));
                full.insert("ts".into(), json!(ts));
                if let Some(id) = id {
                    full.insert("id".into(), json!(id));
                }
                assert_eq!(fast, seal(&[4u8; 32], full).unwrap(), "{body} with id {id:?}");
            }
        }
    }

    #[test]
    fn edited_or_non_canonical_records_are_refused() {
        let body = json!({"seq": 3, "kind": "test", "effect": "DENY"}).as_object().unwrap().clone();
        let sealed = seal(&GENESIS, body).unwrap();
        let edited = sealed.record.replace("DENY", "PERMIT");
        assert!(matches!(open(edited.as_bytes()).unwrap_err(), EntryError::HashMismatch));
        let spaced = sealed.record.replacen(':', ": ", 1);
        assert!(matches!(open(spaced.as_bytes()).unwrap_err(), EntryError::NotCanonical));
    }

    #[test]
    fn redaction_is_by_key_name_at_any_depth() {
        let params =
            json!({"user": "a", "Password": "p", "nested": [{"api_key": "k", "ok": 1}], "x_token_y": 2});
        let keys: Vec<String> = DEFAULT_REDACT_KEYS.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            redact(&params, &keys),
            json!({"user": "a", "Password": "[REDACTED]", "nested": [{"api_key": "[REDACTED]", "ok": 1}], "x_token_y": "[REDACTED]"})
        );
    }

    #[test]
    fn hashes_read_back_only_in_the_form_that_was_written() {
        let h = *blake3::hash(b"x").as_bytes();
        assert_eq!(unhex32(&hex(&h)), Some(h));
        assert_eq!(unhex32(&hex(&h).to_ascii_uppercase()), None);
        assert_eq!(unhex32(&hex(&h)[..62]), None);
        assert_eq!(unhex32(&format!("{}zz", &hex(&h)[..62])), None);
    }

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_298_489_123), "2026-11-21T22:01:29.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        for ms in [0u64, 951_782_400_000, 1_795_298_489_123, 4_102_444_800_999] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(parse_rfc3339("2026-11-21T22:01:29Z"), Some(1_795_298_489_000));
        assert_eq!(parse_rfc3339("2026-11-21T23:01:29.5+01:00"), Some(1_795_298_489_500));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), None);
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59.999Z");
    }
}
