//! The socket's JSON-RPC methods, registered in a jsonrpsee `RpcModule`. Handlers get the
//! caller's peer credentials through the request's `Extensions`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use faramesh_proto::{Call, Decision, Effect, ReasonCode, Resolution, canonical_json};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use jsonrpsee::{Extensions, RpcModule};
use serde_json::{Map, Value, json};

use std::collections::HashMap;

use super::approvals::{self, Approval};
use super::limits;
use super::state::State;
use crate::log::dpr::{self, Caller};
use crate::log::{StateWrites, entry};
use crate::policy;

/// JSON-RPC error codes used on the socket.
pub mod codes {
    /// The line is not JSON (or not UTF-8).
    pub const PARSE_ERROR: i32 = -32700;
    /// Not a JSON-RPC request, or a line over the size limit.
    pub const INVALID_REQUEST: i32 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// Missing or mistyped params (the message names the field).
    pub const INVALID_PARAMS: i32 = -32602;
    /// Something failed inside the daemon.
    pub const INTERNAL_ERROR: i32 = -32603;
    /// The caller may not do this.
    pub const NOT_AUTHORIZED: i32 = -32001;
    /// No such action, approval or entry.
    pub const NOT_FOUND: i32 = -32002;
    /// The object is not in a state that allows this (or an id prefix is ambiguous).
    pub const CONFLICT: i32 = -32003;
    /// Too many connections or requests.
    pub const OVERLOADED: i32 = -32004;
}

/// The connection's peer credentials, put in every request's `Extensions`.
pub type Peer = Caller;

fn err(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), None::<()>)
}

fn invalid(message: impl Into<String>) -> ErrorObjectOwned {
    err(codes::INVALID_PARAMS, message)
}

type RpcResult = Result<Value, ErrorObjectOwned>;

fn params_object(params: &Params<'_>) -> Result<Map<String, Value>, ErrorObjectOwned> {
    match params.parse::<Value>() {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(invalid("params must be an object")),
        Err(e) => Err(invalid(format!("params: {}", e.message()))),
    }
}

fn opt_string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, ErrorObjectOwned> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("`{key}` must be a string"))),
    }
}

fn opt_object(map: &Map<String, Value>, key: &str) -> Result<Option<Value>, ErrorObjectOwned> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
        Some(_) => Err(invalid(format!("`{key}` must be an object"))),
    }
}

/// Reads a call from `govern`/`decide` params: `agent_id, tool, operation` (or `tool_id`
/// `"tool/op"`), `args` or `params`, `context`, `session_id`, `request_id`, `tags`, `principal`.
/// Also accepts what the published SDK sends (`action_type`, `principal_token`, ignored).
pub fn parse_call(map: &Map<String, Value>) -> Result<(Call, Option<String>), ErrorObjectOwned> {
    let agent_id = opt_string(map, "agent_id")?.ok_or_else(|| invalid("missing field `agent_id`"))?;
    let tool_id = opt_string(map, "tool_id")?;
    let split = tool_id.as_deref().and_then(|t| t.rsplit_once('/'));
    let tool = match (opt_string(map, "tool")?, split) {
        (Some(t), _) => t,
        (None, Some((t, _))) => t.to_owned(),
        (None, None) => tool_id.clone().ok_or_else(|| invalid("missing field `tool` (or `tool_id`)"))?,
    };
    let operation = match (opt_string(map, "operation")?.or(opt_string(map, "op")?), split) {
        (Some(o), _) => o,
        (None, Some((_, o))) => o.to_owned(),
        (None, None) => return Err(invalid("missing field `operation` (or `tool_id` as `tool/operation`)")),
    };
    let args = match (opt_object(map, "args")?, opt_object(map, "params")?) {
        (Some(_), Some(_)) => return Err(invalid("give `args` or `params`, not both")),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => Value::Object(Map::new()),
    };
    let context = opt_object(map, "context")?.unwrap_or_else(|| Value::Object(Map::new()));
    if let Err(e) = faramesh_proto::canonical::check_canonical(&args) {
        return Err(invalid(format!("`args`: {e}")));
    }
    if let Err(e) = faramesh_proto::canonical::check_canonical(&context) {
        return Err(invalid(format!("`context`: {e}")));
    }
    let call = Call {
        agent_id,
        tool,
        operation,
        params: args,
        context,
        session_id: opt_string(map, "session_id")?,
        request_id: opt_string(map, "request_id")?,
        tags: map.get("tags").cloned().unwrap_or(Value::Null),
        principal: map.get("principal").cloned().unwrap_or(Value::Null),
    };
    Ok((call, opt_string(map, "approval_id")?))
}

