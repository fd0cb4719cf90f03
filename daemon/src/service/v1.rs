//! The v1 action object: what the published Python SDK (and ours) read for an action. The one
//! mapping from a [`DecisionRecord`] and its status to that shape, served by `/v1/actions` over
//! HTTP and by the socket's `action.submit` and `action.*` with `"format": "v1"`.

use faramesh_proto::{Effect, ReasonCode};
use serde::Serialize;
use serde_json::{Value, json};

use super::{ActionStatus, ActionView, CallRequest, Identity, Service, ServiceError, to_json};
use crate::log::dpr::{self, Caller};

/// `EXECUTE`, `HALT` or `ABSTAIN` (the upstream documentation's outcome words).
pub fn outcome(effect: Effect) -> &'static str {
    match effect {
        Effect::Permit => "EXECUTE",
        Effect::Deny => "HALT",
        Effect::Defer => "ABSTAIN",
    }
}

/// `allow`, `deny` or `require_approval`.
pub fn decision_word(effect: Effect) -> &'static str {
    match effect {
        Effect::Permit => "allow",
        Effect::Defer => "require_approval",
        Effect::Deny => "deny",
    }
}

/// An action in the v1 shape.
///
/// JSON: `{"id", "agent_id", "tool", "operation", "params", "summary", "context", "status",
/// "decision", "effect", "outcome", "reason", "reason_code", "risk_level", "rule_id",
/// "rule_ref", "request_hash", "policy_hash", "policy_version", "runtime_version",
/// "provenance_id", "approval_id", "approval_token", "approval_expires_at", "caller",
/// "edit" (only for a call approved or refused with edits), "created_at", "updated_at"}`
/// (`docs/http.md`).
#[derive(Debug, Clone, Serialize)]
pub struct V1Action<'a> {
    id: &'a str,
    agent_id: &'a str,
    tool: &'a str,
    operation: &'a str,
    params: &'a Value,
    /// A one-line summary of the arguments (the command, URL, path or amount).
    summary: String,
    context: Value,
    status: ActionStatus,
    decision: &'static str,
    effect: Effect,
    outcome: &'static str,
    reason: &'a str,
    reason_code: ReasonCode,
    risk_level: faramesh_proto::RiskLevel,
    rule_id: Option<&'a str>,
    rule_ref: Option<&'a str>,
    request_hash: &'a str,
    policy_hash: &'a str,
    policy_version: &'a str,
    runtime_version: &'a str,
    provenance_id: &'a str,
    approval_id: Option<&'a str>,
    /// The approval id again, for those who may approve it while it is pending (the published
    /// SDK's `approve_action` reads it).
    approval_token: Option<&'a str>,
    /// When its pending approval expires.
    approval_expires_at: Option<String>,
    /// A pending approval that needs several signed approvers: `{required, signed: [names]}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    approvals: Option<Value>,
    caller: Option<&'a Caller>,
    /// The approver's edit, when the call was approved (or refused) with edited arguments:
    /// the agent resumes with `edit.params`.
    #[serde(skip_serializing_if = "Option::is_none")]
    edit: Option<super::approvals::Edit>,
    created_at: &'a str,
    updated_at: &'a str,
}

impl Service {
    /// `view` in the v1 shape, as `who` may see it.
    pub fn v1_action(&self, view: &ActionView, who: &Identity) -> Value {
        let r = &view.record;
        let v = V1Action {
            id: &r.id,
            agent_id: &r.agent_id,
            tool: &r.tool,
            operation: &r.operation,
            params: &r.params,
            summary: super::notify::summary(&r.params),
            context: if r.context.is_object() { r.context.clone() } else { json!({}) },
            status: view.status,
            decision: decision_word(r.effect),
            effect: r.effect,
            outcome: outcome(r.effect),
            reason: &r.reason,
            reason_code: r.reason_code,
            risk_level: r.risk_level,
            rule_id: r.rule_id.as_deref(),
            rule_ref: r.rule_ref.as_deref(),
            request_hash: &r.request_hash,
            policy_hash: &r.policy_hash,
            policy_version: &r.policy_hash,
            runtime_version: &r.runtime_version,
            provenance_id: &r.id,
            approval_id: r.approval_id.as_deref(),
            approval_token: r.approval_id.as_deref().filter(|_| self.shows_approval_token(who, view)),
            approval_expires_at: r
                .approval_id
                .as_deref()
                .filter(|_| view.status == ActionStatus::PendingApproval)
                .and_then(|a| self.state.approvals.get(a))
                .map(|a| a.expires_at),
            approvals: r
                .approval_id
                .as_deref()
                .filter(|_| view.status == ActionStatus::PendingApproval)
                .and_then(|a| self.state.approvals.get(a))
                .filter(|a| a.approvals_required > 1)
                .map(|a| json!({"required": a.approvals_required, "signed": a.signers()})),
            caller: r.caller.as_ref(),
            edit: r
                .approval_id
                .as_deref()
                .filter(|_| r.effect == Effect::Defer)
                .and_then(|a| self.state.approvals.get(a))
                .and_then(|a| a.shown(super::authz::made_the_call(&a, who)).edit),
            created_at: &r.ts,
            updated_at: &r.ts,
        };
        serde_json::to_value(v).unwrap_or(Value::Null)
    }

