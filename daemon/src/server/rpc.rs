//! The socket door: JSON-RPC method names mapped onto the service layer. Params are read once
//! into the service's typed requests; service errors become JSON-RPC error codes.

use std::future::Future;
use std::pin::Pin;

use serde_json::{Map, Value, json};

use crate::service::{
    CallRequest, ErrorKind, ExplainTarget, Fields, Identity, ListQuery, PruneRequest, Service, ServiceError,
    Transition, mcp_pins,
};

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

/// The JSON-RPC code of a service error.
pub fn code_of(e: &ServiceError) -> i32 {
    match e.kind {
        ErrorKind::InvalidParams => codes::INVALID_PARAMS,
        ErrorKind::NotAuthorized => codes::NOT_AUTHORIZED,
        ErrorKind::NotFound => codes::NOT_FOUND,
        ErrorKind::Conflict => codes::CONFLICT,
        ErrorKind::Internal => codes::INTERNAL_ERROR,
    }
}

/// A method's outcome.
pub type RpcResult = Result<Value, ServiceError>;
type Handler = fn(Service, Map<String, Value>, Identity) -> Pin<Box<dyn Future<Output = RpcResult> + Send>>;

/// An entry of the method table.
#[derive(Clone, Copy)]
pub enum Method {
    /// A request answered with one result.
    Call(Handler),
    /// `log.subscribe`: answered with a subscription id, then notifications on the connection.
    Subscribe,
}

/// The method table.
pub fn method(name: &str) -> Option<Method> {
    macro_rules! call {
        ($f:expr) => {
            Some(Method::Call(|s, p, w| Box::pin($f(s, p, w))))
        };
    }
    match name {
        "govern" => call!(govern),
        "decide" => call!(decide),
        "status" => call!(status),
        "policy.status" => call!(policy_status),
        "policy.reload" => call!(policy_reload),
        "policy.explain" => call!(policy_explain),
        "action.submit" => call!(action_submit),
        "action.get" => call!(action_get),
        "action.list" => call!(action_list),
        "action.events" => call!(action_events),
        "action.start" => call!(action_start),
        "action.result" => call!(action_result),
        "approval.list" => call!(approval_list),
        "approval.approve" => call!(approval_approve),
        "approval.deny" => call!(approval_deny),
        "approval.wait" => call!(approval_wait),
        "log.verify" => call!(log_verify),
        "log.checkpoint" => call!(log_checkpoint),
        "log.proof" => call!(log_proof),
        "log.entries" => call!(log_entries),
        "export.rewind" => call!(export_rewind),
        "log.prune" => call!(log_prune),
        "log.exported" => call!(log_exported),
        "log.backup" => call!(log_backup),
        "dashboard.login" => call!(dashboard_login),
        "grant.create" => call!(grant_create),
        "grant.list" => call!(grant_list),
        "grant.revoke" => call!(grant_revoke),
        "mcp.tools" => call!(mcp_tools),
        "mcp.trust" => call!(mcp_trust),
        "mcp.pins" => call!(mcp_pins),
        "log.subscribe" => Some(Method::Subscribe),
        _ => None,
    }
}

async fn status(s: Service, _: Map<String, Value>, _: Identity) -> RpcResult {
    Ok(s.state().status())
}

async fn policy_status(s: Service, _: Map<String, Value>, _: Identity) -> RpcResult {
    Ok(s.state().policy_status())
}

async fn policy_reload(s: Service, _: Map<String, Value>, who: Identity) -> RpcResult {
    s.reload(&who).await
}

async fn log_checkpoint(s: Service, _: Map<String, Value>, _: Identity) -> RpcResult {
    s.checkpoint()
}

async fn action_start(s: Service, p: Map<String, Value>, w: Identity) -> RpcResult {
    action_transition(s, p, w, true).await
}

async fn action_result(s: Service, p: Map<String, Value>, w: Identity) -> RpcResult {
    action_transition(s, p, w, false).await
}

async fn approval_approve(s: Service, p: Map<String, Value>, w: Identity) -> RpcResult {
    approval_decide(s, p, w, true).await
}

async fn approval_deny(s: Service, p: Map<String, Value>, w: Identity) -> RpcResult {
    approval_decide(s, p, w, false).await
}

async fn govern(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let req = CallRequest::from_json(&p)?;
    Ok(s.govern(req, &who).await?.to_json())
}

async fn decide(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let req = CallRequest::from_json(&p)?;
    Ok(s.decide(&req, &who)?.to_json())
}

/// Whether the caller asked for actions in the v1 shape (`"format": "v1"`) rather than the
/// socket's (the DPR with its status; the default, `"format": "dpr"`).
fn wants_v1(p: &Map<String, Value>) -> Result<bool, ServiceError> {
    match Fields(p).string("format")?.as_deref() {
        None | Some("dpr") => Ok(false),
        Some("v1") => Ok(true),
        Some(other) => {
            Err(ServiceError::invalid("format", format!("`format` must be `dpr` or `v1`, not `{other}`")))
        }
    }
}

