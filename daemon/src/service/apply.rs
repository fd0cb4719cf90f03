//! The core's requests as one closed type: [`Request::parse`] reads a socket frame's method name
//! and params once; an HTTP route builds its variant from the path and a body read by the same
//! parsers (`CallRequest::from_json`, `ListQuery::from_json`, …); [`Service::apply`] answers
//! every one. Besides these, the doors call only the dashboard's own reads (overview, stats,
//! explain, sign-in) and the event streams (`subscribe`, `entries`), which are `Service` methods.

use serde_json::{Map, Value, json};

use super::grants::{ApprovalAnswer, GrantRequest};
use super::request::{CallRequest, Fields, ListQuery, PruneRequest, Transition};
use super::{ExplainTarget, Identity, Service, ServiceError, mcp_pins};

/// Every request the core answers, with its params read and checked.
#[derive(Debug)]
pub enum Request {
    /// `govern`: decide a call and record it.
    Govern(CallRequest),
    /// `decide`: decide a call, apply nothing, record nothing.
    Decide(CallRequest),
    /// `status`.
    Status,
    /// `policy.status`.
    PolicyStatus,
    /// `policy.reload`.
    PolicyReload,
    /// `policy.explain`: a recorded action or a hypothetical call.
    PolicyExplain(ExplainTarget),
    /// `action.submit`: `govern`, answered as an action.
    ActionSubmit(CallRequest),
    /// `action.get`.
    ActionGet {
        /// The action id or prefix.
        id: String,
        /// Answer in the v1 shape.
        v1: bool,
    },
    /// `action.list`.
    ActionList {
        /// Filters and paging.
        query: ListQuery,
        /// Answer in the v1 shape.
        v1: bool,
    },
    /// `action.events`.
    ActionEvents {
        /// The action id or prefix.
        id: String,
        /// Answer in the v1 shape.
        v1: bool,
    },
    /// `action.start` or `action.result`.
    ActionTransition {
        /// The action id or prefix.
        id: String,
        /// Start, or the result.
        transition: Transition,
        /// Answer in the v1 shape.
        v1: bool,
    },
    /// `result.check`: a permitted action's result, read by the `results:` rules.
    ResultCheck {
        /// The action id or prefix.
        id: String,
        /// The tool's result.
        result: Value,
    },
    /// `approval.statement`: the text an approver signs.
    ApprovalStatement {
        /// The approval id or prefix.
        id: String,
        /// Approve, or deny.
        approve: bool,
        /// The approver's name.
        approver: String,
        /// How long the statement is valid (ms).
        valid_ms: u64,
    },
    /// `approval.list`.
    ApprovalList {
        /// Every approval, not only the pending ones.
        all: bool,
    },
    /// `approval.approve` or `approval.deny`.
    ApprovalAnswer {
        /// The approval id or prefix.
        id: String,
        /// The answer (and any grant).
        answer: ApprovalAnswer,
    },
    /// `approval.wait`.
    ApprovalWait {
        /// The approval id or prefix.
        id: String,
        /// How long to wait.
        timeout: std::time::Duration,
    },
    /// `log.verify`.
    LogVerify {
        /// A checkpoint to check the log against.
        against: Option<String>,
        /// A witness policy (C2SP `tlog-policy`).
        witness_policy: Option<String>,
    },
    /// `log.checkpoint`.
    LogCheckpoint,
    /// `log.proof`.
    LogProof {
        /// The entry, by seq.
        seq: Option<u64>,
        /// Or by action id.
        id: Option<String>,
    },
    /// `log.entries`.
    LogEntries {
        /// The first seq.
        from_seq: Option<u64>,
        /// Or a time.
        since: Option<String>,
        /// At most this many.
        limit: usize,
    },
    /// `kill.engage`: every call (of `agent_id`, or all) is DENY from now on.
    KillEngage {
        /// The agent; `None`: every agent.
        agent_id: Option<String>,
        /// Why.
        reason: Option<String>,
    },
    /// `kill.lift`.
    KillLift {
        /// The agent; `None`: the switch for every agent.
        agent_id: Option<String>,
    },
    /// `export.rewind`.
    ExportRewind {
        /// The destination.
        name: String,
        /// Where its cursor goes.
        to_seq: u64,
    },
    /// `log.prune`.
    LogPrune(PruneRequest),
    /// `log.exported`.
    LogExported {
        /// The first entry exported.
        from: u64,
        /// The last.
        through: u64,
    },
    /// `log.backup`.
    LogBackup,
    /// `dashboard.login`.
    DashboardLogin,
    /// `grant.create`.
    GrantCreate(GrantRequest),
    /// `grant.list`.
    GrantList,
    /// `grant.revoke`.
    GrantRevoke {
        /// The grant id.
        id: String,
    },
    /// `mcp.tools`: a gateway reports a server's tool list.
    McpTools {
        /// The server.
        server: String,
        /// Its name as it reports it.
        server_name: Option<String>,
        /// The `tools/list` result's tools.
        tools: Vec<Value>,
    },
    /// `mcp.trust`.
    McpTrust {
        /// The server.
        server: String,
        /// One tool, or all.
        tool: Option<String>,
        /// Pin the current definitions anew.
        rebind: bool,
    },
    /// `mcp.pins`.
    McpPins {
        /// Only this server's.
        server: Option<String>,
    },
    /// `POST /v1/gate/decide`: `decide`, answered in the v1 shape.
    DecideV1(CallRequest),
    /// `GET /v1/actions`: a page of actions in the v1 shape.
    ActionPage(ListQuery),
    /// `POST /v1/actions/{id}/approval`: the approval of an action, answered by the action's id
    /// (and the approval token, when the caller gives one).
    ApproveAction {
        /// The action id or prefix.
        action_id: String,
        /// The answer (and any grant).
        answer: ApprovalAnswer,
        /// The approval token the caller gave.
        token: Option<String>,
    },
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

fn approval_id(p: &Map<String, Value>) -> Result<String, ServiceError> {
    let f = Fields(p);
    f.string("approval_id")?.or(f.string("id")?).ok_or_else(|| ServiceError::missing("approval_id"))
}

fn required(f: &Fields<'_>, key: &str) -> Result<String, ServiceError> {
    f.string(key)?.ok_or_else(|| ServiceError::missing(key))
}

impl Request {
    /// Reads `method`'s params. `Ok(None)`: no such method.
    pub fn parse(method: &str, p: &Map<String, Value>) -> Result<Option<Request>, ServiceError> {
        let f = Fields(p);
        Ok(Some(match method {
            "govern" => Request::Govern(CallRequest::from_json(p)?),
            "decide" => Request::Decide(CallRequest::from_json(p)?),
            "status" => Request::Status,
            "policy.status" => Request::PolicyStatus,
            "policy.reload" => Request::PolicyReload,
            "policy.explain" => Request::PolicyExplain(explain_target(p)?),
            "action.submit" => Request::ActionSubmit(CallRequest::from_json(p)?),
            "action.get" => Request::ActionGet { id: f.id("action_id")?, v1: wants_v1(p)? },
            "action.list" => Request::ActionList { query: ListQuery::from_json(p, 50)?, v1: wants_v1(p)? },
            "action.events" => Request::ActionEvents { id: f.id("action_id")?, v1: wants_v1(p)? },
            "action.start" | "action.result" => {
                let id = f.id("action_id")?;
                let transition = if method == "action.start" {
                    Transition::Start
                } else {
                    Transition::result_from_json(p)?
                };
                Request::ActionTransition { id, transition, v1: wants_v1(p)? }
            }
            "result.check" => Request::ResultCheck {
                id: f.id("action_id")?,
                result: p.get("result").cloned().ok_or_else(|| ServiceError::missing("result"))?,
            },
            "approval.statement" => Request::ApprovalStatement {
                id: f.id("approval_id")?,
                approve: match f.string("decision")?.as_deref() {
                    Some("approve") => true,
                    Some("deny") => false,
                    _ => {
                        return Err(ServiceError::invalid(
                            "decision",
                            "`decision` must be `approve` or `deny`",
                        ));
                    }
                },
                approver: required(&f, "approver")?,
                valid_ms: f.uint("valid_seconds", 1..=3600)?.unwrap_or(300) * 1000,
            },
            "approval.list" => Request::ApprovalList {
                all: match f.string("status")?.as_deref() {
                    None | Some("pending") => false,
                    Some("all") => true,
                    Some(other) => {
                        return Err(ServiceError::invalid(
                            "status",
                            format!("`status` `{other}` must be `pending` or `all`"),
                        ));
                    }
                },
            },
            "approval.approve" | "approval.deny" => Request::ApprovalAnswer {
                id: approval_id(p)?,
                answer: ApprovalAnswer::from_json(p, Some(method == "approval.approve"))?,
            },
            "approval.wait" => {
                let id = approval_id(p)?;
                let timeout = match p.get("timeout_seconds") {
                    None | Some(Value::Null) => 30.0,
                    Some(v) => v.as_f64().filter(|t| (0.0..=3600.0).contains(t)).ok_or_else(|| {
                        ServiceError::invalid(
                            "timeout_seconds",
                            "`timeout_seconds` must be a number from 0 to 3600",
                        )
                    })?,
                };
                Request::ApprovalWait { id, timeout: std::time::Duration::from_secs_f64(timeout) }
            }
            "log.verify" => Request::LogVerify {
                against: f.string("against")?,
                witness_policy: f.string("witness_policy")?,
            },
            "log.checkpoint" => Request::LogCheckpoint,
            "log.proof" => Request::LogProof { seq: f.uint("seq", 1..=u64::MAX)?, id: f.string("id")? },
            "log.entries" => {
                let limit = usize::try_from(f.uint("limit", 1..=10_000)?.unwrap_or(1000)).unwrap_or(1000);
                let from_seq = match p.get("from_seq") {
                    Some(v) if !v.is_null() => Some(v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                        ServiceError::invalid("from_seq", "`from_seq` must be a positive integer")
                    })?),
                    _ => None,
                };
                Request::LogEntries { from_seq, since: f.string("since")?, limit }
            }
            "kill.engage" => {
                Request::KillEngage { agent_id: f.string("agent_id")?, reason: f.string("reason")? }
            }
            "kill.lift" => Request::KillLift { agent_id: f.string("agent_id")? },
            "export.rewind" => Request::ExportRewind {
                name: required(&f, "name")?,
                to_seq: p.get("to_seq").and_then(Value::as_u64).ok_or_else(|| {
                    ServiceError::invalid("to_seq", "`to_seq` must be a non-negative integer")
                })?,
            },
            "log.prune" => Request::LogPrune(PruneRequest::from_json(p)?),
            "log.exported" => Request::LogExported {
                through: f
                    .uint("through_seq", 0..=u64::MAX)?
                    .ok_or_else(|| ServiceError::missing("through_seq"))?,
                from: f.uint("from_seq", 1..=u64::MAX)?.unwrap_or(1),
            },
            "log.backup" => Request::LogBackup,
            "dashboard.login" => Request::DashboardLogin,
            "grant.create" => Request::GrantCreate(GrantRequest::from_json(p)?),
            "grant.list" => Request::GrantList,
            "grant.revoke" => Request::GrantRevoke { id: required(&f, "id")? },
            "mcp.tools" => {
                let server = required(&f, "server")?;
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
                // What a quarantine does is the policy's: a reporter that names it is refused
                // rather than heard (it would otherwise turn every proxy's DENY into DEFER for
                // the server).
                if p.contains_key("quarantine") {
                    return Err(ServiceError::invalid(
                        "quarantine",
                        "`quarantine` is not the reporter's to say: what a quarantined tool's calls get is the policy's \
                         `mcp: { quarantine: defer | deny }`",
                    ));
                }
                Request::McpTools { server, server_name, tools }
            }
            "mcp.trust" => Request::McpTrust {
                server: required(&f, "server")?,
                tool: f.string("tool")?,
                rebind: f.boolean("rebind")?.unwrap_or(false),
            },
            "mcp.pins" => Request::McpPins { server: f.string("server")? },
            _ => return Ok(None),
        }))
    }
}

