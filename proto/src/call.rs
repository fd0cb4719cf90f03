//! The one reader of a call: the daemon (socket and HTTP), the CLI's offline tools and the
//! policy test-case format all turn JSON into a [`CallRequest`] here, so they cannot disagree on
//! what a call says. Also the strict JSON reader every door uses: a duplicate key anywhere is
//! refused (a tool whose parser keeps the first value would otherwise run a different call than
//! the one decided).

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::types::Call;

/// Every key a call may carry. `action_type` and `principal_token` are what the published
/// Python SDK sends; they are accepted and not stored.
pub const CALL_KEYS: &[&str] = &[
    "agent_id",
    "tool",
    "tool_id",
    "operation",
    "op",
    "args",
    "params",
    "context",
    "session_id",
    "request_id",
    "tags",
    "principal",
    "traceparent",
    "approval_id",
    "action_type",
    "principal_token",
];

/// A call and how it was asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRequest {
    /// The call.
    pub call: Call,
    /// Resume a deferred call with this approval.
    pub approval_id: Option<String>,
    /// Keys that are not call keys, each with a suggestion where one is close: a call with any
    /// is decided DENY `INVALID_REQUEST` (a misspelled `parms` must not be decided as `{}`).
    pub unknown_keys: Vec<(String, Option<&'static str>)>,
}

/// A call field that is missing or has the wrong type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// The field at fault.
    pub field: String,
    /// One line for a person.
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> CallError {
    CallError { field: field.to_owned(), message: message.into() }
}

/// An optional string field (`null` counts as absent); the error names the field.
pub fn string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, CallError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(key, format!("`{key}` must be a string"))),
    }
}

/// An optional object field (`null` counts as absent); the error names the field.
pub fn object(map: &Map<String, Value>, key: &str) -> Result<Option<Value>, CallError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
        Some(_) => Err(bad(key, format!("`{key}` must be an object"))),
    }
}