async fn action_submit(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let req = CallRequest::from_json(&p)?;
    s.submit(req, &who).await
}

async fn action_get(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let id = Fields(&p).id("action_id")?;
    let view = s.find_action(&id, &who)?;
    Ok(if wants_v1(&p)? { s.v1_action(&view, &who) } else { view.socket_json() })
}

async fn action_events(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let id = Fields(&p).id("action_id")?;
    if wants_v1(&p)? {
        return Ok(Value::Array(s.v1_events(&id, &who)?));
    }
    let (view, events) = s.action_events(&id, &who)?;
    // The socket's timeline is the decision and the lifecycle entries naming its action id.
    let action_id = view.id().to_owned();
    let events: Vec<Value> = events
        .into_iter()
        .enumerate()
        .filter(|(i, e)| *i == 0 || e.get("action_id").and_then(Value::as_str) == Some(action_id.as_str()))
        .map(|(_, e)| e)
        .collect();
    Ok(json!({ "action_id": action_id, "events": events }))
}

async fn action_list(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let q = ListQuery::from_json(&p, 50)?;
    let v1 = wants_v1(&p)?;
    let views = s.action_list(&q, &who)?;
    let next_cursor = views.last().filter(|_| views.len() == q.limit).map(|v| v.id().to_owned());
    let actions: Vec<Value> =
        views.iter().map(|v| if v1 { s.v1_action(v, &who) } else { v.socket_json() }).collect();
    Ok(json!({ "actions": actions, "next_cursor": next_cursor }))
}

async fn action_transition(s: Service, p: Map<String, Value>, who: Identity, start: bool) -> RpcResult {
    let id = Fields(&p).id("action_id")?;
    let t = if start { Transition::Start } else { Transition::result_from_json(&p)? };
    let v1 = wants_v1(&p)?;
    let view = s.action_transition(&id, t, &who).await?;
    if v1 {
        return Ok(s.v1_action(&view, &who));
    }
    Ok(json!({"action_id": view.id(), "status": view.status.socket_name()}))
}

async fn policy_explain(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let target = if p.contains_key("id") || p.contains_key("action_id") {
        ExplainTarget::Action(Fields(&p).id("action_id")?)
    } else {
        let call = match p.get("call") {
            Some(Value::Object(c)) => CallRequest::from_json(c)?,
            Some(_) => return Err(ServiceError::invalid("call", "`call` must be an object")),
            None => CallRequest::from_json(&p)?,
        };
        ExplainTarget::Call(Box::new(call.call))
    };
    s.explain(target, &who)
}

async fn approval_list(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let all = match Fields(&p).string("status")?.as_deref() {
        None | Some("pending") => false,
        Some("all") => true,
        Some(other) => {
            return Err(ServiceError::invalid(
                "status",
                format!("`status` `{other}` must be `pending` or `all`"),
            ));
        }
    };
    Ok(json!({ "approvals": s.approval_list(all, &who).await? }))
}

fn approval_id(p: &Map<String, Value>) -> Result<String, ServiceError> {
    let f = Fields(p);
    f.string("approval_id")?.or(f.string("id")?).ok_or_else(|| ServiceError::missing("approval_id"))
}

async fn approval_decide(s: Service, p: Map<String, Value>, who: Identity, approve: bool) -> RpcResult {
    let id = approval_id(&p)?;
    let answer = crate::service::grants::ApprovalAnswer::from_json(&p, Some(approve))?;
    let (a, grant) = s.answer_approval(&id, answer, &who).await?;
    let mut v = serde_json::to_value(a).map_err(|e| ServiceError::internal(e.to_string()))?;
    if let Some(g) = grant {
        v["grant"] = serde_json::to_value(g).unwrap_or(Value::Null);
    }
    Ok(v)
}

async fn grant_create(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let g = s.grant_create(crate::service::grants::GrantRequest::from_json(&p)?, &who).await?;
    serde_json::to_value(g).map_err(|e| ServiceError::internal(e.to_string()))
}

async fn grant_list(s: Service, _: Map<String, Value>, who: Identity) -> RpcResult {
    Ok(json!({ "grants": s.grant_list(&who)? }))
}

async fn grant_revoke(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let id = Fields(&p).string("id")?.ok_or_else(|| ServiceError::missing("id"))?;
    let g = s.grant_revoke(&id, &who).await?;
    Ok(json!({ "revoked": g }))
}

async fn approval_wait(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let id = approval_id(&p)?;
    let timeout = match p.get("timeout_seconds") {
        None | Some(Value::Null) => 30.0,
        Some(v) => v.as_f64().filter(|t| (0.0..=3600.0).contains(t)).ok_or_else(|| {
            ServiceError::invalid("timeout_seconds", "`timeout_seconds` must be a number from 0 to 3600")
        })?,
    };
    let (a, timed_out) = s.approval_wait(&id, std::time::Duration::from_secs_f64(timeout), &who).await?;
    let mut v = serde_json::to_value(a).map_err(|e| ServiceError::internal(e.to_string()))?;
    if let Value::Object(m) = &mut v {
        m.insert("timed_out".into(), json!(timed_out));
    }
    Ok(v)
}