fn explain_target(p: &Map<String, Value>) -> Result<ExplainTarget, ServiceError> {
    if p.contains_key("id") || p.contains_key("action_id") {
        return Ok(ExplainTarget::Action(Fields(p).id("action_id")?));
    }
    let call = match p.get("call") {
        Some(Value::Object(c)) => CallRequest::from_json(c)?,
        Some(_) => return Err(ServiceError::invalid("call", "`call` must be an object")),
        None => CallRequest::from_json(p)?,
    };
    Ok(ExplainTarget::Call(Box::new(call.call)))
}

fn to_json(v: impl serde::Serialize) -> Result<Value, ServiceError> {
    serde_json::to_value(v).map_err(|e| ServiceError::internal(e.to_string()))
}

impl Service {
    /// Answers a request for `who`.
    pub async fn apply(&self, req: Request, who: &Identity) -> Result<Value, ServiceError> {
        let s = self;
        match req {
            Request::Govern(call) => Ok(s.govern(call, who).await?.to_json()),
            Request::Decide(call) => Ok(s.decide(&call, who)?.to_json()),
            Request::Status => Ok(s.state().status()),
            Request::PolicyStatus => Ok(s.state().policy_status()),
            Request::PolicyReload => s.reload(who).await,
            Request::PolicyExplain(target) => s.explain(target, who),
            Request::ActionSubmit(call) => s.submit(call, who).await,
            Request::ActionGet { id, v1 } => {
                let view = s.find_action(&id, who)?;
                Ok(if v1 { s.v1_action(&view, who) } else { view.socket_json() })
            }
            Request::ActionEvents { id, v1 } => {
                if v1 {
                    return Ok(Value::Array(s.v1_events(&id, who)?));
                }
                let (view, events) = s.action_events(&id, who)?;
                // The socket's timeline is the decision and the lifecycle entries naming its
                // action id.
                let action_id = view.id().to_owned();
                let events: Vec<Value> = events
                    .into_iter()
                    .enumerate()
                    .filter(|(i, e)| {
                        *i == 0 || e.get("action_id").and_then(Value::as_str) == Some(action_id.as_str())
                    })
                    .map(|(_, e)| e)
                    .collect();
                Ok(json!({ "action_id": action_id, "events": events }))
            }
            Request::ActionList { query, v1 } => {
                let views = s.action_list(&query, who)?;
                let next_cursor =
                    views.last().filter(|_| views.len() == query.limit).map(|v| v.id().to_owned());
                let actions: Vec<Value> =
                    views.iter().map(|v| if v1 { s.v1_action(v, who) } else { v.socket_json() }).collect();
                Ok(json!({ "actions": actions, "next_cursor": next_cursor }))
            }
            Request::ResultCheck { id, result } => s.result_check(&id, result, who).await,
            Request::ApprovalStatement { id, approve, approver, valid_ms } => {
                s.approval_statement(&id, approve, &approver, valid_ms, who)
            }
            Request::ActionTransition { id, transition, v1 } => {
                let view = s.action_transition(&id, transition, who).await?;
                if v1 {
                    return Ok(s.v1_action(&view, who));
                }
                Ok(json!({"action_id": view.id(), "status": view.status.socket_name()}))
            }
            Request::ApprovalList { all } => Ok(json!({ "approvals": s.approval_list(all, who).await? })),
            Request::ApprovalAnswer { id, answer } => {
                let (a, grant) = s.answer_approval(&id, answer, who).await?;
                // The approver is shown the edit as the log keeps it.
                let mut v = to_json(a.shown(false))?;
                if let Some(g) = grant {
                    v["grant"] = to_json(g)?;
                }
                Ok(v)
            }
            Request::ApprovalWait { id, timeout } => {
                let (a, timed_out) = s.approval_wait(&id, timeout, who).await?;
                let mut v = to_json(a)?;
                if let Value::Object(m) = &mut v {
                    m.insert("timed_out".into(), json!(timed_out));
                }
                Ok(v)
            }
            Request::LogVerify { against, witness_policy } => {
                to_json(s.verify_witnessed(against, witness_policy).await?)
            }
            Request::LogCheckpoint => s.checkpoint(),
            Request::LogProof { seq, id } => s.proof(seq, id, who),
            Request::LogEntries { from_seq, since, limit } => {
                let (entries, next_seq) = s.entries(from_seq, since, limit, who)?;
                Ok(json!({"entries": entries, "next_seq": next_seq}))
            }
            Request::KillEngage { agent_id, reason } => s.kill_engage(agent_id, reason, who).await,
            Request::KillLift { agent_id } => s.kill_lift(agent_id, who).await,
            Request::ExportRewind { name, to_seq } => s.export_rewind(&name, to_seq, who).await,
            Request::LogPrune(req) => s.log_prune(req, who).await,
            Request::LogExported { from, through } => s.log_exported(from, through, who).await,
            Request::LogBackup => s.log_backup(who).await,
            Request::DashboardLogin => s.dashboard_login(who),
            Request::GrantCreate(req) => to_json(s.grant_create(req, who).await?),
            Request::GrantList => Ok(json!({ "grants": s.grant_list(who)? })),
            Request::GrantRevoke { id } => Ok(json!({ "revoked": s.grant_revoke(&id, who).await? })),
            Request::McpTools { server, server_name, tools } => {
                let statuses = s.mcp_tools(&server, server_name.as_deref(), &tools, who).await?;
                let quarantine = s.state().policy.load().policy.mcp.quarantine;
                let quarantine = if quarantine == faramesh_proto::Effect::Deny { "deny" } else { "defer" };
                Ok(json!({ "tools": statuses, "quarantine": quarantine }))
            }
            Request::McpTrust { server, tool, rebind } => {
                let trusted = s.mcp_trust(&server, tool.as_deref(), rebind, who).await?;
                Ok(json!({ "trusted": trusted, "rebound": rebind }))
            }
            Request::McpPins { server } => {
                let mut pins = Vec::new();
                for (k, pin) in s.state().mcp_pins.all() {
                    let (pin_server, tool) = mcp_pins::split_key(&k);
                    if server.as_deref().is_some_and(|sv| pin_server != sv) {
                        continue;
                    }
                    let mut v = to_json(&pin)?;
                    if let Value::Object(m) = &mut v {
                        m.insert("server".into(), json!(pin_server));
                        m.insert("tool".into(), json!(tool));
                    }
                    pins.push(v);
                }
                Ok(json!({ "pins": pins }))
            }
            Request::DecideV1(call) => s.v1_decide(&call, who),
            Request::ActionPage(query) => {
                let views = s.action_list(&query, who)?;
                let actions: Vec<Value> = views.iter().map(|v| s.v1_action(v, who)).collect();
                let full = actions.len() == query.limit;
                let next = full.then_some(query.offset + actions.len());
                let next_cursor = views.last().filter(|_| full).map(super::ActionView::id);
                Ok(
                    json!({"actions": actions, "limit": query.limit, "offset": query.offset, "next_offset": next,
                          "next_cursor": next_cursor}),
                )
            }
            Request::ApproveAction { action_id, answer, token } => {
                let view = s.approve_action(&action_id, answer, token.as_deref(), who).await?;
                Ok(s.v1_action(&view, who))
            }
        }
    }
}
