//! Entry bodies: decision provenance records (DPRs) and the events around them. These are the
//! only shapes the daemon writes; `docs/decision-log.md` lists their fields.

use faramesh_proto::{Call, Decision, Effect, ReasonCode, RiskLevel, canonical_json};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::entry::redact;

pub use faramesh_proto::caller::{Caller, PeerCred, Role, TokenCaller};

/// The daemon's version, written into every DPR as `runtime_version`.
pub const RUNTIME_VERSION: &str = concat!("faramesh/", env!("CARGO_PKG_VERSION"));

/// A new unpredictable, unique id (32 lower-case hex characters): action ids and approval ids.
///
/// BLAKE3 keyed with 32 bytes read once from `/dev/urandom`, over a process-wide counter: as
/// unguessable as reading `/dev/urandom` each time, without a system call per id.
pub fn new_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let key = KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        if super::random_bytes(&mut key).is_err() {
            // No /dev/urandom: still unique (time and pid), though guessable.
            let seed = format!("{}:{}", super::entry::now_ms(), std::process::id());
            key = *blake3::hash(seed.as_bytes()).as_bytes();
        }
        key
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let hash = blake3::keyed_hash(key, &n.to_le_bytes());
    faramesh_proto::canonical::to_hex(&hash.as_bytes()[..16])
}