impl CallRequest {
    /// Reads `agent_id, tool, operation` (or `tool_id` `"tool/op"`, or `op`), `args` or
    /// `params`, `context`, `session_id`, `request_id`, `tags`, `principal`, `approval_id`.
    /// Without a top-level `agent_id`, a string `context.agent_id` names the agent (the v1
    /// clients of the upstream Faramesh documentation send it there).
    pub fn from_json(map: &Map<String, Value>) -> Result<CallRequest, CallError> {
        let agent_id = match string(map, "agent_id")? {
            Some(a) => a,
            None => map
                .get("context")
                .and_then(|c| c.get("agent_id"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| bad("agent_id", "missing field `agent_id`"))?,
        };
        let tool_id = string(map, "tool_id")?;
        let split = tool_id.as_deref().and_then(|t| t.rsplit_once('/'));
        let tool = match (string(map, "tool")?, split) {
            (Some(t), _) => t,
            (None, Some((t, _))) => t.to_owned(),
            (None, None) => {
                tool_id.clone().ok_or_else(|| bad("tool", "missing field `tool` (or `tool_id`)"))?
            }
        };
        let operation = match (string(map, "operation")?.or(string(map, "op")?), split) {
            (Some(o), _) => o,
            (None, Some((_, o))) => o.to_owned(),
            (None, None) => {
                return Err(bad("operation", "missing field `operation` (or `tool_id` as `tool/operation`)"));
            }
        };
        let args = match (object(map, "args")?, object(map, "params")?) {
            (Some(_), Some(_)) => return Err(bad("args", "give `args` or `params`, not both")),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => Value::Object(Map::new()),
        };
        let context = object(map, "context")?.unwrap_or_else(|| Value::Object(Map::new()));
        if let Err(e) = crate::canonical::check_canonical(&args) {
            let field = if map.contains_key("args") { "args" } else { "params" };
            return Err(bad(field, format!("`{field}`: {e}")));
        }
        if let Err(e) = crate::canonical::check_canonical(&context) {
            return Err(bad("context", format!("`context`: {e}")));
        }
        let mut unknown_keys: Vec<(String, Option<&'static str>)> = map
            .keys()
            .filter(|k| !CALL_KEYS.contains(&k.as_str()))
            .map(|k| (k.clone(), suggest(k, CALL_KEYS)))
            .collect();
        unknown_keys.sort();
        let call = Call {
            agent_id,
            tool,
            operation,
            params: args,
            context,
            session_id: string(map, "session_id")?,
            request_id: string(map, "request_id")?,
            tags: map.get("tags").cloned().unwrap_or(Value::Null),
            principal: map.get("principal").cloned().unwrap_or(Value::Null),
            traceparent: match string(map, "traceparent")? {
                Some(t) if !is_traceparent(&t) => {
                    return Err(bad(
                        "traceparent",
                        format!(
                            "`traceparent` `{t}` is not a W3C traceparent (`00-<32 hex>-<16 hex>-<2 hex>`)"
                        ),
                    ));
                }
                t => t,
            },
        };
        Ok(CallRequest { call, approval_id: string(map, "approval_id")?, unknown_keys })
    }

    /// Reads a call from any JSON value (it must be an object).
    pub fn from_value(value: &Value) -> Result<CallRequest, CallError> {
        match value {
            Value::Object(map) => CallRequest::from_json(map),
            _ => Err(bad("call", "a call must be a JSON object")),
        }
    }

    /// Why the request must be refused before deciding (unknown keys), if it must.
    pub fn refusal(&self) -> Option<String> {
        let (key, hint) = self.unknown_keys.first()?;
        let hint = hint.map(|h| format!(", did you mean `{h}`?")).unwrap_or_default();
        let more = match self.unknown_keys.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        Some(format!("unknown key `{key}` in the call{hint}{more}"))
    }
}

/// Whether `text` is a W3C Trace Context `traceparent` this daemon records: version `00`, a
/// 32-hex trace id and a 16-hex parent id that are not all zeros, 2-hex flags (lower case).
pub fn is_traceparent(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    matches!(parts.as_slice(), [v, trace, parent, flags]
        if *v == "00" && hex(trace, 32) && hex(parent, 16) && hex(flags, 2)
            && trace.bytes().any(|b| b != b'0') && parent.bytes().any(|b| b != b'0'))
}

/// The closest of `allowed` to a misspelled `input`, if one is close.
pub fn suggest<'a>(input: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|cand| (strsim::levenshtein(input, cand), *cand))
        .filter(|(d, cand)| *d <= 2.max(cand.len() / 4) && *d < cand.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, cand)| cand)
}

/// Why a JSON text was refused by [`parse_strict`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrictJsonError {
    /// Not JSON (serde_json's message).
    #[error("{0}")]
    Syntax(String),
    /// The same key twice in one object; the dotted path of the second.
    #[error("duplicate key `{0}`")]
    DuplicateKey(String),
}

/// Parses JSON, refusing a duplicate key in any object at any depth, in one pass that builds
/// the value as it reads (serde_json's own limits still hold: 128 levels of nesting, no lone
/// surrogate, UTF-8 only, nothing after the value).
pub fn parse_strict(text: &[u8]) -> Result<Value, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let value = Strict { at: &Step::Root }.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    value.map_err(|e| {
        let msg = e.to_string();
        match msg.strip_prefix(DUP_PREFIX) {
            Some(rest) => {
                StrictJsonError::DuplicateKey(rest.split(" at line").next().unwrap_or(rest).to_owned())
            }
            None => StrictJsonError::Syntax(msg),
        }
    })
}

const DUP_PREFIX: &str = "duplicate key ";

