//! The transport-free core: govern, decide, approvals, the action lifecycle and log queries,
//! on typed requests, for a caller whose identity is a value passed in. The socket
//! (`server::rpc`) and HTTP (`server::http`) are thin mappings onto this; neither repeats a
//! check made here.
//!
//! Every write goes through [`Service::commit`]; a decision whose entry cannot be committed is
//! answered DENY `INTERNAL_ERROR` ([`Service::record`]). No lock is held across a commit.

pub mod approvals;
pub mod authz;
pub mod claims;
pub mod limits;
pub mod logins;
pub mod metrics;
pub mod request;
pub mod retention;
pub mod state;

use std::sync::Arc;

use faramesh_proto::{Call, Decision, Effect, ReasonCode, Resolution, canonical_json};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value, json};

pub use request::{CallRequest, Fields, ListQuery, PruneRequest, Transition};

use crate::log::dpr::{self, Caller, PeerCred};
use crate::log::index::Term;
use crate::log::{Appended, LogError, StateWrites, entry};

/// Budget counters kept in memory before those untouched for a minute are forgotten.
const BUDGET_CACHE_ENTRIES: usize = 4096;

/// Most entries an action listing reads when no indexed filter narrows it (a text search or a
/// status alone): the newest ones.
pub const UNINDEXED_SCAN: usize = 200_000;
use crate::policy;
use approvals::Approval;
use state::State;

/// What kind of failure a [`ServiceError`] is; each door maps it to its own code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Missing or mistyped request field (socket -32602, HTTP 422).
    InvalidParams,
    /// The caller may not do this (socket -32001, HTTP 403).
    NotAuthorized,
    /// No such action, approval or entry (socket -32002, HTTP 404).
    NotFound,
    /// Wrong state, or an ambiguous id prefix (socket -32003, HTTP 409).
    Conflict,
    /// Something failed inside the daemon (socket -32603, HTTP 500).
    Internal,
}

/// A request the service refused, with a one-line message and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// For a person.
    pub message: String,
    /// The request field at fault, if one is.
    pub field: Option<String>,
}

impl ServiceError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> ServiceError {
        ServiceError { kind, message: message.into(), field: None }
    }

    /// A bad value in `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
        ServiceError {
            kind: ErrorKind::InvalidParams,
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    /// `field` is required.
    pub fn missing(field: &str) -> ServiceError {
        ServiceError::invalid(field, format!("missing field `{field}`"))
    }

    /// Not allowed.
    pub fn not_authorized(message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorKind::NotAuthorized, message)
    }

    /// No such thing.
    pub fn not_found(message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorKind::NotFound, message)
    }

    /// Wrong state.
    pub fn conflict(message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorKind::Conflict, message)
    }

    /// Internal failure.
    pub fn internal(message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorKind::Internal, message)
    }
}

impl From<faramesh_proto::CallError> for ServiceError {
    fn from(e: faramesh_proto::CallError) -> ServiceError {
        ServiceError::invalid(&e.field, e.message)
    }
}

impl From<LogError> for ServiceError {
    fn from(e: LogError) -> ServiceError {
        match e {
            // A prune refused for what the log holds, not a failure.
            LogError::NotExported { .. } | LogError::PruneRunning => ServiceError::conflict(e.to_string()),
            other => ServiceError::internal(other.to_string()),
        }
    }
}

/// What an HTTP bearer token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// An HTTP caller, identified by its token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    /// The token's name, or `sha256:` + 12 hex characters of its hash.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The agent ids it may act for (`None`: any).
    pub agents: Option<Vec<String>>,
}

/// A Unix-socket peer as the kernel described it when the connection was accepted: its
/// credentials (SO_PEERCRED) and supplementary groups (SO_PEERGROUPS). Never re-read later (a
/// pid can be recycled by another process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// uid, primary gid and pid.
    pub cred: PeerCred,
    /// Supplementary group ids (shared: the identity is cloned for every request).
    pub groups: Arc<[u32]>,
}

impl Peer {
    /// A peer with no supplementary groups.
    pub fn new(cred: PeerCred) -> Peer {
        Peer { cred, groups: Arc::from([]) }
    }

    /// Whether the peer is in group `gid` (primary or supplementary).
    pub fn in_group(&self, gid: u32) -> bool {
        self.cred.gid == gid || self.groups.contains(&gid)
    }
}

impl std::ops::Deref for Peer {
    type Target = PeerCred;
    fn deref(&self) -> &PeerCred {
        &self.cred
    }
}

/// Who is asking: the kernel's word for a socket peer, or a bearer token's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A Unix-socket peer.
    Peer(Peer),
    /// An HTTP caller.
    Token(TokenIdentity),
    /// A socket peer whose credentials could not be read.
    Unknown,
    /// A tokenless HTTP caller on a loopback listener with no token configured: an agent that
    /// submits calls and reads back its actions by id, never lists, streams or approves.
    Anonymous,
}

/// How a tokenless loopback caller is recorded (`caller.token`).
pub const ANONYMOUS: &str = "anonymous:loopback";

impl Identity {
    /// As recorded in DPRs and approvals.
    pub fn caller(&self) -> Option<Caller> {
        match self {
            Identity::Peer(p) => Some(Caller::Peer(p.cred)),
            Identity::Token(t) => Some(Caller::Token(dpr::TokenCaller {
                token: t.name.clone(),
                role: t.role.as_str().to_owned(),
            })),
            Identity::Unknown => None,
            Identity::Anonymous => Some(Caller::Token(dpr::TokenCaller {
                token: ANONYMOUS.to_owned(),
                role: "agent".to_owned(),
            })),
        }
    }

    fn peer(&self) -> Option<PeerCred> {
        match self {
            Identity::Peer(p) => Some(p.cred),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Identity::Peer(p) => format!("uid {}", p.uid),
            Identity::Token(t) => format!("token `{}`", t.name),
            Identity::Unknown => "uid unknown".to_owned(),
            Identity::Anonymous => "an unauthenticated loopback caller".to_owned(),
        }
    }
}

/// Where an action stands.
///
/// JSON (v1 names): `allowed | denied | pending_approval | approved | executing | succeeded |
/// failed`. The socket's `action.get` keeps its names `permitted` and `deferred` for the first
/// and third ([`ActionStatus::socket_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionStatus {
    /// PERMIT by a rule.
    Allowed,
    /// DENY, or a deferred call whose approval was denied or expired.
    Denied,
    /// DEFER, waiting for a person.
    PendingApproval,
    /// A person approved it (or it is the PERMIT `APPROVAL_GRANTED` of a resumed call).
    Approved,
    /// Started.
    Executing,
    /// Ran and succeeded.
    Succeeded,
    /// Ran and failed.
    Failed,
}

