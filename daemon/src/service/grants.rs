//! Grants: "approve, and allow this agent the same tool and operation (optionally only the same
//! arguments) for N minutes" (`docs/notifications.md#grants`).
//!
//! A grant is created by an approver (with an approval, or on its own), recorded as a signed
//! `grant` entry with its `grant/<id>` state row, listed and revocable. `govern` applies a live
//! grant only to a DEFER of the policy (`POLICY_DEFER`, `RISK_UPGRADE`): it never turns a DENY,
//! a quarantined MCP tool, a rate limit or a budget into PERMIT. The PERMIT says which grant
//! (`GRANT_APPLIED`, rule `grant:<id>`).

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use super::*;

/// The longest a grant may last: a day.
pub const MAX_GRANT_MINUTES: u64 = 24 * 60;

/// One grant (a state row, and `grant.list`'s items).
///
/// JSON: `{"id", "agent_id", "tool", "operation", "request_hash": "…"|null, "expires_at",
/// "expires_ms", "created_by", "approval_id", "reason"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    /// `grant_` and 32 hex characters.
    pub id: String,
    /// The agent it allows.
    pub agent_id: String,
    /// The tool.
    pub tool: String,
    /// The operation.
    pub operation: String,
    /// Only calls with this request hash (the same arguments and context), when set.
    pub request_hash: Option<String>,
    /// When it ends (RFC 3339).
    pub expires_at: String,
    /// When it ends (ms since the epoch).
    pub expires_ms: u64,
    /// Who granted it.
    pub created_by: Option<Caller>,
    /// The approval it came with, if any.
    pub approval_id: Option<String>,
    /// Why, as the approver said.
    pub reason: Option<String>,
    /// A one-line summary of the arguments it is limited to (same-arguments grants made with
    /// an approval), for people reading the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

impl Grant {
    fn covers(&self, call: &Call, request_hash: &str, now: u64) -> bool {
        now < self.expires_ms
            && self.agent_id == call.agent_id
            && self.tool == call.tool
            && self.operation == call.operation
            && self.request_hash.as_deref().is_none_or(|h| h == request_hash)
    }
}

/// The live grants, in memory (loaded from the state rows at start).
#[derive(Debug, Default)]
pub struct Grants {
    by_id: RwLock<HashMap<String, Grant>>,
}

impl Grants {
    /// The grants the log's state rows hold.
    pub fn load(log: &crate::log::Log) -> Result<Grants, crate::log::LogError> {
        let mut by_id = HashMap::new();
        for (_, v) in log.state_scan("grant/")? {
            if let Ok(g) = serde_json::from_slice::<Grant>(&v) {
                by_id.insert(g.id.clone(), g);
            }
        }
        Ok(Grants { by_id: RwLock::new(by_id) })
    }

    /// The live grant covering `call`, if any.
    fn covering(&self, call: &Call, request_hash: &str) -> Option<Grant> {
        let grants = self.by_id.read().ok()?;
        if grants.is_empty() {
            return None;
        }
        let now = entry::now_ms();
        grants.values().find(|g| g.covers(call, request_hash, now)).cloned()
    }

    /// Live grants, soonest to end first.
    pub fn live(&self) -> Vec<Grant> {
        let now = entry::now_ms();
        let mut out: Vec<Grant> = self
            .by_id
            .read()
            .map(|g| g.values().filter(|g| g.expires_ms > now).cloned().collect())
            .unwrap_or_default();
        out.sort_by_key(|g| g.expires_ms);
        out
    }
}

/// What a new grant covers.
#[derive(Debug, Clone)]
pub struct GrantRequest {
    /// The agent.
    pub agent_id: String,
    /// The tool.
    pub tool: String,
    /// The operation.
    pub operation: String,
    /// Only this request hash (the same arguments), when set.
    pub request_hash: Option<String>,
    /// How long (1 to [`MAX_GRANT_MINUTES`]).
    pub minutes: u64,
    /// The approval it comes with.
    pub approval_id: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// What the arguments were, in one line (with `request_hash`).
    pub summary: Option<String>,
}

