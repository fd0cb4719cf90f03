//! `faramesh hook HOST`: a coding agent's tool-call hook, answered by the daemon (`docs/hooks.md`).
//!
//! The host runs the hook as a process per tool call with the call as JSON on stdin; the hook
//! asks the daemon (`govern`, recorded like every call) and answers in the host's own format.
//! Anything it cannot read, and a daemon it cannot reach, is a refusal (exit 2, the reason on
//! stderr), never an exit the host could read as "allow".
//!
//! Hosts: `claude-code`, `gemini-cli`, `cursor`, `copilot-cli`; each one's payload is read into
//! an [`Incoming`] call, and the answer written in the host's own format.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use faramesh_proto::{Effect, GovernAnswer};
use serde_json::{Map, Value, json};

use crate::args::SocketArg;
use crate::{client, hook_paths};

/// The longest hook payload read from stdin.
const MAX_PAYLOAD: u64 = 4 << 20;
/// A tool's response larger than this is recorded by its size only.
const MAX_RESULT_BYTES: usize = 16 << 10;
/// The exit code Claude Code and Gemini CLI read as "block this call" (the reason on stderr).
pub(crate) const EXIT_BLOCK: u8 = 2;

/// Whether these command-line arguments run a hook (`faramesh [FLAGS] hook …`, not `hook install`).
pub(crate) fn is_hook_run(args: impl Iterator<Item = String>) -> bool {
    let mut rest = args.skip(1).skip_while(|a| a.starts_with('-'));
    rest.next().as_deref() == Some("hook") && rest.next().as_deref() != Some("install")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Host {
    /// Claude Code (`PreToolUse`, `PostToolUse`, `PostToolUseFailure` command hooks).
    ClaudeCode,
    /// Gemini CLI (`BeforeTool`, `AfterTool` command hooks).
    GeminiCli,
    /// Cursor (`beforeShellExecution`, `beforeMCPExecution`, `beforeReadFile`,
    /// `afterShellExecution`, `afterMCPExecution`).
    Cursor,
    /// GitHub Copilot CLI (`preToolUse`, `postToolUse`).
    CopilotCli,
    /// OpenCode (its `tool.execute.before` and `tool.execute.after` plugin hooks, through the
    /// plugin `hook install opencode` writes).
    Opencode,
}

/// Every host, for `doctor`.
const HOSTS: [Host; 5] = [Host::ClaudeCode, Host::GeminiCli, Host::Cursor, Host::CopilotCli, Host::Opencode];

/// The OpenCode plugin `hook install opencode` writes (its command filled in).
const OPENCODE_PLUGIN: &str = include_str!("../../integrations/opencode/faramesh.js");
/// The line that marks the plugin file as ours.
const OPENCODE_MARKER: &str = "// Faramesh for OpenCode:";

impl Host {
    fn name(self) -> &'static str {
        match self {
            Host::ClaudeCode => "claude-code",
            Host::GeminiCli => "gemini-cli",
            Host::Cursor => "cursor",
            Host::CopilotCli => "copilot-cli",
            Host::Opencode => "opencode",
        }
    }

    /// The events `install` wires; those before the tool runs come first.
    fn events(self) -> &'static [&'static str] {
        match self {
            Host::ClaudeCode => &["PreToolUse", "PostToolUse", "PostToolUseFailure"],
            Host::GeminiCli => &["BeforeTool", "AfterTool"],
            Host::Cursor => &[
                "beforeShellExecution",
                "beforeMCPExecution",
                "beforeReadFile",
                "afterShellExecution",
                "afterMCPExecution",
            ],
            Host::CopilotCli => &["preToolUse", "postToolUse"],
            Host::Opencode => &["tool.execute.before", "tool.execute.after"],
        }
    }

    /// The settings file, relative to the project or the home directory (Copilot CLI reads
    /// every file in the repository's `.github/hooks/`: this one is ours alone).
    fn settings(self) -> &'static str {
        match self {
            Host::ClaudeCode => ".claude/settings.json",
            Host::GeminiCli => ".gemini/settings.json",
            Host::Cursor => ".cursor/hooks.json",
            Host::CopilotCli => ".github/hooks/faramesh.json",
            Host::Opencode => ".opencode/plugins/faramesh.js",
        }
    }

    /// Whether the host can ask its user about a call (Claude Code's `ask`, Cursor's `ask`
    /// for shell commands and MCP tools).
    fn can_ask(self, event: &str) -> bool {
        match self {
            Host::ClaudeCode => true,
            Host::Cursor => event != "beforeReadFile",
            Host::GeminiCli | Host::CopilotCli | Host::Opencode => false,
        }
    }

    /// One hook entry running `command` (Claude Code's timeout is in seconds, Gemini CLI's in
    /// ms; Cursor's entries are bare commands, told to block when the hook fails; Copilot
    /// CLI's name the shell).
    fn entry(self, command: &str) -> Value {
        match self {
            Host::ClaudeCode => {
                json!({"matcher": "*", "hooks": [{"type": "command", "command": command, "timeout": 600}]})
            }
            Host::GeminiCli => json!({"matcher": "*", "hooks": [
                {"name": "faramesh", "type": "command", "command": command, "timeout": 600_000}
            ]}),
            Host::Cursor => json!({"command": command, "failClosed": true}),
            Host::CopilotCli => json!({"type": "command", "bash": command, "timeoutSec": 600}),
            Host::Opencode => json!({"command": command}),
        }
    }

    /// Whether the host's hook entries are flat (`[{command}]`) rather than matchers holding
    /// `hooks` lists.
    fn flat_entries(self) -> bool {
        matches!(self, Host::Cursor | Host::CopilotCli)
    }
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HookArgs {
    #[command(subcommand)]
    command: Option<HookCommand>,
    /// The host whose hook payload is on stdin.
    #[arg(value_enum)]
    host: Option<Host>,
    /// The agent id calls are decided for (default: the host's name).
    #[arg(long)]
    agent_id: Option<String>,
    /// DEFER: `ask` (the host asks its user where it can, Claude Code; elsewhere the call is
    /// refused with how to approve it, and the same call retried after approval runs) or
    /// `wait[=SECONDS]` (hold the call until a person decides in Faramesh; default 120 s).
    #[arg(long, default_value = "ask")]
    defer: String,
    #[command(flatten)]
    socket: SocketArg,
}

#[derive(Subcommand, Debug)]
enum HookCommand {
    /// Write the hook into the host's settings (idempotent; other hooks and settings are kept).
    Install(InstallArgs),
}

#[derive(Args, Debug)]
struct InstallArgs {
    #[arg(value_enum)]
    host: Host,
    /// The user's settings (`~/.claude/settings.json`, `~/.gemini/settings.json`,
    /// `~/.cursor/hooks.json`) instead of the project's (the same paths in the current
    /// directory; Copilot CLI: `.github/hooks/faramesh.json`, project only).
    #[arg(long)]
    user: bool,
    /// The project's settings (the default).
    #[arg(long, conflicts_with = "user")]
    project: bool,
    /// Remove the hook instead.
    #[arg(long)]
    uninstall: bool,
    /// The settings file to edit (instead of the host's default).
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
}

pub fn hook(args: HookArgs) -> Result<ExitCode> {
    if let Some(HookCommand::Install(install)) = args.command {
        return self::install(&install);
    }
    // Every way this can fail blocks the call (exit 2): the hosts read other exits as "carry on".
    let host = args.host;
    run(args).or_else(|e| Ok(block(host, &format!("Faramesh refused the call: {e:#}"))))
}

