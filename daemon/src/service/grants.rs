//! Grants: "approve, and allow this caller the same tool and operation (optionally only the
//! same arguments) for N minutes" (`docs/notifications.md#grants`).
//!
//! A grant is an approval of future calls, so the rules of approving hold for it in full: it is
//! made by an approver who is not the caller it covers (not its process, uid or token), and it
//! covers only the caller of the approved call (its uid or token, and its session when the call
//! had one), unless the approver widens it to any caller explicitly; even then it never covers
//! the grantor's own calls. It is recorded as a signed `grant` entry with its `grant/<id>` state
//! row, listed and revocable. `govern` applies a live grant only to a DEFER of the policy
//! (`POLICY_DEFER`, `RISK_UPGRADE`): it never turns a DENY, an unresolved command line, a
//! quarantined MCP tool, a rate limit or a budget into PERMIT. The PERMIT is made by
//! [`crate::permit::Permit::grant`] and says which grant (`GRANT_APPLIED`, rule `grant:<id>`).

use std::collections::HashMap;
use std::sync::RwLock;

use faramesh_proto::{Call, Decision, Effect, ReasonCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::approvals::Approval;
use super::{Fields, Identity, Service, ServiceError, state_row, to_json};
use crate::log::dpr::{self, Caller};
use crate::log::entry;
use crate::permit::{Covers, Permit};

/// The longest a grant may last: a day.
pub const MAX_GRANT_MINUTES: u64 = 24 * 60;

/// One grant (a state row, and `grant.list`'s items).
///
/// JSON: `{"id", "agent_id", "tool", "operation", "request_hash": "…"|null, "covers": {"uid":
/// 1000, "session_id": "s-1"} | {"token": "…"} | {"any_caller": true}, "expires_at", "expires_ms",
/// "created_by", "approval_id", "reason"}`.
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
    /// Whose calls it covers (a grant without it covers no one).
    #[serde(default)]
    pub covers: Covers,
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
    /// The programs it is limited to (a grant made with the approval of a command line): a
    /// later call is covered only if the command reader read every program it runs, and each
    /// is one of these. A grant on `ls` never covers a line that runs anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programs: Option<Vec<String>>,
}

/// What a grant made with an approval of a command line records of it, sorted and
/// deduplicated: each program by the word that ran it (`ls` found on the search path, or
/// `/tmp/ls (ls)` for one named by its path or renamed with `exec -a`), and [`WRITES_FILES`]
/// when the line writes files by redirection. `None` when the call carries no command; an
/// empty list when its command was not fully read (no grant can cover it).
pub fn programs_of(params: &Value) -> Option<Vec<String>> {
    use crate::policy::command::{Reading, read_params};
    match read_params(params) {
        Reading::NoCommand => None,
        Reading::Resolved(commands) => {
            let mut programs: Vec<String> = Vec::new();
            for c in commands {
                if !c.writes.is_empty() {
                    programs.push(WRITES_FILES.to_owned());
                }
                match c.argv.first() {
                    Some(word) if *word == c.program => programs.push(c.program),
                    Some(word) => programs.push(format!("{word} ({})", c.program)),
                    None => programs.push(c.program),
                }
            }
            programs.sort();
            programs.dedup();
            Some(programs)
        }
        Reading::Unresolved { .. } | Reading::Unreadable(_) => Some(Vec::new()),
    }
}

/// In a grant's `programs`: the approved line wrote files by redirection, so lines that do are
/// covered too (otherwise they are not).
pub const WRITES_FILES: &str = "> (writes files)";

