//! Deciding and recording a call: `govern` (the check order, budgets, resume of an approved call),
//! `decide` (a decision that is not recorded), and turning a decision into the reply.

use faramesh_proto::{Call, Decision, Effect, ReasonCode, Resolution};
use serde_json::{Value, json};

use super::approvals::Approval;
use super::{
    BUDGET_CACHE_ENTRIES, CallRequest, ErrorKind, Identity, Service, ServiceError, approvals, authz, claims,
    fleet_limits, limits, notify,
};
use crate::log::{StateWrites, dpr, entry};
use crate::permit::Permit;
use crate::policy;

/// The answer to `govern` / `decide`.
///
/// JSON: the [`Decision`]'s fields plus `action_id` (the DPR id, `null` from `decide` or when
/// nothing was recorded), `defer_token` and `approval_id` (the pending approval on DEFER).
#[derive(Debug, Clone, PartialEq)]
pub struct GovernReply {
    /// The decision.
    pub decision: Decision,
    /// The DPR's id.
    pub action_id: Option<String>,
    /// The pending approval's id (DEFER only).
    pub approval_id: Option<String>,
    /// For `decide` (a dry run): the side effects `govern` would have applied.
    pub not_applied: Option<Vec<&'static str>>,
    /// A PERMIT whose result the policy's `results:` rules read: the client sends the result
    /// (`result.check`) before the agent reads it.
    pub check_result: bool,
}

/// Whether the stages apply their side effects (`govern`) or only report them (`decide`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Take rate-limit tokens, count budgets.
    Apply,
    /// Touch nothing; list what would have been applied.
    DryRun,
}

/// What the stages decided, and the state they write with it.
pub(super) struct Staged {
    pub(super) decision: Decision,
    pub(super) writes: Option<StateWrites>,
    pub(super) not_applied: Vec<&'static str>,
    /// How each fleet-scoped limit was counted (the DPR's `limits`).
    pub(super) limits: Vec<Value>,
    /// The fleet counters whose reserved unit the call spent.
    pub(super) spent: Vec<String>,
}

impl GovernReply {
    /// The reply object both doors send.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(&self.decision).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut v {
            map.insert("action_id".into(), json!(self.action_id));
            map.insert("defer_token".into(), json!(self.approval_id));
            map.insert("approval_id".into(), json!(self.approval_id));
            if let Some(not_applied) = &self.not_applied {
                map.insert("not_applied".into(), json!(not_applied));
            }
            if self.check_result {
                map.insert("check_result".into(), json!(true));
            }
        }
        v
    }
}

/// Fail closed: any internal problem turns the answer into DENY `INTERNAL_ERROR`.
pub(super) fn internal_error(d: Decision, why: String) -> Decision {
    let (rule_id, rule_ref) = (d.rule_id.clone(), d.rule_ref.clone());
    policy::deny_decision(d, ReasonCode::InternalError, why, rule_id, rule_ref, None)
}

/// A DENY keeping the decision's rule unless `rule_id` names another.
pub(super) fn deny_with(
    d: Decision,
    code: ReasonCode,
    reason: String,
    rule_id: Option<String>,
    resolution: Option<Resolution>,
) -> Decision {
    let rule_id = rule_id.or_else(|| d.rule_id.clone());
    let rule_ref = d.rule_ref.clone();
    policy::deny_decision(d, code, reason, rule_id, rule_ref, resolution)
}

/// An agent id pinned to a uid may only be claimed by that uid.
pub(super) fn identity_mismatch(
    policy: &policy::Policy,
    call: &Call,
    who: &Identity,
    d: &Decision,
) -> Option<Decision> {
    let profile = policy.agents.get(&call.agent_id)?;
    let pinned = profile.uid?;
    if who.peer().is_some_and(|p| p.uid == pinned) {
        return None;
    }
    let rule_id = format!("agents.{}.uid", profile.name);
    let reason =
        format!("caller {} may not act as agent `{}` (pinned to uid {pinned})", who.describe(), profile.name);
    Some(deny_with(d.clone(), ReasonCode::AgentIdentityMismatch, reason, Some(rule_id), None))
}