impl ActionStatus {
    /// Every v1 name, for error messages.
    pub const ALL_NAMES: [&'static str; 7] =
        ["allowed", "denied", "pending_approval", "approved", "executing", "succeeded", "failed"];

    /// The v1 name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Allowed => "allowed",
            ActionStatus::Denied => "denied",
            ActionStatus::PendingApproval => "pending_approval",
            ActionStatus::Approved => "approved",
            ActionStatus::Executing => "executing",
            ActionStatus::Succeeded => "succeeded",
            ActionStatus::Failed => "failed",
        }
    }

    /// The socket's name (`permitted`, `deferred`, otherwise the v1 name).
    pub fn socket_name(self) -> &'static str {
        match self {
            ActionStatus::Allowed => "permitted",
            ActionStatus::PendingApproval => "deferred",
            other => other.as_str(),
        }
    }

    /// Reads a v1 or socket name.
    pub fn parse(name: &str) -> Option<ActionStatus> {
        Some(match name {
            "allowed" | "permitted" => ActionStatus::Allowed,
            "denied" => ActionStatus::Denied,
            "pending_approval" | "deferred" => ActionStatus::PendingApproval,
            "approved" => ActionStatus::Approved,
            "executing" => ActionStatus::Executing,
            "succeeded" => ActionStatus::Succeeded,
            "failed" => ActionStatus::Failed,
            _ => return None,
        })
    }
}

impl Serialize for ActionStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

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
}

impl GovernReply {
    /// The reply object both doors send.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(&self.decision).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut v {
            map.insert("action_id".into(), json!(self.action_id));
            map.insert("defer_token".into(), json!(self.approval_id));
            map.insert("approval_id".into(), json!(self.approval_id));
        }
        v
    }
}

/// An action as read from the log: its DPR and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionView {
    /// The DPR as stored.
    pub record: Value,
    /// Its state now.
    pub status: ActionStatus,
}

impl ActionView {
    /// The action id.
    pub fn id(&self) -> &str {
        self.record.get("id").and_then(Value::as_str).unwrap_or_default()
    }

    /// A text field of the DPR.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.record.get(key).and_then(Value::as_str)
    }
}

/// The shared core. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Service {
    state: Arc<State>,
    /// Action ids in a lifecycle transition.
    action_claims: Arc<claims::Claims>,
}

/// Fail closed: any internal problem turns the answer into DENY `INTERNAL_ERROR`.
fn internal_error(d: Decision, why: String) -> Decision {
    let (rule_id, rule_ref) = (d.rule_id.clone(), d.rule_ref.clone());
    policy::deny_decision(d, ReasonCode::InternalError, why, rule_id, rule_ref, None)
}