/// A person's answer to a pending approval, as both doors read it: `approve` (or the method says
/// it), `reason`, and `grant_minutes` with `grant_same_args` to also make a grant.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalAnswer {
    /// Approve, or deny.
    pub approve: bool,
    /// Why (recorded).
    pub reason: Option<String>,
    /// Also grant the agent the same tool/operation for these minutes (only these arguments
    /// when the flag is set).
    pub grant: Option<(u64, bool)>,
}

impl ApprovalAnswer {
    /// Reads an answer from `p`; `approve` when the method says it (`approval.approve`), else
    /// the `approve` field. A grant with a denial is refused, naming `grant_minutes`.
    pub fn from_json(p: &Map<String, Value>, approve: Option<bool>) -> Result<ApprovalAnswer, ServiceError> {
        let f = Fields(p);
        let approve = match approve {
            Some(a) => a,
            None => f.boolean("approve")?.ok_or_else(|| ServiceError::missing("approve"))?,
        };
        let grant = match f.uint("grant_minutes", 1..=MAX_GRANT_MINUTES)? {
            Some(_) if !approve => {
                return Err(ServiceError::invalid(
                    "grant_minutes",
                    "a grant comes with an approval, not a denial",
                ));
            }
            Some(m) => Some((m, f.boolean("grant_same_args")?.unwrap_or(false))),
            None => None,
        };
        Ok(ApprovalAnswer { approve, reason: f.string("reason")?, grant })
    }
}

impl GrantRequest {
    /// Reads `grant.create`'s params (`POST /v1/grants`'s body): `{agent_id, tool, operation,
    /// minutes, request_hash?, reason?}`, errors naming the field.
    pub fn from_json(p: &Map<String, Value>) -> Result<GrantRequest, ServiceError> {
        let f = Fields(p);
        let need = |k: &str| -> Result<String, ServiceError> {
            f.string(k)?.ok_or_else(|| ServiceError::missing(k))
        };
        Ok(GrantRequest {
            agent_id: need("agent_id")?,
            tool: need("tool")?,
            operation: need("operation")?,
            request_hash: f.string("request_hash")?,
            minutes: f
                .uint("minutes", 1..=MAX_GRANT_MINUTES)?
                .ok_or_else(|| ServiceError::missing("minutes"))?,
            approval_id: None,
            reason: f.string("reason")?,
            summary: None,
        })
    }
}

impl Service {
    /// The PERMIT a live grant gives a DEFER of the policy (`None` when no grant applies).
    pub(super) fn granted(&self, call: &Call, decision: &Decision) -> Option<Decision> {
        if decision.effect != Effect::Defer
            || !matches!(decision.reason_code, ReasonCode::PolicyDefer | ReasonCode::RiskUpgrade)
        {
            return None;
        }
        let grant = self.state.grants.covering(call, &decision.request_hash)?;
        let mut d = decision.clone();
        d.effect = Effect::Permit;
        d.reason_code = ReasonCode::GrantApplied;
        d.reason = format!(
            "allowed by grant {} until {} (it would otherwise need approval: {})",
            grant.id, grant.expires_at, decision.reason
        );
        d.rule_id = Some(format!("grant:{}", grant.id));
        d.structured_denial = None;
        Some(d)
    }

    /// Creates a grant (approvers only), recorded as a `grant` entry.
    pub async fn grant_create(&self, req: GrantRequest, who: &Identity) -> Result<Grant, ServiceError> {
        if !self.may_approve(who) {
            return Err(ServiceError::not_authorized(format!(
                "not authorized: {} may not grant (root, the daemon's uid or an approver may)",
                who.describe()
            )));
        }
        if !(1..=MAX_GRANT_MINUTES).contains(&req.minutes) {
            return Err(ServiceError::invalid(
                "minutes",
                format!("a grant lasts 1 to {MAX_GRANT_MINUTES} minutes, not {}", req.minutes),
            ));
        }
        for (field, value) in
            [("agent_id", &req.agent_id), ("tool", &req.tool), ("operation", &req.operation)]
        {
            if !faramesh_proto::is_identifier(value) {
                return Err(ServiceError::invalid(field, format!("`{field}` `{value}` is not a name")));
            }
        }
        let expires_ms = entry::now_ms() + req.minutes * 60_000;
        let summary = req.summary.filter(|_| req.request_hash.is_some());
        let grant = Grant {
            id: format!("grant_{}", dpr::new_id()),
            agent_id: req.agent_id,
            tool: req.tool,
            operation: req.operation,
            request_hash: req.request_hash,
            expires_at: entry::rfc3339(expires_ms),
            expires_ms,
            created_by: who.caller(),
            approval_id: req.approval_id,
            reason: req.reason,
            summary,
        };
        let row = (format!("grant/{}", grant.id), serde_json::to_vec(&grant).ok());
        let body = dpr::event_entry("grant", serde_json::to_value(&grant).unwrap_or(Value::Null));
        self.commit(body, Some(Box::new(move |_, _| vec![row]))).await?;
        if let Ok(mut g) = self.state.grants.by_id.write() {
            let now = entry::now_ms();
            g.retain(|_, g| g.expires_ms > now);
            g.insert(grant.id.clone(), grant.clone());
        }
        Ok(grant)
    }