pub(super) fn join_writes(a: Option<StateWrites>, b: Option<StateWrites>) -> Option<StateWrites> {
    match (a, b) {
        (None, None) => None,
        (Some(x), None) | (None, Some(x)) => Some(x),
        (Some(x), Some(y)) => Some(Box::new(move |seq, id| {
            let mut v = x(seq, id);
            v.extend(y(seq, id));
            v
        })),
    }
}

pub(super) enum BudgetRefusal {
    Exceeded(Option<String>),
    Internal(String),
}

/// The decision for a resumed call, and the approval marked used when it is granted.
pub(super) fn resume_decision(
    base: &Decision,
    a: &Approval,
    approval_id: &str,
    who: &Identity,
    same_uid_ok: bool,
    now_ms: u64,
) -> (Decision, Option<Approval>) {
    let base = base.clone();
    let deny = |code, reason: String| (deny_with(base.clone(), code, reason, None, None), None);
    if !authz::made_the_call(a, who) {
        return deny(
            ReasonCode::AgentIdentityMismatch,
            format!(
                "approval `{approval_id}` belongs to the caller that made the deferred call; {} may not resume it",
                who.describe()
            ),
        );
    }
    match a.status {
        approvals::Status::Approved if now_ms > a.expires_ms => {
            deny(ReasonCode::ApprovalExpired, format!("approval `{approval_id}` expired before use"))
        }
        approvals::Status::Approved
            if a.edit.as_ref().is_some_and(|e| e.request_hash != base.request_hash) =>
        {
            deny(
                ReasonCode::ApprovalDenied,
                format!(
                    "approval `{approval_id}` approved this call with edited arguments: only the edited call may \
                     resume (its arguments are the approval's `edit.params`)"
                ),
            )
        }
        approvals::Status::Approved if a.edit.is_none() && a.request_hash != base.request_hash => deny(
            ReasonCode::ApprovalDenied,
            format!("this call differs from the one approved by `{approval_id}` (request_hash mismatch)"),
        ),
        approvals::Status::Approved => {
            match Permit::approval(
                approval_id,
                a.rule_id.clone(),
                a.requested_by.as_ref(),
                a.decided_by.as_ref(),
                same_uid_ok,
            ) {
                Ok(permit) => {
                    let mut used = a.clone();
                    used.status = approvals::Status::Used;
                    (permit.apply(base), Some(used))
                }
                Err(why) => deny(
                    ReasonCode::ApprovalDenied,
                    format!("approval `{approval_id}` does not allow this call: {why}"),
                ),
            }
        }
        approvals::Status::Pending => {
            // Still waiting: the same approval, no new one.
            let mut d = policy::defer_decision(
                base,
                ReasonCode::PolicyDefer,
                format!("approval `{approval_id}` is still pending"),
            );
            if let Some(denial) = d.structured_denial.as_mut() {
                denial.resolution =
                    Some(Resolution::PendingApproval { approval_id: Some(approval_id.to_owned()) });
            }
            (d, None)
        }
        approvals::Status::Used => {
            deny(ReasonCode::ApprovalDenied, format!("approval `{approval_id}` was already used"))
        }
        approvals::Status::Denied => deny(
            ReasonCode::ApprovalDenied,
            format!(
                "approval `{approval_id}` was denied{}",
                a.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
            ),
        ),
        approvals::Status::Expired => {
            deny(ReasonCode::ApprovalExpired, format!("approval `{approval_id}` expired"))
        }
    }
}