/// A decision entry (a DPR): the one typed record the core, the doors, the CLI and the
/// dashboard read. The log adds `seq`, `id`, `ts`, `prev_hash` and `entry_hash` when it seals
/// the body [`decision_entry`] builds (they are left out of a body not yet sealed).
///
/// JSON (`docs/decision-log.md`): `{"kind": "decision", "seq": 7, "id": "…", "ts": "…",
/// "agent_id": "…", "tool": "…", "operation": "…", "effect": "DENY", "reason_code": "…", …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Always `decision`.
    pub kind: String,
    /// The entry's sequence number.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
    /// The action id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// When it was recorded (RFC 3339, milliseconds, UTC).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ts: String,
    /// The previous entry's hash.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prev_hash: String,
    /// This entry's hash.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub entry_hash: String,
    /// The agent.
    pub agent_id: String,
    /// The tool.
    pub tool: String,
    /// The operation.
    pub operation: String,
    /// The call's `request_hash`.
    pub request_hash: String,
    /// PERMIT, DENY or DEFER.
    pub effect: Effect,
    /// Why, as a code.
    pub reason_code: ReasonCode,
    /// Why, for a person.
    pub reason: String,
    /// The deciding rule.
    pub rule_id: Option<String>,
    /// `path:line` of the deciding rule.
    pub rule_ref: Option<String>,
    /// The call's risk.
    pub risk_level: RiskLevel,
    /// The policy that decided.
    pub policy_hash: String,
    /// The signed policy bundle it came from, `{serial, digest}` (only on hosts that take their
    /// policy from bundles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_bundle: Option<Value>,
    /// How each fleet-scoped rate limit or budget was counted: `{limit, counted: fleet|host|unavailable,
    /// why?}` (only when one applied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<Value>,
    /// `faramesh/<version>` of the daemon that decided.
    pub runtime_version: String,
    /// Who asked.
    pub caller: Option<Caller>,
    /// The call's session id.
    pub session_id: Option<String>,
    /// The call's request id.
    pub request_id: Option<String>,
    /// The call's tags.
    #[serde(default)]
    pub tags: Value,
    /// The W3C `traceparent` the agent passed (absent when none was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// For a DEFER (or a resumed call), its approval.
    pub approval_id: Option<String>,
    /// For a PERMIT: the rule, approval or grant it was built from (and who decided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<faramesh_proto::Provenance>,
    /// A rule in shadow mode that would have decided otherwise (`mode: shadow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<faramesh_proto::ShadowHit>,
    /// The params, redacted by key name, and by value where a detector found something
    /// (`[REDACTED:<detector>:<token>]`, done before the record is built).
    pub params: Value,
    /// SHA-256 of the params' canonical JSON (before redaction).
    pub params_hash: String,
    /// The call's context, redacted by key name.
    #[serde(default)]
    pub context: Value,
    /// What the policy's detectors found in the params (detector and path; the values are
    /// redacted from `params`). Absent when nothing was found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<faramesh_proto::Finding>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl DecisionRecord {
    /// The record of `decision` about `call` (not yet sealed: no seq, id or time). Params are
    /// redacted by key name and always hashed.
    pub fn new(
        call: &Call,
        decision: &Decision,
        caller: Option<Caller>,
        approval_id: Option<&str>,
        redact_keys: &[String],
    ) -> DecisionRecord {
        // Computed with the request hash when the policy decided; computed here otherwise.
        let params_hash = if decision.params_hash.is_empty() {
            canonical_json(&call.params)
                .map(|c| faramesh_proto::canonical::sha256_hex(c.as_bytes()))
                .unwrap_or_default()
        } else {
            decision.params_hash.clone()
        };
        DecisionRecord {
            kind: "decision".into(),
            seq: 0,
            id: String::new(),
            ts: String::new(),
            prev_hash: String::new(),
            entry_hash: String::new(),
            agent_id: call.agent_id.clone(),
            tool: call.tool.clone(),
            operation: call.operation.clone(),
            request_hash: decision.request_hash.clone(),
            effect: decision.effect,
            reason_code: decision.reason_code,
            reason: decision.reason.clone(),
            rule_id: decision.rule_id.clone(),
            rule_ref: decision.rule_ref.clone(),
            risk_level: decision.risk_level,
            policy_hash: decision.policy_hash.clone(),
            policy_bundle: None,
            limits: Vec::new(),
            runtime_version: RUNTIME_VERSION.into(),
            caller,
            session_id: call.session_id.clone(),
            request_id: call.request_id.clone(),
            tags: call.tags.clone(),
            traceparent: call.traceparent.clone(),
            approval_id: approval_id.map(str::to_owned),
            provenance: decision.provenance.clone(),
            shadow: decision.shadow.clone(),
            params: redact(&call.params, redact_keys),
            params_hash,
            context: redact(&call.context, redact_keys),
            findings: decision.findings.clone(),
        }
    }

    /// Reads a stored entry; `None` for an entry that is not a decision.
    pub fn parse(record: &str) -> Option<DecisionRecord> {
        serde_json::from_str::<DecisionRecord>(record).ok().filter(|r| r.kind == "decision")
    }

    /// The record as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The fields a person reads first, in order, as text (`faramesh get`; `-` for none).
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        vec![
            ("id", self.id.clone()),
            ("ts", self.ts.clone()),
            ("agent_id", self.agent_id.clone()),
            ("tool", self.tool.clone()),
            ("operation", self.operation.clone()),
            ("effect", self.effect.as_str().into()),
            ("reason_code", self.reason_code.as_str().into()),
            ("reason", self.reason.clone()),
            ("rule_id", opt(&self.rule_id)),
            ("rule_ref", opt(&self.rule_ref)),
            ("risk_level", self.risk_level.as_str().into()),
            ("approval_id", opt(&self.approval_id)),
            ("policy_hash", self.policy_hash.clone()),
            ("request_hash", self.request_hash.clone()),
            (
                "caller",
                self.caller
                    .as_ref()
                    .and_then(|c| serde_json::to_string(c).ok())
                    .unwrap_or_else(|| "-".into()),
            ),
            ("params", self.params.to_string()),
        ]
    }

    /// The call it decided (params and context as recorded, so redacted).
    pub fn call(&self) -> Call {
        let mut call = Call::new(&self.agent_id, &self.tool, &self.operation);
        call.params = if self.params.is_object() { self.params.clone() } else { Value::Object(Map::new()) };
        call.context =
            if self.context.is_object() { self.context.clone() } else { Value::Object(Map::new()) };
        call.session_id.clone_from(&self.session_id);
        call.request_id.clone_from(&self.request_id);
        call.tags = self.tags.clone();
        call.traceparent.clone_from(&self.traceparent);
        call
    }
}

/// The fields every entry may carry that say whose it is: enough to decide who may read it,
/// without reading the rest.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EntryHead {
    /// `decision`, `approval`, `action`, ...
    #[serde(default)]
    pub kind: String,
    /// Who caused it (decisions).
    #[serde(default)]
    pub caller: Option<Caller>,
    /// The agent it is about.
    #[serde(default)]
    pub agent_id: Option<String>,
}

impl EntryHead {
    /// Reads the head of a stored entry (an entry that does not parse has an empty head, which
    /// nobody but an all-reader owns).
    pub fn parse(record: &str) -> EntryHead {
        serde_json::from_str(record).unwrap_or_default()
    }
}