/// The `govern`/`decide` result object.
fn decision_json(d: &Decision, action_id: Option<&str>, approval_id: Option<&str>) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("action_id".into(), json!(action_id));
        map.insert("defer_token".into(), json!(approval_id));
        map.insert("approval_id".into(), json!(approval_id));
    }
    v
}

/// Fail closed: any internal problem turns the answer into DENY `INTERNAL_ERROR`.
fn internal_error(d: Decision, why: String) -> Decision {
    let (rule_id, rule_ref) = (d.rule_id.clone(), d.rule_ref.clone());
    policy::deny_decision(d, ReasonCode::InternalError, why, rule_id, rule_ref, None)
}

/// An agent id pinned to a uid may only be claimed by that uid.
fn identity_mismatch(
    policy: &policy::Policy,
    call: &Call,
    peer: Option<Peer>,
    d: &Decision,
) -> Option<Decision> {
    let profile = policy.agents.get(&call.agent_id)?;
    let pinned = profile.uid?;
    if peer.is_some_and(|p| p.uid == pinned) {
        return None;
    }
    let rule_id = format!("agents.{}.uid", profile.name);
    let reason = format!(
        "caller uid {} may not act as agent `{}` (pinned to uid {pinned})",
        peer.map_or_else(|| "unknown".to_owned(), |p| p.uid.to_string()),
        profile.name
    );
    Some(deny_with(d.clone(), ReasonCode::AgentIdentityMismatch, reason, Some(rule_id), None))
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

/// Counts the call against the agent's budget; `Err(resets_at)` when the budget is used up.
fn budget_check(
    state: &State,
    profile: &policy::Profile,
    budget: &policy::Budget,
    call: &Call,
) -> Result<StateWrites, Option<String>> {
    let (period, resets_at) = limits::period_of(budget, call, entry::now_ms());
    let key = limits::budget_key(&profile.name, &period);
    let Ok(mut counts) = state.budgets.lock() else { return Err(resets_at) };
    let count = counts.entry(key.clone()).or_insert_with(|| {
        state
            .log
            .state_get(&key)
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    });
    if *count >= budget.max_calls {
        return Err(resets_at);
    }
    *count += 1;
    let value = count.to_string().into_bytes();
    Ok(Box::new(move |_, _| vec![(key, Some(value))]))
}

/// Appends the DPR (with any state rows) and turns the outcome into the reply.
async fn record(
    state: &State,
    call: &Call,
    decision: Decision,
    peer: Option<Peer>,
    approval: Option<Approval>,
    writes: Option<StateWrites>,
    started: std::time::Instant,
) -> RpcResult {
    let approval_id = approval.as_ref().map(|a| a.approval_id.clone());
    let body = dpr::decision_entry(call, &decision, peer, approval_id.as_deref(), state.log.redact_keys());
    let writes = join_writes(writes, approval.as_ref().map(|a| approvals::state_write(a, true)));
    let (decision, action_id, approval_id) = match state.log.append_with_state(body, writes).await {
        Ok(appended) => {
            if let Some(mut a) = approval {
                a.action_id = appended.id.clone().unwrap_or_default();
                state.approvals.by_id.lock().await.insert(a.approval_id.clone(), a);
                state.approvals.changed.notify_waiters();
            }
            (decision, appended.id, approval_id)
        }
        Err(e) => {
            tracing::error!(error = %e, "decision not recorded: answering DENY INTERNAL_ERROR");
            (internal_error(decision, format!("the decision could not be recorded: {e}")), None, None)
        }
    };
    let counter = match decision.effect {
        Effect::Permit => &state.counts.permit,
        Effect::Deny => &state.counts.deny,
        Effect::Defer => &state.counts.defer,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        effect = decision.effect.as_str(),
        agent = %call.agent_id,
        tool = %call.tool,
        operation = %call.operation,
        reason_code = decision.reason_code.as_str(),
        latency_us = started.elapsed().as_micros() as u64,
        "govern"
    );
    Ok(decision_json(&decision, action_id.as_deref(), approval_id.as_deref()))
}

async fn govern(state: Arc<State>, params: Params<'static>, ext: Extensions) -> RpcResult {
    let started = std::time::Instant::now();
    let (call, resume) = parse_call(&params_object(&params)?)?;
    let peer = ext.get::<Peer>().copied();
    let loaded = state.policy.load_full();
    let policy = &loaded.policy;
    let mut decision = policy::decide(policy, &call);
    let mut writes: Option<StateWrites> = None;
    let refused_early =
        matches!(decision.reason_code, ReasonCode::InvalidRequest | ReasonCode::ProfileDisallowsTool);
    if !refused_early {
        if let Some(d) = identity_mismatch(policy, &call, peer, &decision) {
            decision = d;
        } else if let Some(approval_id) = resume {
            return resume_call(&state, &call, decision, &approval_id, peer, started).await;
        } else if let Some(profile) = policy.agents.get(&call.agent_id) {
            if let Err(hit) = state.rate.check(profile, &call) {
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
                match budget_check(&state, profile, budget, &call) {
                    Ok(w) => writes = Some(w),
                    Err(resets_at) => {
                        let reason = format!(
                            "budget of {} calls for agent `{}` is used up{}",
                            budget.max_calls,
                            profile.name,
                            resets_at.as_ref().map(|r| format!(" until {r}")).unwrap_or_default()
                        );
                        let rule_id = Some(format!("agents.{}.budget", profile.name));
                        decision = if budget.on_exceed == Effect::Defer {
                            let mut d = policy::defer_decision(decision, ReasonCode::BudgetExceeded, reason);
                            d.rule_id = rule_id;
                            d
                        } else {
                            let resolution =
                                Resolution::BudgetReset { resets_at: resets_at.unwrap_or_default() };
                            deny_with(decision, ReasonCode::BudgetExceeded, reason, rule_id, Some(resolution))
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
            denial.resolution = Some(Resolution::PendingApproval { approval_id: Some(approval_id.clone()) });
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
            requested_by: peer,
            decided_by: None,
            reason: None,
        });
    }
    record(&state, &call, decision, peer, approval, writes, started).await
}

/// Marks a pending approval whose time is up as expired (logged). The book's lock must be held.
async fn expire_if_due(
    state: &State,
    book: &mut HashMap<String, Approval>,
    id: &str,
) -> Result<(), ErrorObjectOwned> {
    let Some(a) = book.get(id) else { return Ok(()) };
    if a.status != approvals::Status::Pending || entry::now_ms() <= a.expires_ms {
        return Ok(());
    }
    let mut expired = a.clone();
    expired.status = approvals::Status::Expired;
    let body = approvals::transition_entry(&expired, None);
    state
        .log
        .append_with_state(body, Some(approvals::state_write(&expired, false)))
        .await
        .map_err(|e| err(codes::INTERNAL_ERROR, e.to_string()))?;
    book.insert(id.to_owned(), expired);
    state.approvals.changed.notify_waiters();
    Ok(())
}

/// A call re-sent with `approval_id`: PERMIT `APPROVAL_GRANTED` only for an approved, unexpired,
/// unused approval of exactly this call.
async fn resume_call(
    state: &State,
    call: &Call,
    evaluated: Decision,
    approval_id: &str,
    peer: Option<Peer>,
    started: std::time::Instant,
) -> RpcResult {
    let mut book = state.approvals.by_id.lock().await;
    if let Err(e) = expire_if_due(state, &mut book, approval_id).await {
        drop(book);
        return record(
            state,
            call,
            internal_error(evaluated, e.message().to_owned()),
            peer,
            None,
            None,
            started,
        )
        .await;
    }
    let base = Decision { rule_id: None, rule_ref: None, ..evaluated };
    let Some(a) = book.get(approval_id).cloned() else {
        drop(book);
        let d = deny_with(
            base,
            ReasonCode::ApprovalDenied,
            format!("unknown approval `{approval_id}`"),
            None,
            None,
        );
        return record(state, call, d, peer, None, None, started).await;
    };
    let approved_expired = a.status == approvals::Status::Approved && entry::now_ms() > a.expires_ms;
    let (decision, writes) = match a.status {
        approvals::Status::Approved if approved_expired => (
            deny_with(
                base,
                ReasonCode::ApprovalExpired,
                format!("approval `{approval_id}` expired before use"),
                None,
                None,
            ),
            None,
        ),
        approvals::Status::Approved if a.request_hash != base.request_hash => (
            deny_with(
                base,
                ReasonCode::ApprovalDenied,
                format!("this call differs from the one approved by `{approval_id}` (request_hash mismatch)"),
                None,
                None,
            ),
            None,
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
            book.insert(approval_id.to_owned(), used.clone());
            (d, Some(approvals::state_write(&used, false)))
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
            let body = dpr::decision_entry(call, &d, peer, Some(approval_id), state.log.redact_keys());
            drop(book);
            return match state.log.append(body).await {
                Ok(appended) => Ok(decision_json(&d, appended.id.as_deref(), Some(approval_id))),
                Err(e) => Ok(decision_json(&internal_error(d, e.to_string()), None, None)),
            };
        }
        approvals::Status::Used => (
            deny_with(
                base,
                ReasonCode::ApprovalDenied,
                format!("approval `{approval_id}` was already used"),
                None,
                None,
            ),
            None,
        ),
        approvals::Status::Denied => (
            deny_with(
                base,
                ReasonCode::ApprovalDenied,
                format!(
                    "approval `{approval_id}` was denied{}",
                    a.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
                ),
                None,
                None,
            ),
            None,
        ),
        approvals::Status::Expired => (
            deny_with(
                base,
                ReasonCode::ApprovalExpired,
                format!("approval `{approval_id}` expired"),
                None,
                None,
            ),
            None,
        ),
    };
    let granted = decision.effect == Effect::Permit;
    let body = dpr::decision_entry(call, &decision, peer, Some(approval_id), state.log.redact_keys());
    let result = state.log.append_with_state(body, writes).await;
    let reply = match result {
        Ok(appended) => decision_json(&decision, appended.id.as_deref(), None),
        Err(e) => {
            if granted {
                // Not recorded: the approval stays unused.
                book.insert(approval_id.to_owned(), a);
            }
            decision_json(
                &internal_error(decision, format!("the decision could not be recorded: {e}")),
                None,
                None,
            )
        }
    };
    drop(book);
    state.approvals.changed.notify_waiters();
    Ok(reply)
}

async fn decide(state: Arc<State>, params: Params<'static>, ext: Extensions) -> RpcResult {
    let (call, _) = parse_call(&params_object(&params)?)?;
    let peer = ext.get::<Peer>().copied();
    let loaded = state.policy.load_full();
    let decision = policy::decide(&loaded.policy, &call);
    let decision = identity_mismatch(&loaded.policy, &call, peer, &decision).unwrap_or(decision);
    Ok(decision_json(&decision, None, None))
}

fn record_value(record: &str) -> Value {
    serde_json::from_str(record).unwrap_or(Value::Null)
}

/// Resolves an action id or a unique prefix of at least 8 characters to its record.
fn find_action(state: &State, id: &str) -> Result<Value, ErrorObjectOwned> {
    let internal = |e: crate::log::LogError| err(codes::INTERNAL_ERROR, e.to_string());
    if let Some(record) = state.log.get_by_id(id).map_err(internal)? {
        return Ok(record_value(&record));
    }
    if id.len() < 8 {
        return Err(err(codes::NOT_FOUND, format!("no action `{id}` (prefixes need 8 or more characters)")));
    }
    let matches = state.log.ids_with_prefix(&id.to_ascii_lowercase(), 10).map_err(internal)?;
    match matches.as_slice() {
        [] => Err(err(codes::NOT_FOUND, format!("no action `{id}`"))),
        [one] => state
            .log
            .get_by_id(one)
            .map_err(internal)?
            .map(|r| record_value(&r))
            .ok_or_else(|| err(codes::NOT_FOUND, format!("no action `{id}`"))),
        many => {
            Err(err(codes::CONFLICT, format!("action id prefix `{id}` is ambiguous: {}", many.join(", "))))
        }
    }
}

fn required_id(map: &Map<String, Value>) -> Result<String, ErrorObjectOwned> {
    opt_string(map, "id")?.or(opt_string(map, "action_id")?).ok_or_else(|| invalid("missing field `id`"))
}

async fn action_get(state: Arc<State>, params: Params<'static>, _: Extensions) -> RpcResult {
    let id = required_id(&params_object(&params)?)?;
    let mut rec = find_action(&state, &id)?;
    let status = action_state(&state, &rec);
    if let Value::Object(m) = &mut rec {
        m.insert("status".into(), json!(status));
    }
    Ok(rec)
}

async fn action_events(state: Arc<State>, params: Params<'static>, _: Extensions) -> RpcResult {
    let id = required_id(&params_object(&params)?)?;
    let decision = find_action(&state, &id)?;
    let action_id = decision.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let seq = decision.get("seq").and_then(Value::as_u64).unwrap_or(0);
    let mut events = vec![decision.clone()];
    let later =
        state.log.entries_from(seq + 1, 10_000).map_err(|e| err(codes::INTERNAL_ERROR, e.to_string()))?;
    for record in later {
        let v = record_value(&record);
        if v.get("action_id").and_then(Value::as_str) == Some(action_id.as_str()) {
            events.push(v);
        }
    }
    Ok(json!({ "action_id": action_id, "events": events }))
}

async fn action_list(state: Arc<State>, params: Params<'static>, _: Extensions) -> RpcResult {
    let map = params_object(&params)?;
    let limit = match map.get("limit") {
        None | Some(Value::Null) => 50,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| invalid("`limit` must be 1 to 1000"))? as usize,
    };
    let agent = opt_string(&map, "agent_id")?.or(opt_string(&map, "agent")?);
    let tool = opt_string(&map, "tool")?;
    let effect = opt_string(&map, "effect")?.map(|e| e.to_ascii_uppercase());
    let since_ms = match opt_string(&map, "since")? {
        Some(s) => Some(
            crate::log::entry::parse_rfc3339(&s)
                .ok_or_else(|| invalid(format!("`since` `{s}` is not RFC 3339")))?,
        ),
        None => None,
    };
    let internal = |e: crate::log::LogError| err(codes::INTERNAL_ERROR, e.to_string());
    let keep = |v: &Value| {
        v.get("kind").and_then(Value::as_str) == Some("decision")
            && tool.as_deref().is_none_or(|t| v.get("tool").and_then(Value::as_str) == Some(t))
            && effect.as_deref().is_none_or(|e| v.get("effect").and_then(Value::as_str) == Some(e))
            && agent.as_deref().is_none_or(|a| v.get("agent_id").and_then(Value::as_str) == Some(a))
            && since_ms.is_none_or(|s| {
                v.get("ts")
                    .and_then(Value::as_str)
                    .and_then(crate::log::entry::parse_rfc3339)
                    .is_some_and(|t| t >= s)
            })
    };
    // Newest first, at most 100,000 entries back (there is no index by agent or tool: see
    // docs/decision-log.md).
    let mut out = Vec::new();
    state
        .log
        .newest_first(100_000, |record| {
            let v = record_value(record);
            if keep(&v) {
                out.push(v);
            }
            out.len() < limit
        })
        .map_err(internal)?;
    Ok(json!({ "actions": out }))
}

async fn policy_explain(state: Arc<State>, params: Params<'static>, _: Extensions) -> RpcResult {
    let map = params_object(&params)?;
    let loaded = state.policy.load_full();
    let (call, recorded) = if map.contains_key("id") || map.contains_key("action_id") {
        let id = required_id(&map)?;
        let rec = find_action(&state, &id)?;
        let text = |k: &str| rec.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut call = Call::new(&text("agent_id"), &text("tool"), &text("operation"));
        call.params = rec.get("params").cloned().unwrap_or_else(|| json!({}));
        call.context = rec.get("context").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
        (call, Some(rec))
    } else {
        let inner = match map.get("call") {
            Some(Value::Object(c)) => c.clone(),
            Some(_) => return Err(invalid("`call` must be an object")),
            None => map.clone(),
        };
        (parse_call(&inner)?.0, None)
    };
    let explanation = policy::explain(&loaded.policy, &call);
    let mut v = serde_json::to_value(&explanation).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("call".into(), serde_json::to_value(&call).unwrap_or(Value::Null));
        m.insert("recorded".into(), recorded.unwrap_or(Value::Null));
        m.insert("policy_path".into(), json!(state.policy_path.display().to_string()));
    }
    Ok(v)
}

async fn policy_reload(state: Arc<State>, _: Params<'static>, _: Extensions) -> RpcResult {
    match state.reload().await {
        Ok(hash) => Ok(json!({"ok": true, "policy_hash": hash, "status": state.policy_status()})),
        Err(e) => Ok(json!({"ok": false, "error": e, "status": state.policy_status()})),
    }
}

async fn log_verify(state: Arc<State>, params: Params<'static>, _: Extensions) -> RpcResult {
    let map = params_object(&params)?;
    let against = opt_string(&map, "against")?;
    let log = Arc::clone(&state.log);
    let report = tokio::task::spawn_blocking(move || log.verify(against.as_deref()))
        .await
        .map_err(|e| err(codes::INTERNAL_ERROR, e.to_string()))?
        .map_err(|e| err(codes::INTERNAL_ERROR, e.to_string()))?;
    serde_json::to_value(report).map_err(|e| err(codes::INTERNAL_ERROR, e.to_string()))
}

async fn log_entries(state: Arc<State>, params: Params<'static>, _: Extensions) -> RpcResult {
    let map = params_object(&params)?;
    let internal = |e: crate::log::LogError| err(codes::INTERNAL_ERROR, e.to_string());
    let limit = match map.get("limit") {
        None | Some(Value::Null) => 1000,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| invalid("`limit` must be 1 to 10000"))? as usize,
    };
    let from_seq = match (map.get("from_seq"), opt_string(&map, "since")?) {
        (Some(v), _) if !v.is_null() => {
            v.as_u64().filter(|n| *n >= 1).ok_or_else(|| invalid("`from_seq` must be a positive integer"))?
        }
        (_, Some(since)) => {
            let ms = entry::parse_rfc3339(&since)
                .ok_or_else(|| invalid(format!("`since` `{since}` is not RFC 3339")))?;
            state.log.first_seq_at_or_after(ms).map_err(internal)?
        }
        _ => 1,
    };
    let records = state.log.entries_from(from_seq, limit).map_err(internal)?;
    let next_seq = from_seq + records.len() as u64;
    let entries: Vec<Value> = records.iter().map(|r| record_value(r)).collect();
    Ok(json!({"entries": entries, "next_seq": next_seq}))
}

async fn log_checkpoint(state: Arc<State>, _: Params<'static>, _: Extensions) -> RpcResult {
    let cp = state.log.latest_checkpoint().map_err(|e| err(codes::INTERNAL_ERROR, e.to_string()))?;
    let (size, head) = state.log.head();
    Ok(json!({
        "checkpoint": cp,
        "size": size,
        "head_hash": crate::log::entry::hex(&head),
        "pubkey": state.log.key().public().to_text(),
    }))
}

fn approval_json(a: &Approval) -> Value {
    serde_json::to_value(a).unwrap_or(Value::Null)
}

/// Resolves an approval id or a unique prefix of 8+ characters. The book's lock must be held.
fn resolve_approval(book: &HashMap<String, Approval>, id: &str) -> Result<String, ErrorObjectOwned> {
    if book.contains_key(id) {
        return Ok(id.to_owned());
    }
    if id.len() >= 8 {
        let matches: Vec<&String> = book.keys().filter(|k| k.starts_with(id)).collect();
        match matches.as_slice() {
            [one] => return Ok((*one).clone()),
            [] => {}
            many => {
                let names: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
                return Err(err(
                    codes::CONFLICT,
                    format!("approval id prefix `{id}` is ambiguous: {}", names.join(", ")),
                ));
            }
        }
    }
    Err(err(codes::NOT_FOUND, format!("no approval `{id}`")))
}

fn approval_id_param(map: &Map<String, Value>) -> Result<String, ErrorObjectOwned> {
    opt_string(map, "approval_id")?
        .or(opt_string(map, "id")?)
        .ok_or_else(|| invalid("missing field `approval_id`"))
}

async fn approval_list(state: Arc<State>, params: Params<'static>, _: Extensions) -> RpcResult {
    let map = params_object(&params)?;
    let all = match opt_string(&map, "status")?.as_deref() {
        None | Some("pending") => false,
        Some("all") => true,
        Some(other) => return Err(invalid(format!("`status` `{other}` must be `pending` or `all`"))),
    };
    let mut book = state.approvals.by_id.lock().await;
    let ids: Vec<String> = book.keys().cloned().collect();
    for id in &ids {
        expire_if_due(&state, &mut book, id).await?;
    }
    let mut list: Vec<&Approval> =
        book.values().filter(|a| all || a.status == approvals::Status::Pending).collect();
    list.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    Ok(json!({ "approvals": list.iter().map(|a| approval_json(a)).collect::<Vec<_>>() }))
}

async fn approval_decide(
    state: Arc<State>,
    params: Params<'static>,
    ext: Extensions,
    approve: bool,
) -> RpcResult {
    let map = params_object(&params)?;
    let id = approval_id_param(&map)?;
    let reason = opt_string(&map, "reason")?;
    let peer = ext.get::<Peer>().copied();
    let policy = state.policy.load_full();
    if !approvals::may_approve(peer, state.own_uid, &policy.policy.approvals) {
        return Err(err(
            codes::NOT_AUTHORIZED,
            format!(
                "not authorized: uid {} is not an approver (root, the daemon's uid {}, or `approvals.approvers`)",
                peer.map_or_else(|| "unknown".to_owned(), |p| p.uid.to_string()),
                state.own_uid
            ),
        ));
    }
    let mut book = state.approvals.by_id.lock().await;
    let id = resolve_approval(&book, &id)?;
    expire_if_due(&state, &mut book, &id).await?;
    let Some(current) = book.get(&id).cloned() else {
        return Err(err(codes::NOT_FOUND, format!("no approval `{id}`")));
    };
    if let (Some(req), Some(p)) = (current.requested_by, peer)
        && req.pid == p.pid
        && p.uid != 0
    {
        return Err(err(codes::NOT_AUTHORIZED, "not authorized: an agent cannot approve its own call"));
    }
    if current.status != approvals::Status::Pending {
        return Err(err(codes::CONFLICT, format!("approval `{id}` is already {}", current.status.as_str())));
    }
    let mut next = current;
    next.status = if approve { approvals::Status::Approved } else { approvals::Status::Denied };
    next.decided_by = peer;
    next.reason = reason;
    let body = approvals::transition_entry(&next, peer);
    state
        .log
        .append_with_state(body, Some(approvals::state_write(&next, false)))
        .await
        .map_err(|e| err(codes::INTERNAL_ERROR, format!("the decision could not be recorded: {e}")))?;
    book.insert(id, next.clone());
    drop(book);
    state.approvals.changed.notify_waiters();
    Ok(approval_json(&next))
}

async fn approval_wait(state: Arc<State>, params: Params<'static>, _: Extensions) -> RpcResult {
    let map = params_object(&params)?;
    let id = approval_id_param(&map)?;
    let timeout = match map.get("timeout_seconds") {
        None | Some(Value::Null) => 30.0,
        Some(v) => v
            .as_f64()
            .filter(|t| (0.0..=3600.0).contains(t))
            .ok_or_else(|| invalid("`timeout_seconds` must be a number from 0 to 3600"))?,
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs_f64(timeout);
    loop {
        let notified = state.approvals.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (current, id_full) = {
            let mut book = state.approvals.by_id.lock().await;
            let id_full = resolve_approval(&book, &id)?;
            expire_if_due(&state, &mut book, &id_full).await?;
            (book.get(&id_full).cloned(), id_full)
        };
        let Some(current) = current else {
            return Err(err(codes::NOT_FOUND, format!("no approval `{id_full}`")));
        };
        if current.status != approvals::Status::Pending {
            let mut v = approval_json(&current);
            if let Value::Object(m) = &mut v {
                m.insert("timed_out".into(), json!(false));
            }
            return Ok(v);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            let mut v = approval_json(&current);
            if let Value::Object(m) = &mut v {
                m.insert("timed_out".into(), json!(true));
            }
            return Ok(v);
        }
        let until_expiry = current.expires_ms.saturating_sub(entry::now_ms()) + 5;
        let wake = deadline.min(now + std::time::Duration::from_millis(until_expiry));
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}

fn action_state(state: &State, rec: &Value) -> String {
    let id = rec.get("id").and_then(Value::as_str).unwrap_or_default();
    if let Some(s) = state
        .log
        .state_get(&format!("action/{id}"))
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_slice::<Value>(&v).ok())
        .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_owned))
    {
        return s;
    }
    match (rec.get("effect").and_then(Value::as_str), rec.get("reason_code").and_then(Value::as_str)) {
        (Some("PERMIT"), Some("APPROVAL_GRANTED")) => "approved".into(),
        (Some("PERMIT"), _) => "permitted".into(),
        (Some("DEFER"), _) => "deferred".into(),
        _ => "denied".into(),
    }
}

