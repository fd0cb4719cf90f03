//! Operator commands over the socket: `list`, `get`, `events`, `pending`, `approve`, `deny`,
//! `explain`, `tail`.

use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::Args;
use serde_json::{Value, json};

use crate::args::EXIT_MISMATCH;
use crate::args::SocketArg;
use crate::client;
use crate::term::safe;

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    }
}

static COLOR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Colour on when stdout is a terminal, unless `--no-color` or `NO_COLOR` says otherwise.
pub fn init_color(no_color: bool) {
    use std::io::IsTerminal;
    let on = !no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal();
    COLOR.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// `text` in red when colour is on.
pub fn red(text: &str) -> String {
    if COLOR.load(std::sync::atomic::Ordering::Relaxed) {
        format!("\x1b[1;31m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// `text` padded to `width`, coloured by what it says when colour is on.
fn paint(text: &str, width: usize) -> String {
    let padded = format!("{text:<width$}");
    if !COLOR.load(std::sync::atomic::Ordering::Relaxed) {
        return padded;
    }
    let code = match text {
        "PERMIT" | "allowed" | "approved" | "succeeded" | "ok" => "32",
        "DENY" | "denied" | "failed" | "expired" | "FAIL" => "31",
        "DEFER" | "pending" | "pending_approval" | "executing" => "33",
        _ => return padded,
    };
    format!("\x1b[{code}m{padded}\x1b[0m")
}

/// An action's `status` in the words of the v1 API and the dashboard (`allowed`,
/// `pending_approval`): the socket still answers its older names `permitted` and `deferred`.
fn status_word(v: &Value) -> String {
    match s(v, "status").as_str() {
        "permitted" => "allowed".to_owned(),
        "deferred" => "pending_approval".to_owned(),
        other => other.to_owned(),
    }
}

/// The elements of the array `key` of `v` (none when it is missing).
fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default().iter()
}

/// Prints rows as aligned columns, every cell through [`safe`] (cells hold what agents, servers
/// and the log wrote).
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> =
        rows.iter().map(|row| row.iter().map(|cell| safe(cell).into_owned()).collect()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(&paint(c, 0));
            } else {
                out.push_str(&paint(c, widths[i]));
                out.push_str("  ");
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row);
    }
}

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  faramesh list --agent payments-bot --status DENY --limit 20")]
pub struct ListArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Only this effect (PERMIT, DENY, DEFER) or action state (allowed, denied, pending_approval,
    /// approved, executing, succeeded, failed).
    #[arg(long, ignore_case = true, value_parser = [
        "PERMIT", "DENY", "DEFER", "allowed", "denied", "pending_approval", "approved", "executing", "succeeded", "failed",
    ])]
    status: Option<String>,
    /// Only this agent.
    #[arg(long)]
    agent: Option<String>,
    /// Only this tool.
    #[arg(long)]
    tool: Option<String>,
    /// Only decisions at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// At most this many (1-1000).
    #[arg(long, default_value_t = 50)]
    limit: u64,
}

