//! The socket's JSON-RPC methods, registered in a jsonrpsee `RpcModule`. Handlers get the
//! caller's peer credentials through the request's `Extensions`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use faramesh_proto::{Call, Decision, Effect, ReasonCode, Resolution, StructuredDenial, canonical_json};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use jsonrpsee::{Extensions, RpcModule};
use serde_json::{Map, Value, json};

use super::state::State;
use crate::log::dpr::{self, Caller};
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
    if let Err(e) = canonical_json(&args) {
        return Err(invalid(format!("`args`: {e}")));
    }
    if let Err(e) = canonical_json(&context) {
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
fn internal_error(mut d: Decision, why: String) -> Decision {
    d.effect = Effect::Deny;
    d.reason_code = ReasonCode::InternalError;
    d.reason = why.clone();
    d.structured_denial = Some(StructuredDenial {
        code: ReasonCode::InternalError,
        rule_id: d.rule_id.clone(),
        rule_ref: d.rule_ref.clone(),
        human_message: why,
        resolution: None,
    });
    d
}

/// An agent id pinned to a uid may only be claimed by that uid.
fn check_uid_pin(policy: &policy::Policy, call: &Call, peer: Option<Peer>, d: Decision) -> Decision {
    let Some(profile) = policy.agents.get(&call.agent_id) else { return d };
    let Some(pinned) = profile.uid else { return d };
    if peer.is_some_and(|p| p.uid == pinned) {
        return d;
    }
    let rule_id = format!("agents.{}.uid", profile.name);
    let reason = format!(
        "caller uid {} may not act as agent `{}` (pinned to uid {pinned})",
        peer.map_or_else(|| "unknown".to_owned(), |p| p.uid.to_string()),
        profile.name
    );
    Decision {
        effect: Effect::Deny,
        reason_code: ReasonCode::ProfileDisallowsTool,
        reason: reason.clone(),
        rule_id: Some(rule_id.clone()),
        rule_ref: Some(profile.tools_ref.clone()),
        structured_denial: Some(StructuredDenial {
            code: ReasonCode::ProfileDisallowsTool,
            rule_id: Some(rule_id.clone()),
            rule_ref: Some(profile.tools_ref.clone()),
            human_message: reason,
            resolution: Some(Resolution::RuleBlock { rule_id: Some(rule_id) }),
        }),
        ..d
    }
}

async fn govern(state: Arc<State>, params: Params<'static>, ext: Extensions) -> RpcResult {
    let started = std::time::Instant::now();
    let (call, _resume) = parse_call(&params_object(&params)?)?;
    let peer = ext.get::<Peer>().copied();
    let loaded = state.policy.load_full();
    let decision = policy::decide(&loaded.policy, &call);
    let mut decision = check_uid_pin(&loaded.policy, &call, peer, decision);
    let approval_id = (decision.effect == Effect::Defer).then(dpr::new_id);
    if let (Some(id), Some(denial)) = (&approval_id, decision.structured_denial.as_mut()) {
        denial.resolution = Some(Resolution::PendingApproval { approval_id: Some(id.clone()) });
    }
    let body = dpr::decision_entry(&call, &decision, peer, approval_id.as_deref(), state.log.redact_keys());
    let (decision, action_id, approval_id) = match state.log.append(body).await {
        Ok(appended) => (decision, appended.id, approval_id),
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

async fn decide(state: Arc<State>, params: Params<'static>, ext: Extensions) -> RpcResult {
    let (call, _) = parse_call(&params_object(&params)?)?;
    let peer = ext.get::<Peer>().copied();
    let loaded = state.policy.load_full();
    let decision = policy::decide(&loaded.policy, &call);
    let decision = check_uid_pin(&loaded.policy, &call, peer, decision);
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
    find_action(&state, &id)
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
    let mut out = Vec::new();
    if let Some(agent) = &agent {
        for record in state.log.by_agent(agent, 10_000).map_err(internal)? {
            let v = record_value(&record);
            if keep(&v) {
                out.push(v);
                if out.len() >= limit {
                    break;
                }
            }
        }
    } else {
        let (size, _) = state.log.head();
        let mut seq = size;
        let mut scanned = 0;
        while seq >= 1 && out.len() < limit && scanned < 100_000 {
            if let Some(record) = state.log.get(seq).map_err(internal)? {
                let v = record_value(&record);
                if keep(&v) {
                    out.push(v);
                }
            }
            seq -= 1;
            scanned += 1;
        }
    }
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
    Ok(m)
}