fn run(args: HookArgs) -> Result<ExitCode> {
    let Some(host) = args.host else {
        bail!("name the host: `faramesh hook claude-code` (or `faramesh hook install claude-code`)");
    };
    let defer = parse_defer(&args.defer)?;
    let mut text = String::new();
    if let Err(e) = std::io::stdin().take(MAX_PAYLOAD).read_to_string(&mut text) {
        return Ok(block(Some(host), &format!("Faramesh could not read the hook payload: {e}")));
    }
    let payload: Map<String, Value> = match faramesh_proto::parse_strict(text.as_bytes()) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return Ok(block(Some(host), "Faramesh refused the call: the hook payload is not a JSON object"));
        }
        Err(e) => {
            return Ok(block(
                Some(host),
                &format!("Faramesh refused the call: the hook payload is not JSON ({e})"),
            ));
        }
    };
    let agent = args.agent_id.unwrap_or_else(|| host.name().to_owned());
    let socket = args.socket.path();
    on_event(host, &payload, &agent, &socket, defer)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Defer {
    Ask,
    Wait(Duration),
    /// Refused with how to approve; the retry carries the approval (hosts that cannot ask).
    Refuse,
}

fn parse_defer(s: &str) -> Result<Defer> {
    match s {
        "ask" => Ok(Defer::Ask),
        "wait" => Ok(Defer::Wait(Duration::from_secs(120))),
        _ => match s.strip_prefix("wait=").and_then(|n| n.parse::<u64>().ok()) {
            Some(n) if (1..=3600).contains(&n) => Ok(Defer::Wait(Duration::from_secs(n))),
            _ => bail!("`--defer` `{s}` must be `ask`, `wait` or `wait=SECONDS` (1-3600)"),
        },
    }
}

/// A refusal the host cannot read as "allow": the reason on stderr, exit 2; for Cursor also
/// its deny answer on stdout, and for Copilot CLI its deny answer with exit 0 (the form its
/// documentation gives for blocking a call).
fn block(host: Option<Host>, reason: &str) -> ExitCode {
    eprintln!("{reason}");
    match host {
        Some(Host::Cursor) => {
            println!("{}", json!({"permission": "deny", "user_message": reason, "agent_message": reason}));
        }
        Some(Host::CopilotCli) => {
            println!("{}", json!({"permissionDecision": "deny", "permissionDecisionReason": reason}));
            return ExitCode::SUCCESS;
        }
        Some(Host::Opencode) => println!("{}", json!({"decision": "deny", "reason": reason})),
        _ => {}
    }
    ExitCode::from(EXIT_BLOCK)
}

/// The call the policy sees for a Claude Code tool: `Bash` → `shell`/`exec` (the command in
/// `command`), `Read` → `file`/`read`, `Write` → `file`/`write`, `Edit`, `MultiEdit` and
/// `NotebookEdit` → `file`/`edit`, `Glob` and `Grep` → `file`/`search` (each with `path`, read
/// as Claude Code opens it), `WebFetch` → `http`/`get` (with `url`), `mcp__server__tool` →
/// `server`/`tool` (as `faramesh mcp --tool-prefix server` names it), any other tool → its own
/// name, `invoke`.
pub(crate) fn claude_code_call(tool_name: &str, input: &Map<String, Value>) -> Mapped {
    match tool_name {
        "Bash" => plain("shell", "exec", input),
        "Read" => one_path("file", "read", input, &["file_path"], false),
        "Write" => one_path("file", "write", input, &["file_path"], false),
        "Edit" | "MultiEdit" => one_path("file", "edit", input, &["file_path"], false),
        "NotebookEdit" => one_path("file", "edit", input, &["notebook_path"], false),
        "Glob" => pattern_path("file", "search", input, "pattern", &[]),
        "Grep" => one_path("file", "search", input, &[], true),
        "WebFetch" => plain("http", "get", input),
        other => Ok(by_name(other, input)),
    }
}

/// A host tool read as a policy call (its paths as the host gave them), or why it cannot be
/// decided on.
pub(crate) type Mapped = Result<Call, String>;

/// A host tool read as a policy call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    tool: String,
    op: String,
    args: Map<String, Value>,
    /// The paths the tool acts on, as the host gave them.
    files: Files,
}

/// Where a file tool acts, as the host gave it (read as the host opens it by
/// [`resolve_call`]).
#[derive(Debug, Clone, PartialEq)]
enum Files {
    /// Not a file tool.
    None,
    /// One path; `None`: the working directory (the tool's default).
    One(Option<String>),
    /// A glob pattern, under a directory (`None`: the working directory).
    Pattern { dir: Option<String>, pattern: String },
    /// Several paths or glob patterns (Gemini CLI's `read_many_files`).
    Patterns(Vec<String>),
    /// The files a patch names.
    Patch(Vec<String>),
}

fn plain(tool: &str, op: &str, input: &Map<String, Value>) -> Mapped {
    Ok(Call { tool: tool.into(), op: op.into(), args: input.clone(), files: Files::None })
}

/// A tool with no policy name of its own: an MCP tool (`mcp__server__tool` → `server`/`tool`,
/// as `faramesh mcp --tool-prefix server` names it), else its own name, `invoke`. Its arguments
/// are passed as the host gave them.
fn by_name(name: &str, input: &Map<String, Value>) -> Call {
    let (tool, op) = match name.strip_prefix("mcp__").and_then(|rest| rest.split_once("__")) {
        Some((server, tool)) => (server.to_owned(), tool.to_owned()),
        None => (name.to_owned(), "invoke".to_owned()),
    };
    Call { tool, op, args: input.clone(), files: Files::None }
}

