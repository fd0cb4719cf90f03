//! `faramesh`: the one binary. `serve` runs the daemon; every other command is a client of its
//! socket or an offline tool (policy, log). Each command lives in a `*_cmd.rs` module.

/// mimalloc instead of glibc malloc: allocation was ~10% of the CPU per durable decision
/// (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod args;
mod broken_pipe;
mod container_cmd;
mod daemon_cmd;
mod demo;
mod fleet_cmd;
mod fleet_page;
mod hook_cmd;
mod kill_cmd;
mod log_cmd;
mod mcp_cmd;
mod ops_cmd;
mod policy_cmd;
mod setup_cmd;
mod shadow_cmd;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use faramesh_client::{hooks, socket as client, term};

/// Exit codes: 0 ok, 1 error, 2 a mismatch the command reports, 3 invalid policy.
#[derive(Parser, Debug)]
#[command(
    name = "faramesh",
    version,
    about = "Faramesh: the execution gate for AI agents' tool calls",
    after_help = "Exit codes: 0 ok; 1 error (including bad usage, and `verify-log` on a log that is not intact); 2 a mismatch where the command reports one (`policy test`: a case's decision differs; `policy diff`, `replay`: a decision would change); 3 invalid policy.\n\nExample:\n  faramesh policy check policies/default.yaml"
)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Plain text even on a terminal (also when NO_COLOR is set).
    #[arg(long, global = true)]
    no_color: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon in the foreground.
    Serve(Box<daemon_cmd::ServeArgs>),
    /// Run the daemon with the default policy and a local state dir, with verbose logs.
    Dev(daemon_cmd::DevArgs),
    /// Check a policy, then hot-reload the running daemon or start one in the background.
    Apply(daemon_cmd::ApplyArgs),
    /// Show what the running daemon is doing.
    #[command(after_help = "Example:\n  faramesh status")]
    Status(args::SocketArg),
    /// Deny every call (of one agent, or all) until lifted: the kill switch (approvers only).
    Kill(kill_cmd::KillArgs),
    /// Stop the running daemon (SIGTERM: it finishes what is in flight first).
    #[command(after_help = "Example:\n  faramesh stop")]
    Stop(args::SocketArg),
    /// List recorded decisions, newest first.
    List(ops_cmd::ListArgs),
    /// Show one recorded decision.
    #[command(after_help = "Example:\n  faramesh get 3f9c2a7b")]
    Get(ops_cmd::IdArgs),
    /// Show an action's timeline (decision, approval, start, result).
    #[command(after_help = "Example:\n  faramesh events 3f9c2a7b")]
    Events(ops_cmd::IdArgs),
    /// List pending approvals.
    #[command(after_help = "Example:\n  faramesh pending")]
    Pending(args::SocketArg),
    /// Approve a pending approval (approvers only).
    #[command(visible_alias = "allow")]
    Approve(ops_cmd::DecideArgs),
    /// List live grants, or revoke one (`faramesh approve ID --grant 30m` makes them).
    Grants(ops_cmd::GrantsArgs),
    /// Deny a pending approval (approvers only).
    #[command(after_help = "Example:\n  faramesh deny 3f9c2a7b --reason \"not during the freeze\"")]
    Deny(ops_cmd::DecideArgs),
    /// Explain a recorded decision: the rules tried and why each earlier one did not match.
    #[command(after_help = "Example:\n  faramesh explain 3f9c2a7b")]
    Explain(ops_cmd::IdArgs),
    /// Print a fresh link that signs you in to the dashboard once (and open a browser on it).
    #[command(after_help = "Example:\n  faramesh dashboard")]
    Dashboard(args::SocketArg),
    /// Show the last entries, then follow decisions and events live (Ctrl-C to stop).
    Tail(ops_cmd::TailArgs),
    /// Write a starting policy and its test cases (never overwrites without --force).
    Init(setup_cmd::InitArgs),
    /// Write a Dockerfile, compose.yaml, tokens (.env) and the image's files next to a policy.
    #[command(name = "init-docker")]
    InitDocker(container_cmd::InitDockerArgs),
    /// Ask the HTTP listener's `/health` (exit 0 when it answers 200; the image's healthcheck).
    Health(container_cmd::HealthArgs),
    /// A coding agent's tool-call hook (`faramesh hook claude-code`), and `hook install HOST`.
    #[command(
        after_help = "Examples:\n  faramesh hook install claude-code\n  echo '{\"hook_event_name\":\"PreToolUse\",\"tool_name\":\"Bash\",\"tool_input\":{\"command\":\"ls\"}}' | faramesh hook claude-code"
    )]
    Hook(hook_cmd::HookArgs),
    /// Check the socket, permissions, policy, state dir, log and journald.
    Doctor(setup_cmd::DoctorArgs),
    /// Print a shell completion script.
    Completions(setup_cmd::CompletionsArgs),
    /// Re-decide a recorded call under the current policy and show what differs.
    #[command(after_help = "Example:\n  faramesh replay 3f9c2a7b")]
    Replay(ops_cmd::IdArgs),
    /// Check, test and explain policy files offline.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// `policy test`, as the upstream Faramesh documentation spells it.
    #[command(name = "policy-test", hide = true)]
    PolicyTest {
        /// The policy file.
        file: std::path::PathBuf,
        /// The cases file.
        cases: std::path::PathBuf,
    },
    /// `policy diff`, as the upstream Faramesh documentation spells it.
    #[command(name = "policy-diff", hide = true)]
    PolicyDiff(policy_cmd::DiffArgs),
    /// Print the `request_hash` of calls read as JSON lines on stdin (one hash or error per line).
    #[command(
        name = "request-hash",
        after_help = "Example:\n  echo '{\"agent_id\":\"a\",\"tool\":\"http\",\"operation\":\"get\",\"params\":{},\"context\":{}}' | faramesh request-hash"
    )]
    RequestHash,
    /// Verify the decision log: the hash chain, every signed checkpoint, and optionally a
    /// checkpoint saved earlier.
    #[command(name = "verify-log")]
    VerifyLog(log_cmd::VerifyArgs),
    /// Check a receipt written by `faramesh log proof` with only the log's key (and a witness
    /// policy): the record is intact, in the log, and (with a policy) cosigned by its quorum.
    #[command(name = "verify-proof")]
    VerifyProof(log_cmd::VerifyProofArgs),
    /// Check an export destination's copy of the log against this host's chain: every entry
    /// present, each equal to what the chain commits to; names missing or altered ranges.
    #[command(name = "verify-export")]
    VerifyExport(fleet_cmd::VerifyExportArgs),
    /// Decisions of every host, from the fleet's PostgreSQL database (docs/fleet.md).
    #[command(subcommand)]
    Fleet(fleet_cmd::FleetCommand),
    /// The log's public key and checkpoints.
    #[command(subcommand)]
    Log(log_cmd::LogCommand),
    /// Write the decision log as JSON lines on stdout.
    Export(log_cmd::ExportArgs),
    /// Put faramesh between an MCP client and an MCP server (stdio, or streamable HTTP with
    /// `--listen`/`--upstream`): every `tools/call` is decided and recorded before the server
    /// sees it.
    Mcp(mcp_cmd::McpArgs),
}

