//! `faramesh mcp`: a stdio proxy between an MCP client and an MCP server that asks the daemon
//! about every `tools/call` before the server sees it. See `docs/mcp.md`.
//!
//! MCP's stdio transport is newline-delimited JSON-RPC. Every message, both ways, is parsed
//! strictly and relayed as the proxy re-serializes it (`faramesh_proto::mcp`), never as the bytes received;
//! a `tools/call` is decided first (then forwarded or answered) and, with
//! `--hide-denied-tools`, `tools/list` results are filtered. It does not use the `rmcp` SDK: a
//! typed SDK would pin a protocol version, while the proxy needs to read exactly two methods
//! and keep every other field as it came.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};

use crate::args::SocketArg;
use crate::client;
use faramesh_proto::mcp::{self as mcp_msg, Message};

/// The longest line relayed (either way); longer ones are refused, not forwarded.
const MAX_LINE: usize = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DenyAs {
    /// An MCP tool result with `isError: true` (the model can read it).
    Result,
    /// A JSON-RPC error.
    Error,
}

#[derive(Args, Debug)]
#[command(after_help = "Example (in an MCP client's config, in place of the server's command):\n  \
    faramesh mcp --agent-id ide-agent --tool-prefix files -- npx @modelcontextprotocol/server-filesystem /srv")]
pub struct McpArgs {
    /// The agent id every call is decided for.
    #[arg(long)]
    pub agent_id: String,
    /// The `tool` the policy sees (default: the server's name from its handshake in stdio mode,
    /// `mcp` in HTTP mode); the MCP tool name is the `operation`.
    #[arg(long)]
    pub tool_prefix: Option<String>,
    /// How a denial is answered.
    #[arg(long, value_enum, default_value_t = DenyAs::Result)]
    pub deny_as: DenyAs,
    /// DEFER: `answer` (at once, "pending approval <id>"; the model's retry of the same call
    /// resumes it), `wait[=SECONDS]` (hold the call until a human decides; default 300 s), or
    /// `elicit` (send the user to the dashboard by MCP URL elicitation, then hold).
    #[arg(long, default_value = "answer")]
    pub defer: String,
    /// Drop from `tools/list` the tools the policy denies outright for this agent.
    #[arg(long)]
    pub hide_denied_tools: bool,
    #[command(flatten)]
    pub socket: SocketArg,
    /// Streamable-HTTP mode: serve MCP clients on this address (loopback) ...
    #[arg(long, requires = "upstream")]
    pub listen: Option<std::net::SocketAddr>,
    /// ... and relay to this MCP endpoint (`http://host:port/mcp`).
    #[arg(long, requires = "listen")]
    pub upstream: Option<String>,
    /// The MCP server's command and arguments (after `--`; stdio mode).
    #[arg(last = true, num_args = 1..)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Defer {
    Answer,
    Wait(Duration),
    /// Send the user to the dashboard (MCP URL elicitation), then hold the call.
    Elicit,
}

fn parse_defer(s: &str) -> Result<Defer> {
    match s {
        "answer" => Ok(Defer::Answer),
        "elicit" => Ok(Defer::Elicit),
        "wait" => Ok(Defer::Wait(Duration::from_secs(300))),
        _ => match s.strip_prefix("wait=").and_then(|n| n.parse::<u64>().ok()) {
            Some(n) if n > 0 && n <= 3600 => Ok(Defer::Wait(Duration::from_secs(n))),
            _ => bail!("`--defer` `{s}` must be `answer`, `wait`, `wait=SECONDS` (1-3600) or `elicit`"),
        },
    }
}

/// What the proxy shares between its two relay directions.
pub(crate) struct Shared {
    pub(crate) args: McpArgs,
    defer: Defer,
    socket: PathBuf,
    to_client: Mutex<std::io::Stdout>,
    to_server: Mutex<Option<ChildStdin>>,
    /// The server's name from its `initialize` result.
    server_name: Mutex<Option<String>>,
    /// The protocol version the server answered with (results built by the proxy follow it).
    pub(crate) protocol: Mutex<Option<String>>,
    /// Client request ids of `tools/list` in flight (to filter their results).
    listing: Mutex<HashMap<String, ()>>,
    /// request_hash of a deferred call -> its approval id (the retry resumes it).
    pending: Mutex<HashMap<String, String>>,
    /// The daemon's dashboard URL, for pending messages.
    dashboard: Option<String>,
}