impl Service {
    /// Records a decision and turns it into the reply: DENY `INTERNAL_ERROR` (no action id) when
    /// the entry cannot be committed. `approval` (a new pending one) is added to the book once
    /// committed.
    #[allow(clippy::too_many_arguments, reason = "each is a distinct part of the one entry written")]
    pub(super) async fn record(
        &self,
        call: &Call,
        decision: Decision,
        who: &Identity,
        approval_ref: Option<&str>,
        new_approval: Option<Approval>,
        writes: Option<StateWrites>,
        limits: Vec<Value>,
    ) -> GovernReply {
        let started = std::time::Instant::now();
        // The last check: a PERMIT without its provenance is refused, never recorded as one.
        let decision = crate::permit::checked(decision);
        let approval_id = new_approval.as_ref().map(|a| a.approval_id.clone());
        // What the detectors found is stored redacted: in the DPR and the notifications alike.
        let stored = self.stored_call(call, &decision);
        let mut body = dpr::decision_entry(
            &stored,
            &decision,
            who.caller(),
            approval_ref.or(approval_id.as_deref()),
            self.state.log.redact_keys(),
        );
        // How fleet-scoped limits were counted: in the fleet database, on this host, or not at all.
        if !limits.is_empty() {
            body.insert("limits".into(), Value::Array(limits));
        }
        // The signed bundle the deciding policy came from.
        {
            let loaded = self.state.policy.load();
            if let Some(b) = loaded.bundle.as_ref().filter(|_| loaded.policy.hash == decision.policy_hash) {
                body.insert("policy_bundle".into(), json!({"serial": b.serial, "digest": b.digest}));
            }
        }
        // Notifications are queued in the same commit as the decision that causes them.
        let notes = self.decision_notes(&stored, &decision, new_approval.as_ref());
        let queued = notes.len();
        let rows =
            new_approval.as_ref().map(|a| approvals::state_write(a, true)).transpose().and_then(|approval| {
                Ok(join_writes(join_writes(writes, approval), notify::writes(notes, true)?))
            });
        let committed = match rows {
            Ok(writes) => self.commit(body, writes).await,
            Err(e) => Err(e),
        };
        let reply = match committed {
            Ok(appended) => {
                self.queued_notes(queued);
                let loaded = self.state.policy.load();
                let keep_ms = loaded.policy.longest_after_ms;
                let check_result = decision.effect == Effect::Permit
                    && policy::results::applies(&loaded.policy, &call.agent_id, &call.tool, &call.operation);
                if decision.effect == Effect::Permit && keep_ms > 0 {
                    self.state.recent.remember(call, self.clock.now_ms(), keep_ms);
                }
                if let Some(mut a) = new_approval {
                    a.action_id = appended.id.clone().unwrap_or_default();
                    self.state.approvals.insert(a);
                }
                let keep_approval = decision.effect == Effect::Defer;
                let approval_id =
                    if keep_approval { approval_id.or(approval_ref.map(str::to_owned)) } else { None };
                GovernReply { decision, action_id: appended.id, approval_id, not_applied: None, check_result }
            }
            Err(e) => GovernReply {
                decision: internal_error(decision, e.message),
                action_id: None,
                approval_id: None,
                not_applied: None,
                check_result: false,
            },
        };
        self.state.counts.count(&reply.decision);
        self.state.metrics.decision(reply.decision.effect.as_str(), reply.decision.reason_code.as_str());
        // Under journald these are FARAMESH_EFFECT, FARAMESH_REASON, FARAMESH_AGENT, FARAMESH_TOOL,
        // FARAMESH_ACTION_ID, FARAMESH_LATENCY_US (`journalctl FARAMESH_EFFECT=DENY`).
        tracing::info!(
            effect = reply.decision.effect.as_str(),
            reason = reply.decision.reason_code.as_str(),
            agent = %call.agent_id,
            tool = %call.tool,
            operation = %call.operation,
            action_id = reply.action_id.as_deref().unwrap_or(""),
            latency_us = started.elapsed().as_micros() as u64,
            "decision"
        );
        reply
    }