async fn action_transition(
    state: Arc<State>,
    params: Params<'static>,
    ext: Extensions,
    start: bool,
) -> RpcResult {
    let map = params_object(&params)?;
    let id = required_id(&map)?;
    let (success, error, result) = if start {
        (None, None, None)
    } else {
        let success = match map.get("success") {
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("`success` must be true or false")),
            None => return Err(invalid("missing field `success`")),
        };
        (Some(success), opt_string(&map, "error")?, map.get("result").cloned().filter(|v| !v.is_null()))
    };
    let peer = ext.get::<Peer>().copied();
    let rec = find_action(&state, &id)?;
    let action_id = rec.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let caller_uid = rec.get("caller").and_then(|c| c.get("uid")).and_then(Value::as_u64);
    let policy = state.policy.load_full();
    let allowed = peer.is_some_and(|p| Some(u64::from(p.uid)) == caller_uid)
        || approvals::may_approve(peer, state.own_uid, &policy.policy.approvals);
    if !allowed {
        return Err(err(
            codes::NOT_AUTHORIZED,
            "not authorized: only the agent's uid or an approver may report on this action",
        ));
    }
    let _guard = state.action_lock.lock().await;
    let current = action_state(&state, &rec);
    let next = match (start, current.as_str(), success) {
        (true, "permitted" | "approved", _) => "executing",
        (false, "executing", Some(true)) => "succeeded",
        (false, "executing", Some(false)) => "failed",
        (true, other, _) => {
            return Err(err(
                codes::CONFLICT,
                format!("action `{action_id}` is {other}: only a permitted or approved action can start"),
            ));
        }
        (false, other, _) => {
            return Err(err(
                codes::CONFLICT,
                format!("action `{action_id}` is {other}: only an executing action can report a result"),
            ));
        }
    };
    let mut fields =
        json!({"action_id": action_id, "status": next, "agent_id": rec.get("agent_id"), "by": peer});
    if let Value::Object(m) = &mut fields {
        if let Some(e) = &error {
            m.insert("error".into(), json!(e.chars().take(1024).collect::<String>()));
        }
        if let Some(r) = &result {
            let text = canonical_json(r).map_err(|e| invalid(format!("`result`: {e}")))?;
            m.insert("result_hash".into(), json!(faramesh_proto::canonical::sha256_hex(text.as_bytes())));
            m.insert("result_size".into(), json!(text.len()));
            let mut cut = text.len().min(1024);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            m.insert("result_summary".into(), json!(&text[..cut]));
        }
    }
    let body = dpr::event_entry("action", fields);
    let key = format!("action/{action_id}");
    let value = json!({"status": next}).to_string().into_bytes();
    let writes: StateWrites = Box::new(move |_, _| vec![(key, Some(value))]);
    state
        .log
        .append_with_state(body, Some(writes))
        .await
        .map_err(|e| err(codes::INTERNAL_ERROR, format!("cannot record the transition: {e}")))?;
    Ok(json!({"action_id": action_id, "status": next}))
}