impl Shared {
    /// The proxy's state for `args` (the server's stdin is set once the server runs).
    fn new(args: McpArgs) -> Result<Shared> {
        let defer = parse_defer(&args.defer)?;
        let socket = args.socket.path();
        let dashboard = client::call(&socket, "status", json!({}))
            .ok()
            .and_then(|s| s["http"]["url"].as_str().map(str::to_owned));
        Ok(Shared {
            args,
            defer,
            socket,
            to_client: Mutex::new(std::io::stdout()),
            to_server: Mutex::new(None),
            server_name: Mutex::new(None),
            protocol: Mutex::new(None),
            listing: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            dashboard,
        })
    }

    fn send_client(&self, v: &Value) {
        let line = mcp_msg::encode(v);
        if let Ok(mut out) = self.to_client.lock() {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    fn send_server(&self, line: &str) -> bool {
        let Ok(mut guard) = self.to_server.lock() else { return false };
        let Some(stdin) = guard.as_mut() else { return false };
        stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.write_all(b"\n"))
            .and_then(|()| stdin.flush())
            .is_ok()
    }

    fn tool(&self) -> String {
        self.args
            .tool_prefix
            .clone()
            .or_else(|| self.server_name.lock().ok().and_then(|n| n.clone()))
            .unwrap_or_else(|| "mcp".into())
    }
}

fn id_key(id: &Value) -> String {
    id.to_string()
}

pub fn mcp(args: McpArgs) -> Result<ExitCode> {
    let http = match (args.listen, args.upstream.clone()) {
        (Some(listen), Some(upstream)) => {
            if !args.command.is_empty() {
                bail!("give either a server command (stdio) or `--listen` and `--upstream` (HTTP), not both");
            }
            if !listen.ip().is_loopback() {
                bail!("`--listen` must be a loopback address: the proxy has no authentication of its own");
            }
            Some((listen, upstream))
        }
        _ => None,
    };
    let shared = Arc::new(Shared::new(args)?);
    if let Some((listen, upstream)) = http {
        return crate::mcp_http::serve(shared, listen, &upstream);
    }
    let Some((program, rest)) = shared.args.command.split_first() else {
        bail!("give the MCP server's command after `--` (stdio), or `--listen ADDR --upstream URL` (HTTP)");
    };
    let mut child: Child = Command::new(program)
        .args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start the MCP server `{program}`"))?;
    if let Ok(mut to_server) = shared.to_server.lock() {
        *to_server = child.stdin.take();
    }
    let child_stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout from the MCP server"))?;

    // Server -> client.
    let from_server = {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || relay_server(&shared, child_stdout))
    };
    // Client -> server, until the client closes stdin.
    {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            relay_client(&shared);
            // The client is gone: close the server's stdin so it exits.
            if let Ok(mut s) = shared.to_server.lock() {
                s.take();
            }
        });
    }
    let _ = from_server.join();
    // The server closed its stdout: wait for it (a server that lingers is stopped).
    let status = wait_or_stop(&mut child)?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::from(1),
    })
}

fn wait_or_stop(child: &mut Child) -> Result<std::process::ExitStatus> {
    for _ in 0..100 {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    Ok(child.wait()?)
}

/// Reads one line of at most MAX_LINE bytes; `Ok(None)` at EOF, `Err(n)` for an over-long line
/// (skipped up to its end).
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<Result<(), usize>>> {
    buf.clear();
    let n = reader.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') && buf.len() > MAX_LINE {
        // Skip the rest of the line.
        let mut skipped = buf.len();
        loop {
            let chunk = reader.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    skipped += i + 1;
                    reader.consume(i + 1);
                    break;
                }
                None => {
                    let len = chunk.len();
                    skipped += len;
                    reader.consume(len);
                }
            }
        }
        return Ok(Some(Err(skipped)));
    }
    // The `\n` ends the line; anything else (a `\r` included) is for `mcp_msg::frame` to judge.
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    Ok(Some(Ok(())))
}

