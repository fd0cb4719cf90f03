//! Wire types shared by the daemon, the CLI and the SDKs: the call an agent asks about and the
//! decision it gets back. Each type documents its JSON shape.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The answer for one call.
///
/// JSON: `"PERMIT" | "DENY" | "DEFER"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Effect {
    /// The call may run.
    Permit,
    /// The call must not run.
    Deny,
    /// A human must approve the call first.
    Defer,
}

impl Effect {
    /// The wire name (`PERMIT`, `DENY`, `DEFER`).
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Permit => "PERMIT",
            Effect::Deny => "DENY",
            Effect::Defer => "DEFER",
        }
    }
}

/// Why a decision came out the way it did.
///
/// JSON: the variant name in SCREAMING_SNAKE_CASE, e.g. `"DEFAULT_DENY_NO_MATCH"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReasonCode {
    /// An `allow` rule matched.
    PolicyPermit,
    /// A `deny` rule matched.
    PolicyDeny,
    /// A `require_approval` rule matched.
    PolicyDefer,
    /// No rule matched: fail closed.
    DefaultDenyNoMatch,
    /// The agent's profile does not list the tool (or the caller may not claim the agent id).
    ProfileDisallowsTool,
    /// An allow rule matched a high-risk call: a human must approve.
    RiskUpgrade,
    /// The agent's rate limit for this tool is used up.
    RateExceeded,
    /// The agent's call budget for the period is used up.
    BudgetExceeded,
    /// The MCP tool is quarantined: its definition is new or changed since an operator trusted
    /// it, or its description holds text aimed at the model.
    McpToolQuarantined,
    /// A human approved this exact call.
    ApprovalGranted,
    /// An approver's live grant allows what the policy would defer.
    GrantApplied,
    /// A human denied this call.
    ApprovalDenied,
    /// The approval expired before anyone decided.
    ApprovalExpired,
    /// The caller's uid may not claim this agent id (the profile pins another uid).
    AgentIdentityMismatch,
    /// The call's command could not be fully read (a variable in command position, `eval`,
    /// an inline interpreter, a shell reading standard input, ...) where an allow or
    /// require-approval rule would decide: DEFER, or DENY under `commands: { unresolved:
    /// deny }`. Never covered by a grant.
    CommandUnresolved,
    /// The kill switch is engaged (for every agent, or this one), or the kill file is present.
    KillSwitch,
    /// The signed policy bundle in force expired with no newer one, and the host denies every
    /// call then (`--on-stale deny`).
    PolicyStale,
    /// The request itself is malformed (bad identifier, non-finite number, ...).
    InvalidRequest,
    /// Something inside the daemon failed (policy missing, log unwritable): fail closed.
    InternalError,
}

impl ReasonCode {
    /// The wire name, e.g. `POLICY_DENY`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::PolicyPermit => "POLICY_PERMIT",
            ReasonCode::PolicyDeny => "POLICY_DENY",
            ReasonCode::PolicyDefer => "POLICY_DEFER",
            ReasonCode::DefaultDenyNoMatch => "DEFAULT_DENY_NO_MATCH",
            ReasonCode::ProfileDisallowsTool => "PROFILE_DISALLOWS_TOOL",
            ReasonCode::RiskUpgrade => "RISK_UPGRADE",
            ReasonCode::RateExceeded => "RATE_EXCEEDED",
            ReasonCode::BudgetExceeded => "BUDGET_EXCEEDED",
            ReasonCode::McpToolQuarantined => "MCP_TOOL_QUARANTINED",
            ReasonCode::ApprovalGranted => "APPROVAL_GRANTED",
            ReasonCode::GrantApplied => "GRANT_APPLIED",
            ReasonCode::ApprovalDenied => "APPROVAL_DENIED",
            ReasonCode::ApprovalExpired => "APPROVAL_EXPIRED",
            ReasonCode::AgentIdentityMismatch => "AGENT_IDENTITY_MISMATCH",
            ReasonCode::CommandUnresolved => "COMMAND_UNRESOLVED",
            ReasonCode::KillSwitch => "KILL_SWITCH",
            ReasonCode::PolicyStale => "POLICY_STALE",
            ReasonCode::InvalidRequest => "INVALID_REQUEST",
            ReasonCode::InternalError => "INTERNAL_ERROR",
        }
    }
}