    /// Answers a pending approval (approves or denies it, and makes the grant it asks for).
    pub async fn answer_approval(
        &self,
        id: &str,
        answer: ApprovalAnswer,
        who: &Identity,
    ) -> Result<(Approval, Option<Grant>), ServiceError> {
        match answer.grant {
            Some((minutes, same_args)) if answer.approve => {
                let (a, g) = self.approve_with_grant(id, minutes, same_args, answer.reason, who).await?;
                Ok((a, Some(g)))
            }
            _ => Ok((self.approval_decide(id, answer.approve, answer.reason, who).await?, None)),
        }
    }

    /// Approves a pending approval and grants its agent the same tool and operation (only the
    /// same arguments with `same_args`) for `minutes`.
    pub async fn approve_with_grant(
        &self,
        id: &str,
        minutes: u64,
        same_args: bool,
        reason: Option<String>,
        who: &Identity,
    ) -> Result<(Approval, Grant), ServiceError> {
        if !(1..=MAX_GRANT_MINUTES).contains(&minutes) {
            return Err(ServiceError::invalid(
                "grant_minutes",
                format!("a grant lasts 1 to {MAX_GRANT_MINUTES} minutes, not {minutes}"),
            ));
        }
        let a = self.approval_decide(id, true, reason.clone(), who).await?;
        let summary = if same_args {
            self.find_action_record(&a.action_id).ok().map(|r| super::notify::summary(&r.params))
        } else {
            None
        };
        let grant = self
            .grant_create(
                GrantRequest {
                    agent_id: a.agent_id.clone(),
                    tool: a.tool.clone(),
                    operation: a.operation.clone(),
                    request_hash: same_args.then(|| a.request_hash.clone()),
                    minutes,
                    approval_id: Some(a.approval_id.clone()),
                    reason,
                    summary,
                },
                who,
            )
            .await?;
        Ok((a, grant))
    }

    /// Ends a grant now (approvers only), recorded as a `grant_revoked` entry.
    pub async fn grant_revoke(&self, id: &str, who: &Identity) -> Result<Grant, ServiceError> {
        if !self.may_approve(who) {
            return Err(ServiceError::not_authorized(format!(
                "not authorized: {} may not revoke grants",
                who.describe()
            )));
        }
        let grant = self
            .state
            .grants
            .by_id
            .read()
            .ok()
            .and_then(|g| g.get(id).cloned())
            .ok_or_else(|| ServiceError::not_found(format!("no grant `{id}`")))?;
        let key = format!("grant/{id}");
        let body = dpr::event_entry("grant_revoked", json!({"id": id, "by": who.caller()}));
        self.commit(body, Some(Box::new(move |_, _| vec![(key, None)]))).await?;
        if let Ok(mut g) = self.state.grants.by_id.write() {
            g.remove(id);
        }
        Ok(grant)
    }

    /// Live grants, for those who read everything.
    pub fn grant_list(&self, who: &Identity) -> Result<Vec<Grant>, ServiceError> {
        if !self.reads_everything(who) {
            return Err(ServiceError::not_authorized(format!(
                "not authorized: {} may not list grants",
                who.describe()
            )));
        }
        Ok(self.state.grants.live())
    }
}
