//! `faramesh mcp`: the command line of the MCP gateway ([`faramesh_client::mcp`]), and
//! `mcp trust` and `mcp pins` for its pinned tool definitions (`docs/mcp.md`).

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use faramesh_client::mcp::{DenyAs, McpOptions};
use serde_json::{Value, json};

use crate::args::SocketArg;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Quarantine {
    /// DEFER: a person may approve one call; `faramesh mcp trust` trusts the tool.
    Defer,
    /// DENY until an operator trusts the tool.
    Deny,
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
    faramesh_client::mcp::run(McpOptions {
        agent_id: args.agent_id.unwrap_or_default(),
        tool_prefix: args.tool_prefix,
        deny_as: args.deny_as,
        defer: args.defer,
        hide_denied_tools: args.hide_denied_tools,
        socket: args.socket.path(),
        listen: args.listen,
        upstream: args.upstream,
        command: args.command,
    })
}
