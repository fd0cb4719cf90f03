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
use std::process::{ChildStdin, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use faramesh_proto::mcp as mcp_msg;
use serde_json::{Value, json};

use crate::args::SocketArg;
use daemon::Daemon;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Quarantine {
    /// DEFER: a person may approve one call; `faramesh mcp trust` trusts the tool.
    Defer,
    /// DENY until an operator trusts the tool.
    Deny,
}

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
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct McpArgs {
    #[command(subcommand)]
    pub action: Option<McpCommand>,
    /// The agent id every call is decided for.
    #[arg(long, required = true)]
    pub agent_id: Option<String>,
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
    /// No longer the proxy's: what a quarantined tool's calls get is the policy's
    /// `mcp: { quarantine: defer | deny }` (refused with that hint).
    #[arg(long, value_enum, hide = true)]
    pub quarantine: Option<Quarantine>,
    #[command(flatten)]
    pub socket: SocketArg,
    /// Streamable-HTTP mode: serve MCP clients on this address (loopback) ...
    #[arg(long, requires = "upstream")]
    pub listen: Option<std::net::SocketAddr>,
    /// ... and relay to this MCP endpoint (`http://host:port/mcp` or `https://…`; a private CA
    /// in `SSL_CERT_FILE`).
    #[arg(long, requires = "listen")]
    pub upstream: Option<String>,
    /// The MCP server's command and arguments (after `--`; stdio mode).
    #[arg(last = true, num_args = 1..)]
    pub command: Vec<String>,
}

/// The pinned tool definitions (`docs/mcp.md#pinned-tools`).
#[derive(clap::Subcommand, Debug)]
pub enum McpCommand {
    /// Trust the definitions last listed of a server's quarantined tools (approvers only).
    Trust(TrustArgs),
    /// List the pinned tools: trusted or quarantined, and why.
    Pins(PinsArgs),
}

#[derive(Args, Debug)]
pub struct TrustArgs {
    /// The server: the `tool` the policy sees for it (its `--tool-prefix`, or its name).
    #[arg(long)]
    server: String,
    /// Only this tool (default: every quarantined tool of the server).
    #[arg(long)]
    tool: Option<String>,
    /// Also let another server take this name (after a server was renamed or replaced).
    #[arg(long)]
    rebind: bool,
    #[command(flatten)]
    socket: SocketArg,
}

#[derive(Args, Debug)]
pub struct PinsArgs {
    /// Only this server's tools.
    #[arg(long)]
    server: Option<String>,
    /// JSON output.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    socket: SocketArg,
}

fn trust(args: &TrustArgs) -> Result<ExitCode> {
    let mut params = json!({"server": args.server, "rebind": args.rebind});
    if let Some(t) = &args.tool {
        params["tool"] = json!(t);
    }
    let r = crate::client::call(&args.socket.path(), "mcp.trust", params)?;
    let trusted: Vec<&str> =
        r["trusted"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if trusted.is_empty() {
        println!("no quarantined tool of `{}` to trust", crate::term::safe(&args.server));
    } else {
        // Tool names are the MCP server's.
        println!("trusted {}", crate::term::safe(&trusted.join(", ")));
    }
    if args.rebind {
        println!(
            "`{}` may now be used by another server (the next one to list its tools under it)",
            crate::term::safe(&args.server)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn pins(args: &PinsArgs) -> Result<ExitCode> {
    let mut params = json!({});
    if let Some(s) = &args.server {
        params["server"] = json!(s);
    }
    let r = crate::client::call(&args.socket.path(), "mcp.pins", params)?;
    if args.json {
        println!("{r}");
        return Ok(ExitCode::SUCCESS);
    }
    let pins = r["pins"].as_array().cloned().unwrap_or_default();
    if pins.is_empty() {
        println!(
            "no MCP tools pinned yet (`faramesh mcp` pins a server's tools the first time it lists them)"
        );
    }
    // Tool names are the MCP server's: any text, shown escaped.
    for p in pins {
        let name = format!("{}/{}", p["server"].as_str().unwrap_or(""), p["tool"].as_str().unwrap_or(""));
        let name = crate::term::safe(&name);
        match p["status"].as_str() {
            Some("quarantined") => {
                println!("{name:<40} quarantined: {}", crate::term::safe(p["reason"].as_str().unwrap_or("")))
            }
            _ => println!("{name:<40} trusted"),
        }
    }
    Ok(ExitCode::SUCCESS)
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
    pub(crate) args: McpArgs,
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
}

impl Shared {
    /// The proxy's state for `args` (the server's stdin is set once the server runs).
    fn new(args: McpArgs) -> Result<Shared> {
        let defer = parse_defer(&args.defer)?;
        let daemon = Daemon::new(args.socket.path());
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
        self.args.agent_id.as_deref().unwrap_or_default()
    }

    pub(crate) fn tool(&self) -> String {
        self.args
            .tool_prefix
            .clone()
            .or_else(|| self.server_name.lock().ok().and_then(|n| n.clone()))
            .unwrap_or_else(|| "mcp".into())
    }
}

/// `faramesh mcp`: the stdio proxy around a server command, or the streamable-HTTP proxy.
pub fn mcp(args: McpArgs) -> Result<ExitCode> {
    match &args.action {
        Some(McpCommand::Trust(t)) => return trust(t),
        Some(McpCommand::Pins(p)) => return pins(p),
        None => {}
    }
    if let Some(q) = args.quarantine {
        let q = if q == Quarantine::Deny { "deny" } else { "defer" };
        bail!(
            "`--quarantine` is the policy's now, for every proxy of a server alike: write `mcp: {{ quarantine: {q} }}` \
             in the policy and drop `--quarantine` (docs/mcp.md#pinned-tools)"
        );
    }
    if let Some(prefix) = &args.tool_prefix
        && !faramesh_daemon::service::mcp_pins::is_server_prefix(prefix)
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