/// How risky a call is.
///
/// JSON: `"low" | "medium" | "high"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    /// The default.
    Low,
    /// Worth a look.
    Medium,
    /// An allow rule on a high-risk call becomes DEFER (`RISK_UPGRADE`).
    High,
}

impl RiskLevel {
    /// The wire name (`low`, `medium`, `high`).
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
        }
    }
}

/// A tool call an agent wants to make.
///
/// JSON:
/// ```json
/// {"agent_id": "payments-bot", "tool": "stripe", "operation": "refund",
///  "params": {"amount": 50}, "context": {"branch": "main"},
///  "session_id": "s-1", "request_id": "r-1", "tags": ["prod"], "principal": null,
///  "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
/// ```
/// `params` and `context` default to `{}`; the other optional fields to `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// Who is calling (the agent's name).
    #[serde(default)]
    pub agent_id: String,
    /// The tool, an identifier (`[A-Za-z0-9_.:/-]`, 1–128 bytes).
    pub tool: String,
    /// The operation on the tool, an identifier.
    pub operation: String,
    /// The call's arguments, a JSON object.
    #[serde(default = "empty_object")]
    pub params: Value,
    /// Facts about the surroundings (branch, environment), a JSON object.
    #[serde(default = "empty_object")]
    pub context: Value,
    /// The agent's session, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The caller's own id for the request, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Free-form labels (any JSON value, usually a list of strings).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub tags: Value,
    /// Who the agent acts for (any JSON value).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub principal: Value,
    /// The W3C `traceparent` of the agent's span that made the call, recorded in the DPR and
    /// set on exported records (not part of the request hash: a retry from another span is the
    /// same call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl Call {
    /// A call with empty params and context.
    pub fn new(agent_id: &str, tool: &str, operation: &str) -> Call {
        Call {
            agent_id: agent_id.to_owned(),
            tool: tool.to_owned(),
            operation: operation.to_owned(),
            params: empty_object(),
            context: empty_object(),
            session_id: None,
            request_id: None,
            tags: Value::Null,
            principal: Value::Null,
            traceparent: None,
        }
    }

    /// The call's `request_hash` (see [`crate::canonical::request_hash`]).
    pub fn request_hash(&self) -> Result<String, crate::canonical::CanonicalError> {
        self.hashes().map(|h| h.request_hash)
    }

    /// The call's `request_hash` and `params_hash`, from one canonical rendering of its params.
    pub fn hashes(&self) -> Result<crate::canonical::RequestHashes, crate::canonical::CanonicalError> {
        crate::canonical::request_hashes(
            &self.agent_id,
            &self.tool,
            &self.operation,
            &self.params,
            &self.context,
        )
    }
}

/// What an agent can do about a denial.
///
/// JSON: an object tagged by `type`, e.g. `{"type": "rule_block", "rule_id": "no-shell"}`,
/// `{"type": "pending_approval", "approval_id": "…"}`,
/// `{"type": "retry_after", "retry_after_seconds": 6}`,
/// `{"type": "budget_reset", "resets_at": "2026-11-22T00:00:00Z"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Resolution {
    /// A rule blocks the call; changing the policy is the way forward.
    RuleBlock {
        /// The blocking rule (`null` for no match).
        rule_id: Option<String>,
    },
    /// A human must approve; wait on or resume with this approval.
    PendingApproval {
        /// The approval to wait for.
        approval_id: Option<String>,
    },
    /// Rate limited: retry after this many seconds.
    RetryAfter {
        /// Seconds until the limiter has room again.
        retry_after_seconds: u64,
    },
    /// Budget used up until the given time (RFC 3339, UTC).
    BudgetReset {
        /// When the budget period ends.
        resets_at: String,
    },
}