/// The body of a decision entry (a DPR), as the log's writer takes it: see [`DecisionRecord`].
pub fn decision_entry(
    call: &Call,
    decision: &Decision,
    caller: Option<Caller>,
    approval_id: Option<&str>,
    redact_keys: &[String],
) -> Map<String, Value> {
    into_map(DecisionRecord::new(call, decision, caller, approval_id, redact_keys).to_json())
}

/// The body of an event entry: `{"kind": kind, ...fields}`. Kinds: `approval` (approval_id,
/// action_id, status, by, reason), `action` (action_id, status, result), `policy_load`
/// (path, policy_hash, rules), `policy_reload_failed` (path, error), `daemon_start` /
/// `daemon_stop` (version, pid).
pub fn event_entry(kind: &str, fields: Value) -> Map<String, Value> {
    let mut map = into_map(fields);
    map.insert("kind".into(), Value::String(kind.to_owned()));
    map
}

fn into_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("value".into(), other);
            m
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dprs_hold_the_design_fields_and_redact_secrets() {
        let mut call = Call::new("bot", "http", "post");
        call.params = json!({"url": "https://x", "headers": {"Authorization": "Bearer abc"}, "api_key": "k"});
        call.session_id = Some("s1".into());
        let decision = Decision {
            effect: Effect::Deny,
            reason_code: ReasonCode::PolicyDeny,
            reason: "no".into(),
            rule_id: Some("r1".into()),
            rule_ref: Some("p.yaml:3".into()),
            risk_level: RiskLevel::Low,
            request_hash: call.request_hash().unwrap(),
            policy_hash: "ph".into(),
            structured_denial: None,
            provenance: None,
            params_hash: String::new(),
            shadow: None,
            findings: Vec::new(),
        };
        let caller = Caller::Peer(PeerCred { uid: 1000, gid: 1000, pid: 42 });
        let keys: Vec<String> = crate::entry::DEFAULT_REDACT_KEYS.iter().map(|s| s.to_string()).collect();
        let body = decision_entry(&call, &decision, Some(caller), None, &keys);
        for field in [
            "agent_id",
            "tool",
            "operation",
            "request_hash",
            "effect",
            "reason_code",
            "reason",
            "rule_id",
            "rule_ref",
            "risk_level",
            "policy_hash",
            "runtime_version",
            "caller",
            "session_id",
            "request_id",
            "tags",
            "approval_id",
            "params",
            "params_hash",
        ] {
            assert!(body.contains_key(field), "missing {field}");
        }
        assert_eq!(body["params"]["headers"]["Authorization"], "[REDACTED]");
        assert_eq!(body["params"]["api_key"], "[REDACTED]");
        assert_eq!(body["params"]["url"], "https://x");
        assert_eq!(body["caller"], json!({"uid": 1000, "gid": 1000, "pid": 42}));
        let expected_hash =
            faramesh_proto::canonical::sha256_hex(canonical_json(&call.params).unwrap().as_bytes());
        assert_eq!(body["params_hash"], expected_hash.as_str());
        // The body has exactly these fields (the log adds seq, id, ts and the hashes).
        assert_eq!(body.len(), 21, "{:?}", body.keys().collect::<Vec<_>>());
        // A sealed record reads back as the same typed record; an event is not a decision.
        let mut sealed = body.clone();
        sealed.insert("seq".into(), json!(9));
        sealed.insert("id".into(), json!("abc"));
        sealed.insert("ts".into(), json!("2026-12-02T10:00:00.000Z"));
        let text = Value::Object(sealed.clone()).to_string();
        let rec = DecisionRecord::parse(&text).unwrap();
        assert_eq!((rec.seq, rec.id.as_str(), rec.effect), (9, "abc", Effect::Deny));
        assert_eq!(rec.to_json(), Value::Object(sealed));
        assert_eq!(rec.call().agent_id, "bot");
        assert!(DecisionRecord::parse(r#"{"kind":"approval","approval_id":"x"}"#).is_none());
        let head = EntryHead::parse(&text);
        assert_eq!((head.kind.as_str(), head.caller.and_then(|c| c.uid())), ("decision", Some(1000)));
        assert_eq!(new_id().len(), 32);
        assert_ne!(new_id(), new_id());
    }
}