    /// Decides and records `req` (as `govern`) and answers the v1 action it became, with the
    /// decision's `structured_denial` and `defer_token`: `POST /v1/actions`, `action.submit`.
    pub async fn submit(&self, req: CallRequest, who: &Identity) -> Result<Value, ServiceError> {
        let call = req.call.clone();
        let reply = self.govern(req, who).await?;
        let view = self.decided_view(&call, &reply, who);
        let mut v = self.v1_action(&view, who);
        let structured_denial = to_json("the structured denial", &reply.decision.structured_denial)?;
        if let Value::Object(m) = &mut v {
            m.insert("structured_denial".into(), structured_denial);
            m.insert("defer_token".into(), json!(reply.approval_id));
        }
        Ok(v)
    }

    /// What `decide` answers, with the v1 words added (`/v1/gate/decide`).
    pub fn v1_decide(&self, req: &CallRequest, who: &Identity) -> Result<Value, ServiceError> {
        let reply = self.decide(req, who)?;
        let mut v = reply.to_json();
        if let Value::Object(m) = &mut v {
            let d = &reply.decision;
            m.insert("outcome".into(), json!(outcome(d.effect)));
            m.insert("decision".into(), json!(decision_word(d.effect)));
            m.insert("policy_version".into(), json!(d.policy_hash));
            m.insert("runtime_version".into(), json!(dpr::RUNTIME_VERSION));
            m.insert("provenance_id".into(), Value::Null);
        }
        Ok(v)
    }
}

/// The v1 name of a log entry's event: `decision_made`, the approval's status, `started`,
/// `succeeded`, `failed`, or the entry's kind.
pub fn event_type(e: &Value) -> String {
    let status = e.get("status").and_then(Value::as_str).unwrap_or_default();
    match e.get("kind").and_then(Value::as_str).unwrap_or_default() {
        "decision" => "decision_made".to_owned(),
        "approval" => status.to_owned(),
        "action" => match status {
            "executing" => "started".to_owned(),
            other => other.to_owned(),
        },
        other => other.to_owned(),
    }
}

impl Service {
    /// An action's timeline in the v1 shape (`GET /v1/actions/{id}/events`, `action.events`
    /// with `"format": "v1"`): `created`, `decision_made`, then each later entry about it.
    pub fn v1_events(&self, id: &str, who: &Identity) -> Result<Vec<Value>, ServiceError> {
        let (view, entries) = self.action_events(id, who)?;
        let action_id = view.id().to_owned();
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let created_at = e.get("ts").cloned().unwrap_or(Value::Null);
            if i == 0 {
                out.push(json!({"id": format!("{action_id}-created"), "action_id": action_id, "event_type": "created", "meta": {}, "created_at": created_at}));
            }
            let mut meta = e.clone();
            if let Value::Object(m) = &mut meta {
                for k in ["kind", "seq", "prev_hash", "entry_hash", "params", "context"] {
                    m.remove(k);
                }
                if i == 0 {
                    m.insert("decision".into(), json!(decision_word(view.record.effect)));
                }
            }
            out.push(json!({
                "id": e.get("seq").map(|s| format!("seq-{s}")),
                "action_id": action_id,
                "event_type": event_type(e),
                "meta": meta,
                "created_at": created_at,
            }));
        }
        Ok(out)
    }
}