fn relay_client(shared: &Arc<Shared>) {
    let mut reader = BufReader::new(std::io::stdin().lock());
    let mut buf = Vec::new();
    loop {
        match read_line(&mut reader, &mut buf) {
            Ok(None) | Err(_) => return,
            Ok(Some(Err(n))) => {
                eprintln!("faramesh mcp: dropped a {n}-byte message from the client (over {MAX_LINE} bytes)");
                shared.send_client(&json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": format!("message over the proxy's {MAX_LINE}-byte limit")}}));
            }
            Ok(Some(Ok(()))) => {
                if buf.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
                    continue;
                }
                match mcp_msg::read(&buf) {
                    Err(refusal) => {
                        eprintln!("faramesh mcp: refused a message from the client: {}", refusal.message);
                        shared.send_client(&refusal.to_json());
                    }
                    Ok(Message::ToolsCall { id, name, arguments, msg }) => {
                        let shared = Arc::clone(shared);
                        std::thread::spawn(move || tools_call(&shared, id, &name, &arguments, msg));
                    }
                    Ok(Message::ToolsList { id, msg }) => {
                        if shared.args.hide_denied_tools
                            && let Ok(mut l) = shared.listing.lock()
                        {
                            l.insert(id_key(&id), ());
                        }
                        shared.send_server(&mcp_msg::encode_map(&msg));
                    }
                    Ok(Message::Other(msg)) => {
                        shared.send_server(&mcp_msg::encode_map(&msg));
                    }
                }
            }
        }
    }
}

fn relay_server(shared: &Arc<Shared>, stdout: std::process::ChildStdout) {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        match read_line(&mut reader, &mut buf) {
            Ok(None) | Err(_) => return,
            Ok(Some(Err(n))) => {
                eprintln!("faramesh mcp: dropped a {n}-byte message from the server (over {MAX_LINE} bytes)");
            }
            Ok(Some(Ok(()))) => {
                if buf.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
                    continue;
                }
                let mut msg = match mcp_msg::read(&buf) {
                    Ok(m) => Value::Object(m.body().clone()),
                    Err(refusal) => {
                        eprintln!("faramesh mcp: dropped a message from the server: {}", refusal.message);
                        continue;
                    }
                };
                // `initialize` (up to 2025-11-25) or `server/discover` (2026-07-28 and later).
                let name = msg
                    .pointer("/result/serverInfo/name")
                    .or_else(|| msg.pointer("/result/_meta/io.modelcontextprotocol~1serverInfo/name"))
                    .and_then(Value::as_str);
                if let Some(name) = name
                    && let Ok(mut n) = shared.server_name.lock()
                {
                    *n = Some(name.to_owned());
                }
                if let Some(v) = msg.pointer("/result/protocolVersion").and_then(Value::as_str)
                    && let Ok(mut p) = shared.protocol.lock()
                {
                    *p = Some(v.to_owned());
                }
                let listed = msg
                    .get("id")
                    .and_then(|id| shared.listing.lock().ok().and_then(|mut l| l.remove(&id_key(id))))
                    .is_some();
                if listed {
                    hide_denied(shared, &mut msg);
                }
                // Relayed as re-serialized, like every message.
                shared.send_client(&msg);
            }
        }
    }
}

/// Drops from a `tools/list` result the tools the policy denies outright for this agent:
/// `decide` with empty arguments is DENY (no rule permits the tool, the agent's profile excludes
/// it, or a deny rule without conditions on the arguments). A tool some arguments could get
/// through, or that needs approval, stays listed.
fn hide_denied(shared: &Shared, msg: &mut Value) {
    let tool = shared.tool();
    let Some(tools) = msg.pointer_mut("/result/tools").and_then(Value::as_array_mut) else { return };
    tools.retain(|t| {
        let Some(name) = t.get("name").and_then(Value::as_str) else { return true };
        let call = json!({"agent_id": shared.args.agent_id, "tool": tool, "operation": name, "args": {}});
        match client::call(&shared.socket, "decide", call) {
            Ok(d) => {
                !(d["effect"] == "DENY"
                    && matches!(
                        d["reason_code"].as_str(),
                        Some("PROFILE_DISALLOWS_TOOL" | "DEFAULT_DENY_NO_MATCH" | "POLICY_DENY")
                    ))
            }
            Err(_) => true,
        }
    });
}

fn tools_call(
    shared: &Arc<Shared>,
    id: Value,
    name: &str,
    arguments: &Map<String, Value>,
    msg: Map<String, Value>,
) {
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    let notify = |note: Value| shared.send_client(&note);
    match gate(shared, &id, name, arguments, &params, Some(&notify)) {
        Some(reply) => shared.send_client(&reply),
        None => {
            let mut msg = Value::Object(msg);
            strip_elicitation(&mut msg);
            if !shared.send_server(&mcp_msg::encode(&msg)) {
                let gone = json!({"effect": "PERMIT", "reason_code": "SERVER_GONE"});
                shared.send_client(&refusal(shared, id, "the MCP server is gone", gone));
            }
        }
    }
}