fn main() -> ExitCode {
    // Usage errors exit 1 like every other error (2 means "a mismatch", 3 "invalid policy").
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::SUCCESS;
            }
            // A coding agent's hook that cannot even parse its arguments must block the call:
            // its hosts read any exit but 0 and 2 as "carry on".
            return ExitCode::from(if hook_cmd::is_hook_run(std::env::args()) {
                hook_cmd::EXIT_BLOCK
            } else {
                1
            });
        }
    };
    let hook_run = hook_cmd::is_hook_run(std::env::args());
    broken_pipe::end_quietly_on_panic(hook_run);
    ops_cmd::init_color(cli.no_color);
    let json_out = cli.json;
    let result = match cli.command {
        Command::Serve(args) => daemon_cmd::serve(*args),
        Command::Dev(args) => daemon_cmd::dev(args),
        Command::Mcp(args) => mcp_cmd::mcp(args),
        Command::Apply(args) => daemon_cmd::apply(args, cli.json),
        Command::Status(s) => daemon_cmd::status(&s, cli.json),
        Command::Kill(a) => kill_cmd::kill(a, cli.json),
        Command::Stop(s) => daemon_cmd::stop(&s),
        Command::List(a) => ops_cmd::list(a, cli.json),
        Command::Get(a) => ops_cmd::get(a, cli.json),
        Command::Events(a) => ops_cmd::events(a, cli.json),
        Command::Pending(s) => ops_cmd::pending(&s, cli.json),
        Command::Approve(a) => ops_cmd::decide_approval(a, true, cli.json),
        Command::Deny(a) => ops_cmd::decide_approval(a, false, cli.json),
        Command::Grants(a) => ops_cmd::grants(a, cli.json),
        Command::Explain(a) => ops_cmd::explain(a, cli.json),
        Command::Tail(a) => ops_cmd::tail(a, cli.json),
        Command::Dashboard(s) => daemon_cmd::dashboard(&s, cli.json),
        Command::Init(a) => setup_cmd::init(a),
        Command::InitDocker(a) => container_cmd::init_docker(a),
        Command::Health(a) => container_cmd::health(a),
        Command::Hook(a) => hook_cmd::hook(a),
        Command::Doctor(a) => setup_cmd::doctor(a, cli.json),
        Command::Completions(a) => setup_cmd::completions(a, &mut Cli::command()),
        Command::Replay(a) => ops_cmd::replay(a, cli.json),
        Command::Policy(cmd) => policy_cmd::run(cmd, cli.json),
        Command::PolicyTest { file, cases } => {
            policy_cmd::run(policy_cmd::PolicyCommand::Test { file, cases }, cli.json)
        }
        Command::PolicyDiff(args) => policy_cmd::run(policy_cmd::PolicyCommand::Diff(args), cli.json),
        Command::RequestHash => policy_cmd::request_hash_lines(),
        Command::VerifyLog(args) => log_cmd::verify(args, cli.json),
        Command::VerifyProof(args) => log_cmd::verify_proof(args, cli.json),
        Command::VerifyExport(args) => fleet_cmd::verify_export(args, cli.json),
        Command::Fleet(cmd) => fleet_cmd::fleet(cmd, cli.json),
        Command::Log(cmd) => log_cmd::run_log(cmd, cli.json),
        Command::Export(args) => log_cmd::export(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if let Some(code) = broken_pipe::quiet_exit(&err, hook_run) {
                return ExitCode::from(code);
            }
            // People read what happened; programs asking for JSON also get the daemon's code.
            match err.downcast_ref::<client::RpcError>() {
                Some(e) if json_out => {
                    eprintln!("{}", serde_json::json!({"error": {"code": e.code, "message": e.message}}));
                }
                _ => eprintln!("error: {}", term::safe_lines(&format!("{err:#}"))),
            }
            ExitCode::from(1)
        }
    }
}