    /// The call as it is stored: each value the decision's findings point at replaced by its
    /// redaction token (`[REDACTED:<detector>:<16 hex>]`, keyed by the log's redaction key, so
    /// an equal value gives an equal token). The request and params hashes were computed
    /// before, on the call as sent.
    pub(super) fn stored_call<'c>(&self, call: &'c Call, decision: &Decision) -> std::borrow::Cow<'c, Call> {
        if decision.findings.is_empty() {
            return std::borrow::Cow::Borrowed(call);
        }
        let set = decision
            .findings
            .iter()
            .filter_map(|f| policy::detect::Detector::by_name(&f.detector))
            .fold(policy::detect::DetectSet::NONE, |s, d| s | policy::detect::DetectSet::of(d));
        let key = self.state.log.key().redaction_key();
        let token = |d: policy::detect::Detector, value: &str| entry::redaction_token(&key, d.name(), value);
        let mut stored = call.clone();
        stored.params = policy::detect::redact(&call.params, set, &token);
        // The same detectors over the context: a value found in the params and also sent there
        // is not stored there either.
        stored.context = policy::detect::redact(&call.context, set, &token);
        std::borrow::Cow::Owned(stored)
    }

    /// A token bound to agent ids may act only for them.
    pub(super) fn check_agent_binding(who: &Identity, agent_id: &str) -> Result<(), ServiceError> {
        if let Identity::Token(t) = who
            && let Some(agents) = &t.agents
            && !agents.iter().any(|a| a == agent_id)
        {
            return Err(ServiceError::not_authorized(format!(
                "not authorized: token `{}` may not act for agent `{agent_id}`",
                t.name
            )));
        }
        Ok(())
    }

    /// The policy's decision on `req`, with the session's earlier calls where a rule asks
    /// (`after:`).
    pub(super) fn policy_decision(&self, policy: &policy::Policy, req: &CallRequest) -> Decision {
        if policy.longest_after_ms > 0 {
            let earlier = self.state.recent.of(&req.call);
            let history = policy::History { now_ms: self.clock.now_ms(), earlier: &earlier };
            policy::decide_request_with(policy, req, history)
        } else {
            policy::decide_request(policy, req)
        }
    }

    /// The checks every call goes through, in this order (each marked by its name below):
    /// `policy`, `kill_switch`, `mcp_quarantine`, `grant`, `agent_identity`, `resume`, `rate_limit`, `budget`; for `govern` (`Mode::Apply`:
    /// a rate-limit token is taken, a budget counted) and `decide` (`Mode::DryRun`: the same
    /// checks, their side effects reported in `not_applied` instead). A call that resumes an
    /// approval stops at `resume`: `govern` claims and uses the approval, `decide` only reads it.
    pub(super) fn run_stages(
        &self,
        policy: &policy::Policy,
        req: &CallRequest,
        who: &Identity,
        mode: Mode,
        reserved: Option<&fleet_limits::Reserved>,
    ) -> Staged {
        let call = &req.call;
        let decision = self.policy_decision(policy, req);
        let mut out =
            Staged { decision, writes: None, not_applied: Vec::new(), limits: Vec::new(), spent: Vec::new() };
        let refused_early =
            matches!(out.decision.reason_code, ReasonCode::InvalidRequest | ReasonCode::ProfileDisallowsTool);
        if refused_early {
            return out;
        }
        // kill_switch
        if let Some(d) = self.killed(call, &out.decision) {
            out.decision = d;
            return out;
        }
        // policy_stale
        if let Some(why) = self.state.stale_denies(self.clock.now_ms()) {
            let base = Decision { rule_id: None, rule_ref: None, ..out.decision.clone() };
            out.decision = deny_with(base, ReasonCode::PolicyStale, why, Some("policy_stale".into()), None);
            return out;
        }
        // mcp_quarantine
        if let Some(d) = self.quarantine(policy, call, &out.decision) {
            out.decision = d;
        }
        // grant
        if let Some(d) = self.granted(call, &out.decision, who) {
            out.decision = d;
        }
        // agent_identity
        if let Some(d) = identity_mismatch(policy, call, who, &out.decision) {
            out.decision = d;
            return out;
        }
        // resume
        if let Some(approval_id) = &req.approval_id {
            // A DENY of the policy as it stands is not approved away (as in `govern`).
            if mode == Mode::DryRun && out.decision.effect != Effect::Deny {
                let base = Decision { rule_id: None, rule_ref: None, ..out.decision.clone() };
                out.decision = match self.state.approvals.get(approval_id) {
                    Some(a) => {
                        let (d, used) = resume_decision(
                            &base,
                            &a,
                            approval_id,
                            who,
                            self.same_uid_ok(),
                            self.clock.now_ms(),
                        );
                        if used.is_some() {
                            out.not_applied.push("approval_used");
                        }
                        d
                    }
                    None => deny_with(
                        base,
                        ReasonCode::ApprovalDenied,
                        format!("unknown approval `{approval_id}`"),
                        None,
                        None,
                    ),
                };
            }
            return out;
        }
        let Some(profile) = policy.agents.get(&call.agent_id) else {
            return out;
        };
        // rate_limit: fleet-scoped limits from the units this host holds, then the host's own.
        let now_ms = reserved.map_or_else(|| self.clock.now_ms(), fleet_limits::Reserved::at_ms);
        let mut local_fallback: Vec<String> = Vec::new();
        for limit in
            profile.rate_limits.iter().filter(|l| l.tool.matches(&call.tool) && l.op.matches(&call.operation))
        {
            let (Some(c), policy::LimitScope::Fleet { local_when_unavailable, .. }) =
                (fleet_limits::rate_counter(profile, limit, now_ms), limit.scope)
            else {
                continue;
            };
            let name = format!("agents.{}.rate_limit.{}", profile.name, limit.key);
            match self.fleet_unit(reserved, &c.key) {
                fleet_limits::Outcome::Counted => {
                    out.limits.push(fleet_limits::note(&name, "fleet", None));
                    out.spent.push(c.key.clone());
                }
                fleet_limits::Outcome::Unavailable if local_when_unavailable => {
                    out.limits.push(fleet_limits::note(
                        &name,
                        "host",
                        Some("the fleet database is unreachable (on_unavailable: local)"),
                    ));
                    local_fallback.push(limit.key.clone());
                }
                _ if mode == Mode::DryRun => out.not_applied.push("rate_limit"),
                fleet_limits::Outcome::Exceeded => {
                    let retry = c.ends_ms.saturating_sub(now_ms).div_ceil(1000).max(1);
                    let reason = format!(
                        "fleet rate limit `{}` exceeded for agent `{}` across every host; retry in {retry} s",
                        limit.key, profile.name
                    );
                    out.limits.push(fleet_limits::note(&name, "fleet", None));
                    out.decision = deny_with(
                        out.decision,
                        ReasonCode::RateExceeded,
                        reason,
                        Some(format!("agents.{}.rate_limit", profile.name)),
                        Some(Resolution::RetryAfter { retry_after_seconds: retry }),
                    );
                    return out;
                }
                fleet_limits::Outcome::Unavailable => {
                    uncounted(
                        &mut out,
                        &name,
                        ReasonCode::RateExceeded,
                        format!("fleet rate limit `{}` of agent `{}`", limit.key, profile.name),
                        format!("agents.{}.rate_limit", profile.name),
                    );
                    return out;
                }
            }
        }
        let host_counted =
            |l: &policy::RateLimit| l.scope == policy::LimitScope::Host || local_fallback.contains(&l.key);
        if let Err(hit) =
            self.state.rate.check(profile, call, mode == Mode::Apply, self.clock.monotonic(), host_counted)
        {
            let reason = format!(
                "rate limit `{}` exceeded for agent `{}`; retry in {} s",
                hit.key, profile.name, hit.retry_after_seconds
            );
            let resolution = Resolution::RetryAfter { retry_after_seconds: hit.retry_after_seconds };
            out.decision = deny_with(
                out.decision,
                ReasonCode::RateExceeded,
                reason,
                Some(format!("agents.{}.rate_limit", profile.name)),
                Some(resolution),
            );
            return out;
        }
        if mode == Mode::DryRun
            && profile.rate_limits.iter().any(|l| l.tool.matches(&call.tool) && l.op.matches(&call.operation))
        {
            out.not_applied.push("rate_limit");
        }
        // budget
        if let Some(budget) = &profile.budget {
            let name = format!("agents.{}.budget", profile.name);
            let fleet = match (budget.scope, fleet_limits::budget_counter(profile, call, now_ms)) {
                (policy::LimitScope::Fleet { local_when_unavailable, .. }, Some(c)) => {
                    let o = self.fleet_unit(reserved, &c.key);
                    if o == fleet_limits::Outcome::Counted {
                        out.spent.push(c.key);
                    }
                    Some((o, local_when_unavailable))
                }
                _ => None,
            };
            let counted = match fleet {
                None => self.budget_check(profile, budget, call, mode == Mode::Apply).map(Some),
                Some((fleet_limits::Outcome::Counted, _)) => {
                    out.limits.push(fleet_limits::note(&name, "fleet", None));
                    Ok(None)
                }
                Some((fleet_limits::Outcome::Unavailable, true)) => {
                    out.limits.push(fleet_limits::note(
                        &name,
                        "host",
                        Some("the fleet database is unreachable (on_unavailable: local)"),
                    ));
                    self.budget_check(profile, budget, call, mode == Mode::Apply).map(Some)
                }
                Some(_) if mode == Mode::DryRun => Ok(None),
                Some((fleet_limits::Outcome::Exceeded, _)) => {
                    out.limits.push(fleet_limits::note(&name, "fleet", None));
                    Err(BudgetRefusal::Exceeded(limits::period_of(budget, call, now_ms).1))
                }
                Some((fleet_limits::Outcome::Unavailable, false)) => {
                    let what = format!("the fleet budget of agent `{}`", profile.name);
                    uncounted(&mut out, &name, ReasonCode::BudgetExceeded, what, name.clone());
                    return out;
                }
            };
            match counted {
                Ok(Some(w)) if mode == Mode::Apply => out.writes = Some(w),
                Ok(Some(_)) => out.not_applied.push("budget"),
                Ok(None) => {}
                Err(BudgetRefusal::Internal(why)) => out.decision = internal_error(out.decision, why),
                Err(BudgetRefusal::Exceeded(resets_at)) => {
                    let reason = format!(
                        "budget of {} calls for agent `{}` is used up{}",
                        budget.max_calls,
                        profile.name,
                        resets_at.as_ref().map(|r| format!(" until {r}")).unwrap_or_default()
                    );
                    let rule_id = Some(format!("agents.{}.budget", profile.name));
                    out.decision = if budget.on_exceed == Effect::Defer {
                        let mut d = policy::defer_decision(out.decision, ReasonCode::BudgetExceeded, reason);
                        d.rule_id = rule_id;
                        d
                    } else {
                        let resolution = Resolution::BudgetReset { resets_at: resets_at.unwrap_or_default() };
                        deny_with(out.decision, ReasonCode::BudgetExceeded, reason, rule_id, Some(resolution))
                    };
                }
            }
        }
        out
    }

    /// Decides a call and records it (durable before this returns).
    pub async fn govern(&self, req: CallRequest, who: &Identity) -> Result<GovernReply, ServiceError> {
        Self::check_agent_binding(who, &req.call.agent_id)?;
        let loaded = self.state.policy.load_full();
        let policy = &loaded.policy;
        // Units of fleet-scoped limits are reserved (from the fleet database when this host holds
        // none) before the decision; those the decision did not spend are given back.
        let reserved = self.lease_fleet_units(policy, &req.call).await;
        let decide_started = std::time::Instant::now();
        let Staged { decision, writes, limits: counted, spent, .. } =
            self.run_stages(policy, &req, who, Mode::Apply, Some(&reserved));
        self.give_back(reserved, &spent);
        self.state.metrics.observe_decide(decide_started.elapsed());
        let CallRequest { call, approval_id: resume, .. } = req;
        // An approval resumes a call the policy would still defer (or permit), never one it now
        // denies (a rule added since, an `after:` that now holds): that DENY is recorded as is.
        if let Some(approval_id) = resume
            && decision.effect != Effect::Deny
            && !matches!(
                decision.reason_code,
                ReasonCode::InvalidRequest
                    | ReasonCode::ProfileDisallowsTool
                    | ReasonCode::AgentIdentityMismatch
                    | ReasonCode::KillSwitch
                    | ReasonCode::PolicyStale
            )
        {
            return Ok(self.resume(&call, decision, &approval_id, who).await);
        }
        let mut decision = decision;
        let mut approval = None;
        if decision.effect == Effect::Defer {
            let approval_id = dpr::new_id();
            let now = self.clock.now_ms();
            let expires_ms = now + policy.approvals.expire_after_seconds * 1000;
            if let Some(denial) = decision.structured_denial.as_mut() {
                denial.resolution =
                    Some(Resolution::PendingApproval { approval_id: Some(approval_id.clone()) });
            }
            approval = Some(Approval {
                approval_id,
                action_id: String::new(),
                status: approvals::Status::Pending,
                agent_id: call.agent_id.clone(),
                tool: call.tool.clone(),
                operation: call.operation.clone(),
                request_hash: decision.request_hash.clone(),
                rule_id: decision.rule_id.clone(),
                reason_code: decision.reason_code,
                created_at: entry::rfc3339(now),
                expires_at: entry::rfc3339(expires_ms),
                expires_ms,
                requested_by: who.caller(),
                decided_by: None,
                reason: None,
                edit: None,
                approvals_required: policy.approvals_required(decision.rule_id.as_deref()),
                signatures: Vec::new(),
            });
        }
        if approval.is_some() {
            // A new approval joins the book once its DEFER entry commits: that runs to the end
            // even if the caller goes away, so a committed approval is never missing from memory.
            let (svc, who) = (self.clone(), who.clone());
            return claims::detached(async move {
                Ok(svc.record(&call, decision, &who, None, approval, writes, counted).await)
            })
            .await;
        }
        Ok(self.record(&call, decision, who, None, approval, writes, counted).await)
    }

    /// The same decision as [`Service::govern`], through the same stages, written nowhere: what
    /// `govern` would have applied is listed in `not_applied` (`rate_limit`, `budget`,
    /// `approval_used`, `approval_created`).
    pub fn decide(&self, req: &CallRequest, who: &Identity) -> Result<GovernReply, ServiceError> {
        Self::check_agent_binding(who, &req.call.agent_id)?;
        let loaded = self.state.policy.load_full();
        let started = std::time::Instant::now();
        let Staged { decision, mut not_applied, .. } =
            self.run_stages(&loaded.policy, req, who, Mode::DryRun, None);
        self.state.metrics.observe_decide(started.elapsed());
        let decision = crate::permit::checked(decision);
        if decision.effect == Effect::Defer && req.approval_id.is_none() {
            not_applied.push("approval_created");
        }
        Ok(GovernReply {
            decision,
            action_id: None,
            approval_id: None,
            not_applied: Some(not_applied),
            check_result: false,
        })
    }

    /// Counts the call against the agent's budget.
    pub(super) fn budget_check(
        &self,
        profile: &policy::Profile,
        budget: &policy::Budget,
        call: &Call,
        apply: bool,
    ) -> Result<StateWrites, BudgetRefusal> {
        let (period, resets_at) = limits::period_of(budget, call, self.clock.now_ms());
        let key = limits::budget_key(&profile.name, &period);
        let Ok(mut counts) = self.state.budgets.lock() else {
            return Err(BudgetRefusal::Internal("budget counters unavailable".into()));
        };
        if counts.len() >= BUDGET_CACHE_ENTRIES && !counts.contains_key(&key) {
            // The map is a cache of the stored counters: forget those untouched for a minute
            // (their last increment is long durable, so a reload reads the true count).
            let now = self.clock.monotonic();
            counts
                .retain(|_, (_, touched)| now.duration_since(*touched) < std::time::Duration::from_secs(60));
        }
        let entry = match counts.get_mut(&key) {
            Some(c) => c,
            None => {
                // A stored count that cannot be read must not restart the budget from 0.
                let stored = match self.state.log.state_get(&key) {
                    Ok(None) => 0,
                    Ok(Some(bytes)) => {
                        String::from_utf8(bytes).ok().and_then(|s| s.parse::<u64>().ok()).ok_or_else(
                            || BudgetRefusal::Internal(format!("budget counter `{key}` is unreadable")),
                        )?
                    }
                    Err(e) => {
                        return Err(BudgetRefusal::Internal(format!(
                            "cannot read budget counter `{key}`: {e}"
                        )));
                    }
                };
                counts.entry(key.clone()).or_insert((stored, self.clock.monotonic()))
            }
        };
        entry.1 = self.clock.monotonic();
        let count = &mut entry.0;
        if *count >= budget.max_calls {
            return Err(BudgetRefusal::Exceeded(resets_at));
        }
        if !apply {
            return Ok(Box::new(|_, _| Vec::new()));
        }
        *count += 1;
        let value = count.to_string().into_bytes();
        Ok(Box::new(move |_, _| vec![(key, Some(value))]))
    }

    /// A call re-sent with `approval_id`: PERMIT `APPROVAL_GRANTED` only for an approved,
    /// unexpired, unused approval of exactly this call.
    pub(super) async fn resume(
        &self,
        call: &Call,
        evaluated: Decision,
        approval_id: &str,
        who: &Identity,
    ) -> GovernReply {
        let base = Decision { rule_id: None, rule_ref: None, ..evaluated };
        let outcome = {
            let (base, call, who, approval_id) =
                (base.clone(), call.clone(), who.clone(), approval_id.to_owned());
            self.with_approval(&approval_id.clone(), move |svc: Service, a: Approval| async move {
                let (same_uid_ok, now_ms) = (svc.same_uid_ok(), svc.clock.now_ms());
                let (decision, used) = resume_decision(&base, &a, &approval_id, &who, same_uid_ok, now_ms);
                let (decision, used, writes) =
                    match used.as_ref().map(|u| approvals::state_write(u, false)).transpose() {
                        Ok(writes) => (decision, used, writes),
                        // Not applied: the approval stays as it was and the call is refused.
                        Err(e) => (internal_error(decision, e.message), None, None),
                    };
                let reply =
                    svc.record(&call, decision, &who, Some(&approval_id), None, writes, Vec::new()).await;
                let committed = reply.action_id.is_some();
                (used.filter(|_| committed), reply)
            })
            .await
        };
        match outcome {
            Ok(reply) => reply,
            Err(e) if e.kind == ErrorKind::NotFound => {
                let d = deny_with(
                    base,
                    ReasonCode::ApprovalDenied,
                    format!("unknown approval `{approval_id}`"),
                    None,
                    None,
                );
                self.record(call, d, who, Some(approval_id), None, None, Vec::new()).await
            }
            Err(e) => {
                self.record(
                    call,
                    internal_error(base, e.message),
                    who,
                    Some(approval_id),
                    None,
                    None,
                    Vec::new(),
                )
                .await
            }
        }
    }
}

/// A fleet-scoped limit that could not be counted, under `on_unavailable: deny`: the call is
/// DENY `code` (retry in a second), and the DPR's `limits` says so.
fn uncounted(out: &mut Staged, name: &str, code: ReasonCode, what: String, rule_id: String) {
    const WHY: &str = "the fleet database is unreachable (on_unavailable: deny)";
    out.limits.push(fleet_limits::note(name, "unavailable", Some(WHY)));
    out.decision = deny_with(
        out.decision.clone(),
        code,
        format!("{what} cannot be counted: {WHY}"),
        Some(rule_id),
        Some(Resolution::RetryAfter { retry_after_seconds: 1 }),
    );
}