impl Grant {
    /// Whether a call whose command runs `programs` (see [`programs_of`]) is within the
    /// programs it is limited to.
    fn allows_programs(&self, programs: Option<&[String]>) -> bool {
        match (&self.programs, programs) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(allowed), Some(run)) => !run.is_empty() && run.iter().all(|p| allowed.contains(p)),
        }
    }

    /// Whether it is live and names this agent, tool, operation (and arguments); whether it
    /// covers the caller is [`Permit::grant`]'s to say.
    fn applies_to(&self, call: &Call, request_hash: &str, now: u64) -> bool {
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

    /// The grants live at `now` (ms) naming `call`'s agent, tool and operation (and arguments).
    fn naming(&self, call: &Call, request_hash: &str, now: u64) -> Vec<Grant> {
        let Ok(grants) = self.by_id.read() else { return Vec::new() };
        if grants.is_empty() {
            return Vec::new();
        }
        grants.values().filter(|g| g.applies_to(call, request_hash, now)).cloned().collect()
    }

    /// Grants live at `now` (ms), soonest to end first.
    pub fn live(&self, now: u64) -> Vec<Grant> {
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
    /// Whose calls it covers.
    pub covers: Covers,
    /// How long (1 to [`MAX_GRANT_MINUTES`]).
    pub minutes: u64,
    /// The approval it comes with.
    pub approval_id: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// What the arguments were, in one line (with `request_hash`).
    pub summary: Option<String>,
    /// The programs it is limited to (see [`Grant::programs`]).
    pub programs: Option<Vec<String>>,
}

/// A person's answer to a pending approval, as both doors read it: `approve` (or the method says
/// it), `reason`, and `grant_minutes` with `grant_same_args` (only these arguments) and
/// `grant_any_caller` (every caller, not only the one that made the call) to also make a grant.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalAnswer {
    /// Approve, or deny.
    pub approve: bool,
    /// Why (recorded).
    pub reason: Option<String>,
    /// Also grant the caller the same tool/operation for these minutes.
    pub grant: Option<GrantScope>,
    /// Approve the call with these changes to its arguments.
    pub edit: Option<super::editing::EditRequest>,
    /// A statement signed by an approver's key (`statement`, and `signature` or `passkey`): the
    /// decision is theirs, whoever sends it.
    pub signed: Option<(String, super::signing::Proof)>,
}

/// What a grant made with an approval covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantScope {
    /// How long (1 to [`MAX_GRANT_MINUTES`]).
    pub minutes: u64,
    /// Only calls with the approved call's arguments.
    pub same_args: bool,
    /// Every caller rather than only the one that made the approved call.
    pub any_caller: bool,
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
            Some(minutes) => Some(GrantScope {
                minutes,
                same_args: f.boolean("grant_same_args")?.unwrap_or(false),
                any_caller: f.boolean("grant_any_caller")?.unwrap_or(false),
            }),
            None if f.0.contains_key("grant_same_args") || f.0.contains_key("grant_any_caller") => {
                return Err(ServiceError::invalid(
                    "grant_minutes",
                    "`grant_same_args` and `grant_any_caller` go with `grant_minutes`",
                ));
            }
            None => None,
        };
        let edit = super::editing::EditRequest::from_json(p)?;
        if edit.is_some() && !approve {
            let field = if p.contains_key("params") { "params" } else { "set" };
            return Err(ServiceError::invalid(field, "edits come with an approval, not a denial"));
        }
        if edit.is_some() && grant.is_some() {
            return Err(ServiceError::invalid(
                "grant_minutes",
                "an approval with edits makes no grant: approve the edited call, then grant separately",
            ));
        }
        let passkey = match p.get("passkey") {
            None | Some(Value::Null) => None,
            Some(v) => Some(super::signing::PasskeyAssertion::from_json(v)?),
        };
        let signed = match (f.string("statement")?, f.string("signature")?, passkey) {
            (None, None, None) => None,
            (Some(_), Some(_), Some(_)) => {
                return Err(ServiceError::invalid("passkey", "give `signature` or `passkey`, not both"));
            }
            (Some(s), Some(sig), None) => Some((s, super::signing::Proof::Ssh(sig))),
            (Some(s), None, Some(pk)) => Some((s, super::signing::Proof::Passkey(pk))),
            (Some(_), None, None) => return Err(ServiceError::missing("signature")),
            (None, _, _) => return Err(ServiceError::missing("statement")),
        };
        if signed.is_some() && (grant.is_some() || edit.is_some()) {
            return Err(ServiceError::invalid(
                "statement",
                "a signed statement approves or denies the call as it is: no grant, no edits",
            ));
        }
        Ok(ApprovalAnswer { approve, reason: f.string("reason")?, grant, edit, signed })
    }
}