/// A DENY keeping the decision's rule unless `rule_id` names another.
fn deny_with(
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
fn identity_mismatch(policy: &policy::Policy, call: &Call, who: &Identity, d: &Decision) -> Option<Decision> {
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

fn join_writes(a: Option<StateWrites>, b: Option<StateWrites>) -> Option<StateWrites> {
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

fn record_value(record: &str) -> Value {
    serde_json::from_str(record).unwrap_or(Value::Null)
}

impl Service {
    /// The core over the daemon's state.
    pub fn new(state: Arc<State>) -> Service {
        Service { state, action_claims: Arc::default() }
    }

    /// The daemon's state (policy, log, counters).
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Appends one entry (with state rows): the one write path of every writer.
    pub async fn commit(
        &self,
        body: Map<String, Value>,
        writes: Option<StateWrites>,
    ) -> Result<Appended, ServiceError> {
        self.state.log.append_with_state(body, writes).await.map_err(|e| {
            tracing::error!(error = %e, "entry not recorded");
            ServiceError::internal(format!("the decision could not be recorded: {e}"))
        })
    }

    /// Records a decision and turns it into the reply: DENY `INTERNAL_ERROR` (no action id) when
    /// the entry cannot be committed. `approval` (a new pending one) is added to the book once
    /// committed.
    async fn record(
        &self,
        call: &Call,
        decision: Decision,
        who: &Identity,
        approval_ref: Option<&str>,
        new_approval: Option<Approval>,
        writes: Option<StateWrites>,
    ) -> GovernReply {
        let started = std::time::Instant::now();
        let approval_id = new_approval.as_ref().map(|a| a.approval_id.clone());
        let body = dpr::decision_entry(
            call,
            &decision,
            who.caller(),
            approval_ref.or(approval_id.as_deref()),
            self.state.log.redact_keys(),
        );
        let writes = join_writes(writes, new_approval.as_ref().map(|a| approvals::state_write(a, true)));
        let reply = match self.commit(body, writes).await {
            Ok(appended) => {
                if let Some(mut a) = new_approval {
                    a.action_id = appended.id.clone().unwrap_or_default();
                    self.state.approvals.insert(a);
                }
                let keep_approval = decision.effect == Effect::Defer;
                let approval_id =
                    if keep_approval { approval_id.or(approval_ref.map(str::to_owned)) } else { None };
                GovernReply { decision, action_id: appended.id, approval_id }
            }
            Err(e) => GovernReply {
                decision: internal_error(decision, e.message),
                action_id: None,
                approval_id: None,
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

    /// A token bound to agent ids may act only for them.
    fn check_agent_binding(who: &Identity, agent_id: &str) -> Result<(), ServiceError> {
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

    /// Decides a call and records it (durable before this returns).
    pub async fn govern(&self, req: CallRequest, who: &Identity) -> Result<GovernReply, ServiceError> {
        Self::check_agent_binding(who, &req.call.agent_id)?;
        let loaded = self.state.policy.load_full();
        let policy = &loaded.policy;
        let decide_started = std::time::Instant::now();
        let mut decision = policy::decide_request(policy, &req);
        self.state.metrics.observe_decide(decide_started.elapsed());
        let CallRequest { call, approval_id: resume, .. } = req;
        let mut writes: Option<StateWrites> = None;
        let refused_early =
            matches!(decision.reason_code, ReasonCode::InvalidRequest | ReasonCode::ProfileDisallowsTool);
        if !refused_early {
            if let Some(d) = identity_mismatch(policy, &call, who, &decision) {
                decision = d;
            } else if let Some(approval_id) = resume {
                return Ok(self.resume(&call, decision, &approval_id, who).await);
            } else if let Some(profile) = policy.agents.get(&call.agent_id) {
                if let Err(hit) = self.state.rate.check(profile, &call) {
                    let reason = format!(
                        "rate limit `{}` exceeded for agent `{}`; retry in {} s",
                        hit.key, profile.name, hit.retry_after_seconds
                    );
                    let resolution = Resolution::RetryAfter { retry_after_seconds: hit.retry_after_seconds };
                    decision = deny_with(
                        decision,
                        ReasonCode::RateExceeded,
                        reason,
                        Some(format!("agents.{}.rate_limit", profile.name)),
                        Some(resolution),
                    );
                } else if let Some(budget) = &profile.budget {
                    match self.budget_check(profile, budget, &call) {
                        Ok(w) => writes = Some(w),
                        Err(BudgetRefusal::Internal(why)) => decision = internal_error(decision, why),
                        Err(BudgetRefusal::Exceeded(resets_at)) => {
                            let reason = format!(
                                "budget of {} calls for agent `{}` is used up{}",
                                budget.max_calls,
                                profile.name,
                                resets_at.as_ref().map(|r| format!(" until {r}")).unwrap_or_default()
                            );
                            let rule_id = Some(format!("agents.{}.budget", profile.name));
                            decision = if budget.on_exceed == Effect::Defer {
                                let mut d =
                                    policy::defer_decision(decision, ReasonCode::BudgetExceeded, reason);
                                d.rule_id = rule_id;
                                d
                            } else {
                                let resolution =
                                    Resolution::BudgetReset { resets_at: resets_at.unwrap_or_default() };
                                deny_with(
                                    decision,
                                    ReasonCode::BudgetExceeded,
                                    reason,
                                    rule_id,
                                    Some(resolution),
                                )
                            };
                        }
                    }
                }
            }
        }
        let mut approval = None;
        if decision.effect == Effect::Defer {
            let approval_id = dpr::new_id();
            let now = entry::now_ms();
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
                reason_code: decision.reason_code.as_str().to_owned(),
                created_at: entry::rfc3339(now),
                expires_at: entry::rfc3339(expires_ms),
                expires_ms,
                requested_by: who.caller(),
                decided_by: None,
                reason: None,
            });
        }
        if approval.is_some() {
            // A new approval joins the book once its DEFER entry commits: that runs to the end
            // even if the caller goes away, so a committed approval is never missing from memory.
            let (svc, who) = (self.clone(), who.clone());
            return claims::detached(async move {
                Ok(svc.record(&call, decision, &who, None, approval, writes).await)
            })
            .await;
        }
        Ok(self.record(&call, decision, who, None, approval, writes).await)
    }

    /// The same decision as [`Service::govern`], written nowhere.
    pub fn decide(&self, req: &CallRequest, who: &Identity) -> Result<GovernReply, ServiceError> {
        Self::check_agent_binding(who, &req.call.agent_id)?;
        let loaded = self.state.policy.load_full();
        let started = std::time::Instant::now();
        let decision = policy::decide_request(&loaded.policy, req);
        self.state.metrics.observe_decide(started.elapsed());
        let decision = identity_mismatch(&loaded.policy, &req.call, who, &decision).unwrap_or(decision);
        Ok(GovernReply { decision, action_id: None, approval_id: None })
    }

    /// Counts the call against the agent's budget.
    fn budget_check(
        &self,
        profile: &policy::Profile,
        budget: &policy::Budget,
        call: &Call,
    ) -> Result<StateWrites, BudgetRefusal> {
        let (period, resets_at) = limits::period_of(budget, call, entry::now_ms());
        let key = limits::budget_key(&profile.name, &period);
        let Ok(mut counts) = self.state.budgets.lock() else {
            return Err(BudgetRefusal::Internal("budget counters unavailable".into()));
        };
        if counts.len() >= BUDGET_CACHE_ENTRIES && !counts.contains_key(&key) {
            // The map is a cache of the stored counters: forget those untouched for a minute
            // (their last increment is long durable, so a reload reads the true count).
            let now = std::time::Instant::now();
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
                counts.entry(key.clone()).or_insert((stored, std::time::Instant::now()))
            }
        };
        entry.1 = std::time::Instant::now();
        let count = &mut entry.0;
        if *count >= budget.max_calls {
            return Err(BudgetRefusal::Exceeded(resets_at));
        }
        *count += 1;
        let value = count.to_string().into_bytes();
        Ok(Box::new(move |_, _| vec![(key, Some(value))]))
    }

    /// Marks a claimed pending approval whose time is up as expired (recorded).
    async fn expire_claimed(&self, a: Approval) -> Result<Approval, ServiceError> {
        if a.status != approvals::Status::Pending || entry::now_ms() <= a.expires_ms {
            return Ok(a);
        }
        let mut expired = a;
        expired.status = approvals::Status::Expired;
        let body = approvals::transition_entry(&expired, None);
        self.commit(body, Some(approvals::state_write(&expired, false))).await?;
        Ok(expired)
    }

    /// Claims an approval, applies a due expiry, runs `f` (which may commit), releases it with
    /// what `f` returns. All of it runs in a task of its own ([`claims::detached`]): a caller
    /// that goes away leaves no claim behind and no commit unapplied to memory.
    async fn with_approval<T, F, Fut>(&self, id: &str, f: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(Service, Approval) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = (Option<Approval>, T)> + Send + 'static,
    {
        let svc = self.clone();
        let id = id.to_owned();
        claims::detached(async move {
            let book = &svc.state.approvals;
            let Some((claim, claimed)) = book.claim(&id).await else {
                return Err(ServiceError::not_found(format!("no approval `{id}`")));
            };
            let before = claimed.clone();
            // On an error the claim is dropped: the approval is freed unchanged.
            let current = svc.expire_claimed(claimed).await?;
            let expired = (current != before).then(|| current.clone());
            let (updated, out) = f(svc.clone(), current).await;
            book.release(claim, updated.or(expired));
            Ok(out)
        })
        .await
    }

    /// A call re-sent with `approval_id`: PERMIT `APPROVAL_GRANTED` only for an approved,
    /// unexpired, unused approval of exactly this call.
    async fn resume(
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
                let (decision, used) = resume_decision(&base, &a, &approval_id, &who);
                let writes = used.as_ref().map(|u| approvals::state_write(u, false));
                let reply = svc.record(&call, decision, &who, Some(&approval_id), None, writes).await;
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
                self.record(call, d, who, Some(approval_id), None, None).await
            }
            Err(e) => {
                self.record(call, internal_error(base, e.message), who, Some(approval_id), None, None).await
            }
        }
    }

    /// Resolves an approval id or unique 8+ prefix.
    /// Takes what a person copied from `pending`, `list` or the dashboard: an approval id, the
    /// deferred action's id, or a unique prefix (8+ characters) of either.
    pub fn resolve_approval(&self, id: &str) -> Result<String, ServiceError> {
        let by_action = || -> Result<Option<String>, ServiceError> {
            let rec = match self.find_action_record(id) {
                Ok(rec) => rec,
                Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            match rec.get("approval_id").and_then(Value::as_str) {
                Some(a) if rec.get("effect").and_then(Value::as_str) == Some("DEFER") => {
                    Ok(Some(a.to_owned()))
                }
                _ => Err(ServiceError::conflict(format!(
                    "action `{}` is {}: it awaits no approval",
                    rec.get("id").and_then(Value::as_str).unwrap_or(id),
                    self.action_status(&rec).socket_name()
                ))),
            }
        };
        match self.state.approvals.resolve(id) {
            Ok(full) if full == id => Ok(full),
            // A prefix: unique only if it names no other deferred action.
            Ok(full) => match by_action() {
                Ok(Some(other)) if other != full => Err(ServiceError::conflict(format!(
                    "id prefix `{id}` is ambiguous: approval {full} and the action awaiting approval {other}"
                ))),
                _ => Ok(full),
            },
            Err(Some(many)) => Err(ServiceError::conflict(format!(
                "approval id prefix `{id}` is ambiguous: {}",
                many.join(", ")
            ))),
            Err(None) => by_action()?
                .ok_or_else(|| ServiceError::not_found(format!("no approval or deferred action `{id}`"))),
        }
    }

    /// Expires every pending approval whose time is up.
    async fn expire_due(&self) -> Result<(), ServiceError> {
        let now = entry::now_ms();
        let due: Vec<String> = self
            .state
            .approvals
            .all()
            .into_iter()
            .filter(|a| a.status == approvals::Status::Pending && now > a.expires_ms)
            .map(|a| a.approval_id)
            .collect();
        for id in due {
            self.with_approval(&id, |_, _| async { (None, ()) }).await?;
        }
        Ok(())
    }

    /// Pending approvals (or all), oldest first: those `who` may see (everything for those who
    /// read everything, else the caller's own deferred calls).
    pub async fn approval_list(&self, all: bool, who: &Identity) -> Result<Vec<Approval>, ServiceError> {
        self.expire_due().await?;
        let book = &self.state.approvals;
        let everything = self.reads_everything(who);
        let mut list: Vec<Approval> = if all { book.everything() } else { book.all() }
            .into_iter()
            .filter(|a| all || a.status == approvals::Status::Pending)
            .filter(|a| everything || authz::made_the_call(a, who))
            .collect();
        list.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(list)
    }

    /// Approves or denies a pending approval.
    pub async fn approval_decide(
        &self,
        id: &str,
        approve: bool,
        reason: Option<String>,
        who: &Identity,
    ) -> Result<Approval, ServiceError> {
        if !self.may_approve(who) {
            return Err(ServiceError::not_authorized(match who {
                Identity::Token(t) => format!("not authorized: token `{}` is not an approver token", t.name),
                other => format!(
                    "not authorized: {} is not an approver (root, the daemon's uid {}, or `approvals.approvers`)",
                    other.describe(),
                    self.state.own_uid
                ),
            }));
        }
        let id = self.resolve_approval(id)?;
        let who = who.clone();
        self.with_approval(&id.clone(), move |svc: Service, current: Approval| async move {
            let allow_same_uid =
                svc.state.policy.load().policy.approvals.allow_same_uid || svc.state.single_user_now();
            let refusal = match (&current.requested_by, &who) {
                // Root is beyond any gate on its host; everyone else is told apart by uid.
                (_, Identity::Peer(p)) if p.uid == 0 => None,
                (Some(Caller::Peer(req)), Identity::Peer(p)) if req.pid == p.pid => {
                    Some("not authorized: an agent cannot approve its own call".to_owned())
                }
                (Some(Caller::Peer(req)), Identity::Peer(p)) if req.uid == p.uid && !allow_same_uid => Some(format!(
                    "not authorized: uid {} made this call and may not approve it; approve from another uid or \
                     root, or set `approvals: {{ allow_same_uid: true }}` in the policy",
                    p.uid
                )),
                (Some(Caller::Token(req)), Identity::Token(t)) if req.token == t.name => {
                    Some("not authorized: an agent cannot approve its own call".to_owned())
                }
                _ => None,
            };
            if let Some(why) = refusal {
                return (None, Err(ServiceError::not_authorized(why)));
            }
            if current.status != approvals::Status::Pending {
                return (
                    None,
                    Err(ServiceError::conflict(format!(
                        "approval `{id}` is already {}",
                        current.status.as_str()
                    ))),
                );
            }
            let mut next = current;
            next.status = if approve { approvals::Status::Approved } else { approvals::Status::Denied };
            next.decided_by = who.caller();
            next.reason = reason;
            let body = approvals::transition_entry(&next, who.caller().as_ref());
            match svc.commit(body, Some(approvals::state_write(&next, false))).await {
                Ok(_) => (Some(next.clone()), Ok(next)),
                Err(e) => (None, Err(e)),
            }
        })
        .await?
    }

    /// Approves or denies the pending approval of a deferred action, by the action's id (the v1
    /// API and the dashboard). `approval_token`, when given, must be that approval's id.
    pub async fn approve_action(
        &self,
        action_id: &str,
        approve: bool,
        reason: Option<String>,
        approval_token: Option<&str>,
        who: &Identity,
    ) -> Result<ActionView, ServiceError> {
        if !self.may_approve(who) {
            return Err(ServiceError::not_authorized(format!(
                "not authorized: {} may not approve or deny",
                who.describe()
            )));
        }
        let view = self.find_action(action_id, who)?;
        let approval_id = match view.text("approval_id") {
            Some(a) if view.text("effect") == Some("DEFER") => a.to_owned(),
            _ => {
                return Err(ServiceError::conflict(format!(
                    "action `{}` is {}: it awaits no approval",
                    view.id(),
                    view.status.as_str()
                )));
            }
        };
        if approval_token.is_some_and(|t| t != approval_id) {
            return Err(ServiceError::invalid("token", "`token` does not match this action's approval"));
        }
        self.approval_decide(&approval_id, approve, reason, who).await?;
        self.find_action(view.id(), who)
    }

    /// Waits until the approval is decided or expires, or `timeout` passes: `(approval,
    /// timed_out)`.
    pub async fn approval_wait(
        &self,
        id: &str,
        timeout: std::time::Duration,
    ) -> Result<(Approval, bool), ServiceError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let id = self.resolve_approval(id)?;
        loop {
            let notified = self.state.approvals.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let Some(mut current) = self.state.approvals.get(&id) else {
                return Err(ServiceError::not_found(format!("no approval `{id}`")));
            };
            if current.status == approvals::Status::Pending && entry::now_ms() > current.expires_ms {
                // Due: claim it so the expiry is recorded once.
                current = self.with_approval(&id, |_, a: Approval| async move { (None, a) }).await?;
            }
            if current.status != approvals::Status::Pending {
                return Ok((current, false));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok((current, true));
            }
            let until_expiry = current.expires_ms.saturating_sub(entry::now_ms()) + 5;
            let wake = deadline.min(now + std::time::Duration::from_millis(until_expiry));
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Where an action stands: its lifecycle row, else its decision (and, for a DEFER, its
    /// approval).
    pub fn action_status(&self, rec: &Value) -> ActionStatus {
        let id = rec.get("id").and_then(Value::as_str).unwrap_or_default();
        if let Some(s) = self
            .state
            .log
            .state_get(&format!("action/{id}"))
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice::<Value>(&v).ok())
            .and_then(|v| v.get("status").and_then(Value::as_str).and_then(ActionStatus::parse))
        {
            return s;
        }
        match (rec.get("effect").and_then(Value::as_str), rec.get("reason_code").and_then(Value::as_str)) {
            (Some("PERMIT"), Some("APPROVAL_GRANTED")) => ActionStatus::Approved,
            (Some("PERMIT"), _) => ActionStatus::Allowed,
            (Some("DEFER"), _) => {
                let approval =
                    rec.get("approval_id").and_then(Value::as_str).and_then(|a| self.state.approvals.get(a));
                match approval.map(|a| a.status) {
                    Some(approvals::Status::Approved | approvals::Status::Used) => ActionStatus::Approved,
                    Some(approvals::Status::Denied | approvals::Status::Expired) => ActionStatus::Denied,
                    _ => ActionStatus::PendingApproval,
                }
            }
            _ => ActionStatus::Denied,
        }
    }

    /// Resolves an action id or a unique prefix of 8+ characters to its DPR, if `who` may read it.
    pub fn find_action(&self, id: &str, who: &Identity) -> Result<ActionView, ServiceError> {
        let rec = self.find_record(id)?;
        if !self.may_read(who, &rec) {
            // Not the caller's action: indistinguishable from an unknown one.
            return Err(ServiceError::not_found(format!("no action `{id}`")));
        }
        let status = self.action_status(&rec);
        Ok(ActionView { record: rec, status })
    }

    /// An action's DPR by action id or prefix, or by the id (or prefix) of its approval.
    fn find_record(&self, id: &str) -> Result<Value, ServiceError> {
        match self.find_action_record(id) {
            Err(e) if e.kind == ErrorKind::NotFound => {
                let Ok(approval) = self.state.approvals.resolve(id) else { return Err(e) };
                let action = self.state.approvals.get(&approval).map(|a| a.action_id).unwrap_or_default();
                match self.state.log.get_by_id(&action)? {
                    Some(record) => Ok(record_value(&record)),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    /// An action's DPR by action id or a unique prefix of one.
    fn find_action_record(&self, id: &str) -> Result<Value, ServiceError> {
        if let Some(record) = self.state.log.get_by_id(id)? {
            return Ok(record_value(&record));
        }
        if id.len() < 8 {
            return Err(ServiceError::not_found(format!(
                "no action `{id}` (prefixes need 8 or more characters)"
            )));
        }
        let matches = self.state.log.ids_with_prefix(&id.to_ascii_lowercase(), 10)?;
        match matches.as_slice() {
            [] => Err(ServiceError::not_found(format!("no action `{id}`"))),
            [one] => self
                .state
                .log
                .get_by_id(one)?
                .map(|r| record_value(&r))
                .ok_or_else(|| ServiceError::not_found(format!("no action `{id}`"))),
            many => Err(ServiceError::conflict(format!(
                "action id prefix `{id}` is ambiguous: {}",
                many.join(", ")
            ))),
        }
    }

    /// An action's decision and every later entry about it.
    pub fn action_events(&self, id: &str, who: &Identity) -> Result<(ActionView, Vec<Value>), ServiceError> {
        let view = self.find_action(id, who)?;
        let action_id = view.id().to_owned();
        let approval_id = view.text("approval_id").map(str::to_owned);
        let seq = view.record.get("seq").and_then(Value::as_u64).unwrap_or(0);
        let mut events = vec![view.record.clone()];
        for record in self.state.log.events_about(seq)? {
            let v = record_value(&record);
            let about_action = v.get("action_id").and_then(Value::as_str) == Some(action_id.as_str());
            let about_approval = v.get("kind").and_then(Value::as_str) == Some("approval")
                && approval_id.is_some()
                && v.get("approval_id").and_then(Value::as_str) == approval_id.as_deref();
            if about_action || about_approval {
                events.push(v);
            }
        }
        Ok((view, events))
    }

    /// Decisions, newest first, filtered. A filter by agent, tool or effect (and a status of
    /// `pending_approval`) is answered from the log's index, through the whole log; time bounds
    /// and the cursor narrow the range of entries read. A listing with none of those (only a
    /// text search, a status, or nothing) reads the newest [`UNINDEXED_SCAN`] entries at most.
    pub fn action_list(&self, q: &ListQuery, who: &Identity) -> Result<Vec<ActionView>, ServiceError> {
        let log = &self.state.log;
        let (size, _) = log.head();
        let mut lo = log.first_seq()?;
        let mut hi = size;
        if let Some(since) = q.since_ms {
            lo = lo.max(log.first_seq_at_or_after(since)?);
        }
        if let Some(until) = q.until_ms {
            hi = hi.min(log.first_seq_at_or_after(until)?.saturating_sub(1));
        }
        if let Some(cursor) = &q.cursor {
            let seq = log.seq_of_id(cursor).ok_or_else(|| {
                ServiceError::invalid(
                    "cursor",
                    format!("`cursor` `{cursor}` is not an action id of this log"),
                )
            })?;
            hi = hi.min(seq.saturating_sub(1));
        }
        // The most selective indexed filter drives the scan; the others are checked per record.
        let term = if let Some(a) = &q.agent_id {
            Some(Term::Agent(a.clone()))
        } else if let Some(t) = &q.tool {
            Some(Term::Tool(t.clone()))
        } else if let Some(e) = &q.effect {
            Some(Term::Effect(e.clone()))
        } else if q.status == Some(ActionStatus::PendingApproval) {
            Some(Term::Effect("DEFER".into()))
        } else {
            None
        };
        if term.is_none() {
            lo = lo.max(hi.saturating_sub(UNINDEXED_SCAN as u64 - 1));
        }
        let reader = self.reader(who);
        let keep = |v: &Value| {
            v.get("kind").and_then(Value::as_str) == Some("decision")
                && q.tool.as_deref().is_none_or(|t| v.get("tool").and_then(Value::as_str) == Some(t))
                && q.effect.as_deref().is_none_or(|e| v.get("effect").and_then(Value::as_str) == Some(e))
                && q.agent_id.as_deref().is_none_or(|a| v.get("agent_id").and_then(Value::as_str) == Some(a))
                && reader.sees(v)
        };
        let matches_text = |record: &str| q.text.as_deref().is_none_or(|t| record.to_lowercase().contains(t));
        let mut out = Vec::new();
        let mut skipped = 0;
        log.scan_newest(term.as_ref().map(Term::key).as_deref(), lo, hi, |_, record| {
            if !matches_text(record) {
                return true;
            }
            let v = record_value(record);
            if keep(&v) {
                let status = self.action_status(&v);
                if q.status.is_none_or(|s| s == status) {
                    if skipped < q.offset {
                        skipped += 1;
                    } else {
                        out.push(ActionView { record: v, status });
                    }
                }
            }
            out.len() < q.limit
        })?;
        Ok(out)
    }

    /// `action.start` / `action.result`: `allowed|approved → executing → succeeded|failed`.
    /// Starting an approved deferred action uses its approval.
    pub async fn action_transition(
        &self,
        id: &str,
        transition: Transition,
        who: &Identity,
    ) -> Result<ActionView, ServiceError> {
        let view = self.find_action(id, who)?;
        let allowed = match who {
            Identity::Peer(p) => {
                view.record.get("caller").and_then(|c| c.get("uid")).and_then(Value::as_u64)
                    == Some(u64::from(p.uid))
                    || self.may_approve(who)
            }
            // find_action checked that the token (or tokenless caller) may read it
            Identity::Token(_) | Identity::Anonymous => true,
            Identity::Unknown => false,
        };
        if !allowed {
            return Err(ServiceError::not_authorized(
                "not authorized: only the agent's uid or an approver may report on this action",
            ));
        }
        let action_id = view.id().to_owned();
        // Claimed (others wait) and carried out in a task of its own: a caller that goes away
        // leaves neither a claim nor a half-applied transition behind.
        let (svc, who) = (self.clone(), who.clone());
        claims::detached(async move {
            let _claim = svc.action_claims.claim(&action_id).await;
            svc.transition_claimed(&action_id, &view, transition, &who).await
        })
        .await
    }

    async fn transition_claimed(
        &self,
        action_id: &str,
        view: &ActionView,
        transition: Transition,
        who: &Identity,
    ) -> Result<ActionView, ServiceError> {
        // Re-read under the claim: another transition may have just committed.
        let current = self.action_status(&view.record);
        let is_deferred = view.text("effect") == Some("DEFER");
        let next = match (&transition, current) {
            (Transition::Start, ActionStatus::Allowed | ActionStatus::Approved) => ActionStatus::Executing,
            (Transition::Result { success: true, .. }, ActionStatus::Executing) => ActionStatus::Succeeded,
            (Transition::Result { success: false, .. }, ActionStatus::Executing) => ActionStatus::Failed,
            (Transition::Start, other) => {
                return Err(ServiceError::conflict(format!(
                    "action `{action_id}` is {}: only a permitted or approved action can start",
                    other.socket_name()
                )));
            }
            (Transition::Result { .. }, other) => {
                return Err(ServiceError::conflict(format!(
                    "action `{action_id}` is {}: only an executing action can report a result",
                    other.socket_name()
                )));
            }
        };
        let mut fields = json!({"action_id": action_id, "status": next.as_str(), "agent_id": view.record.get("agent_id"), "by": who.caller()});
        if let (Value::Object(m), Transition::Result { error, result, .. }) = (&mut fields, &transition) {
            if let Some(e) = error {
                m.insert("error".into(), json!(e.chars().take(1024).collect::<String>()));
            }
            if let Some(r) = result {
                let text = canonical_json(r)
                    .map_err(|e| ServiceError::invalid("result", format!("`result`: {e}")))?;
                m.insert("result_hash".into(), json!(faramesh_proto::canonical::sha256_hex(text.as_bytes())));
                m.insert("result_size".into(), json!(text.len()));
                let mut cut = text.len().min(1024);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                m.insert("result_summary".into(), json!(&text[..cut]));
            }
        }
        let key = format!("action/{action_id}");
        let value = json!({"status": next.as_str()}).to_string().into_bytes();
        let action_row: StateWrites = Box::new(move |_, _| vec![(key, Some(value))]);
        if matches!(transition, Transition::Start) && is_deferred {
            // The v1 flow: a deferred action, once approved, is started in place; that uses the
            // approval (once), like a resumed call would.
            let approval_id = view.text("approval_id").unwrap_or_default().to_owned();
            if let Value::Object(m) = &mut fields {
                m.insert("approval_id".into(), json!(approval_id));
            }
            let body = dpr::event_entry("action", fields);
            let (record, action_id) = (view.record.clone(), action_id.to_owned());
            return self
                .with_approval(&approval_id, move |svc: Service, a: Approval| async move {
                    if a.status != approvals::Status::Approved || entry::now_ms() > a.expires_ms {
                        let why = if a.status == approvals::Status::Used {
                            "already used"
                        } else {
                            a.status.as_str()
                        };
                        return (
                            None,
                            Err(ServiceError::conflict(format!(
                                "action `{action_id}`: its approval is {why}"
                            ))),
                        );
                    }
                    let mut used = a;
                    used.status = approvals::Status::Used;
                    let writes = join_writes(Some(action_row), Some(approvals::state_write(&used, false)));
                    match svc.commit(body, writes).await {
                        Ok(_) => (Some(used), Ok(ActionView { record, status: next })),
                        Err(e) => (None, Err(e)),
                    }
                })
                .await?;
        }
        let body = dpr::event_entry("action", fields);
        self.commit(body, Some(action_row))
            .await
            .map_err(|e| ServiceError::internal(format!("cannot record the transition: {}", e.message)))?;
        Ok(ActionView { record: view.record.clone(), status: next })
    }

    /// Explains a recorded action (under the current policy) or a hypothetical call.
    pub fn explain(&self, target: ExplainTarget, who: &Identity) -> Result<Value, ServiceError> {
        let loaded = self.state.policy.load_full();
        let (call, recorded) = match target {
            ExplainTarget::Action(id) => {
                let view = self.find_action(&id, who)?;
                let rec = view.record;
                let text = |k: &str| rec.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                let mut call = Call::new(&text("agent_id"), &text("tool"), &text("operation"));
                call.params = rec.get("params").cloned().unwrap_or_else(|| json!({}));
                call.context =
                    rec.get("context").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
                (call, Some(rec))
            }
            ExplainTarget::Call(call) => (*call, None),
        };
        let explanation = policy::explain(&loaded.policy, &call);
        let mut v = serde_json::to_value(&explanation).map_err(|e| ServiceError::internal(e.to_string()))?;
        if let Value::Object(m) = &mut v {
            m.insert("call".into(), serde_json::to_value(&call).unwrap_or(Value::Null));
            m.insert("recorded".into(), recorded.unwrap_or(Value::Null));
            m.insert("policy_path".into(), json!(self.state.policy_path.display().to_string()));
        }
        Ok(v)
    }

    /// Verifies the whole log (off the async runtime).
    pub async fn verify(&self, against: Option<String>) -> Result<crate::log::Report, ServiceError> {
        let log = Arc::clone(&self.state.log);
        tokio::task::spawn_blocking(move || log.verify(against.as_deref()))
            .await
            .map_err(|e| ServiceError::internal(e.to_string()))?
            .map_err(ServiceError::from)
    }

    /// The log in order from `from_seq` (or the first entry at or after `since`): of `limit`
    /// entries read, those `who` may see.
    pub fn entries(
        &self,
        from_seq: Option<u64>,
        since: Option<String>,
        limit: usize,
        who: &Identity,
    ) -> Result<(Vec<Value>, u64), ServiceError> {
        let from_seq = match (from_seq, since) {
            (Some(n), _) => n,
            (None, Some(since)) => {
                let ms = entry::parse_rfc3339(&since).ok_or_else(|| {
                    ServiceError::invalid("since", format!("`since` `{since}` is not RFC 3339"))
                })?;
                self.state.log.first_seq_at_or_after(ms)?
            }
            (None, None) => 1,
        };
        let records: Vec<Value> =
            self.state.log.entries_from(from_seq, limit)?.iter().map(|r| record_value(r)).collect();
        // After a prune the first record may come after `from_seq`: continue after the last.
        let next_seq =
            records.last().and_then(|r| r.get("seq")).and_then(Value::as_u64).map_or(from_seq, |s| s + 1);
        let reader = self.reader(who);
        let visible = records.into_iter().filter(|r| reader.sees(r)).collect();
        Ok((visible, next_seq))
    }

    /// `log.prune`: plans (`dry_run`) or carries out a prune. See [`crate::log::Log::prune`].
    pub async fn log_prune(&self, req: PruneRequest, who: &Identity) -> Result<Value, ServiceError> {
        self.may_manage_log(who)?;
        let log = &self.state.log;
        let outcome = if req.dry_run {
            log.dry_run_prune(req.cut)?
        } else {
            log.prune(req.cut, req.force, serde_json::to_value(who.caller()).unwrap_or(Value::Null)).await?
        };
        serde_json::to_value(outcome).map_err(|e| ServiceError::internal(e.to_string()))
    }

    /// `log.exported`: records that entries `from_seq..=through_seq` were exported.
    pub async fn log_exported(
        &self,
        from_seq: u64,
        through_seq: u64,
        who: &Identity,
    ) -> Result<Value, ServiceError> {
        self.may_manage_log(who)?;
        let log = Arc::clone(&self.state.log);
        let through = tokio::task::spawn_blocking(move || log.mark_exported(from_seq, through_seq))
            .await
            .map_err(|e| ServiceError::internal(e.to_string()))??;
        Ok(json!({"exported_through": through}))
    }

    /// `log.backup`: a consistent copy of the log written to `backup-<random>.redb` in the state
    /// dir (where the daemon may write); the operator's tool moves it where it was asked to.
    pub async fn log_backup(&self, who: &Identity) -> Result<Value, ServiceError> {
        self.may_manage_log(who)?;
        // A name of its own per backup: two at once never write (or remove) each other's file.
        let suffix =
            crate::log::random_hex(8).map_err(|e| ServiceError::internal(format!("no randomness: {e}")))?;
        let dest = self.state.state_dir.join(format!("backup-{suffix}.redb"));
        let log = Arc::clone(&self.state.log);
        let path = dest.clone();
        let batches = tokio::task::spawn_blocking(move || log.backup(&path))
            .await
            .map_err(|e| ServiceError::internal(e.to_string()))??;
        Ok(json!({"path": dest.display().to_string(), "batches": batches}))
    }

    /// `dashboard.login`: a fresh one-time sign-in link secret (it opens an approver session),
    /// for those who may approve.
    pub fn dashboard_login(&self, who: &Identity) -> Result<Value, ServiceError> {
        if !self.may_approve(who) {
            return Err(ServiceError::not_authorized(format!(
                "not authorized: {} may not sign in to the dashboard as an approver",
                who.describe()
            )));
        }
        let secret =
            self.state.logins.mint().map_err(|e| ServiceError::internal(format!("no randomness: {e}")))?;
        let url = self.state.http.as_ref().map(|h| format!("{}/login/{secret}", h.url));
        Ok(json!({"secret": secret, "url": url, "expires_in_seconds": 600}))
    }

    /// The latest signed checkpoint, head and public key.
    pub fn checkpoint(&self) -> Result<Value, ServiceError> {
        let cp = self.state.log.latest_checkpoint()?;
        let (size, head) = self.state.log.head();
        Ok(json!({
            "checkpoint": cp,
            "size": size,
            "head_hash": entry::hex(&head),
            "pubkey": self.state.log.key().public().to_text(),
        }))
    }

    /// Reloads the policy now (root, the daemon's uid or an approver).
    pub async fn reload(&self, who: &Identity) -> Result<Value, ServiceError> {
        self.may_reload(who)?;
        Ok(match self.state.reload().await {
            Ok(hash) => json!({"ok": true, "policy_hash": hash, "status": self.state.policy_status()}),
            Err(e) => json!({"ok": false, "error": e.to_string(), "status": self.state.policy_status()}),
        })
    }
}

/// What `policy.explain` explains.
#[derive(Debug, Clone, PartialEq)]
pub enum ExplainTarget {
    /// A recorded action, by id or prefix.
    Action(String),
    /// A hypothetical call.
    Call(Box<Call>),
}

enum BudgetRefusal {
    Exceeded(Option<String>),
    Internal(String),
}

/// The decision for a resumed call, and the approval marked used when it is granted.
fn resume_decision(
    base: &Decision,
    a: &Approval,
    approval_id: &str,
    who: &Identity,
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
        approvals::Status::Approved if entry::now_ms() > a.expires_ms => {
            deny(ReasonCode::ApprovalExpired, format!("approval `{approval_id}` expired before use"))
        }
        approvals::Status::Approved if a.request_hash != base.request_hash => deny(
            ReasonCode::ApprovalDenied,
            format!("this call differs from the one approved by `{approval_id}` (request_hash mismatch)"),
        ),
        approvals::Status::Approved => {
            let mut used = a.clone();
            used.status = approvals::Status::Used;
            let mut d = base;
            d.effect = Effect::Permit;
            d.reason_code = ReasonCode::ApprovalGranted;
            d.reason = format!("approved by a person (approval `{approval_id}`)");
            d.rule_id = a.rule_id.clone();
            d.structured_denial = None;
            (d, Some(used))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Log, LogKey, LogOptions};
    use crate::service::state::{Counts, Limits, Loaded};

    fn service(dir: &std::path::Path, policy_text: &str) -> Service {
        let policy = policy::compile("p.yaml", policy_text).unwrap();
        let log =
            Log::open(&dir.join("log.redb"), LogKey::from_seed(&[7u8; 32]), LogOptions::default()).unwrap();
        let log = Arc::new(log);
        let state = State {
            policy_path: dir.join("p.yaml"),
            policy: arc_swap::ArcSwap::from_pointee(Loaded { policy, loaded_at: String::new() }),
            last_error: arc_swap::ArcSwap::from_pointee(None),
            reload_lock: tokio::sync::Mutex::new(()),
            logins: Arc::default(),
            single_user: false,
            demo: false,
            reloads: Default::default(),
            approvals: approvals::Book::load(Arc::clone(&log)).unwrap(),
            log,
            socket_path: dir.join("s.sock"),
            state_dir: dir.to_owned(),
            own_uid: 0,
            started: std::time::Instant::now(),
            counts: Counts::default(),
            limits: Limits::default(),
            rate: limits::RateLimiter::default(),
            budgets: std::sync::Mutex::new(std::collections::HashMap::new()),
            metrics: Arc::default(),
            http: None,
        };
        Service::new(Arc::new(state))
    }

    const BUDGET_POLICY: &str = "version: 1\nagents:\n  bot:\n    budget: { max_calls: 5, per: day, on_exceed: deny }\nrules:\n  - match: { tool: http }\n    allow: true\n";

    fn call() -> CallRequest {
        CallRequest::from_value(&json!({"agent_id": "bot", "tool": "http", "operation": "get"})).unwrap()
    }

    /// Regression (issue #11): a budget counter that could not be read counted from 0 (fail open).
    #[tokio::test]
    async fn an_unreadable_budget_counter_denies_and_stays_unloaded() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path(), BUDGET_POLICY);
        let loaded = s.state.policy.load_full();
        let profile = loaded.policy.agents.get("bot").unwrap();
        let budget = profile.budget.as_ref().unwrap();
        let (period, _) = limits::period_of(budget, &call().call, entry::now_ms());
        let key = limits::budget_key("bot", &period);
        let garbage: StateWrites = Box::new(move |_, _| vec![(key, Some(b"not a number".to_vec()))]);
        s.state.log.append_with_state(dpr::event_entry("test", json!({})), Some(garbage)).await.unwrap();

        let who = Identity::Peer(Peer::new(PeerCred { uid: 1000, gid: 1000, pid: 1 }));
        for _ in 0..2 {
            let reply = s.govern(call(), &who).await.unwrap();
            assert_eq!(reply.decision.effect, Effect::Deny, "{:?}", reply.decision);
            assert_eq!(reply.decision.reason_code, ReasonCode::InternalError);
            assert!(reply.decision.reason.contains("unreadable"), "{}", reply.decision.reason);
        }
        assert!(
            s.state.budgets.lock().unwrap().is_empty(),
            "a counter that failed to load must not be cached"
        );
    }

    #[tokio::test]
    async fn a_token_bound_to_an_agent_cannot_act_for_another() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path(), BUDGET_POLICY);
        let who = Identity::Token(TokenIdentity {
            name: "agent:a".into(),
            role: Role::Agent,
            agents: Some(vec!["a".into()]),
        });
        let e = s.govern(call(), &who).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotAuthorized);
        assert!(s.decide(&call(), &who).is_err());
    }

    /// Regression: a second uid that resent the deferred call with the approval id (listed to it
    /// by `approval.list`) took the PERMIT meant for the first, which then got "already used".
    #[tokio::test]
    async fn only_the_caller_that_asked_resumes_and_sees_its_approval() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(
            dir.path(),
            "version: 1\nrules:\n  - match: { tool: http }\n    require_approval: true\n",
        );
        let a = Identity::Peer(Peer::new(PeerCred { uid: 1000, gid: 1000, pid: 10 }));
        let b = Identity::Peer(Peer::new(PeerCred { uid: 1001, gid: 1001, pid: 11 }));
        let root = Identity::Peer(Peer::new(PeerCred { uid: 0, gid: 0, pid: 1 }));
        let deferred = s.govern(call(), &a).await.unwrap();
        let id = deferred.approval_id.unwrap();
        // B is not shown A's approval; A and the approver are.
        assert!(s.approval_list(false, &b).await.unwrap().is_empty());
        assert_eq!(s.approval_list(false, &a).await.unwrap().len(), 1);
        assert_eq!(s.approval_list(false, &root).await.unwrap().len(), 1);
        s.approval_decide(&id, true, None, &root).await.unwrap();
        let mut resume = call();
        resume.approval_id = Some(id.clone());
        let stolen = s.govern(resume.clone(), &b).await.unwrap();
        assert_eq!(
            (stolen.decision.effect, stolen.decision.reason_code),
            (Effect::Deny, ReasonCode::AgentIdentityMismatch)
        );
        assert!(stolen.decision.reason.contains("uid 1001 may not resume"), "{}", stolen.decision.reason);
        // Root is no exception: only the caller that asked resumes.
        assert_eq!(
            s.govern(resume.clone(), &root).await.unwrap().decision.reason_code,
            ReasonCode::AgentIdentityMismatch
        );
        let mine = s.govern(resume, &a).await.unwrap();
        assert_eq!(
            (mine.decision.effect, mine.decision.reason_code),
            (Effect::Permit, ReasonCode::ApprovalGranted)
        );
    }

    /// Regression: a DEFER whose caller went away mid-commit (an HTTP client that disconnected)
    /// was committed, but its approval never joined the book, so `approval.list` missed it.
    #[tokio::test]
    async fn a_deferred_call_whose_caller_left_still_joins_the_book() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(
            dir.path(),
            "version: 1\nrules:\n  - match: { tool: http }\n    require_approval: true\n",
        );
        let who = Identity::Peer(Peer::new(PeerCred { uid: 1000, gid: 1000, pid: 10 }));
        // Polled once, then dropped.
        let gone = tokio::time::timeout(std::time::Duration::ZERO, s.govern(call(), &who)).await;
        assert!(gone.is_err(), "the commit finished within one poll: nothing was dropped");
        let mut listed = Vec::new();
        for _ in 0..2000 {
            listed = s.approval_list(false, &who).await.unwrap();
            if !listed.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(listed.len(), 1, "the committed DEFER's approval is not in the book");
        assert!(!listed[0].action_id.is_empty());
    }

    /// Memory holds only approvals that may still change; an ended one is read from the log's
    /// state table (issue #18: a DEFER-heavy daemon must not grow without bound).
    #[tokio::test]
    async fn ended_approvals_leave_memory_and_stay_readable() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(
            dir.path(),
            "version: 1\nrules:\n  - match: { tool: http }\n    require_approval: true\n",
        );
        let agent = Identity::Peer(Peer::new(PeerCred { uid: 1000, gid: 1000, pid: 1 }));
        let approver = Identity::Peer(Peer::new(PeerCred { uid: 0, gid: 0, pid: 2 }));
        let mut ids = Vec::new();
        for _ in 0..3 {
            let reply = s.govern(call(), &agent).await.unwrap();
            assert_eq!(reply.decision.effect, Effect::Defer);
            ids.push(reply.approval_id.unwrap());
        }
        assert_eq!(s.state.approvals.all().len(), 3);
        s.approval_decide(&ids[0], false, Some("no".into()), &approver).await.unwrap();
        s.approval_decide(&ids[1], true, None, &approver).await.unwrap();
        let live: Vec<String> = s.state.approvals.all().into_iter().map(|a| a.approval_id).collect();
        assert!(!live.contains(&ids[0]), "a denied approval left memory");
        assert!(live.contains(&ids[1]) && live.contains(&ids[2]), "approved-unused and pending stay");
        let denied = s.state.approvals.get(&ids[0]).unwrap();
        assert_eq!(denied.status, approvals::Status::Denied);
        assert_eq!(s.resolve_approval(&ids[0][..10]).unwrap(), ids[0]);
        assert_eq!(s.approval_list(true, &approver).await.unwrap().len(), 3);
        assert_eq!(s.approval_list(false, &approver).await.unwrap().len(), 1);
        // Deciding it again is refused by its stored status.
        assert!(s.approval_decide(&ids[0], true, None, &approver).await.is_err());
        // After a restart only the live ones are loaded.
        let book = approvals::Book::load(Arc::clone(&s.state.log)).unwrap();
        assert_eq!(book.all().len(), 2);
        assert_eq!(book.get(&ids[0]).unwrap().status, approvals::Status::Denied);
    }
}