/// The key serde_json (with `arbitrary_precision`) uses to hand a number over as its text.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Where the walk is: a chain of keys and indexes, only turned into a `a.1.b` path when a
/// duplicate is found (nothing is allocated for it on well-formed input).
enum Step<'p> {
    Root,
    Key(&'p Step<'p>, &'p str),
    Index(&'p Step<'p>, usize),
}

impl Step<'_> {
    fn path(&self) -> String {
        match self {
            Step::Root => String::new(),
            Step::Key(parent, key) => join(parent.path(), key),
            Step::Index(parent, i) => join(parent.path(), &i.to_string()),
        }
    }
}

fn join(parent: String, segment: &str) -> String {
    if parent.is_empty() { segment.to_owned() } else { format!("{parent}.{segment}") }
}

/// Reads one JSON value, failing on the first object key seen twice.
struct Strict<'p> {
    at: &'p Step<'p>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        loop {
            let at = Step::Index(self.at, items.len());
            match seq.next_element_seed(Strict { at: &at })? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if out.is_empty() && key == NUMBER_TOKEN {
                // A number, as its exact text: kept as written (`arbitrary_precision`).
                let text: String = map.next_value()?;
                let n: serde_json::Number = text.parse().map_err(de::Error::custom)?;
                return Ok(Value::Number(n));
            }
            if out.contains_key(key.as_ref()) {
                let path = Step::Key(self.at, &key).path();
                return Err(de::Error::custom(format!("{DUP_PREFIX}{path}")));
            }
            let value = {
                let at = Step::Key(self.at, &key);
                map.next_value_seed(Strict { at: &at })?
            };
            out.insert(key.into_owned(), value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{CALL_KEYS, CallRequest, StrictJsonError, parse_strict, suggest};

    #[test]
    fn suggestions_are_the_closest_name_within_a_few_edits() {
        // Characters, not bytes: `é` is one edit from `e`.
        assert_eq!(suggest("agént_id", CALL_KEYS), Some("agent_id"));
        assert_eq!(suggest("agentid", CALL_KEYS), Some("agent_id"));
        assert_eq!(suggest("opration", CALL_KEYS), Some("operation"));
        assert_eq!(suggest("argz", CALL_KEYS), Some("args"));
        assert_eq!(suggest("zzzzzz", CALL_KEYS), None);
        // Within 2 edits, or a quarter of the name when longer; never the whole name.
        assert_eq!(suggest("ab", &["cd"]), None);
        assert_eq!(suggest("abcdefghijklxxx", &["abcdefghijklmno"]), Some("abcdefghijklmno"));
        assert_eq!(suggest("abcdefghxxxxxxx", &["abcdefghijklmno"]), None);
    }

    #[test]
    fn a_traceparent_is_kept_out_of_the_request_hash_and_checked() {
        let base = json!({"agent_id": "a", "tool": "http", "operation": "get"});
        let mut traced = base.clone();
        traced["traceparent"] = json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let plain = CallRequest::from_value(&base).unwrap();
        let with = CallRequest::from_value(&traced).unwrap();
        assert_eq!(
            with.call.traceparent.as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert_eq!(plain.call.request_hash().unwrap(), with.call.request_hash().unwrap());
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "nope",
        ] {
            traced["traceparent"] = json!(bad);
            let e = CallRequest::from_value(&traced).unwrap_err();
            assert_eq!(e.field, "traceparent", "{bad}");
        }
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        // Regression: `{"cmd":"rm -rf /","cmd":"ls"}` was decided on the last value.
        let e = parse_strict(br#"{"params":{"args":{"cmd":"rm -rf /","cmd":"ls"}}}"#).unwrap_err();
        assert_eq!(e, StrictJsonError::DuplicateKey("params.args.cmd".into()));
        let e = parse_strict(br#"{"a":[{"x":1},{"y":1,"y":2}]}"#).unwrap_err();
        assert_eq!(e.to_string(), "duplicate key `a.1.y`");
        assert!(matches!(parse_strict(b"{nope"), Err(StrictJsonError::Syntax(_))));
        // A large object (past the linear scan) still finds its duplicate, wherever it is.
        let mut big: String = (0..1000).map(|i| format!("\"k{i}\":{i},")).collect();
        big.push_str("\"k7\":0");
        let e = parse_strict(format!("{{\"o\":{{{big}}}}}").as_bytes()).unwrap_err();
        assert_eq!(e, StrictJsonError::DuplicateKey("o.k7".into()));
        let unique: String = (0..1000).map(|i| format!("\"k{i}\":{i}")).collect::<Vec<_>>().join(",");
        assert!(parse_strict(format!("{{{unique}}}").as_bytes()).is_ok());
        let v = parse_strict(br#"{"n":1e2,"s":"x","k":{"a":[1,2,{"b":null}]}}"#).unwrap();
        assert_eq!(v["k"]["a"][2], json!({"b": null}));
    }

    #[test]
    fn the_one_pass_reads_what_serde_json_reads() {
        let samples: &[&[u8]] = &[
            br#"{"a":1.000000000000000000001,"b":-0,"c":18446744073709551616,"d":1e400,"e":[]}"#,
            br#"[true,false,null,"\u00e9\ud83d\ude00",{"":{}},-12,0.5]"#,
            br#"  {"n":{"$serde_json::private::Number":"x"}}  "#,
            b"\"text\"",
            b"42",
        ];
        for text in samples {
            let ours = parse_strict(text);
            let theirs: Result<Value, _> = serde_json::from_slice(text);
            match (ours, theirs) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "{}", String::from_utf8_lossy(text));
                    assert_eq!(a.to_string(), b.to_string());
                }
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{}: ours {a:?}, serde_json {b:?}", String::from_utf8_lossy(text)),
            }
        }
        assert_eq!(parse_strict(br#"{"a":1.50}"#).unwrap()["a"].to_string(), "1.50");
        for bad in [&b"{} {}"[..], b"[1,]", b"{\"a\":NaN}", b"\"\\ud800\"", b"\xff", b""] {
            assert!(matches!(parse_strict(bad), Err(StrictJsonError::Syntax(_))), "{bad:?}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(parse_strict(deep.as_bytes()), Err(StrictJsonError::Syntax(_))));
    }

    #[test]
    fn unknown_keys_are_named_with_a_suggestion() {
        let req =
            CallRequest::from_value(&json!({"agent_id": "a", "tool": "t", "operation": "o", "parms": {}}))
                .unwrap();
        assert_eq!(req.refusal().unwrap(), "unknown key `parms` in the call, did you mean `params`?");
        let v1 = json!({"tool": "refund", "operation": "process", "params": {"amount": 150},
                        "context": {"agent_id": "billing-bot"}});
        assert_eq!(CallRequest::from_value(&v1).unwrap().call.agent_id, "billing-bot");
        let nowhere = json!({"tool": "t", "operation": "o", "context": {"agent_id": 5}});
        assert_eq!(CallRequest::from_value(&nowhere).unwrap_err().field, "agent_id");
        let sdk = json!({"agent_id": "a", "tool": "t", "operation": "o", "tool_id": "t", "args": {},
                         "action_type": "tool_call", "principal_token": ""});
        assert_eq!(CallRequest::from_value(&sdk).unwrap().refusal(), None);
    }

    #[test]
    fn tool_id_splits_and_fields_are_named() {
        let req = CallRequest::from_value(&json!({"agent_id": "a", "tool_id": "http/get", "args": {"u": 1}}))
            .unwrap();
        assert_eq!((req.call.tool.as_str(), req.call.operation.as_str()), ("http", "get"));
        let e =
            CallRequest::from_value(&json!({"agent_id": "a", "tool": "t", "operation": "o", "params": 1}))
                .unwrap_err();
        assert_eq!((e.field.as_str(), e.message.as_str()), ("params", "`params` must be an object"));
    }
}
