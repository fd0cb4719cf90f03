//! Deciding: a call against a compiled [`Policy`] gives a [`Decision`], never an error. Problems
//! with the call itself become DENY `INVALID_REQUEST`.

mod choose;
mod conds;
mod decision;
mod shadowed;

use faramesh_proto::{Call, CallError, Decision, ReasonCode, is_identifier};
use serde::{Deserialize, Serialize};

use self::choose::evaluate;
use self::decision::base;
use crate::model::{History, Policy};

pub use choose::decide_linear;
pub use conds::lexical_path;
pub use decision::{defer_decision, deny_decision};
pub use shadowed::{Shadowed, shadowed_rules};

/// Where a considered rule came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The agent's own rules (`agents.<name>.rules`).
    Agent,
    /// The global `rules`.
    Global,
}

/// One rule considered while deciding, and why it did or did not match.
///
/// JSON: `{"rule_id": "…", "rule_ref": "p.yaml:7", "scope": "global", "matched": false,
/// "failed": "op: `get` does not match `post`"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The rule's id.
    pub rule_id: String,
    /// `path:line` of the rule.
    pub rule_ref: String,
    /// Agent or global rule.
    pub scope: Scope,
    /// Whether every condition held.
    pub matched: bool,
    /// The first condition that failed, described for a person.
    pub failed: Option<String>,
}

/// A decision with the trace of how it was reached.
///
/// JSON: `{"decision": {…}, "profile": "payments-bot" | null, "risk_rule": "…" | null,
/// "steps": [Step…], "note": "…" | null}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The decision, identical to what [`decide`] returns.
    pub decision: Decision,
    /// The agent profile that applied, if any.
    pub profile: Option<String>,
    /// The risk rule that set the risk level, if any.
    pub risk_rule: Option<String>,
    /// Every rule before the deciding one and the deciding rule, in order, each with the first
    /// condition that failed.
    pub steps: Vec<Step>,
    /// Why no rule was considered at all (invalid request, profile allow-list), if so.
    pub note: Option<String>,
}

/// Decides `call` under `policy`. Never fails: anything wrong with the call is a DENY.
pub fn decide(policy: &Policy, call: &Call) -> Decision {
    evaluate(policy, call, None, None).decision
}

/// Decides a request as the daemon does: with what the call's session did before, for `after:`
/// conditions (see [`decide_request`]).
pub fn decide_request_with(
    policy: &Policy,
    req: &faramesh_proto::CallRequest,
    history: History<'_>,
) -> Decision {
    match req.refusal() {
        Some(why) => refuse(policy, &req.call, why),
        None => evaluate(policy, &req.call, Some(history), None).decision,
    }
}

/// Decides a request as read from the wire: a request with keys that are not call keys is DENY
/// `INVALID_REQUEST` naming the key (daemon and offline tools alike); otherwise [`decide`].
pub fn decide_request(policy: &Policy, req: &faramesh_proto::CallRequest) -> Decision {
    match req.refusal() {
        Some(why) => refuse(policy, &req.call, why),
        None => decide(policy, &req.call),
    }
}

/// [`explain`] for a request as read from the wire (see [`decide_request`]).
pub fn explain_request(policy: &Policy, req: &faramesh_proto::CallRequest) -> Explanation {
    match req.refusal() {
        Some(why) => Explanation {
            decision: refuse(policy, &req.call, why),
            profile: None,
            risk_rule: None,
            steps: Vec::new(),
            note: Some("the request was refused before any rule was considered".into()),
        },
        None => explain(policy, &req.call),
    }
}

fn refuse(policy: &Policy, call: &Call, why: String) -> Decision {
    let mut d = base(policy);
    if let Ok(h) = call.hashes() {
        (d.request_hash, d.params_hash) = (h.request_hash, h.params_hash);
    }
    d.findings = crate::detect::scan(&call.params, policy.detectors);
    deny_decision(d, ReasonCode::InvalidRequest, why, None, None, None)
}

/// Decides `call` and records every rule considered and the first failing condition of each.
pub fn explain(policy: &Policy, call: &Call) -> Explanation {
    let mut steps = Vec::new();
    let mut out = evaluate(policy, call, None, Some(&mut steps));
    out.steps = steps;
    out
}

fn invalid(field: &str, message: String) -> CallError {
    CallError { field: field.to_owned(), message }
}

/// Checks the call's shape; the error names the field.
pub fn validate_call(call: &Call) -> Result<(), CallError> {
    if !is_identifier(&call.tool) {
        return Err(invalid(
            "tool",
            format!("`tool` {:?} is not a valid identifier ([A-Za-z0-9_.:/-], 1-128 bytes)", call.tool),
        ));
    }
    if !is_identifier(&call.operation) {
        return Err(invalid(
            "operation",
            format!(
                "`operation` {:?} is not a valid identifier ([A-Za-z0-9_.:/-], 1-128 bytes)",
                call.operation
            ),
        ));
    }
    let agent_ok = !call.agent_id.is_empty()
        && call.agent_id.len() <= 128
        && call.agent_id.bytes().all(|b| b.is_ascii_graphic());
    if !agent_ok {
        return Err(invalid(
            "agent_id",
            format!("`agent_id` {:?} must be 1-128 printable ASCII characters without spaces", call.agent_id),
        ));
    }
    if !call.params.is_object() {
        return Err(invalid("params", "`params` must be a JSON object".to_owned()));
    }
    if !call.context.is_object() {
        return Err(invalid("context", "`context` must be a JSON object".to_owned()));
    }
    Ok(())
}
