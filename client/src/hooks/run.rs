//! What every host's hook shares: reading the payload, asking the daemon, holding or refusing
//! a DEFER, and reporting the outcome of a call that ran.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use faramesh_proto::{Effect, GovernAnswer, ReasonCode};
use serde_json::{Map, Value, json};

use super::call::{Outcome, resolve_call};
use super::{Answer, EXIT_BLOCK, Host, paths};
use crate::socket;

/// The longest hook payload read from stdin.
const MAX_PAYLOAD: u64 = 4 << 20;
/// A tool's response larger than this is recorded by its size only.
const MAX_RESULT_BYTES: usize = 16 << 10;

/// A hook run: the host whose payload is on stdin, and how its calls are decided.
#[derive(Debug, Clone)]
pub struct HookOptions {
    /// The host (`None`: not named, refused).
    pub host: Option<Host>,
    /// The agent id calls are decided for (default: the host's name).
    pub agent_id: Option<String>,
    /// DEFER: `ask`, `wait` or `wait=SECONDS`.
    pub defer: String,
    /// The daemon's socket.
    pub socket: PathBuf,
}

/// Answers the hook payload on stdin. Every way this can fail blocks the call (exit 2): the
/// hosts read other exits as "carry on".
pub fn hook(options: HookOptions) -> ExitCode {
    let host = options.host;
    run(options).unwrap_or_else(|e| block(host, &format!("Faramesh refused the call: {e:#}")))
}

fn run(options: HookOptions) -> Result<ExitCode> {
    let Some(host) = options.host else {
        bail!("name the host: `faramesh hook claude-code` (or `faramesh hook install claude-code`)");
    };
    let defer = parse_defer(&options.defer)?;
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
    let agent = options.agent_id.unwrap_or_else(|| host.name().to_owned());
    on_event(host, &payload, &agent, &options.socket, defer)
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
    let Some(contract) = host.map(Host::contract) else { return ExitCode::from(EXIT_BLOCK) };
    if let Some(answer) = contract.refusal(reason) {
        println!("{answer}");
    }
    ExitCode::from(contract.refusal_exit())
}

