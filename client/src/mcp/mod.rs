//! `faramesh mcp`: a proxy between an MCP client and an MCP server that asks the daemon about
//! every `tools/call` before the server sees it (`docs/mcp.md`): `stdio.rs` around a server
//! command, `http.rs` in front of a streamable-HTTP endpoint, `gate.rs` the decision step both
//! share, `daemon.rs` the daemon's socket.
//!
//! MCP's stdio transport is newline-delimited JSON-RPC. Every message, both ways, is parsed
//! strictly and relayed as the proxy re-serializes it (`faramesh_proto::mcp`), never as the bytes received;
//! a `tools/call` is decided first (then forwarded or answered) and, with
//! `--hide-denied-tools`, `tools/list` results are filtered. It does not use the `rmcp` SDK: a
//! typed SDK would pin a protocol version, while the proxy needs to read exactly two methods
//! and keep every other field as it came.

mod daemon;
mod gate;
mod http;
mod stdio;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ChildStdin, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use faramesh_proto::mcp as mcp_msg;
use serde_json::{Value, json};

use daemon::Daemon;

/// How the proxy answers a denied call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DenyAs {
    /// An MCP tool result with `isError: true` (the model can read it).
    Result,
    /// A JSON-RPC error.
    Error,
}

/// What the proxy is told: the agent, how it answers, the daemon, and the server (a command in
/// stdio mode, or `listen` and `upstream` in streamable-HTTP mode).
#[derive(Debug, Clone)]
pub struct McpOptions {
    /// The agent id every call is decided for.
    pub agent_id: String,
    /// The `tool` the policy sees (default: the server's name from its handshake in stdio mode,
    /// `mcp` in HTTP mode).
    pub tool_prefix: Option<String>,
    /// How a denial is answered.
    pub deny_as: DenyAs,
    /// DEFER: `answer`, `wait`, `wait=SECONDS` or `elicit`.
    pub defer: String,
    /// Drop from `tools/list` the tools the policy denies outright for this agent.
    pub hide_denied_tools: bool,
    /// The daemon's socket.
    pub socket: PathBuf,
    /// Streamable-HTTP mode: the address MCP clients are served on (loopback) ...
    pub listen: Option<SocketAddr>,
    /// ... and the MCP endpoint relayed to.
    pub upstream: Option<String>,
    /// Stdio mode: the MCP server's command and arguments.
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Defer {
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
    pub(crate) args: McpOptions,
    pub(crate) defer: Defer,
    /// The daemon, over a few reused socket connections.
    pub(crate) daemon: Daemon,
    pub(crate) to_client: Mutex<std::io::Stdout>,
    pub(crate) to_server: Mutex<Option<ChildStdin>>,
    /// The server's name from its `initialize` result.
    pub(crate) server_name: Mutex<Option<String>>,
    /// The protocol version the server answered with (results built by the proxy follow it).
    pub(crate) protocol: Mutex<Option<String>>,
    /// Client request ids of `tools/list` in flight (to filter their results).
    pub(crate) listing: Mutex<HashMap<String, ()>>,
    /// request_hash of a deferred call -> its approval id (the retry resumes it).
    pub(crate) pending: Mutex<HashMap<String, String>>,
    /// The daemon's dashboard URL, for pending messages.
    pub(crate) dashboard: Option<String>,
    /// Why every call of this server is refused (its tool prefix belongs to another server).
    pub(crate) refused: Mutex<Option<String>>,
    /// The tools the server listed in this session (`tools/list`, every page), `None` before
    /// its first listing: once it listed, only these are called.
    pub(crate) listed: Mutex<Option<std::collections::HashSet<String>>>,
    /// The proxy's own `tools/list` requests in flight (stdio): id -> who waits for the answer.
    pub(crate) own_listings: Mutex<HashMap<String, std::sync::mpsc::Sender<Value>>>,
    /// Numbers the proxy's own requests.
    pub(crate) own_seq: std::sync::atomic::AtomicU64,
    /// Client request ids of `tools/call`s whose result the policy reads (stdio) -> the action.
    pub(crate) checking: Mutex<HashMap<String, String>>,
}

impl Shared {
    /// The proxy's state for `args` (the server's stdin is set once the server runs).
    fn new(args: McpOptions) -> Result<Shared> {
        let defer = parse_defer(&args.defer)?;
        let daemon = Daemon::new(args.socket.clone());
        let dashboard =
            daemon.call("status", json!({})).ok().and_then(|s| s["http"]["url"].as_str().map(str::to_owned));
        Ok(Shared {
            args,
            defer,
            daemon,
            to_client: Mutex::new(std::io::stdout()),
            to_server: Mutex::new(None),
            server_name: Mutex::new(None),
            protocol: Mutex::new(None),
            listing: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            dashboard,
            refused: Mutex::new(None),
            listed: Mutex::new(None),
            own_listings: Mutex::new(HashMap::new()),
            own_seq: std::sync::atomic::AtomicU64::new(0),
            checking: Mutex::default(),
        })
    }

    pub(crate) fn send_client(&self, v: &Value) {
        let line = mcp_msg::encode(v);
        if let Ok(mut out) = self.to_client.lock() {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    pub(crate) fn send_server(&self, line: &str) -> bool {
        let Ok(mut guard) = self.to_server.lock() else { return false };
        let Some(stdin) = guard.as_mut() else { return false };
        stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.write_all(b"\n"))
            .and_then(|()| stdin.flush())
            .is_ok()
    }

    /// The agent id every call is decided for.
    pub(crate) fn agent(&self) -> &str {
        &self.args.agent_id
    }

    pub(crate) fn tool(&self) -> String {
        self.args
            .tool_prefix
            .clone()
            .or_else(|| self.server_name.lock().ok().and_then(|n| n.clone()))
            .unwrap_or_else(|| "mcp".into())
    }
}

/// Runs the proxy: the stdio proxy around a server command, or the streamable-HTTP proxy.
pub fn run(args: McpOptions) -> Result<ExitCode> {
    if let Some(prefix) = &args.tool_prefix
        && !faramesh_proto::is_server_prefix(prefix)
    {
        bail!(
            "`--tool-prefix` `{prefix}` must be a tool name without `/` (letters, digits, `_ . : -`): pins are keyed \
             `prefix/tool`, and MCP tool names may hold `/`"
        );
    }
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
    match http {
        Some((listen, upstream)) => http::serve(shared, listen, &upstream),
        None => stdio::run(shared),
    }
}