/// The machine-readable part of a DENY or DEFER.
///
/// JSON: `{"code": "POLICY_DENY", "rule_id": "…", "rule_ref": "policy.yaml:12",
/// "human_message": "…", "resolution": {…} | null}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StructuredDenial {
    /// The reason code.
    pub code: ReasonCode,
    /// The deciding rule, if a rule decided.
    pub rule_id: Option<String>,
    /// `path:line` of the deciding rule.
    pub rule_ref: Option<String>,
    /// One sentence for a person.
    pub human_message: String,
    /// What the agent can do next; `null` where nothing can be done.
    pub resolution: Option<Resolution>,
}

/// The decision for one call.
///
/// JSON:
/// ```json
/// {"effect": "DENY", "reason_code": "POLICY_DENY", "reason": "Destructive shell",
///  "rule_id": "no-rm", "rule_ref": "policies/default.yaml:14", "risk_level": "high",
///  "request_hash": "…64 hex…", "policy_hash": "…64 hex…",
///  "structured_denial": {"code": "POLICY_DENY", …}}
/// ```
/// `structured_denial` is `null` for PERMIT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// PERMIT, DENY or DEFER.
    pub effect: Effect,
    /// Why.
    pub reason_code: ReasonCode,
    /// A sentence for a person (the rule's description, or what went wrong).
    pub reason: String,
    /// The deciding rule's id.
    pub rule_id: Option<String>,
    /// `path:line` of the deciding rule.
    pub rule_ref: Option<String>,
    /// The call's risk.
    pub risk_level: RiskLevel,
    /// SHA-256 of the canonical call (empty when the call could not be hashed).
    pub request_hash: String,
    /// Hash of the policy that decided.
    pub policy_hash: String,
    /// For DENY and DEFER: code, rule and what to do.
    pub structured_denial: Option<StructuredDenial>,
    /// For PERMIT: where it came from (an allow rule, an approval, a grant); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// SHA-256 of the canonical params, computed with `request_hash` (empty when the call
    /// could not be hashed); written into the DPR, not part of the answer.
    #[serde(skip)]
    pub params_hash: String,
    /// What a rule in shadow mode (`mode: shadow`) would have decided instead, when that
    /// differs: written into the DPR, not part of the answer (agents do not see rules being
    /// tried).
    #[serde(skip)]
    pub shadow: Option<ShadowHit>,
    /// What the policy's `detect:` detectors found in the params: each detector and where,
    /// never the value. Absent when nothing was found (or the policy detects nothing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

/// A rule in shadow mode that would have decided a call otherwise: it matched before the rule
/// that decided, and its effect differs.
///
/// JSON: `{"rule_id": "deny-refunds", "rule_ref": "policy.yaml:12", "effect": "DENY"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowHit {
    /// The shadow rule's id.
    pub rule_id: String,
    /// Where it is.
    pub rule_ref: String,
    /// What it would have decided.
    pub effect: Effect,
}

/// A secret or a piece of personal data found in a call's params (`detect:` in the policy).
///
/// JSON: `{"detector": "aws_access_key", "path": "$.headers.authorization"}`. The value found
/// is never part of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Finding {
    /// The detector that fired (`aws_access_key`, `card_number`, ...).
    pub detector: String,
    /// Where, as a JSON path from the params: `$.note`, `$.items[2].token`, `$["a b"]`.
    pub path: String,
}