fn on_event(
    host: Host,
    payload: &Map<String, Value>,
    agent: &str,
    socket: &Path,
    defer: Defer,
) -> Result<ExitCode> {
    let incoming = match host.contract().read(payload) {
        Ok(i) => i,
        Err(why) => return Ok(block(Some(host), &format!("Faramesh refused the call: {why}"))),
    };
    // Paths are read as the host opens them, against the working directory it gave.
    let cwd = paths::working_dir(incoming.context.get("cwd").and_then(Value::as_str));
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

    /// For a call refused because its approver changed it: the edited arguments, as the
    /// suggested call (a hook cannot substitute arguments).
    fn suggested(&self, socket: &Path) -> Option<Value> {
        if self.effect() != Effect::Deny || self.answer.decision.reason_code != ReasonCode::ApprovalDenied {
            return None;
        }
        let approval = self.call.get("approval_id").and_then(Value::as_str)?;
        let a = socket::call(socket, "approval.wait", json!({"approval_id": approval, "timeout_seconds": 0}))
            .ok()?;
        (a["status"] == "approved").then(|| a.pointer("/edit/params").cloned()).flatten()
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
    let defer = if defer == Defer::Ask && !host.contract().can_ask(event) { Defer::Refuse } else { defer };
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
            let approval = d.answer.approval_id.clone();
            if let Some(answer) = wait_and_resume(socket, &d.call, &d.answer, left) {
                d.answer = answer;
                d.call["approval_id"] = json!(approval);
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
        let suggested = d
            .suggested(socket)
            .map(|args| {
                format!(
                    ". The approver changed this call: make it again with these arguments instead: {}",
                    crate::term::safe(&args.to_string())
                )
            })
            .unwrap_or_default();
        (
            Answer::Deny,
            format!("Faramesh denied this call: {}{why} ({}){suggested}", d.on(), d.code_and_rule()),
        )
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
        (if defer == Defer::Ask { Answer::Ask } else { Answer::Deny }, reason)
    } else {
        let each = decided.iter().map(|d| format!("{}{}", d.on(), d.code_and_rule())).collect::<Vec<_>>();
        // One line per action; `\tcheck` when a `results:` rule reads its result.
        let actions: Vec<String> = decided
            .iter()
            .filter_map(|d| {
                let id = d.answer.action_id.as_deref()?;
                Some(if d.answer.check_result { format!("{id}\tcheck") } else { id.to_owned() })
            })
            .collect();
        if !actions.is_empty() {
            remember(&pending_dir().join(key), &actions.join("\n"));
        }
        (Answer::Allow, format!("Faramesh: allowed ({})", each.join("; ")))
    };
    println!("{}", host.contract().answer(decision, &reason));
    Ok(ExitCode::SUCCESS)
}

fn govern(socket: &Path, call: &Value) -> Result<GovernAnswer> {
    Ok(serde_json::from_value(socket::call(socket, "govern", call.clone())?)?)
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
    let stream = socket::connect(socket).ok()?;
    stream.set_read_timeout(Some(timeout + Duration::from_secs(10))).ok()?;
    let reply = socket::call_on(
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
    // Approved with edits, the resume is refused (the host runs the call as it asked it); the
    // refusal names the edited call.
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
    if faramesh_proto::fs::create_private_dir(&pending_dir()).is_ok() {
        let _ = std::fs::write(file, id);
    }
}

fn after(host: Host, socket: &Path, key: &str, outcome: Outcome) -> Result<ExitCode> {
    // The permitted call's action (one per path for a tool acting on several, one a line).
    let file = pending_dir().join(key);
    let actions = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    // A result the policy's `results:` rules read: the daemon reads it first. Where the host
    // lets a hook act on a result (Claude Code's `PostToolUse`), a denied or redacted result is
    // blocked with the reason; elsewhere the verdict is recorded.
    let mut withheld = Vec::new();
    for line in actions.lines().filter(|l| l.ends_with("\tcheck")) {
        let action = line.trim_end_matches("\tcheck").trim();
        match socket::call(socket, "result.check", json!({"action_id": action, "result": outcome.result})) {
            Ok(a) if matches!(a["verdict"].as_str(), Some("pass" | "flag")) => {}
            Ok(a) => withheld.push(format!(
                "{} ({}{})",
                if a["verdict"] == "redact" {
                    "the tool's result holds values Faramesh redacts: do not use or repeat them"
                } else {
                    "Faramesh withheld the tool's result"
                },
                a["reason"].as_str().unwrap_or("a results rule"),
                a["rule_id"].as_str().map(|r| format!(", rule {r}")).unwrap_or_default()
            )),
            Err(e) => withheld.push(format!("Faramesh could not read the tool's result ({e:#})")),
        }
    }
    match host.contract().after_block(&withheld.join("; ")).filter(|_| !withheld.is_empty()) {
        Some(answer) => println!("{answer}"),
        // Gemini CLI parses stdout as JSON, and Cursor reads an answer to every event: an
        // empty object changes nothing.
        None if host.contract().answers_after() => println!("{{}}"),
        None => {}
    }
    if actions.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let text = outcome.result.to_string();
    let result = if text.len() <= MAX_RESULT_BYTES {
        outcome.result
    } else {
        json!({"truncated": true, "bytes": text.len()})
    };
    for action in actions.lines().map(|l| l.trim_end_matches("\tcheck").trim()).filter(|a| !a.is_empty()) {
        let mut report = json!({"id": action, "success": outcome.success, "result": result});
        if let Some(error) = &outcome.error {
            report["error"] = error.clone();
        }
        // The outcome is a record, not a decision: a daemon that went away meanwhile is
        // reported on stderr and does not fail the (already run) tool.
        let started = socket::call(socket, "action.start", json!({"id": action}));
        if let Err(e) = started.and_then(|_| socket::call(socket, "action.result", report)) {
            eprintln!("faramesh: could not record the outcome of action {action}: {e:#}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