async fn log_verify(s: Service, p: Map<String, Value>, _: Identity) -> RpcResult {
    let against = Fields(&p).string("against")?;
    let policy = Fields(&p).string("witness_policy")?;
    let report = s.verify_witnessed(against, policy).await?;
    serde_json::to_value(report).map_err(|e| ServiceError::internal(e.to_string()))
}

async fn log_proof(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let f = Fields(&p);
    s.proof(f.uint("seq", 1..=u64::MAX)?, f.string("id")?, &who)
}

async fn log_entries(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let f = Fields(&p);
    let limit = f.uint("limit", 1..=10_000)?.unwrap_or(1000) as usize;
    let from_seq = match p.get("from_seq") {
        Some(v) if !v.is_null() => Some(
            v.as_u64()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ServiceError::invalid("from_seq", "`from_seq` must be a positive integer"))?,
        ),
        _ => None,
    };
    let (entries, next_seq) = s.entries(from_seq, f.string("since")?, limit, &who)?;
    Ok(json!({"entries": entries, "next_seq": next_seq}))
}

async fn export_rewind(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let f = Fields(&p);
    let name = f.string("name")?.ok_or_else(|| ServiceError::missing("name"))?;
    let to_seq = p
        .get("to_seq")
        .and_then(Value::as_u64)
        .ok_or_else(|| ServiceError::invalid("to_seq", "`to_seq` must be a non-negative integer"))?;
    s.export_rewind(&name, to_seq, &who).await
}

async fn log_prune(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let req = PruneRequest::from_json(&p)?;
    s.log_prune(req, &who).await
}

async fn mcp_tools(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let f = Fields(&p);
    let server = f.string("server")?.ok_or_else(|| ServiceError::missing("server"))?;
    let server_name = f.string("server_name")?;
    let tools = match p.get("tools") {
        Some(Value::Array(t)) => t.clone(),
        _ => {
            return Err(ServiceError::invalid(
                "tools",
                "`tools` must be the list a `tools/list` result holds",
            ));
        }
    };
    // What a quarantine does is the policy's: a reporter that names it is refused rather than
    // heard (it would otherwise turn every proxy's DENY into DEFER for the server).
    if p.contains_key("quarantine") {
        return Err(ServiceError::invalid(
            "quarantine",
            "`quarantine` is not the reporter's to say: what a quarantined tool's calls get is the policy's \
             `mcp: { quarantine: defer | deny }`",
        ));
    }
    let statuses = s.mcp_tools(&server, server_name.as_deref(), &tools, &who).await?;
    let quarantine = s.state().policy.load().policy.mcp.quarantine;
    Ok(
        json!({ "tools": statuses, "quarantine": if quarantine == faramesh_proto::Effect::Deny { "deny" } else { "defer" } }),
    )
}

async fn mcp_trust(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let f = Fields(&p);
    let server = f.string("server")?.ok_or_else(|| ServiceError::missing("server"))?;
    let tool = f.string("tool")?;
    let rebind = f.boolean("rebind")?.unwrap_or(false);
    let trusted = s.mcp_trust(&server, tool.as_deref(), rebind, &who).await?;
    Ok(json!({ "trusted": trusted, "rebound": rebind }))
}

async fn mcp_pins(s: Service, p: Map<String, Value>, _who: Identity) -> RpcResult {
    let server = Fields(&p).string("server")?;
    let pins: Vec<Value> = s
        .state()
        .mcp_pins
        .all()
        .into_iter()
        .filter(|(k, _)| server.as_deref().is_none_or(|sv| mcp_pins::split_key(k).0 == sv))
        .map(|(k, pin)| {
            let (server, tool) = mcp_pins::split_key(&k);
            let mut v = serde_json::to_value(&pin).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("server".into(), json!(server));
                m.insert("tool".into(), json!(tool));
            }
            v
        })
        .collect();
    Ok(json!({ "pins": pins }))
}

async fn log_exported(s: Service, p: Map<String, Value>, who: Identity) -> RpcResult {
    let f = Fields(&p);
    let through = f.uint("through_seq", 0..=u64::MAX)?.ok_or_else(|| ServiceError::missing("through_seq"))?;
    let from = f.uint("from_seq", 1..=u64::MAX)?.unwrap_or(1);
    s.log_exported(from, through, &who).await
}

async fn log_backup(s: Service, _: Map<String, Value>, who: Identity) -> RpcResult {
    s.log_backup(&who).await
}

async fn dashboard_login(s: Service, _: Map<String, Value>, who: Identity) -> RpcResult {
    s.dashboard_login(&who)
}