/// Decides a `tools/call`: `None` to forward it, or the answer to send the client instead.
/// `progress` sends notifications to the client (stdio) while `--defer wait` holds the call.
pub(crate) fn gate(
    shared: &Shared,
    id: &Value,
    name: &str,
    arguments: &Map<String, Value>,
    params: &Value,
    progress: Option<&dyn Fn(Value)>,
) -> Option<Value> {
    let id = id.clone();
    // From 2026-07-28 each request names its protocol version in `_meta`.
    if let Some(v) = params.pointer("/_meta/io.modelcontextprotocol~1protocolVersion").and_then(Value::as_str)
        && let Ok(mut p) = shared.protocol.lock()
    {
        *p = Some(v.to_owned());
    }
    // The name and arguments decided on are exactly those of the message forwarded.
    let name = name.to_owned();
    let arguments = Value::Object(arguments.clone());
    let tool = shared.tool();
    let mut call =
        json!({"agent_id": shared.args.agent_id, "tool": tool, "operation": name, "args": arguments});
    let hash = faramesh_proto::request_hash(&shared.args.agent_id, &tool, &name, &arguments, &json!({}))
        .unwrap_or_default();
    if let Some(approval) = shared.pending.lock().ok().and_then(|p| p.get(&hash).cloned()) {
        call["approval_id"] = json!(approval);
    }
    // The client's retry after a URL elicitation carries our request state: the approval id.
    let elicited =
        params.get("requestState").and_then(Value::as_str).and_then(|s| s.strip_prefix("faramesh:"));
    if let Some(approval) = elicited {
        call["approval_id"] = json!(approval);
    }
    let decision = match client::call(&shared.socket, "govern", call.clone()) {
        Ok(d) => d,
        Err(e) => {
            let text = format!(
                "Faramesh refused the call: the daemon is not reachable at `{}` ({e:#}); no tool runs without a decision",
                shared.socket.display()
            );
            return Some(refusal(
                shared,
                id,
                &text,
                json!({"effect": "DENY", "reason_code": "DAEMON_UNREACHABLE"}),
            ));
        }
    };
    let hold = match shared.defer {
        Defer::Wait(timeout) => Some(timeout),
        Defer::Elicit if elicited.is_some() => Some(Duration::from_secs(300)),
        _ => None,
    };
    if decision["effect"] == "DEFER"
        && shared.defer == Defer::Elicit
        && elicited.is_none()
        && let Some(reply) = elicitation(shared, &id, params, &decision)
    {
        if let Ok(mut p) = shared.pending.lock() {
            p.insert(hash, decision["approval_id"].as_str().unwrap_or_default().to_owned());
        }
        return Some(reply);
    }
    let decision = match (decision["effect"].as_str(), hold) {
        (Some("DEFER"), Some(timeout)) => {
            let token = params.pointer("/_meta/progressToken").cloned();
            let tick = |waited: u64| {
                if let (Some(send), Some(token)) = (progress, token.as_ref()) {
                    send(json!({
                        "jsonrpc": "2.0",
                        "method": "notifications/progress",
                        "params": {
                            "progressToken": token,
                            "progress": waited,
                            "total": timeout.as_secs(),
                            "message": format!(
                                "waiting for approval {} ({waited} s): `faramesh approve {}`",
                                decision["approval_id"].as_str().unwrap_or(""),
                                decision["approval_id"].as_str().unwrap_or("")
                            ),
                        },
                    }));
                }
            };
            wait_and_resume(shared, &call, &decision, timeout, &tick).unwrap_or(decision)
        }
        _ => decision,
    };
    let summary = json!({
        "effect": decision["effect"],
        "reason_code": decision["reason_code"],
        "rule_id": decision["rule_id"],
        "rule_ref": decision["rule_ref"],
        "action_id": decision["action_id"],
        "approval_id": decision["approval_id"],
    });
    match decision["effect"].as_str() {
        Some("PERMIT") => {
            if let Ok(mut p) = shared.pending.lock() {
                p.remove(&hash);
            }
            None
        }
        Some("DEFER") => {
            let approval = decision["approval_id"].as_str().unwrap_or_default().to_owned();
            if let Ok(mut p) = shared.pending.lock() {
                p.insert(hash, approval.clone());
            }
            let at = shared.dashboard.as_deref().map(|u| format!(" or at {u}/")).unwrap_or_default();
            let text = format!(
                "pending approval {approval}: approve with `faramesh approve {approval}`{at}, then retry the same call ({})",
                decision["reason"].as_str().unwrap_or("a human must approve")
            );
            Some(refusal(shared, id, &text, summary))
        }
        _ => {
            if let Ok(mut p) = shared.pending.lock() {
                p.remove(&hash);
            }
            let text = format!(
                "Faramesh denied `{name}`: {} ({})",
                decision["reason"].as_str().unwrap_or("denied"),
                decision["reason_code"].as_str().unwrap_or("DENY")
            );
            Some(refusal(shared, id, &text, summary))
        }
    }
}