/// The one path named by `keys` (or `path`), as a string; `None` when none is given. Two
/// different paths in one input are refused: the policy must decide on the file the tool will
/// use, and the hook cannot know which one that is.
fn named_path(tool: &str, input: &Map<String, Value>, keys: &[&str]) -> Result<Option<String>, String> {
    let mut found: Vec<(&str, &str)> = Vec::new();
    for key in keys.iter().chain(["path"].iter()) {
        match input.get(*key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => found.push((key, s)),
            Some(_) => return Err(format!("`{key}` in the `{tool}` input is not a string")),
        }
    }
    found.dedup_by(|a, b| a.1 == b.1);
    match found.as_slice() {
        [] => Ok(None),
        [(_, one)] => Ok(Some((*one).to_owned())),
        _ => Err(format!(
            "`{tool}` input names more than one path ({}): the hook cannot tell which file the tool uses",
            found.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// A tool acting on the one path under `keys` (or `path`); without one, on the working
/// directory when `default_cwd` (search tools), else refused.
fn one_path(tool: &str, op: &str, input: &Map<String, Value>, keys: &[&str], default_cwd: bool) -> Mapped {
    let path = named_path(tool, input, keys)?;
    if path.is_none() && !default_cwd {
        let keys: Vec<&str> = keys.iter().chain(["path"].iter()).copied().collect();
        return Err(format!("the `{tool}` input names no path (`{}`)", keys.join("`, `")));
    }
    Ok(Call { tool: tool.into(), op: op.into(), args: input.clone(), files: Files::One(path) })
}

/// A tool matching the glob pattern under `pattern_key`, under the directory under `dir_keys`
/// (or `path`; else the working directory).
fn pattern_path(
    tool: &str,
    op: &str,
    input: &Map<String, Value>,
    pattern_key: &str,
    dir_keys: &[&str],
) -> Mapped {
    let dir = named_path(tool, input, dir_keys)?;
    let Some(Value::String(pattern)) = input.get(pattern_key) else {
        return Err(format!("the `{tool}` input names no `{pattern_key}` (a string)"));
    };
    let files = Files::Pattern { dir, pattern: pattern.clone() };
    Ok(Call { tool: tool.into(), op: op.into(), args: input.clone(), files })
}

/// A tool reading every path or glob pattern of the lists under `keys` (Gemini CLI's
/// `read_many_files`: `paths` and `include`); a list it cannot read, or none, is refused.
fn path_lists(tool: &str, op: &str, input: &Map<String, Value>, keys: &[&str]) -> Mapped {
    let mut all = Vec::new();
    for key in keys {
        match input.get(*key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    let Some(s) = item.as_str() else {
                        return Err(format!("`{key}` is not a list of paths (it holds {item})"));
                    };
                    all.push(s.to_owned());
                }
            }
            Some(other) => return Err(format!("`{key}` is not a list of paths (it is {other})")),
        }
    }
    let names = keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" and ");
    if all.is_empty() {
        return Err(format!("the input names no path to read ({names} are missing or empty)"));
    }
    if all.len() > hook_paths::MAX_PATHS {
        return Err(format!(
            "{names} name {} paths, more than the {} one call may",
            all.len(),
            hook_paths::MAX_PATHS
        ));
    }
    Ok(Call { tool: tool.into(), op: op.into(), args: input.clone(), files: Files::Patterns(all) })
}

/// A tool applying the patch under `key`: every file its headers name (`*** Update File: …`);
/// a patch naming none is refused.
fn patch_paths(tool: &str, op: &str, input: &Map<String, Value>, key: &str) -> Mapped {
    let Some(Value::String(text)) = input.get(key) else {
        return Err(format!("the input has no patch text in `{key}`"));
    };
    let files = hook_paths::patch_files(text);
    if files.is_empty() {
        return Err(
            "the patch names no file (`*** Add File:`, `*** Update File:`, `*** Delete File:`)".into()
        );
    }
    if files.len() > hook_paths::MAX_PATHS {
        return Err(format!(
            "the patch names {} files, more than the {} one call may",
            files.len(),
            hook_paths::MAX_PATHS
        ));
    }
    Ok(Call { tool: tool.into(), op: op.into(), args: input.clone(), files: Files::Patch(files) })
}

/// A call with its paths read as the host opens them (`hook_paths`): `path` set in its
/// arguments for a tool acting on one path, `paths` (and `path` when there is exactly one) for
/// a tool acting on several, or a path read two ways, or a pattern reaching out of its
/// directory through symlinks.
struct Resolved {
    tool: String,
    op: String,
    args: Map<String, Value>,
    /// Every path the call acts on (decided one by one when there are several).
    paths: Vec<String>,
    /// What the path reader met: a symlink whose target is missing, a `..` after a symlink, a
    /// symlink a pattern reaches out of its directory through.
    notes: Vec<String>,
}

/// Reads the paths of `call` against the working directory `cwd`: the call the policy sees, or
/// why the hook refuses it.
fn resolve_call(call: Call, cwd: &Result<PathBuf, String>) -> Result<Resolved, String> {
    let Call { tool, op, mut args, files } = call;
    let (found, several): (Vec<hook_paths::Resolved>, bool) = match &files {
        Files::None => (Vec::new(), false),
        Files::One(Some(raw)) => (vec![hook_paths::resolve(raw, cwd)?], false),
        Files::One(None) => (vec![hook_paths::resolve(".", cwd)?], false),
        Files::Pattern { dir, pattern } => {
            (vec![hook_paths::resolve_pattern(pattern, dir.as_deref(), cwd, false)?], false)
        }
        Files::Patterns(list) => {
            // `read_many_files` reads every file under a directory it is given.
            let found = list
                .iter()
                .map(|p| hook_paths::resolve_pattern(p, None, cwd, true))
                .collect::<Result<_, _>>()?;
            (found, true)
        }
        Files::Patch(list) => {
            (list.iter().map(|p| hook_paths::resolve(p, cwd)).collect::<Result<_, _>>()?, true)
        }
    };
    let mut paths: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for r in found {
        for path in r.paths {
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        for note in r.notes {
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
    }
    if files == Files::None {
        return Ok(Resolved { tool, op, args, paths, notes });
    }
    if several || paths.len() > 1 {
        args.insert("paths".into(), json!(paths));
    }
    if let [one] = paths.as_slice() {
        args.insert("path".into(), json!(one));
    } else {
        args.remove("path");
    }
    Ok(Resolved { tool, op, args, paths, notes })
}

/// A hook payload, read: the call the policy sees, and what the host said about it.
struct Incoming {
    /// The host's event name.
    event: String,
    /// The host's name for the tool.
    host_tool: String,
    /// The policy's call, or why the payload cannot be decided on.
    mapped: Mapped,
    /// The host's id for this one tool call (Claude Code's `tool_use_id`), when it gives one.
    call_id: Option<String>,
    /// What the call's context records besides the host: session and working directory (and
    /// for Cursor's MCP calls, the server).
    context: Map<String, Value>,
    /// For an event after the tool ran: how it went.
    outcome: Option<Outcome>,
}

/// How a tool call went, as the host reported it.
struct Outcome {
    success: bool,
    result: Value,
    error: Option<Value>,
}

/// Reads the payload of `host`'s hook.
fn read_incoming(host: Host, payload: &Map<String, Value>) -> Result<Incoming, String> {
    let text = |k: &str| payload.get(k).and_then(Value::as_str);
    let mut context = Map::new();
    let mut keep = |key: &str, v: Option<&Value>| {
        if let Some(v) = v.filter(|v| v.is_string()) {
            context.insert(key.into(), v.clone());
        }
    };
    match host {
        Host::ClaudeCode | Host::GeminiCli => {
            let event = text("hook_event_name").ok_or("the hook payload has no `hook_event_name`")?;
            if !host.events().contains(&event) {
                return Err(format!(
                    "`faramesh hook {}` answers {}, not `{event}`",
                    host.name(),
                    host.events().join(", ")
                ));
            }
            let tool_name = text("tool_name").ok_or("the hook payload has no `tool_name`")?;
            let input = object_input(payload.get("tool_input"), "tool_input")?;
            keep("session_id", payload.get("session_id"));
            keep("cwd", payload.get("cwd"));
            let mapped = match host {
                Host::ClaudeCode => claude_code_call(tool_name, &input),
                _ => gemini_call(tool_name, &input),
            };
            let outcome = (event != host.events()[0]).then(|| {
                let response = payload.get("tool_response").cloned().unwrap_or(Value::Null);
                let failed =
                    event == "PostToolUseFailure" || response.get("error").is_some_and(|e| !e.is_null());
                let error =
                    failed.then(|| payload.get("error").cloned().unwrap_or_else(|| json!("the tool failed")));
                Outcome { success: !failed, result: response, error }
            });
            let call_id = text("tool_use_id").map(str::to_owned);
            Ok(Incoming {
                event: event.into(),
                host_tool: tool_name.into(),
                mapped,
                call_id,
                context,
                outcome,
            })
        }
        Host::Cursor => {
            let event = text("hook_event_name").ok_or("the hook payload has no `hook_event_name`")?;
            keep("session_id", payload.get("conversation_id"));
            keep("cwd", payload.get("cwd").or_else(|| payload.get("workspace_roots").and_then(|r| r.get(0))));
            let (host_tool, mapped) = match event {
                "beforeShellExecution" | "afterShellExecution" => {
                    let command = text("command").ok_or("the hook payload has no `command`")?;
                    let mut args = Map::new();
                    args.insert("command".into(), json!(command));
                    ("Shell".to_owned(), plain("shell", "exec", &args))
                }
                "beforeMCPExecution" | "afterMCPExecution" => {
                    let name = text("tool_name").ok_or("the hook payload has no `tool_name`")?;
                    let input = object_input(payload.get("tool_input"), "tool_input")?;
                    keep("mcp_server", payload.get("url").or_else(|| payload.get("command")));
                    (name.to_owned(), Ok(cursor_mcp_call(name, input)))
                }
                "beforeReadFile" => {
                    // The file's content (and attachments) are not part of the call.
                    let path = text("file_path").ok_or("the hook payload has no `file_path`")?;
                    let mut args = Map::new();
                    args.insert("path".into(), json!(path));
                    ("Read".to_owned(), one_path("file", "read", &args, &[], false))
                }
                other => {
                    return Err(format!(
                        "`faramesh hook cursor` answers {}, not `{other}`",
                        host.events().join(", ")
                    ));
                }
            };
            let outcome = event.starts_with("after").then(|| {
                let failed = payload.get("exit_code").and_then(Value::as_i64).is_some_and(|c| c != 0);
                let result = payload
                    .get("output")
                    .or_else(|| payload.get("result_json"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let error = failed.then(|| json!(format!("exit code {}", payload["exit_code"])));
                Outcome { success: !failed, result, error }
            });
            Ok(Incoming { event: event.into(), host_tool, mapped, call_id: None, context, outcome })
        }
        Host::Opencode => {
            let event = text("hook_event_name").ok_or("the hook payload has no `hook_event_name`")?;
            if !host.events().contains(&event) {
                return Err(format!(
                    "`faramesh hook opencode` answers {}, not `{event}`",
                    host.events().join(", ")
                ));
            }
            let tool_name = text("tool").ok_or("the hook payload has no `tool`")?;
            let input = object_input(payload.get("args"), "args")?;
            keep("session_id", payload.get("sessionID"));
            keep("cwd", payload.get("directory"));
            let outcome = (event == "tool.execute.after").then(|| {
                let error = payload.get("error").filter(|e| !e.is_null()).cloned();
                let result = payload.get("output").cloned().unwrap_or(Value::Null);
                Outcome { success: error.is_none(), result, error }
            });
            let mapped = opencode_call(tool_name, &input);
            let call_id = text("callID").map(str::to_owned);
            Ok(Incoming {
                event: event.into(),
                host_tool: tool_name.into(),
                mapped,
                call_id,
                context,
                outcome,
            })
        }
        Host::CopilotCli => {
            // Copilot CLI names no event: a payload with the tool's result is `postToolUse`.
            let tool_name = text("toolName").ok_or("the hook payload has no `toolName`")?;
            let input = match (object_input(payload.get("toolArgs"), "toolArgs"), payload.get("toolArgs")) {
                (Ok(input), _) => input,
                // `apply_patch` is a free-form tool: its arguments may be the patch itself.
                (Err(_), Some(Value::String(patch))) if tool_name == "apply_patch" => {
                    let mut input = Map::new();
                    input.insert("input".into(), json!(patch));
                    input
                }
                (Err(why), _) => return Err(why),
            };
            keep("cwd", payload.get("cwd"));
            let outcome = payload.get("toolResult").map(|r| {
                let kind = r.get("resultType").and_then(Value::as_str).unwrap_or("failure");
                let text = r.get("textResultForLlm").cloned().unwrap_or(Value::Null);
                let success = kind == "success";
                Outcome { success, error: (!success).then(|| json!(format!("{kind}: {text}"))), result: text }
            });
            let event = if outcome.is_some() { "postToolUse" } else { "preToolUse" };
            let mapped = copilot_call(tool_name, &input);
            Ok(Incoming {
                event: event.into(),
                host_tool: tool_name.into(),
                mapped,
                call_id: None,
                context,
                outcome,
            })
        }
    }
}

/// A tool's input: an object, absent, or (Cursor's MCP and Copilot CLI's calls) an object
/// written as a JSON string, read strictly.
fn object_input(v: Option<&Value>, key: &str) -> Result<Map<String, Value>, String> {
    match v {
        Some(Value::Object(m)) => Ok(m.clone()),
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Map::new()),
        Some(Value::String(s)) => match faramesh_proto::parse_strict(s.as_bytes()) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(format!("`{key}` is not a JSON object")),
            Err(e) => Err(format!("`{key}` is not JSON ({e})")),
        },
        Some(_) => Err(format!("`{key}` is not an object")),
    }
}

/// Cursor's MCP tool: `MCP:server:tool` → `server`/`tool`, `mcp__server__tool` likewise, a bare
/// tool name → `mcp`/`tool` (as `faramesh mcp` names tools in HTTP mode).
fn cursor_mcp_call(name: &str, input: Map<String, Value>) -> Call {
    let (tool, op) = match name.strip_prefix("MCP:").and_then(|rest| rest.split_once(':')) {
        Some((server, tool)) => (server, tool),
        None => match name.strip_prefix("mcp__").and_then(|rest| rest.split_once("__")) {
            Some((server, tool)) => (server, tool),
            None => ("mcp", name),
        },
    };
    Call { tool: tool.to_owned(), op: op.to_owned(), args: input, files: Files::None }
}

/// The call GitHub Copilot CLI's tool becomes: `bash` → `shell`/`exec` (the command in
/// `command`), `view` → `file`/`read`, `create` → `file`/`write`, `edit` and `apply_patch` →
/// `file`/`edit`, `glob`, `grep` and `rg` → `file`/`search` (each with its paths, read as
/// Copilot CLI opens them), `web_fetch` → `http`/`get` (`url`), `mcp__server__tool` →
/// `server`/`tool`, any other tool → its own name, `invoke`.
pub(crate) fn copilot_call(tool_name: &str, input: &Map<String, Value>) -> Mapped {
    match tool_name {
        "bash" => plain("shell", "exec", input),
        "view" => one_path("file", "read", input, &["file_path"], false),
        "create" => one_path("file", "write", input, &["file_path"], false),
        "edit" => one_path("file", "edit", input, &["file_path"], false),
        "apply_patch" => patch_paths("file", "edit", input, "input"),
        "glob" => pattern_path("file", "search", input, "pattern", &[]),
        "grep" | "rg" => one_path("file", "search", input, &[], true),
        "web_fetch" => plain("http", "get", input),
        other => Ok(by_name(other, input)),
    }
}

/// The call OpenCode's tool becomes: `bash` → `shell`/`exec` (the command in `command`),
/// `read` → `file`/`read`, `write` → `file`/`write`, `edit`, `multiedit` and `patch` →
/// `file`/`edit`, `glob`, `grep` and `list` → `file`/`search` (each with its paths, read as
/// OpenCode opens them), `webfetch` → `http`/`get` (`url`), `mcp__server__tool` →
/// `server`/`tool`, any other tool → its own name, `invoke`.
pub(crate) fn opencode_call(tool_name: &str, input: &Map<String, Value>) -> Mapped {
    match tool_name {
        "bash" => plain("shell", "exec", input),
        "read" => one_path("file", "read", input, &["filePath"], false),
        "write" => one_path("file", "write", input, &["filePath"], false),
        "edit" | "multiedit" => one_path("file", "edit", input, &["filePath"], false),
        "patch" => patch_paths("file", "edit", input, "patchText"),
        "glob" => pattern_path("file", "search", input, "pattern", &[]),
        "grep" | "list" => one_path("file", "search", input, &[], true),
        "webfetch" => plain("http", "get", input),
        other => Ok(by_name(other, input)),
    }
}

fn on_event(
    host: Host,
    payload: &Map<String, Value>,
    agent: &str,
    socket: &Path,
    defer: Defer,
) -> Result<ExitCode> {
    let incoming = match read_incoming(host, payload) {
        Ok(i) => i,
        Err(why) => return Ok(block(Some(host), &format!("Faramesh refused the call: {why}"))),
    };
    // Paths are read as the host opens them, against the working directory it gave.
    let cwd = hook_paths::working_dir(incoming.context.get("cwd").and_then(Value::as_str));
    let call = match incoming.mapped.and_then(|call| resolve_call(call, &cwd)) {
        Ok(call) => call,
        Err(why) => return Ok(block(Some(host), &format!("Faramesh refused the call: {why}"))),
    };
    // The context holds what stays the same when the call is retried (the request hash covers
    // it), never the host's id of one tool call.
    let mut context = incoming.context;
    context.insert("host".into(), json!(host.name()));
    context.insert("host_tool".into(), json!(incoming.host_tool));
    if !call.notes.is_empty() {
        context.insert("path_note".into(), json!(call.notes.join("; ")));
    }
    let mut whole = json!({"agent_id": agent, "tool": call.tool, "operation": call.op, "args": call.args, "context": context});
    // The call's session (what a grant made on its approval covers); the context keeps it too.
    if let Some(session) = whole["context"].get("session_id").cloned() {
        whole["session_id"] = session;
    }
    let key = call_key(incoming.call_id.as_deref(), &whole);
    match incoming.outcome {
        None => {
            // A tool acting on several paths is decided once per path, each call with its `path`.
            let calls = if call.paths.len() > 1 {
                call.paths
                    .iter()
                    .map(|p| {
                        let mut one = whole.clone();
                        one["args"]["path"] = json!(p);
                        (Some(p.clone()), one)
                    })
                    .collect()
            } else {
                vec![(None, whole)]
            };
            before(host, &incoming.event, socket, calls, &key, defer)
        }
        Some(outcome) => after(host, socket, &key, outcome),
    }
}

/// What names one tool call between its before and after events: the host's id for it when it
/// gives one (Claude Code's `tool_use_id`), else the call's request hash.
fn call_key(call_id: Option<&str>, call: &Value) -> String {
    match call_id.filter(|id| faramesh_proto::is_identifier(id)) {
        Some(id) => id.to_owned(),
        None => format!("call-{}", request_hash(call)),
    }
}

fn request_hash(call: &Value) -> String {
    let field = |k: &str| call.get(k).and_then(Value::as_str).unwrap_or_default();
    faramesh_proto::request_hash(
        field("agent_id"),
        field("tool"),
        field("operation"),
        call.get("args").unwrap_or(&Value::Null),
        call.get("context").unwrap_or(&Value::Null),
    )
    .unwrap_or_default()
}

/// The call Gemini CLI's tool becomes: `run_shell_command` → `shell`/`exec` (the command in
/// `command`), `read_file` and `read_many_files` → `file`/`read`, `write_file` → `file`/`write`,
/// `replace` → `file`/`edit`, `list_directory`, `glob` and `search_file_content` →
/// `file`/`search` (each with its paths, read as Gemini CLI opens them), `web_fetch` →
/// `http`/`get` (`url`: the URL in its prompt), `mcp__server__tool` → `server`/`tool`, any
/// other tool → its own name, `invoke`.
pub(crate) fn gemini_call(tool_name: &str, input: &Map<String, Value>) -> Mapped {
    match tool_name {
        "run_shell_command" => plain("shell", "exec", input),
        "read_file" => one_path("file", "read", input, &["absolute_path", "file_path"], false),
        "read_many_files" => path_lists("file", "read", input, &["paths", "include"]),
        "write_file" => one_path("file", "write", input, &["file_path", "absolute_path"], false),
        "replace" => one_path("file", "edit", input, &["file_path", "absolute_path"], false),
        "list_directory" => one_path("file", "search", input, &["dir_path"], false),
        "glob" => pattern_path("file", "search", input, "pattern", &["dir_path"]),
        "search_file_content" => one_path("file", "search", input, &["dir_path"], true),
        "web_fetch" => {
            // web_fetch fetches every URL in its prompt: one call is decided on one URL.
            let prompt = input.get("prompt").and_then(Value::as_str).unwrap_or_default();
            let mut urls: Vec<&str> = prompt
                .split_whitespace()
                .filter(|w| w.starts_with("https://") || w.starts_with("http://"))
                .map(|u| u.trim_end_matches(['.', ',', ')', '"', '\'']))
                .collect();
            urls.dedup();
            let mut args = input.clone();
            match urls.as_slice() {
                [] => {}
                [url] => {
                    args.insert("url".into(), json!(url));
                }
                _ => {
                    return Err(format!(
                        "`web_fetch` asks for {} URLs in one call: Faramesh decides one URL per call",
                        urls.len()
                    ));
                }
            }
            plain("http", "get", &args)
        }
        other => Ok(by_name(other, input)),
    }
}

fn unreachable(host: Host, socket: &Path, e: &anyhow::Error) -> ExitCode {
    block(
        Some(host),
        &format!(
            "Faramesh refused the call: the daemon is not reachable at `{}` ({e:#}); no tool runs without a decision",
            socket.display()
        ),
    )
}

/// One of a tool call's decisions (one per path for a tool acting on several).
struct Decided {
    /// The path decided on, when the tool acts on several.
    path: Option<String>,
    call: Value,
    /// Where a refused DEFER's approval waits for the retry.
    waiting: PathBuf,
    answer: GovernAnswer,
}

impl Decided {
    fn effect(&self) -> Effect {
        self.answer.decision.effect
    }

    /// `` `path`: `` before a reason, when the tool acts on several paths.
    fn on(&self) -> String {
        self.path.as_deref().map(|p| format!("`{p}`: ")).unwrap_or_default()
    }

    fn code_and_rule(&self) -> String {
        let d = &self.answer.decision;
        let code = serde_json::to_value(d.reason_code).unwrap_or_default();
        let code = code.as_str().unwrap_or("DENY").to_owned();
        let rule = d.rule_id.as_deref().map(|r| format!(", rule {r}")).unwrap_or_default();
        format!("{code}{rule}")
    }
}

/// Decides `calls` (one, or one per path) and answers the host: DENY if any is denied, else
/// DEFER if any waits for a person, PERMIT only if every one is permitted.
fn before(
    host: Host,
    event: &str,
    socket: &Path,
    calls: Vec<(Option<String>, Value)>,
    key: &str,
    defer: Defer,
) -> Result<ExitCode> {
    let defer = if defer == Defer::Ask && !host.can_ask(event) { Defer::Refuse } else { defer };
    let mut decided: Vec<Decided> = Vec::new();
    for (path, mut call) in calls {
        // A call refused as pending before is retried with its approval: once approved, it runs.
        let waiting = pending_dir().join(format!("approval-{}", request_hash(&call)));
        if let Ok(approval) = std::fs::read_to_string(&waiting) {
            call["approval_id"] = json!(approval.trim());
        }
        let answer = match govern(socket, &call) {
            Ok(a) => a,
            Err(e) => return Ok(unreachable(host, socket, &e)),
        };
        decided.push(Decided { path, call, waiting, answer });
        if decided.last().is_some_and(|d| d.effect() == Effect::Deny) {
            break;
        }
    }
    if let Defer::Wait(timeout) = defer
        && !decided.iter().any(|d| d.effect() == Effect::Deny)
    {
        // One time limit for the whole call, however many of its paths wait.
        let deadline = Instant::now() + timeout;
        for d in decided.iter_mut().filter(|d| d.effect() == Effect::Defer) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.as_secs() == 0 {
                break;
            }
            if let Some(answer) = wait_and_resume(socket, &d.call, &d.answer, left) {
                d.answer = answer;
            }
        }
    }
    for d in &decided {
        match (d.effect(), d.answer.approval_id.as_deref()) {
            (Effect::Defer, Some(approval)) if defer != Defer::Ask => remember(&d.waiting, approval),
            (Effect::Defer, _) => {}
            _ => {
                let _ = std::fs::remove_file(&d.waiting);
            }
        }
    }
    let denied = decided.iter().find(|d| d.effect() == Effect::Deny);
    let deferred: Vec<&Decided> = decided.iter().filter(|d| d.effect() == Effect::Defer).collect();
    let (decision, reason) = if let Some(d) = denied {
        let why = &d.answer.decision.reason;
        ("deny", format!("Faramesh denied this call: {}{why} ({})", d.on(), d.code_and_rule()))
    } else if !deferred.is_empty() {
        let reasons = deferred
            .iter()
            .map(|d| format!("{}{}", d.on(), d.answer.decision.reason))
            .collect::<Vec<_>>()
            .join("; ");
        let ids: Vec<&str> =
            deferred.iter().map(|d| d.answer.approval_id.as_deref().unwrap_or("?")).collect();
        let commands =
            ids.iter().map(|a| format!("`faramesh approve {a}`")).collect::<Vec<_>>().join(" and ");
        let ids = ids.join(", ");
        let reason = match defer {
            Defer::Ask => format!(
                "Faramesh: this call needs a person's approval ({reasons}). Approving here runs it; it is recorded as approval {ids}"
            ),
            Defer::Wait(t) => format!(
                "Faramesh: approval {ids} was not decided within {} s ({reasons}): approve it with {commands} or in the dashboard, then retry",
                t.as_secs()
            ),
            Defer::Refuse => format!(
                "Faramesh: this call waits for a person's approval ({reasons}): approve it with {commands} or in the dashboard, then retry the same call"
            ),
        };
        (if defer == Defer::Ask { "ask" } else { "deny" }, reason)
    } else {
        let each = decided.iter().map(|d| format!("{}{}", d.on(), d.code_and_rule())).collect::<Vec<_>>();
        let actions: Vec<&str> = decided.iter().filter_map(|d| d.answer.action_id.as_deref()).collect();
        if !actions.is_empty() {
            remember(&pending_dir().join(key), &actions.join("\n"));
        }
        ("allow", format!("Faramesh: allowed ({})", each.join("; ")))
    };
    let out = match host {
        Host::ClaudeCode => json!({"hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": decision,
            "permissionDecisionReason": reason,
        }}),
        Host::GeminiCli => {
            json!({"decision": if decision == "allow" { "allow" } else { "deny" }, "reason": reason})
        }
        Host::Cursor => json!({"permission": decision, "user_message": reason, "agent_message": reason}),
        Host::CopilotCli => json!({"permissionDecision": decision, "permissionDecisionReason": reason}),
        Host::Opencode => json!({"decision": decision, "reason": reason}),
    };
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn govern(socket: &Path, call: &Value) -> Result<GovernAnswer> {
    Ok(serde_json::from_value(client::call(socket, "govern", call.clone())?)?)
}

/// Holds a deferred call until its approval is decided (or `timeout`), then re-asks with the
/// approval id.
fn wait_and_resume(
    socket: &Path,
    call: &Value,
    answer: &GovernAnswer,
    timeout: Duration,
) -> Option<GovernAnswer> {
    let approval = answer.approval_id.as_deref()?;
    let stream = client::connect(socket).ok()?;
    stream.set_read_timeout(Some(timeout + Duration::from_secs(10))).ok()?;
    let reply = client::call_on(
        &stream,
        "approval.wait",
        json!({"approval_id": approval, "timeout_seconds": timeout.as_secs()}),
    )
    .ok()?;
    if reply["timed_out"] == true {
        return None;
    }
    let mut resume = call.clone();
    resume["approval_id"] = json!(approval);
    govern(socket, &resume).ok()
}

/// Where the hook keeps, between a tool call's events, the action id of a permitted call (until
/// its outcome is reported) and the approval of a refused one (until it is retried):
/// `$XDG_RUNTIME_DIR/faramesh-hooks/` (else `~/.faramesh/runtime/hooks/`), mode 0700.
fn pending_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("faramesh-hooks"),
        None => {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
            home.join(".faramesh/runtime/hooks")
        }
    }
}