pub fn list(args: ListArgs, json_out: bool) -> Result<ExitCode> {
    let (effect, status) = match args.status.as_deref().map(str::to_ascii_uppercase) {
        Some(e) if matches!(e.as_str(), "PERMIT" | "DENY" | "DEFER") => (Some(e), None),
        Some(_) => (None, args.status.as_deref().map(str::to_ascii_lowercase)),
        None => (None, None),
    };
    let params = json!({"effect": effect, "status": status, "agent_id": args.agent, "tool": args.tool, "since": args.since, "limit": args.limit});
    let r = client::call(&args.socket.path(), "action.list", params)?;
    if json_out {
        println!("{r}");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = items(&r, "actions")
        .map(|a| {
            vec![
                s(a, "id"),
                s(a, "ts"),
                s(a, "effect"),
                status_word(a),
                s(a, "agent_id"),
                format!("{}/{}", s(a, "tool"), s(a, "operation")),
                s(a, "reason_code"),
            ]
        })
        .collect();
    table(&["ID", "TIME", "EFFECT", "STATUS", "AGENT", "TOOL", "REASON"], &rows);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct IdArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// The action id, its approval's id (a deferred call), or a unique prefix of 8 or more
    /// characters of either.
    id: String,
}

pub fn get(args: IdArgs, json_out: bool) -> Result<ExitCode> {
    let r = client::call(&args.socket.path(), "action.get", json!({"id": args.id}))?;
    if json_out {
        println!("{r}");
    } else {
        let rec = faramesh_log::dpr::DecisionRecord::parse(&r.to_string())
            .ok_or_else(|| anyhow!("the daemon answered something that is not a decision record"))?;
        for (i, (key, value)) in rec.rows().into_iter().enumerate() {
            println!("{key:<13} {}", safe(&value));
            if i == 0 {
                println!("{:<13} {}", "status", safe(&status_word(&r)));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn events(args: IdArgs, json_out: bool) -> Result<ExitCode> {
    let r = client::call(&args.socket.path(), "action.events", json!({"id": args.id}))?;
    if json_out {
        println!("{r}");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = items(&r, "events")
        .map(|e| {
            let what = match e["kind"].as_str() {
                Some("decision") => format!("{} {}", s(e, "effect"), s(e, "reason_code")),
                _ => status_word(e),
            };
            vec![s(e, "seq"), s(e, "ts"), s(e, "kind"), what]
        })
        .collect();
    table(&["SEQ", "TIME", "KIND", "WHAT"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// `1 of 2` for an approval that needs several signed approvers, `-` otherwise.
fn signed_progress(a: &Value) -> String {
    match a["approvals_required"].as_u64() {
        Some(n) if n > 1 => {
            format!("{} of {n}", a["signatures"].as_array().map_or(0, Vec::len))
        }
        _ => "-".to_owned(),
    }
}

pub fn pending(socket: &SocketArg, json_out: bool) -> Result<ExitCode> {
    let r = client::call(&socket.path(), "approval.list", json!({}))?;
    if json_out {
        println!("{r}");
        return Ok(ExitCode::SUCCESS);
    }
    // The SIGNED column only when an approval needs several signed approvers.
    let several = items(&r, "approvals").any(|a| a["approvals_required"].as_u64().is_some_and(|n| n > 1));
    let rows: Vec<Vec<String>> = items(&r, "approvals")
        .map(|a| {
            let mut row = vec![
                s(a, "approval_id"),
                s(a, "agent_id"),
                format!("{}/{}", s(a, "tool"), s(a, "operation")),
                s(a, "rule_id"),
            ];
            if several {
                row.push(signed_progress(a));
            }
            row.push(s(a, "expires_at"));
            row
        })
        .collect();
    if rows.is_empty() {
        println!("no approvals are waiting");
        return Ok(ExitCode::SUCCESS);
    }
    if several {
        table(&["APPROVAL", "AGENT", "TOOL", "RULE", "SIGNED", "EXPIRES"], &rows);
    } else {
        table(&["APPROVAL", "AGENT", "TOOL", "RULE", "EXPIRES"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  faramesh approve 3f9c2a7b --reason \"checked with the on-call\"\n  \
faramesh approve 3f9c2a7b --set amount=50 --reason \"50 is enough\"")]
pub struct DecideArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// The approval id (from `faramesh pending`), the deferred action's id (from `faramesh
    /// list`), or a unique prefix of 8 or more characters of either.
    id: String,
    /// Why (recorded in the log).
    #[arg(long)]
    reason: Option<String>,
    /// Approve, and let the agent make the same tool/operation call without asking for this
    /// long (`30m`, `2h`; at most `24h`): a grant, listed by `faramesh grants`.
    #[arg(long, value_name = "DURATION")]
    grant: Option<String>,
    /// With `--grant`: only calls with the same arguments.
    #[arg(long, requires = "grant")]
    same_args: bool,
    /// With `--grant`: every caller, not only the one that made this call (its uid or token,
    /// and its session). Never the approver's own calls.
    #[arg(long, requires = "grant")]
    any_caller: bool,
    /// Approve the call with this argument changed (repeatable): `KEY=VALUE`, KEY a path with
    /// dots (`to.iban`), VALUE JSON (`50`, `true`, `"text"`) or else taken as text. The edited
    /// call is decided again by the policy; the agent runs it only through the SDKs and the MCP
    /// gateway.
    #[arg(long = "set", value_name = "KEY=VALUE", conflicts_with_all = ["grant", "params"])]
    set: Vec<String>,
    /// Approve the call with these arguments instead (a JSON object, in full).
    #[arg(long, value_name = "JSON", conflicts_with = "grant")]
    params: Option<String>,
    /// Sign the decision with your SSH key (Ed25519; the policy lists it under your name in
    /// `approvals.approvers`): from ssh-agent, or `--key FILE`. A signed decision counts from
    /// any user or host.
    #[arg(long, conflicts_with_all = ["grant", "set", "params"])]
    sign: bool,
    /// With `--sign`: the key to sign with (a private key, or a public key whose private half
    /// is in ssh-agent).
    #[arg(long, value_name = "FILE", requires = "sign")]
    key: Option<std::path::PathBuf>,
    /// With `--sign`: your approver name as the policy lists it (default: `$USER`).
    #[arg(long = "as", value_name = "NAME", requires = "sign")]
    as_name: Option<String>,
}

/// The name a signer signs as: `--as NAME`, else `$USER`; 1 to 64 letters, digits or `._@-`
/// (what the policy and the daemon accept).
pub(crate) fn signer_name(given: Option<&str>) -> Result<String> {
    given
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .filter(|n| {
            !n.is_empty()
                && n.len() <= 64
                && n.bytes().all(|c| c.is_ascii_alphanumeric() || b"._@-".contains(&c))
        })
        .ok_or_else(|| {
            anyhow!("give your name as the policy lists it, 1 to 64 letters, digits or `._@-`: `--as NAME`")
        })
}

/// `--valid DURATION`: how long a signed statement may be used, in ms (1 s to 1 h).
pub(crate) fn statement_validity(text: &str) -> Result<u64> {
    faramesh_policy::parse_duration(text)
        .map(|s| s * 1000)
        .filter(|ms| (1000..=faramesh_daemon::service::signing::MAX_VALID_MS).contains(ms))
        .ok_or_else(|| anyhow!("`--valid` `{text}` must be a duration from 1s to 1h (`15m`)"))
}

/// Signs `statement` with `ssh-keygen -Y sign -n faramesh-approval`: with `key`, or with the first
/// Ed25519 key in ssh-agent.
pub(crate) fn ssh_sign(statement: &str, key: Option<&std::path::Path>) -> Result<String> {
    ssh_sign_in("faramesh-approval", statement, key)
}

/// Signs `text` with `ssh-keygen -Y sign -n NAMESPACE`: with `key`, or with the first Ed25519
/// key in ssh-agent.
pub(crate) fn ssh_sign_in(namespace: &str, statement: &str, key: Option<&std::path::Path>) -> Result<String> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    // The agent's public key goes in a file for `ssh-keygen -f` (a public key: nothing secret).
    let agent_pub = std::env::temp_dir().join(format!("faramesh-sign-{}.pub", std::process::id()));
    let key = match key {
        Some(k) => k.to_owned(),
        None => {
            let listed = Command::new("ssh-add")
                .arg("-L")
                .output()
                .map_err(|e| anyhow!("cannot run `ssh-add -L`: {e}"))?;
            let text = String::from_utf8_lossy(&listed.stdout);
            let Some(line) = text.lines().find(|l| l.starts_with("ssh-ed25519 ")) else {
                return Err(anyhow!(
                    "no Ed25519 key in ssh-agent (`ssh-add -L`): add one with `ssh-add`, or give `--key FILE`"
                ));
            };
            std::fs::write(&agent_pub, format!("{line}\n"))?;
            agent_pub.clone()
        }
    };
    let mut child = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow!("cannot run `ssh-keygen -Y sign`: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(statement.as_bytes())?;
    }
    let out = child.wait_with_output();
    let _ = std::fs::remove_file(&agent_pub);
    let out = out?;
    if !out.status.success() {
        return Err(anyhow!(
            "`ssh-keygen -Y sign -f {}` failed: {}",
            key.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `--set KEY=VALUE` as the daemon's `set` object.
fn set_object(sets: &[String]) -> Result<Value> {
    let mut m = serde_json::Map::new();
    for s in sets {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| anyhow!("`--set {s}` must look like KEY=VALUE (`--set amount=50`)"))?;
        if k.is_empty() {
            return Err(anyhow!("`--set {s}` names no key"));
        }
        let v = match serde_json::from_str::<Value>(v) {
            Ok(json) => json,
            Err(_) if v.is_empty() => {
                return Err(anyhow!("`--set {s}` gives no value; write `{k}='\"\"'` for an empty text"));
            }
            // What starts like a number but is not one is a typo, not text (`5000.`, `0x1F4`).
            Err(_) if v.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.')) => {
                return Err(anyhow!(
                    "`--set {s}`: `{v}` is not a JSON number; write the number (`50`, `49.5`), or quote it \
                     as text (`{k}='\"{v}\"'`)"
                ));
            }
            Err(_) => Value::String(v.to_owned()),
        };
        m.insert(k.to_owned(), v);
    }
    Ok(Value::Object(m))
}

/// Whom a grant covers, for people: `uid 1000 in session s-1`, `token agent:bot`, `any caller`.
fn covers_text(g: &Value) -> String {
    let c = &g["covers"];
    let who = if c["any_caller"] == true {
        "any caller".to_owned()
    } else if let Some(uid) = c["uid"].as_u64() {
        format!("uid {uid}")
    } else if let Some(t) = c["token"].as_str() {
        format!("token {t}")
    } else {
        "no one".to_owned()
    };
    match c["session_id"].as_str() {
        Some(sid) => format!("{who} in session {sid}"),
        None => who,
    }
}

pub fn decide_approval(args: DecideArgs, approve: bool, json_out: bool) -> Result<ExitCode> {
    let method = if approve { "approval.approve" } else { "approval.deny" };
    let mut params = json!({"approval_id": args.id, "reason": args.reason});
    if let Some(d) = &args.grant {
        if !approve {
            return Err(anyhow!("`--grant` goes with `approve`, not `deny`"));
        }
        let secs = faramesh_policy::parse_duration(d)
            .ok_or_else(|| anyhow!("`--grant` `{d}` must look like `30m` or `2h`"))?;
        params["grant_minutes"] = json!(secs.div_ceil(60));
        params["grant_same_args"] = json!(args.same_args);
        params["grant_any_caller"] = json!(args.any_caller);
    }
    if args.sign {
        let approver = signer_name(args.as_name.as_deref())?;
        let decision = if approve { "approve" } else { "deny" };
        let st = client::call(
            &args.socket.path(),
            "approval.statement",
            json!({"approval_id": args.id, "decision": decision, "approver": approver}),
        )?;
        let statement = s(&st, "statement");
        // The socket may not be the daemon it claims to be: sign only what was asked for.
        let parsed = faramesh_daemon::service::signing::Statement::parse(&statement)
            .map_err(|e| anyhow!("the daemon sent a statement that is not one: {e}"))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let asked = parsed.approve == approve
            && parsed.approver == approver
            && (parsed.approval.starts_with(&args.id) || parsed.action.starts_with(&args.id))
            && parsed.signed_ms.abs_diff(now) <= faramesh_daemon::service::signing::MAX_SKEW_MS
            && parsed.expires_ms > parsed.signed_ms
            && parsed.expires_ms - parsed.signed_ms <= faramesh_daemon::service::signing::MAX_VALID_MS;
        if !asked {
            return Err(anyhow!(
                "refusing to sign: the statement the daemon sent is not the one asked for \
                 ({decision} `{}` as `{approver}`):\n{}",
                args.id,
                crate::term::safe(&statement)
            ));
        }
        eprint!("signing as {approver}:\n{}", crate::term::safe(&statement));
        let signature = ssh_sign(&statement, args.key.as_deref())?;
        params["approval_id"] = st["approval_id"].clone();
        params["statement"] = json!(statement);
        params["signature"] = json!(signature);
    }
    if (!args.set.is_empty() || args.params.is_some()) && !approve {
        return Err(anyhow!("`--set` and `--params` go with `approve`, not `deny`"));
    }
    if !args.set.is_empty() {
        params["set"] = set_object(&args.set)?;
    }
    if let Some(p) = &args.params {
        let v: Value = serde_json::from_str(p).map_err(|e| anyhow!("`--params` is not JSON: {e}"))?;
        if !v.is_object() {
            return Err(anyhow!("`--params` must be a JSON object, e.g. '{{\"amount\": 50}}'"));
        }
        params["params"] = v;
    }
    let r = client::call(&args.socket.path(), method, params)?;
    if !json_out && let Some(g) = r.get("grant").filter(|g| g.is_object()) {
        let line = format!(
            "grant {}: agent {} ({}) may call {}/{}{} without asking until {}",
            s(g, "id"),
            s(g, "agent_id"),
            covers_text(g),
            s(g, "tool"),
            s(g, "operation"),
            if g["request_hash"].is_string() { " (these arguments only)" } else { "" },
            s(g, "expires_at")
        );
        println!("{}", safe(&line));
    }
    if json_out {
        println!("{r}");
    } else {
        // The id as the person gave it (an action id from `list` or the v1 API, or an approval
        // id from `pending`), in full.
        let id = match r["action_id"].as_str() {
            Some(action) if action.starts_with(&args.id) => action.to_owned(),
            _ => s(&r, "approval_id"),
        };
        let line = format!(
            "{} {} ({}/{} by agent {})",
            id,
            s(&r, "status"),
            s(&r, "tool"),
            s(&r, "operation"),
            s(&r, "agent_id")
        );
        println!("{}", safe(&line));
        if let Some(edit) = r.get("edit").filter(|e| e.is_object()) {
            let args_line = format!("  edited arguments: {}", edit["params"]);
            println!("{}", safe(&args_line));
            if r["status"] == "denied" {
                let why = format!("  not approved: {}", s(&r, "reason"));
                println!("{}", safe(&why));
                return Ok(ExitCode::from(1));
            }
            println!("  the agent may run the edited call once; the original call stays refused");
        }
    }
    if json_out && r["status"] == "denied" && approve {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn explain(args: IdArgs, json_out: bool) -> Result<ExitCode> {
    let r = client::call(&args.socket.path(), "policy.explain", json!({"id": args.id}))?;
    if json_out {
        println!("{r}");
        return Ok(ExitCode::SUCCESS);
    }
    let call: faramesh_proto::Call = serde_json::from_value(r["call"].clone())?;
    let ex: faramesh_policy::Explanation = serde_json::from_value(r.clone())?;
    let rec = &r["recorded"];
    println!("{}", safe(&format!("action    {} ({})", s(rec, "id"), s(rec, "ts"))));
    let recorded = format!(
        "recorded  {} {} under policy {}",
        s(rec, "effect"),
        s(rec, "reason_code"),
        s(rec, "policy_hash")
    );
    println!("{}", safe(&recorded));
    // Keys in one order whichever way the daemon found the record (stored or in memory).
    let caller = match rec.get("caller") {
        Some(Value::Object(m)) => {
            serde_json::to_string(&m.iter().collect::<std::collections::BTreeMap<_, _>>())?
        }
        _ => s(rec, "caller"),
    };
    println!("caller    {}", safe(&caller));
    print!("{}", crate::policy_cmd::render_explanation(&call, &ex));
    if let Some(note) = not_from_policy(rec) {
        println!("note      {}", safe(&note));
    }
    if rec.get("policy_hash") != r["decision"].get("policy_hash") {
        println!(
            "note      the policy changed since this decision; the trace above is under the current policy"
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  faramesh tail -n 20")]
pub struct TailArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Show the last N entries first (like `tail`), then follow.
    #[arg(short = 'n', long = "lines", default_value_t = 10)]
    lines: u64,
}

fn print_entry(out: &mut impl Write, entry: &Value, json_out: bool) -> Result<()> {
    if json_out {
        writeln!(out, "{entry}")?;
        return Ok(());
    }
    let what = match entry["kind"].as_str() {
        Some("decision") => format!(
            "{} {} {}/{} agent={} {}",
            s(entry, "effect"),
            s(entry, "reason_code"),
            s(entry, "tool"),
            s(entry, "operation"),
            s(entry, "agent_id"),
            s(entry, "id")
        ),
        Some("approval" | "action") => format!(
            "{} {}",
            status_word(entry),
            entry.get("approval_id").map_or_else(|| s(entry, "action_id"), |_| s(entry, "approval_id"))
        ),
        _ => String::new(),
    };
    let line = format!("{} {:>6} {:<9} {what}", s(entry, "ts"), s(entry, "seq"), s(entry, "kind"));
    writeln!(out, "{}", safe(&line))?;
    Ok(())
}

pub fn tail(args: TailArgs, json_out: bool) -> Result<ExitCode> {
    let path = args.socket.path();
    // Subscribe first, then show the last entries: nothing committed in between is missed, and
    // what the subscription repeats is skipped by seq.
    let stream = client::connect(&path)?;
    stream.set_read_timeout(None)?;
    let mut w = &stream;
    w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"log.subscribe\"}\n")?;
    let stdout = std::io::stdout();
    let mut shown = 0u64;
    if args.lines > 0 {
        let size = client::call(&path, "status", json!({}))?["log"]["size"].as_u64().unwrap_or(0);
        let from = size.saturating_sub(args.lines - 1).max(1);
        let r =
            client::call(&path, "log.entries", json!({"from_seq": from, "limit": args.lines.min(10_000)}))?;
        let mut out = stdout.lock();
        for entry in items(&r, "entries") {
            print_entry(&mut out, entry, json_out)?;
            shown = shown.max(entry["seq"].as_u64().unwrap_or(0));
        }
        out.flush()?;
    }
    let reader = BufReader::new(&stream);
    for line in reader.lines() {
        let line = line?;
        let v: Value = serde_json::from_str(&line)?;
        if let Some(e) = v.get("error") {
            return Err(anyhow!("{}", s(e, "message")));
        }
        let Some(entry) = v.get("params").and_then(|p| p.get("result")) else { continue };
        if v["method"] == "log.lagged" {
            eprintln!("faramesh: fell behind, {} entries skipped", safe(&s(entry, "missed")));
            continue;
        }
        if entry["seq"].as_u64().is_some_and(|seq| seq <= shown) {
            continue;
        }
        let mut out = stdout.lock();
        print_entry(&mut out, entry, json_out)?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn replay(args: IdArgs, json_out: bool) -> Result<ExitCode> {
    let socket = args.socket.path();
    let rec = client::call(&socket, "action.get", json!({"id": args.id}))?;
    let call = json!({
        "agent_id": rec["agent_id"], "tool": rec["tool"], "operation": rec["operation"],
        "args": rec.get("params").cloned().unwrap_or_else(|| json!({})),
        "context": rec.get("context").cloned().filter(Value::is_object).unwrap_or_else(|| json!({})),
    });
    let now = client::call(&socket, "decide", call)?;
    // Compare like with like: a decision a person or the daemon's state made (an approval, a
    // rate limit, a budget) is compared by the policy's part of it only.
    let granted = rec["reason_code"] == "APPROVAL_GRANTED";
    let policy_made = !matches!(
        rec["reason_code"].as_str(),
        Some(
            "RATE_EXCEEDED"
                | "BUDGET_EXCEEDED"
                | "APPROVAL_DENIED"
                | "APPROVAL_EXPIRED"
                | "AGENT_IDENTITY_MISMATCH"
                | "INTERNAL_ERROR"
        )
    );
    let mut expected = rec.clone();
    if granted {
        // The policy deferred this call; a person approved it.
        expected["effect"] = json!("DEFER");
        expected["reason_code"] = now["reason_code"].clone();
    }
    let fields: &[&str] = if !policy_made {
        &["policy_hash"]
    } else if granted {
        &["effect", "rule_id", "policy_hash"]
    } else {
        &["effect", "reason_code", "rule_id", "risk_level", "policy_hash"]
    };
    let changed: Vec<&str> = fields.iter().copied().filter(|f| expected.get(*f) != now.get(*f)).collect();
    let decision_changed = changed.iter().any(|f| *f != "policy_hash");
    if json_out {
        println!("{}", json!({"id": rec["id"], "recorded": rec, "now": now, "changed": changed}));
    } else {
        println!("{:<12} {:<66} now", "", "recorded");
        for f in ["effect", "reason_code", "rule_id", "risk_level", "policy_hash"] {
            let mark = if changed.contains(&f) { "*" } else { " " };
            println!("{mark}{f:<11} {:<66} {}", safe(&s(&rec, f)), safe(&s(&now, f)));
        }
        if rec.get("params").is_some_and(|p| p.to_string().contains("[REDACTED]")) {
            println!("note: redacted params were replayed as `[REDACTED]`");
        }
        if let Some(note) = not_from_policy(&rec) {
            println!("note: {}", safe(&note));
        }
        println!(
            "{}",
            if decision_changed { "the decision would change" } else { "the decision would be the same" }
        );
    }
    Ok(if decision_changed { ExitCode::from(EXIT_MISMATCH) } else { ExitCode::SUCCESS })
}

/// Why a recorded decision is not the policy's alone, for a note under `explain` and `replay`.
fn not_from_policy(rec: &Value) -> Option<String> {
    let code = rec["reason_code"].as_str()?;
    match code {
        "APPROVAL_GRANTED" => Some(format!(
            "a person approved this call (approval {}): the policy's own decision was DEFER by `{}`; \
             only that part is compared",
            s(rec, "approval_id"),
            s(rec, "rule_id")
        )),
        "RATE_EXCEEDED"
        | "BUDGET_EXCEEDED"
        | "APPROVAL_DENIED"
        | "APPROVAL_EXPIRED"
        | "AGENT_IDENTITY_MISMATCH"
        | "INTERNAL_ERROR" => Some(format!(
            "{code} came from the daemon's state at the time (limits, approvals, identity, faults), not \
             from the policy: the policy alone cannot reproduce it"
        )),
        _ => None,
    }
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  faramesh grants\n  faramesh grants revoke grant_3f9c2a7b...")]
pub struct GrantsArgs {
    #[command(flatten)]
    socket: SocketArg,
    #[command(subcommand)]
    action: Option<GrantsAction>,
}

#[derive(clap::Subcommand, Debug)]
enum GrantsAction {
    /// End a grant now.
    Revoke {
        /// The grant's id (from `faramesh grants`).
        id: String,
        #[command(flatten)]
        socket: SocketArg,
    },
}

/// `faramesh grants [revoke ID]`.
pub fn grants(args: GrantsArgs, json_out: bool) -> Result<ExitCode> {
    let path = args.socket.path();
    if let Some(GrantsAction::Revoke { id, socket }) = args.action {
        let r = client::call(&socket.path(), "grant.revoke", json!({"id": id}))?;
        if json_out {
            println!("{r}");
        } else {
            println!("revoked {}", safe(&id));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let r = client::call(&path, "grant.list", json!({}))?;
    if json_out {
        println!("{r}");
        return Ok(ExitCode::SUCCESS);
    }
    let grants = r["grants"].as_array().cloned().unwrap_or_default();
    if grants.is_empty() {
        println!("no grants are live (`faramesh approve ID --grant 30m` makes one)");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = grants
        .iter()
        .map(|g| {
            vec![
                s(g, "id"),
                s(g, "agent_id"),
                covers_text(g),
                format!("{}/{}", s(g, "tool"), s(g, "operation")),
                match (g["request_hash"].is_string(), g["summary"].as_str(), g["programs"].as_array()) {
                    (true, Some(summary), _) if !summary.is_empty() => format!("only {summary}"),
                    (true, _, _) => "same args".into(),
                    (false, _, Some(programs)) => format!(
                        "lines running only {}",
                        programs
                            .iter()
                            .filter_map(|p| p.as_str())
                            .map(|p| safe(p).into_owned())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    _ => "any args".into(),
                },
                s(g, "expires_at"),
            ]
        })
        .collect();
    table(&["ID", "AGENT", "CALLER", "TOOL", "SCOPE", "UNTIL"], &rows);
    Ok(ExitCode::SUCCESS)
}