/// Removes the proxy's own elicitation round trip (`requestState` = `faramesh:…` and the
/// `inputResponses` for it) from a retried `tools/call` before the server sees it. Returns
/// whether anything was removed.
pub(crate) fn strip_elicitation(msg: &mut Value) -> bool {
    let Some(params) = msg.get_mut("params").and_then(Value::as_object_mut) else { return false };
    let ours = params.get("requestState").and_then(Value::as_str).is_some_and(|s| s.starts_with("faramesh:"));
    if ours {
        params.remove("requestState");
        params.remove("inputResponses");
    }
    ours
}

/// For `--defer elicit`: an `input_required` result (protocol 2026-07-28) whose URL elicitation
/// sends the user to the dashboard's drawer for the deferred call; the client's retry carries
/// `requestState` = `faramesh:<approval id>` and is then held until the approval is decided.
/// `None` (answer as `--defer answer`) when the client did not declare URL elicitation, speaks
/// an older protocol, or the daemon serves no dashboard.
fn elicitation(shared: &Shared, id: &Value, params: &Value, decision: &Value) -> Option<Value> {
    let version =
        params.pointer("/_meta/io.modelcontextprotocol~1protocolVersion").and_then(Value::as_str)?;
    if version < "2026-07-28" {
        return None;
    }
    params.pointer("/_meta/io.modelcontextprotocol~1clientCapabilities/elicitation")?;
    let dashboard = shared.dashboard.as_deref()?;
    let approval = decision["approval_id"].as_str()?;
    let action = decision["action_id"].as_str().unwrap_or_default();
    Some(json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": {
            "resultType": "input_required",
            "inputRequests": {
                "faramesh-approval": {
                    "method": "elicitation/create",
                    "params": {
                        "mode": "url",
                        "message": format!(
                            "This call needs a human's approval ({}). Open the Faramesh dashboard to approve or deny it.",
                            decision["reason"].as_str().unwrap_or("policy")
                        ),
                        "url": format!("{dashboard}/#action={action}"),
                    },
                },
            },
            "requestState": format!("faramesh:{approval}"),
        },
    }))
}

/// Holds a deferred call until its approval is decided (or `timeout`), in steps of 2 s with a
/// `tick` (progress) after each undecided step; then re-asks with the approval id.
fn wait_and_resume(
    shared: &Shared,
    call: &Value,
    decision: &Value,
    timeout: Duration,
    tick: &dyn Fn(u64),
) -> Option<Value> {
    const STEP: u64 = 2;
    let approval = decision["approval_id"].as_str()?;
    let stream = std::os::unix::net::UnixStream::connect(&shared.socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(STEP + 10))).ok()?;
    let mut waited = 0u64;
    loop {
        let step = STEP.min(timeout.as_secs().saturating_sub(waited)).max(1);
        let reply = client::call_on(
            &stream,
            "approval.wait",
            json!({"approval_id": approval, "timeout_seconds": step}),
        )
        .ok()?;
        waited += step;
        if reply["timed_out"] != true {
            break;
        }
        if waited >= timeout.as_secs() {
            return None;
        }
        tick(waited);
    }
    let mut resume = call.clone();
    resume["approval_id"] = json!(approval);
    client::call(&shared.socket, "govern", resume).ok()
}

/// The answer to a refused `tools/call`: an `isError` tool result (default) or a JSON-RPC error.
fn refusal(shared: &Shared, id: Value, text: &str, faramesh: Value) -> Value {
    let mut result = json!({
        "content": [{"type": "text", "text": text}],
        "isError": true,
        "structuredContent": {"faramesh": faramesh},
    });
    // Protocol 2026-07-28 and later tag every result with its `resultType`.
    if shared.protocol.lock().ok().and_then(|p| p.clone()).is_some_and(|v| v.as_str() >= "2026-07-28") {
        result["resultType"] = json!("complete");
    }
    match shared.args.deny_as {
        DenyAs::Result => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        DenyAs::Error => json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": -32001, "message": text, "data": {"faramesh": faramesh}},
        }),
    }
}