fn remember(file: &Path, id: &str) {
    if faramesh_daemon::log::create_private_dir(&pending_dir()).is_ok() {
        let _ = std::fs::write(file, id);
    }
}

fn after(host: Host, socket: &Path, key: &str, outcome: Outcome) -> Result<ExitCode> {
    // Gemini CLI parses stdout as JSON, and Cursor reads an answer to every event: an empty
    // object changes nothing.
    if matches!(host, Host::GeminiCli | Host::Cursor | Host::Opencode) {
        println!("{{}}");
    }
    // The permitted call's action (one per path for a tool acting on several, one a line).
    let file = pending_dir().join(key);
    let Ok(actions) = std::fs::read_to_string(&file) else { return Ok(ExitCode::SUCCESS) };
    let _ = std::fs::remove_file(&file);
    let text = outcome.result.to_string();
    let result = if text.len() <= MAX_RESULT_BYTES {
        outcome.result
    } else {
        json!({"truncated": true, "bytes": text.len()})
    };
    for action in actions.lines().map(str::trim).filter(|a| !a.is_empty()) {
        let mut report = json!({"id": action, "success": outcome.success, "result": result});
        if let Some(error) = &outcome.error {
            report["error"] = error.clone();
        }
        // The outcome is a record, not a decision: a daemon that went away meanwhile is
        // reported on stderr and does not fail the (already run) tool.
        let started = client::call(socket, "action.start", json!({"id": action}));
        if let Err(e) = started.and_then(|_| client::call(socket, "action.result", report)) {
            eprintln!("faramesh: could not record the outcome of action {action}: {e:#}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// For `faramesh doctor`: which hosts' settings run this hook (the project's and the user's).
pub(crate) fn wired_hosts() -> String {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut wired = Vec::new();
    for host in HOSTS {
        let mut files = vec![PathBuf::from(host.settings())];
        files.extend(home.as_ref().map(|h| h.join(host.settings())));
        let first = format!("/hooks/{}", host.events()[0]);
        if host == Host::Opencode {
            let config = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()).map(PathBuf::from);
            let config = config.or_else(|| home.as_ref().map(|h| h.join(".config")));
            files.truncate(1);
            files.extend(config.map(|c| c.join("opencode/plugins/faramesh.js")));
        }
        for f in files {
            if host == Host::Opencode {
                if std::fs::read_to_string(&f).is_ok_and(|t| t.starts_with(OPENCODE_MARKER)) {
                    wired.push(format!("{} ({})", host.name(), f.display()));
                }
                continue;
            }
            let runs = std::fs::read_to_string(&f)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| {
                    v.pointer(&first).and_then(Value::as_array).is_some_and(|l| runs_ours(host, l))
                });
            if runs {
                wired.push(format!("{} ({})", host.name(), f.display()));
            }
        }
    }
    // OpenClaw loads the @faramesh/openclaw plugin (docs/hooks.md#openclaw).
    let openclaw =
        std::env::var_os("OPENCLAW_CONFIG_PATH").filter(|p| !p.is_empty()).map(PathBuf::from).or_else(|| {
            let state = std::env::var_os("OPENCLAW_STATE_DIR").filter(|d| !d.is_empty()).map(PathBuf::from);
            state.or_else(|| home.as_ref().map(|h| h.join(".openclaw"))).map(|d| d.join("openclaw.json"))
        });
    if let Some(f) = openclaw
        && std::fs::read_to_string(&f)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v.pointer("/plugins/entries/faramesh/enabled") == Some(&Value::Bool(true)))
    {
        wired.push(format!("openclaw (the faramesh plugin, {})", f.display()));
    }
    if wired.is_empty() {
        "no coding agent runs the faramesh hook here (`faramesh hook install claude-code|gemini-cli|cursor|copilot-cli|opencode`)".into()
    } else {
        format!("the faramesh hook is wired into {}", wired.join(", "))
    }
}

fn install(args: &InstallArgs) -> Result<ExitCode> {
    if args.host == Host::Opencode {
        return install_opencode(args);
    }
    if args.user && args.host == Host::CopilotCli && args.settings.is_none() {
        bail!(
            "GitHub Copilot CLI reads hooks from the repository's `.github/hooks/` folder: run `faramesh hook install copilot-cli` in the repository (or pass --settings FILE)"
        );
    }
    let path = match (&args.settings, args.user) {
        (Some(p), _) => p.clone(),
        (None, true) => PathBuf::from(
            std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set: pass --settings FILE"))?,
        )
        .join(args.host.settings()),
        (None, false) => PathBuf::from(args.host.settings()),
    };
    let mut settings: Map<String, Value> = match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().is_empty() => Map::new(),
        Ok(text) => match faramesh_proto::parse_strict(text.as_bytes()) {
            Ok(Value::Object(m)) => m,
            _ => bail!("`{}` is not a JSON object: fix it or pass --settings FILE", path.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    let command = hook_command(args.host)?;
    let changed = if args.uninstall {
        remove_hooks(args.host, &mut settings)
    } else {
        add_hooks(args.host, &mut settings, &command)?
    };
    // Copilot CLI's hook file is ours alone: with our hooks gone, nothing is left to keep.
    let ours_alone = args.host == Host::CopilotCli && args.settings.is_none();
    if changed && args.uninstall && ours_alone && settings.keys().all(|k| k == "version") {
        std::fs::remove_file(&path).with_context(|| format!("cannot remove `{}`", path.display()))?;
    } else if changed {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&Value::Object(settings))? + "\n";
        std::fs::write(&path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    let what = match (args.uninstall, changed) {
        (false, true) => format!("installed `{command}` for {}", args.host.events().join(", ")),
        (false, false) => "already installed".to_owned(),
        (true, true) => "removed the faramesh hooks".to_owned(),
        (true, false) => "no faramesh hook to remove".to_owned(),
    };
    println!("{}: {what}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// The command the host runs: `faramesh hook HOST`, with the socket when `FARAMESH_SOCKET` is
/// set (the host may not pass the environment on), and this binary's path when `faramesh` on
/// PATH is another one.
fn hook_command(host: Host) -> Result<String> {
    Ok(hook_argv(host)?.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "))
}

/// [`hook_command`] as an argument list.
fn hook_argv(host: Host) -> Result<Vec<String>> {
    let exe = std::env::current_exe().context("cannot find this faramesh binary")?;
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("faramesh")).find(|p| p.is_file()));
    let same = on_path.and_then(|p| std::fs::canonicalize(p).ok()) == std::fs::canonicalize(&exe).ok();
    let program = if same { "faramesh".to_owned() } else { exe.display().to_string() };
    let mut argv = vec![program, "hook".to_owned(), host.name().to_owned()];
    if let Some(socket) = std::env::var_os("FARAMESH_SOCKET").filter(|s| !s.is_empty()) {
        argv.push("--socket".to_owned());
        argv.push(PathBuf::from(socket).display().to_string());
    }
    Ok(argv)
}

/// `hook install opencode`: writes the plugin file (its command filled in) where OpenCode loads
/// plugins from, or removes it; a file there that is not ours is left alone.
fn install_opencode(args: &InstallArgs) -> Result<ExitCode> {
    let path = match (&args.settings, args.user) {
        (Some(p), _) => p.clone(),
        (None, true) => {
            let config = std::env::var_os("XDG_CONFIG_HOME")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                .ok_or_else(|| anyhow!("HOME is not set: pass --settings FILE"))?;
            config.join("opencode/plugins/faramesh.js")
        }
        (None, false) => PathBuf::from(Host::Opencode.settings()),
    };
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    if existing.as_deref().is_some_and(|t| !t.starts_with(OPENCODE_MARKER)) {
        bail!(
            "`{}` exists and is not the Faramesh plugin: move it away or pass --settings FILE",
            path.display()
        );
    }
    let what = if args.uninstall {
        if existing.is_some() {
            std::fs::remove_file(&path).with_context(|| format!("cannot remove `{}`", path.display()))?;
            "removed the faramesh plugin"
        } else {
            "no faramesh plugin to remove"
        }
    } else {
        let argv = serde_json::to_string(&hook_argv(Host::Opencode)?)?;
        let default = r#"/* faramesh:command */ ["faramesh", "hook", "opencode"]"#;
        let text = OPENCODE_PLUGIN.replacen(default, &format!("/* faramesh:command */ {argv}"), 1);
        if existing.as_deref() == Some(text.as_str()) {
            "already installed"
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
            }
            std::fs::write(&path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
            "installed the faramesh plugin (tool.execute.before, tool.execute.after)"
        }
    };
    println!("{}: {what}", path.display());
    Ok(ExitCode::SUCCESS)
}

fn shell_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Whether one of an event's entries runs our hook for `host`.
fn runs_ours(host: Host, list: &[Value]) -> bool {
    if host.flat_entries() {
        return list.iter().any(|h| is_ours(host, h));
    }
    list.iter().any(|m| {
        m.get("hooks").and_then(Value::as_array).is_some_and(|hs| hs.iter().any(|h| is_ours(host, h)))
    })
}

/// Whether a hook entry (`{"type": "command", "command": …}`; Copilot CLI's `bash`) is ours
/// for `host`.
fn is_ours(host: Host, hook: &Value) -> bool {
    let key = if host == Host::CopilotCli { "bash" } else { "command" };
    hook.get(key).and_then(Value::as_str).is_some_and(|c| c.contains(&format!(" hook {}", host.name())))
}

fn add_hooks(host: Host, settings: &mut Map<String, Value>, command: &str) -> Result<bool> {
    if host.flat_entries() {
        // Cursor's hooks.json and Copilot CLI's hook files carry a format version.
        settings.entry("version").or_insert_with(|| json!(1));
    }
    let hooks = settings.entry("hooks").or_insert_with(|| json!({}));
    let Some(hooks) = hooks.as_object_mut() else { bail!("`hooks` in the settings is not an object") };
    let mut changed = false;
    for &event in host.events() {
        let list = hooks.entry(event).or_insert_with(|| json!([]));
        let Some(list) = list.as_array_mut() else { bail!("`hooks.{event}` in the settings is not a list") };
        if !runs_ours(host, list) {
            list.push(host.entry(command));
            changed = true;
        }
    }
    Ok(changed)
}

fn remove_hooks(host: Host, settings: &mut Map<String, Value>) -> bool {
    let Some(hooks) = settings.get_mut("hooks").and_then(Value::as_object_mut) else { return false };
    let mut changed = false;
    for &event in host.events() {
        let Some(list) = hooks.get_mut(event).and_then(Value::as_array_mut) else { continue };
        if host.flat_entries() {
            let before = list.len();
            list.retain(|h| !is_ours(host, h));
            changed |= list.len() != before;
        }
        for matcher in list.iter_mut().filter(|_| !host.flat_entries()) {
            if let Some(hs) = matcher.get_mut("hooks").and_then(Value::as_array_mut) {
                let before = hs.len();
                hs.retain(|h| !is_ours(host, h));
                changed |= hs.len() != before;
            }
        }
        list.retain(|m| m.get("hooks").and_then(Value::as_array).is_none_or(|hs| !hs.is_empty()));
        if list.is_empty() {
            hooks.remove(event);
        }
    }
    if hooks.is_empty() {
        settings.remove("hooks");
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_run_is_told_from_its_arguments() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>().into_iter();
        assert!(is_hook_run(args(&["faramesh", "hook", "claude-code"])));
        assert!(is_hook_run(args(&["faramesh", "--json", "hook", "cursor"])));
        assert!(!is_hook_run(args(&["faramesh", "hook", "install", "claude-code"])));
        assert!(!is_hook_run(args(&["faramesh", "list"])));
    }

    fn input(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    /// `(tool, op, args[key])` of a mapped call.
    fn seen(call: &Call, key: &str) -> (String, String, Value) {
        (call.tool.clone(), call.op.clone(), call.args.get(key).cloned().unwrap_or(Value::Null))
    }

    fn one(p: &str) -> Files {
        Files::One(Some(p.into()))
    }

    #[test]
    fn claude_code_tools_map_to_policy_tools() {
        let c = claude_code_call("Bash", &input(json!({"command": "rm -rf /", "description": "x"}))).unwrap();
        assert_eq!(seen(&c, "command"), ("shell".into(), "exec".into(), json!("rm -rf /")));
        assert_eq!(c.files, Files::None);
        let c =
            claude_code_call("Edit", &input(json!({"file_path": "/etc/hosts", "old_string": "a"}))).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str(), &c.files), ("file", "edit", &one("/etc/hosts")));
        let c = claude_code_call("Glob", &input(json!({"pattern": "../*.pem"}))).unwrap();
        assert_eq!(c.files, Files::Pattern { dir: None, pattern: "../*.pem".into() });
        assert_eq!(
            claude_code_call("Grep", &input(json!({"pattern": "x"}))).unwrap().files,
            Files::One(None)
        );
        let c = claude_code_call("WebFetch", &input(json!({"url": "https://example.com"}))).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str()), ("http", "get"));
        let c = claude_code_call("mcp__github__create_issue", &Map::new()).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str()), ("github", "create_issue"));
        let c = claude_code_call("Task", &Map::new()).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str()), ("Task", "invoke"));
        let two = input(json!({"file_path": "/etc/hosts", "path": "/tmp/x"}));
        assert!(claude_code_call("Edit", &two).is_err(), "the hook cannot tell which file Edit writes");
        assert!(claude_code_call("Read", &Map::new()).unwrap_err().contains("names no path"));
        assert!(
            claude_code_call("Read", &input(json!({"file_path": 7}))).unwrap_err().contains("not a string")
        );
    }

    #[test]
    fn gemini_cli_tools_map_to_policy_tools() {
        let c = gemini_call("run_shell_command", &input(json!({"command": "rm -rf /"}))).unwrap();
        assert_eq!(seen(&c, "command"), ("shell".into(), "exec".into(), json!("rm -rf /")));
        let c = gemini_call("read_file", &input(json!({"absolute_path": "/etc/passwd"}))).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str(), &c.files), ("file", "read", &one("/etc/passwd")));
        let c = gemini_call("replace", &input(json!({"file_path": "/a", "old_string": "x"}))).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str(), &c.files), ("file", "edit", &one("/a")));
        let c =
            gemini_call("read_many_files", &input(json!({"paths": ["a", "b/*"], "include": ["c"]}))).unwrap();
        assert_eq!(c.files, Files::Patterns(vec!["a".into(), "b/*".into(), "c".into()]));
        for bad in [json!({}), json!({"paths": "a"}), json!({"paths": [1]}), json!({"include": []})] {
            assert!(
                gemini_call("read_many_files", &input(bad.clone())).unwrap_err().contains("`paths`"),
                "{bad}"
            );
        }
        let c = gemini_call("glob", &input(json!({"pattern": "*.rs", "dir_path": "src"}))).unwrap();
        assert_eq!(c.files, Files::Pattern { dir: Some("src".into()), pattern: "*.rs".into() });
        let c =
            gemini_call("web_fetch", &input(json!({"prompt": "Summarize https://example.com/a."}))).unwrap();
        assert_eq!(seen(&c, "url"), ("http".into(), "get".into(), json!("https://example.com/a")));
        let c = gemini_call("mcp__github__create_issue", &Map::new()).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str()), ("github", "create_issue"));
        // The policy decides on the file the tool uses: two different paths are refused.
        let two = input(json!({"absolute_path": "/etc/shadow", "file_path": "/home/me/ok"}));
        assert!(gemini_call("read_file", &two).unwrap_err().contains("more than one path"));
        let same = input(json!({"absolute_path": "/a", "path": "/a"}));
        assert_eq!(gemini_call("read_file", &same).unwrap().files, one("/a"));
        let urls = input(json!({"prompt": "Compare https://a.example/x and https://b.example/y"}));
        assert!(gemini_call("web_fetch", &urls).unwrap_err().contains("2 URLs"));
    }

    #[test]
    fn cursor_and_copilot_tools_map_to_policy_tools() {
        assert_eq!(cursor_mcp_call("MCP:github:create_issue", Map::new()).tool, "github");
        assert_eq!(cursor_mcp_call("MCP:github:create_issue", Map::new()).op, "create_issue");
        assert_eq!(cursor_mcp_call("query", Map::new()).tool, "mcp");
        let c = copilot_call("bash", &input(json!({"command": "ls", "description": "x"}))).unwrap();
        assert_eq!(seen(&c, "command"), ("shell".into(), "exec".into(), json!("ls")));
        let c = copilot_call("create", &input(json!({"path": "/a", "file_text": "x"}))).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str(), &c.files), ("file", "write", &one("/a")));
        let patch = "*** Begin Patch\n*** Update File: a\n*** Add File: b\n*** End Patch";
        let c = copilot_call("apply_patch", &input(json!({"input": patch}))).unwrap();
        assert_eq!((c.op.as_str(), &c.files), ("edit", &Files::Patch(vec!["a".into(), "b".into()])));
        assert!(copilot_call("apply_patch", &input(json!({"input": "x"}))).unwrap_err().contains("no file"));
        let c = copilot_call("web_fetch", &input(json!({"url": "https://x"}))).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str()), ("http", "get"));
        assert_eq!(copilot_call("report_intent", &Map::new()).unwrap().op, "invoke");
        let c = opencode_call("edit", &input(json!({"filePath": "/a", "oldString": "x"}))).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str(), &c.files), ("file", "edit", &one("/a")));
        let c = opencode_call("patch", &input(json!({"patchText": patch}))).unwrap();
        assert_eq!(c.files, Files::Patch(vec!["a".into(), "b".into()]));
        assert_eq!(opencode_call("list", &Map::new()).unwrap().files, Files::One(None));
        let c = opencode_call("bash", &input(json!({"command": "ls"}))).unwrap();
        assert_eq!(seen(&c, "command"), ("shell".into(), "exec".into(), json!("ls")));
        assert_eq!(opencode_call("webfetch", &Map::new()).unwrap().tool, "http");
        // Inputs written as JSON text are read strictly.
        assert_eq!(object_input(Some(&json!("{\"a\":1}")), "toolArgs").unwrap()["a"], 1);
        assert!(
            object_input(Some(&json!("{\"a\":1,\"a\":2}")), "toolArgs").unwrap_err().contains("duplicate")
        );
        assert!(object_input(Some(&json!("[1]")), "toolArgs").unwrap_err().contains("not a JSON object"));
        assert!(object_input(Some(&json!(5)), "tool_input").is_err());
        assert!(object_input(None, "tool_input").unwrap().is_empty());
    }

    #[test]
    fn resolved_calls_carry_path_and_paths() {
        let cwd = Ok(PathBuf::from("/nonexistent-fm/p"));
        let r = resolve_call(claude_code_call("Read", &input(json!({"file_path": "../x"}))).unwrap(), &cwd)
            .unwrap();
        assert_eq!(
            (&r.args["path"], &r.args["file_path"], r.args.get("paths")),
            (&json!("/nonexistent-fm/x"), &json!("../x"), None)
        );
        let many = gemini_call("read_many_files", &input(json!({"paths": ["a", "./a", "b"]}))).unwrap();
        let r = resolve_call(many, &cwd).unwrap();
        assert_eq!(
            r.args["paths"],
            json!(["/nonexistent-fm/p/a", "/nonexistent-fm/p/b"]),
            "one decision per path"
        );
        assert!(r.args.get("path").is_none());
        let single = gemini_call("read_many_files", &input(json!({"include": ["a"]}))).unwrap();
        let r = resolve_call(single, &cwd).unwrap();
        assert_eq!(
            (&r.args["path"], &r.args["paths"]),
            (&json!("/nonexistent-fm/p/a"), &json!(["/nonexistent-fm/p/a"]))
        );
        // Tools that are not file tools keep their arguments as given.
        let mcp = claude_code_call("mcp__fs__read", &input(json!({"path": "../x"}))).unwrap();
        assert_eq!(resolve_call(mcp, &cwd).unwrap().args["path"], "../x");
    }

    #[test]
    fn install_is_idempotent_keeps_other_hooks_and_uninstall_restores() {
        let original = json!({
            "model": "x",
            "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "lint.sh"}]}]}
        });
        let mut s = original.as_object().cloned().unwrap();
        assert!(add_hooks(Host::ClaudeCode, &mut s, "faramesh hook claude-code").unwrap());
        let again = add_hooks(Host::ClaudeCode, &mut s, "faramesh hook claude-code").unwrap();
        assert!(!again, "a second install changes nothing");
        assert_eq!(s["hooks"]["PreToolUse"].as_array().unwrap().len(), 2);
        assert_eq!(s["hooks"]["PostToolUse"][0]["hooks"][0]["command"], "faramesh hook claude-code");
        assert!(remove_hooks(Host::ClaudeCode, &mut s));
        assert_eq!(Value::Object(s), original);

        let original = json!({"general": {"vimMode": true}});
        let mut s = original.as_object().cloned().unwrap();
        assert!(add_hooks(Host::GeminiCli, &mut s, "faramesh hook gemini-cli").unwrap());
        let entry = &s["hooks"]["BeforeTool"][0]["hooks"][0];
        assert_eq!((&entry["name"], &entry["timeout"]), (&json!("faramesh"), &json!(600_000)));
        assert!(s["hooks"]["AfterTool"].is_array() && s["hooks"].get("PreToolUse").is_none());
        assert!(remove_hooks(Host::GeminiCli, &mut s));
        assert_eq!(Value::Object(s), original);

        let original = json!({"version": 1, "hooks": {"beforeShellExecution": [{"command": "./audit.sh"}]}});
        let mut s = original.as_object().cloned().unwrap();
        assert!(add_hooks(Host::Cursor, &mut s, "faramesh hook cursor").unwrap());
        assert!(!add_hooks(Host::Cursor, &mut s, "faramesh hook cursor").unwrap());
        assert_eq!(s["hooks"]["beforeShellExecution"].as_array().unwrap().len(), 2);
        assert_eq!(
            s["hooks"]["beforeReadFile"][0],
            json!({"command": "faramesh hook cursor", "failClosed": true})
        );
        assert!(remove_hooks(Host::Cursor, &mut s));
        assert_eq!(Value::Object(s), original);
    }
}