/// What a PERMIT was built from: the only three things that can allow a call.
///
/// JSON: `{"kind": "rule", "id": "allow-reads"}`, `{"kind": "approval", "id": "…32 hex…",
/// "by": {"uid": 0, "gid": 0, "pid": 77}}` or `{"kind": "grant", "id": "grant_…", "by":
/// {"token": "approver:alice", "role": "approver"}}`; `by` is the person's caller record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// `rule`, `approval` or `grant`.
    pub kind: ProvenanceKind,
    /// The rule's id, the approval's id or the grant's id.
    pub id: String,
    /// Who approved or granted (absent for a rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<serde_json::Value>,
}

/// The kinds of [`Provenance`].
///
/// JSON: `"rule"`, `"approval"` or `"grant"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProvenanceKind {
    /// An allow rule matched a call the gate fully read.
    Rule,
    /// A person other than the requester approved this exact call.
    Approval,
    /// A person other than the requester granted this requester the tool and operation.
    Grant,
}

impl ProvenanceKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProvenanceKind::Rule => "rule",
            ProvenanceKind::Approval => "approval",
            ProvenanceKind::Grant => "grant",
        }
    }
}

/// The socket's answer to `govern` and `decide` (and the HTTP `/v1/gate/decide`): the
/// [`Decision`]'s fields, flattened, plus the ids the daemon assigned.
///
/// JSON: `{"effect": "DEFER", …the decision's fields…, "action_id": "…16 hex…", "approval_id":
/// "…32 hex…", "defer_token": "…"}`; `action_id` is `null` when nothing was recorded (`decide`),
/// `approval_id` and `defer_token` are `null` unless the call waits for an approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GovernAnswer {
    /// The decision.
    #[serde(flatten)]
    pub decision: Decision,
    /// The recorded action's id.
    #[serde(default)]
    pub action_id: Option<String>,
    /// The pending approval (DEFER).
    #[serde(default)]
    pub approval_id: Option<String>,
    /// The upstream SDK's name for the approval id.
    #[serde(default)]
    pub defer_token: Option<String>,
    /// A PERMIT whose result a `results:` rule of the policy reads: send it (`result.check`)
    /// before the agent reads it.
    #[serde(default)]
    pub check_result: bool,
}

/// Whether `name` is a valid tool or operation identifier: 1–128 bytes of `[A-Za-z0-9_.:/-]`.
///
/// Anything else (whitespace, zero-width characters, look-alike letters, NUL) is refused, never
/// normalized into a match.
pub fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/' | b'-'))
}

/// Whether `server` can be an MCP server's tool prefix (`faramesh mcp --tool-prefix`): a tool
/// name without `/` (pinned tools are keyed `server/tool`, and MCP tool names may hold `/`).
pub fn is_server_prefix(server: &str) -> bool {
    is_identifier(server) && !server.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_serialize_screaming_snake() {
        for code in [
            ReasonCode::PolicyPermit,
            ReasonCode::DefaultDenyNoMatch,
            ReasonCode::ProfileDisallowsTool,
            ReasonCode::InternalError,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn resolution_is_tagged_by_type() {
        let r = Resolution::RetryAfter { retry_after_seconds: 6 };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"type":"retry_after","retry_after_seconds":6}"#);
    }

    #[test]
    fn identifiers_refuse_lookalikes_and_invisibles() {
        assert!(is_identifier("stripe_refund.v2:x/y-z"));
        assert!(!is_identifier(""));
        assert!(!is_identifier(" shell"));
        assert!(!is_identifier("sh\u{200b}ell"));
        assert!(!is_identifier("\u{0455}hell")); // Cyrillic dze
        assert!(!is_identifier("shell\0"));
        assert!(!is_identifier(&"a".repeat(129)));
        assert!(is_identifier(&"a".repeat(128)));
    }

    #[test]
    fn call_defaults_params_and_context() {
        let call: Call = serde_json::from_str(r#"{"tool":"http","operation":"get"}"#).unwrap();
        assert_eq!(call.params, serde_json::json!({}));
        assert_eq!(call.agent_id, "");
    }
}