impl GrantRequest {
    /// Reads `grant.create`'s params (`POST /v1/grants`'s body): `{agent_id, tool, operation,
    /// minutes, request_hash?, reason?}` and whom it covers: `uid` (a socket caller) or `token`
    /// (an HTTP token's name), optionally with `session_id`, or `any_caller: true`; errors naming
    /// the field.
    pub fn from_json(p: &Map<String, Value>) -> Result<GrantRequest, ServiceError> {
        let f = Fields(p);
        let need = |k: &str| -> Result<String, ServiceError> {
            f.string(k)?.ok_or_else(|| ServiceError::missing(k))
        };
        let covers = Covers {
            uid: f.uint("uid", 0..=u64::from(u32::MAX))?.and_then(|u| u32::try_from(u).ok()),
            token: f.string("token")?,
            session_id: f.string("session_id")?,
            any_caller: f.boolean("any_caller")?.unwrap_or(false),
        };
        if !covers.is_well_formed() {
            return Err(ServiceError::invalid(
                "uid",
                "a grant names whom it covers: one of `uid` (a socket caller), `token` (an HTTP token's \
                 name) or `any_caller: true`",
            ));
        }
        Ok(GrantRequest {
            covers,
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
            programs: None,
        })
    }
}

impl Service {
    /// The PERMIT a live grant gives a DEFER of the policy (`None` when no grant applies): a
    /// grant naming the call's agent, tool and operation, made by someone other than `who`, that
    /// covers `who` (and the call's session when the grant is bound to one).
    pub(super) fn granted(&self, call: &Call, decision: &Decision, who: &Identity) -> Option<Decision> {
        if decision.effect != Effect::Defer
            || !matches!(decision.reason_code, ReasonCode::PolicyDefer | ReasonCode::RiskUpgrade)
        {
            return None;
        }
        // A rule that asks for several signed approvers is never granted away: its calls run only
        // on their signatures.
        if self.state.policy.load().policy.approvals_required(decision.rule_id.as_deref()) > 1 {
            return None;
        }
        let grants = self.state.grants.naming(call, &decision.request_hash, self.clock.now_ms());
        if grants.is_empty() {
            return None;
        }
        let requester = who.caller();
        let same_uid_ok = self.same_uid_ok();
        let programs =
            grants.iter().any(|g| g.programs.is_some()).then(|| programs_of(&call.params)).flatten();
        grants.iter().filter(|g| g.allows_programs(programs.as_deref())).find_map(|g| {
            let reason = format!(
                "allowed by grant {} until {} (it would otherwise need approval: {})",
                g.id, g.expires_at, decision.reason
            );
            Permit::grant(
                &g.id,
                g.created_by.as_ref(),
                &g.covers,
                requester.as_ref(),
                call.session_id.as_deref(),
                same_uid_ok,
                reason,
            )
            .ok()
            .map(|p| p.apply(decision.clone()))
        })
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
        if !req.covers.is_well_formed() {
            return Err(ServiceError::invalid(
                "uid",
                "a grant names whom it covers: one of `uid`, `token` or `any_caller: true`",
            ));
        }
        if let Some(why) = self.self_grant(&req.covers, who) {
            return Err(ServiceError::not_authorized(why));
        }
        for (field, value) in
            [("agent_id", &req.agent_id), ("tool", &req.tool), ("operation", &req.operation)]
        {
            if !faramesh_proto::is_identifier(value) {
                return Err(ServiceError::invalid(field, format!("`{field}` `{value}` is not a name")));
            }
        }
        let expires_ms = self.clock.now_ms() + req.minutes * 60_000;
        let summary = req.summary.filter(|_| req.request_hash.is_some());
        let grant = Grant {
            id: format!("grant_{}", dpr::new_id()),
            agent_id: req.agent_id,
            tool: req.tool,
            operation: req.operation,
            request_hash: req.request_hash,
            covers: req.covers,
            expires_at: entry::rfc3339(expires_ms),
            expires_ms,
            created_by: who.caller(),
            approval_id: req.approval_id,
            reason: req.reason,
            summary,
            programs: req.programs,
        };
        let row = state_row(format!("grant/{}", grant.id), &grant)?;
        let body = dpr::event_entry("grant", to_json("the grant", &grant)?);
        self.commit(body, Some(Box::new(move |_, _| vec![row]))).await?;
        if let Ok(mut g) = self.state.grants.by_id.write() {
            let now = self.clock.now_ms();
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
        if let Some((statement, proof)) = answer.signed {
            return Ok((self.answer_signed(id, answer.approve, &statement, &proof, who).await?, None));
        }
        if let Some(edit) = answer.edit {
            return Ok((self.approve_with_edit(id, edit, answer.reason, who).await?, None));
        }
        match answer.grant {
            Some(scope) if answer.approve => {
                let (a, g) = self.approve_with_grant(id, scope, answer.reason, who).await?;
                Ok((a, Some(g)))
            }
            _ => Ok((self.approval_decide(id, answer.approve, answer.reason, who).await?, None)),
        }
    }

    /// Approves a pending approval and grants the caller that made it (every caller with
    /// `any_caller`) the same tool and operation (only the same arguments with `same_args`) for
    /// `minutes`.
    pub async fn approve_with_grant(
        &self,
        id: &str,
        scope: GrantScope,
        reason: Option<String>,
        who: &Identity,
    ) -> Result<(Approval, Grant), ServiceError> {
        let GrantScope { minutes, same_args, any_caller } = scope;
        if !(1..=MAX_GRANT_MINUTES).contains(&minutes) {
            return Err(ServiceError::invalid(
                "grant_minutes",
                format!("a grant lasts 1 to {MAX_GRANT_MINUTES} minutes, not {minutes}"),
            ));
        }
        // The approved call's record says who made it and in which session; without it there
        // is no one to bind the grant to, so nothing is approved.
        let id = self.resolve_approval(id)?;
        let pending = self
            .state
            .approvals
            .get(&id)
            .ok_or_else(|| ServiceError::not_found(format!("no approval `{id}`")))?;
        let record = self.find_action_record(&pending.action_id).map_err(|e| {
            ServiceError::internal(format!(
                "the deferred call of approval `{id}` cannot be read: {}",
                e.message
            ))
        })?;
        let covers = if any_caller {
            Covers::any()
        } else {
            Covers::caller(record.caller.as_ref(), record.session_id.as_deref())
        };
        if !covers.is_well_formed() {
            return Err(ServiceError::conflict(format!(
                "approval `{id}` has no recorded caller to grant to; approve it without a grant"
            )));
        }
        if let Some(why) = self.self_grant(&covers, who) {
            return Err(ServiceError::not_authorized(why));
        }
        let a = self.approval_decide(&id, true, reason.clone(), who).await?;
        let summary = same_args.then(|| super::notify::summary(&record.params));
        // A grant made with the approval of a command line covers only the programs it runs.
        let programs = programs_of(&record.params);
        let grant = self
            .grant_create(
                GrantRequest {
                    agent_id: a.agent_id.clone(),
                    tool: a.tool.clone(),
                    operation: a.operation.clone(),
                    request_hash: same_args.then(|| a.request_hash.clone()),
                    covers,
                    minutes,
                    approval_id: Some(a.approval_id.clone()),
                    reason,
                    summary,
                    programs,
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
        Ok(self.state.grants.live(self.clock.now_ms()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use faramesh_proto::{Effect, ReasonCode};
    use serde_json::json;

    use super::super::tests::service;
    use super::GrantRequest;
    use crate::log::dpr::PeerCred;
    use crate::permit::Covers;
    use crate::service::{CallRequest, Identity, Peer};

    fn peer(uid: u32) -> Identity {
        Identity::Peer(Peer::new(PeerCred { uid, gid: uid, pid: 1 }))
    }

    /// A grant never turns a DEFER of a rule that needs several signed approvers into a PERMIT,
    /// however wide it is; a one-approver rule's DEFER it does cover.
    #[tokio::test]
    async fn a_grant_never_covers_a_rule_that_needs_several_signers() {
        let policy = "version: 1\nrules:\n  - id: big\n    match: { tool: stripe, op: payout, amount_gt: 1000 }\n    require_approval: true\n    approvals_required: 2\n  - id: small\n    match: { tool: stripe, op: payout }\n    require_approval: true\n";
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path(), policy);
        let grant = GrantRequest {
            agent_id: "pay-bot".into(),
            tool: "stripe".into(),
            operation: "payout".into(),
            request_hash: None,
            covers: Covers::any(),
            minutes: 30,
            approval_id: None,
            reason: None,
            summary: None,
            programs: None,
        };
        s.grant_create(grant, &peer(0)).await.unwrap();
        let call = |amount: u64| {
            CallRequest::from_value(&json!({"agent_id": "pay-bot", "tool": "stripe", "operation": "payout", "params": {"amount": amount}})).unwrap()
        };
        let small = s.govern(call(10), &peer(1000)).await.unwrap().decision;
        assert_eq!((small.effect, small.reason_code), (Effect::Permit, ReasonCode::GrantApplied));
        let big = s.govern(call(50_000), &peer(1000)).await.unwrap().decision;
        assert_eq!((big.effect, big.rule_id.as_deref()), (Effect::Defer, Some("big")), "{big:?}");
    }
}