/// Builds the method table.
pub fn module(state: Arc<State>) -> Result<RpcModule<State>, jsonrpsee::core::RegisterMethodError> {
    let mut m = RpcModule::from_arc(state);
    m.register_async_method("govern", |p, s, e| govern(s, p, e))?;
    m.register_async_method("decide", |p, s, e| decide(s, p, e))?;
    m.register_async_method("status", |_, s, _| async move { Ok::<Value, ErrorObjectOwned>(s.status()) })?;
    m.register_async_method("policy.status", |_, s, _| async move {
        Ok::<Value, ErrorObjectOwned>(s.policy_status())
    })?;
    m.register_async_method("policy.reload", |p, s, e| policy_reload(s, p, e))?;
    m.register_async_method("policy.explain", |p, s, e| policy_explain(s, p, e))?;
    m.register_async_method("action.get", |p, s, e| action_get(s, p, e))?;
    m.register_async_method("action.list", |p, s, e| action_list(s, p, e))?;
    m.register_async_method("action.events", |p, s, e| action_events(s, p, e))?;
    m.register_async_method("log.verify", |p, s, e| log_verify(s, p, e))?;
    m.register_async_method("log.checkpoint", |p, s, e| log_checkpoint(s, p, e))?;
    m.register_async_method("log.entries", |p, s, e| log_entries(s, p, e))?;
    m.register_async_method("approval.list", |p, s, e| approval_list(s, p, e))?;
    m.register_async_method("approval.approve", |p, s, e| approval_decide(s, p, e, true))?;
    m.register_async_method("approval.deny", |p, s, e| approval_decide(s, p, e, false))?;
    m.register_async_method("approval.wait", |p, s, e| approval_wait(s, p, e))?;
    m.register_async_method("action.start", |p, s, e| action_transition(s, p, e, true))?;
    m.register_async_method("action.result", |p, s, e| action_transition(s, p, e, false))?;
    Ok(m)
}
