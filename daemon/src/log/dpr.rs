//! Entry bodies: decision provenance records (DPRs) and the events around them. These are the
//! only shapes the daemon writes; `docs/decision-log.md` lists their fields.

use faramesh_proto::{Call, Decision, canonical_json};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::entry::redact;

/// Who caused an entry: a socket peer's kernel credentials (SO_PEERCRED), or an HTTP bearer
/// token's identity (its name, never the token).
///
/// JSON: `{"uid": 1000, "gid": 1000, "pid": 4242}` or `{"token": "agent:ci-bot", "role": "agent"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Caller {
    /// A Unix-socket peer.
    Peer(PeerCred),
    /// An HTTP caller, by token identity.
    Token(TokenCaller),
}

/// Kernel peer credentials of a socket connection.
///
/// JSON: `{"uid": 1000, "gid": 1000, "pid": 4242}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCred {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Process id.
    pub pid: i32,
}

/// An HTTP caller: the token's name (from the tokens file) or `sha256:` and the first 12 hex
/// characters of the token's SHA-256, and its role.
///
/// JSON: `{"token": "agent:ci-bot", "role": "agent"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCaller {
    /// The token's identity (a name or a hash prefix).
    pub token: String,
    /// What the token may do.
    pub role: Role,
}

/// What an HTTP bearer token may do.
///
/// JSON: `"agent"` or `"approver"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Evaluate calls and read (and report on) its own actions.
    Agent,
    /// Approve and deny, and read everything.
    Approver,
}

impl Role {
    /// `agent` or `approver`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Approver => "approver",
        }
    }
}

impl Caller {
    /// The peer's uid, for socket callers.
    pub fn uid(&self) -> Option<u32> {
        match self {
            Caller::Peer(p) => Some(p.uid),
            Caller::Token(_) => None,
        }
    }
}

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

/// The body of a decision entry (a DPR). The log's writer adds the action id (`id`) with the
/// sequence number; params are stored redacted by key name and always hashed (`params_hash`,
/// SHA-256 of their canonical JSON).
pub fn decision_entry(
    call: &Call,
    decision: &Decision,
    caller: Option<Caller>,
    approval_id: Option<&str>,
    redact_keys: &[String],
) -> Map<String, Value> {
    // Computed with the request hash when the policy decided; computed here otherwise.
    let params_hash = if decision.params_hash.is_empty() {
        canonical_json(&call.params).map(|c| faramesh_proto::canonical::sha256_hex(c.as_bytes())).unwrap_or_default()
    } else {
        decision.params_hash.clone()
    };
    let body = json!({
        "kind": "decision",
        "agent_id": call.agent_id,
        "tool": call.tool,
        "operation": call.operation,
        "request_hash": decision.request_hash,
        "effect": decision.effect.as_str(),
        "reason_code": decision.reason_code.as_str(),
        "reason": decision.reason,
        "rule_id": decision.rule_id,
        "rule_ref": decision.rule_ref,
        "risk_level": decision.risk_level.as_str(),
        "policy_hash": decision.policy_hash,
        "runtime_version": RUNTIME_VERSION,
        "caller": caller,
        "session_id": call.session_id,
        "request_id": call.request_id,
        "tags": call.tags,
        "approval_id": approval_id,
        "params": redact(&call.params, redact_keys),
        "params_hash": params_hash,
        "context": redact(&call.context, redact_keys),
    });
    into_map(body)
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
    use faramesh_proto::{Effect, ReasonCode, RiskLevel};

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
            params_hash: String::new(),
        };
        let caller = Caller::Peer(PeerCred { uid: 1000, gid: 1000, pid: 42 });
        let keys: Vec<String> =
            super::super::entry::DEFAULT_REDACT_KEYS.iter().map(|s| s.to_string()).collect();
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
        assert_eq!(new_id().len(), 32);
        assert_ne!(new_id(), new_id());
    }
}
