//! `faramesh policy check|test|explain`: offline policy tools built on the engine.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use faramesh_policy::{self as policy, Explanation, Policy, cases};
use serde_json::json;

use crate::args::{EXIT_INVALID_POLICY, EXIT_MISMATCH};
use crate::term::safe;

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate a policy: errors as `file:line:column: message`, warnings for rules that can
    /// never match. Exit 0 when valid, 3 when invalid.
    #[command(after_help = "Example:\n  faramesh policy check policies/default.yaml")]
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Run a cases file against a policy. Exit 0 when every case holds, 2 when any does not, 1
    /// on an error (unreadable or malformed cases file), 3 when the policy is invalid.
    #[command(
        after_help = "Example:\n  faramesh policy test policies/default.yaml policies/default.cases.yaml"
    )]
    Test {
        /// The policy file.
        file: PathBuf,
        /// The cases file: `cases: [{name, call, expect: {effect, reason_code?, rule_id?, risk_level?}}]`.
        cases: PathBuf,
    },
    /// Compare two policies: rules added, removed, changed, and the calls whose decision changes.
    Diff(DiffArgs),
    /// "Allow always": the rule that would allow a recorded call (its agent, tool and
    /// operation), printed as YAML to place after every deny rule, or appended to a suggestions
    /// file. Nothing edits the live policy.
    #[command(
        after_help = "Examples:\n  faramesh policy suggest 3f9c2a7b\n  faramesh policy suggest 3f9c2a7b --write policies/suggestions.yaml"
    )]
    Suggest(SuggestArgs),
    /// What each rule in shadow mode (`mode: shadow`) would have changed on live traffic:
    /// per rule, how many calls and which, read from the running daemon's log.
    Shadow(crate::shadow_cmd::ShadowArgs),
    /// Publish a policy to every host that takes signed bundles (`serve --policy-from postgres`):
    /// checked, signed with your SSH key, written to the fleet database.
    #[command(
        after_help = "Examples:\n  faramesh policy publish policy.yaml --sign --as alice --expires 30d\n  faramesh policy publish policy.yaml --sign --labels canary"
    )]
    Publish(crate::fleet_cmd::PublishArgs),
    /// Decide one call and show every rule considered and why each earlier one did not match.
    #[command(
        after_help = "Example:\n  faramesh policy explain policies/default.yaml --call '{\"agent_id\":\"a\",\"tool\":\"shell\",\"operation\":\"exec\",\"params\":{\"cmd\":\"ls\"}}'"
    )]
    Explain {
        /// The policy file.
        file: PathBuf,
        /// The call as JSON: `{agent_id, tool, operation, params?, context?}`.
        #[arg(long)]
        call: String,
    },
}

pub fn run(cmd: PolicyCommand, json_out: bool) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::Check { file } => check(&file, json_out),
        PolicyCommand::Test { file, cases } => test(&file, &cases, json_out),
        PolicyCommand::Explain { file, call } => explain(&file, &call, json_out),
        PolicyCommand::Diff(args) => diff(args, json_out),
        PolicyCommand::Suggest(args) => suggest(&args),
        PolicyCommand::Shadow(args) => crate::shadow_cmd::shadow(args, json_out),
        PolicyCommand::Publish(args) => crate::fleet_cmd::publish(args, json_out),
    }
}

/// Loads and compiles a policy; on a policy error prints it and returns the exit code.
fn load(file: &PathBuf, json_out: bool) -> Result<Result<Policy, ExitCode>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read `{}`", file.display()))?;
    match policy::compile(&file.display().to_string(), &text) {
        Ok(p) => Ok(Ok(p)),
        Err(e) => {
            if json_out {
                println!(
                    "{}",
                    json!({"valid": false, "error": e.to_string(), "line": e.line, "column": e.col, "message": e.message})
                );
            } else {
                eprintln!("error: {e}");
            }
            Ok(Err(ExitCode::from(EXIT_INVALID_POLICY)))
        }
    }
}

fn check(file: &PathBuf, json_out: bool) -> Result<ExitCode> {
    let p = match load(file, json_out)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let shadowed = policy::shadowed_rules(&p);
    if json_out {
        println!(
            "{}",
            json!({"valid": true, "policy_hash": p.hash, "rules": p.n_rules(), "warnings": shadowed})
        );
    } else {
        for s in &shadowed {
            eprintln!(
                "warning: {}: rule `{}` can never match: rule `{}` ({}) always matches first",
                s.rule_ref, s.rule_id, s.by_rule_id, s.by_rule_ref
            );
        }
        println!("ok: {} is valid ({} rules, policy_hash {})", file.display(), p.n_rules(), p.hash);
    }
    Ok(ExitCode::SUCCESS)
}

fn test(file: &PathBuf, cases_file: &PathBuf, json_out: bool) -> Result<ExitCode> {
    let p = match load(file, json_out)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let text = std::fs::read_to_string(cases_file)
        .with_context(|| format!("cannot read `{}`", cases_file.display()))?;
    let parsed = cases::parse_cases(&text).map_err(|e| anyhow::anyhow!("{}: {e}", cases_file.display()))?;
    let mut n_failed = 0usize;
    let mut results = Vec::new();
    for case in &parsed.cases {
        let decision = policy::decide_request(&p, &case.call.request);
        let outcome = case.expect.check(&decision);
        if json_out {
            results.push(json!({"name": case.label(), "ok": outcome.is_ok(), "error": outcome.as_ref().err().map(ToString::to_string), "decision": decision}));
        } else if let Err(why) = &outcome {
            println!("FAIL {}: {}", safe(case.label()), safe(&why.to_string()));
        } else {
            println!("ok   {}", safe(case.label()));
        }
        if outcome.is_err() {
            n_failed += 1;
        }
    }
    let n = parsed.cases.len();
    if json_out {
        println!("{}", json!({"passed": n - n_failed, "failed": n_failed, "cases": results}));
    } else {
        println!("{} passed, {} failed", n - n_failed, n_failed);
    }
    Ok(if n_failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(EXIT_MISMATCH) })
}

fn explain(file: &PathBuf, call_text: &str, json_out: bool) -> Result<ExitCode> {
    let p = match load(file, json_out)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let value =
        faramesh_proto::parse_strict(call_text.as_bytes()).map_err(|e| anyhow::anyhow!("`--call`: {e}"))?;
    let req =
        faramesh_proto::CallRequest::from_value(&value).map_err(|e| anyhow::anyhow!("`--call`: {e}"))?;
    let ex = policy::explain_request(&p, &req);
    if json_out {
        println!("{}", serde_json::to_string_pretty(&ex)?);
    } else {
        print!("{}", render_explanation(&req.call, &ex));
    }
    Ok(ExitCode::SUCCESS)
}

/// The text form of an explanation, shared with `faramesh explain`: what the call or the
/// policy wrote goes through [`safe`] (a recorded call's names and the reasons quoting its
/// arguments are the agent's).
pub fn render_explanation(call: &faramesh_proto::Call, ex: &Explanation) -> String {
    let d = &ex.decision;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "call      {}/{} by agent {}",
        safe(&call.tool),
        safe(&call.operation),
        safe(&call.agent_id)
    );
    let _ = writeln!(out, "profile   {}", safe(ex.profile.as_deref().unwrap_or("none")));
    let _ = writeln!(
        out,
        "risk      {}{}",
        d.risk_level.as_str(),
        ex.risk_rule.as_ref().map(|r| format!(" (risk rule {})", safe(r))).unwrap_or_default()
    );
    if let Some(note) = &ex.note {
        let _ = writeln!(out, "note      {}", safe(note));
    }
    let _ = writeln!(out, "rules considered: {}", ex.steps.len());
    let id_width = ex.steps.iter().map(|s| s.rule_id.len()).max().unwrap_or(0);
    let ref_width = ex.steps.iter().map(|s| s.rule_ref.len()).max().unwrap_or(0);
    for s in &ex.steps {
        let mark = if s.matched { "match" } else { "skip " };
        let why =
            if s.matched { "all conditions hold".to_owned() } else { s.failed.clone().unwrap_or_default() };
        let _ = writeln!(
            out,
            "  {mark} {:id_width$}  {:ref_width$}  {}",
            safe(&s.rule_id),
            safe(&s.rule_ref),
            safe(&why)
        );
    }
    let by = match (&d.rule_id, &d.rule_ref) {
        (Some(id), Some(r)) => format!(" by {} ({})", safe(id), safe(r)),
        _ => String::new(),
    };
    let _ =
        writeln!(out, "decision  {} {}{by}: {}", d.effect.as_str(), d.reason_code.as_str(), safe(&d.reason));
    let _ = writeln!(out, "policy    {}", d.policy_hash);
    let _ = writeln!(out, "request   {}", d.request_hash);
    out
}

/// Reads `{agent_id, tool, operation, params, context}` objects, one per line, and prints each
/// one's `request_hash` (or `error: …`). Exit 1 when any line failed.
pub fn request_hash_lines() -> Result<ExitCode> {
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut any_failed = false;
    for line in stdin.lock().lines() {
        let line = line.context("cannot read stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let result = faramesh_proto::parse_strict(line.as_bytes())
            .map_err(|e| format!("invalid JSON: {e}"))
            .and_then(|v| faramesh_proto::CallRequest::from_value(&v).map_err(|e| e.to_string()))
            .and_then(|req| req.call.request_hash().map_err(|e| e.to_string()));
        match result {
            Ok(hash) => writeln!(stdout, "{hash}")?,
            Err(e) => {
                any_failed = true;
                writeln!(stdout, "error: {e}")?;
            }
        }
    }
    stdout.flush()?;
    Ok(if any_failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `faramesh policy diff OLD NEW`: rules added, removed and changed (by id), and with cases or
/// a log, the calls whose decision would change.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit codes: 0 no decision changes, 2 some decision changes, 3 invalid policy.\n\nExamples:\n  faramesh policy diff old.yaml new.yaml --cases new.cases.yaml\n  faramesh policy diff old.yaml new.yaml --against-log --state-dir /var/lib/faramesh"
)]
pub struct DiffArgs {
    /// The policy in force.
    old: PathBuf,
    /// The proposed policy.
    new: PathBuf,
    /// A cases file whose calls are decided under both.
    #[arg(long)]
    cases: Option<PathBuf>,
    /// Decide every recorded call of the log under both (reads the log file: stop the daemon or
    /// point `--state-dir` at a copy).
    #[arg(long)]
    against_log: bool,
    #[command(flatten)]
    state: crate::args::StateDir,
}

fn rules_by_id(p: &Policy) -> Vec<(String, serde_json::Value)> {
    let v: serde_json::Value = serde_json::from_str(&p.normalized).unwrap_or_default();
    let mut out = Vec::new();
    if let Some(rules) = v.get("rules").and_then(|r| r.as_array()) {
        for r in rules {
            out.push((r["id"].as_str().unwrap_or("?").to_owned(), r.clone()));
        }
    }
    if let Some(agents) = v.get("agents").and_then(|a| a.as_object()) {
        for (name, profile) in agents {
            for r in profile.get("rules").and_then(|r| r.as_array()).map(Vec::as_slice).unwrap_or_default() {
                out.push((r["id"].as_str().unwrap_or("?").to_owned(), r.clone()));
            }
            let mut rest = profile.clone();
            if let Some(m) = rest.as_object_mut() {
                m.remove("rules");
            }
            out.push((format!("agents.{name}"), rest));
        }
    }
    out
}

pub fn diff(args: DiffArgs, json_out: bool) -> Result<ExitCode> {
    let old = match load(&args.old, json_out)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let new = match load(&args.new, json_out)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let (a, b) = (rules_by_id(&old), rules_by_id(&new));
    let find = |list: &[(String, serde_json::Value)], id: &str| {
        list.iter().find(|(i, _)| i == id).map(|(_, v)| v.clone())
    };
    let mut changes = Vec::new();
    for (id, _) in &a {
        if find(&b, id).is_none() {
            changes.push(("removed", id.clone()));
        }
    }
    for (id, v) in &b {
        match find(&a, id) {
            None => changes.push(("added", id.clone())),
            Some(old_v) if old_v != *v => changes.push(("changed", id.clone())),
            Some(_) => {}
        }
    }
    let mut calls: Vec<(String, faramesh_proto::CallRequest)> = Vec::new();
    if let Some(path) = &args.cases {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        let parsed = cases::parse_cases(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        calls.extend(parsed.cases.iter().map(|c| (c.label().to_owned(), c.call.request.clone())));
    }
    if args.against_log {
        let file = args.state.path()?.join("log.redb");
        let mut buf = Vec::new();
        faramesh_log::verify::offline::export(&file, &mut buf, 0).map_err(crate::log_cmd::offline_error)?;
        for line in String::from_utf8_lossy(&buf).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            if v["kind"] != "decision" {
                continue;
            }
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            let mut call = faramesh_proto::Call::new(&text("agent_id"), &text("tool"), &text("operation"));
            call.params = v.get("params").cloned().filter(|p| p.is_object()).unwrap_or_else(|| json!({}));
            call.context = v.get("context").cloned().filter(|p| p.is_object()).unwrap_or_else(|| json!({}));
            let req = faramesh_proto::CallRequest { call, approval_id: None, unknown_keys: Vec::new() };
            calls.push((format!("action {}", text("id")), req));
        }
    }
    let mut changed_calls = Vec::new();
    for (label, call) in &calls {
        let (before, after) = (policy::decide_request(&old, call), policy::decide_request(&new, call));
        if (before.effect, before.reason_code, &before.rule_id)
            != (after.effect, after.reason_code, &after.rule_id)
        {
            changed_calls.push((label.clone(), call.call.clone(), before, after));
        }
    }
    if json_out {
        let rules: Vec<_> = changes.iter().map(|(k, id)| json!({"change": k, "rule_id": id})).collect();
        let decisions: Vec<_> = changed_calls
            .iter()
            .map(|(l, c, b, a)| json!({"case": l, "call": c, "before": b, "after": a}))
            .collect();
        println!("{}", json!({"rules": rules, "decisions": decisions, "calls_checked": calls.len()}));
    } else {
        if changes.is_empty() {
            println!("rules: no changes");
        }
        for (kind, id) in &changes {
            let mark = match *kind {
                "added" => "+",
                "removed" => "-",
                _ => "~",
            };
            println!("{mark} {kind:<8} {id}");
        }
        if !calls.is_empty() {
            println!("{} of {} calls would be decided differently", changed_calls.len(), calls.len());
        }
        for (label, call, b, a) in &changed_calls {
            let line = format!(
                "  {label}: {}/{} by {}: {} {} ({}) -> {} {} ({})",
                call.tool,
                call.operation,
                call.agent_id,
                b.effect.as_str(),
                b.reason_code.as_str(),
                b.rule_id.as_deref().unwrap_or("-"),
                a.effect.as_str(),
                a.reason_code.as_str(),
                a.rule_id.as_deref().unwrap_or("-")
            );
            println!("{}", safe(&line));
        }
    }
    Ok(if changed_calls.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_MISMATCH) })
}

#[derive(clap::Args, Debug)]
pub struct SuggestArgs {
    /// The recorded action (its id, its approval's id, or a unique 8+ prefix).
    id: String,
    /// Append the rule to this file (created if missing) instead of printing it.
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Allow every agent, not only the one that made the call.
    #[arg(long)]
    any_agent: bool,
    #[command(flatten)]
    socket: crate::args::SocketArg,
}

/// The suggested rule for a recorded decision, as YAML (a list item), or why there is none.
pub(crate) fn suggested_rule(
    rec: &faramesh_log::dpr::DecisionRecord,
    any_agent: bool,
) -> std::result::Result<String, String> {
    use faramesh_proto::{Effect, ReasonCode};
    if rec.effect == Effect::Deny && rec.reason_code == ReasonCode::PolicyDeny {
        return Err(format!(
            "action {} was denied by rule `{}`: a suggestion never overrides a deny rule (change that rule if it is wrong)",
            rec.id,
            rec.rule_id.as_deref().unwrap_or("?")
        ));
    }
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    // The rule matches the call's own names only. A tool or operation name is a plain name
    // whenever the daemon decided on it; `*` and `?` make an `agent_id` a pattern (with no escape),
    // which would allow other agents' calls too.
    for (field, value) in [("tool", &rec.tool), ("operation", &rec.operation)] {
        if !faramesh_proto::is_identifier(value) {
            return Err(format!(
                "action {}: its {field} {} is not a tool name a rule can match (letters, digits, `_ . : / -`), so no rule is suggested",
                rec.id,
                q(value)
            ));
        }
    }
    if !any_agent && rec.agent_id.contains(['*', '?']) {
        return Err(format!(
            "action {}: its agent id {} holds `*` or `?`, which a rule's `agent_id` reads as a pattern matching other agents too; no rule can match this agent alone, so none is suggested (`--any-agent` suggests one for every agent, if every agent may make this call)",
            rec.id,
            q(&rec.agent_id)
        ));
    }
    let mut id = format!("allow-{}-{}", rec.tool, rec.operation);
    let mut matched = format!("tool: {}, op: {}", q(&rec.tool), q(&rec.operation));
    if !any_agent {
        id = format!("allow-{}-{}-{}", rec.agent_id, rec.tool, rec.operation);
        matched = format!("agent_id: {}, {matched}", q(&rec.agent_id));
    }
    let id: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    let text = format!(
        "# Suggested by `faramesh policy suggest {action}` from action {action} ({effect} {code}, {ts}).\n\
         # Place it after every deny rule (the first matching rule wins), then `faramesh apply`.\n\
         - id: {id}\n  match: {{ {matched} }}\n  allow: true\n  description: {desc}\n",
        action = rec.id,
        effect = rec.effect.as_str(),
        code = rec.reason_code.as_str(),
        ts = rec.ts,
        desc = q(&format!("Allowed always after action {}", rec.id)),
    );
    // The suggestion is checked by the policy compiler before anyone sees it.
    let policy_text = format!(
        "version: 1\nrules:\n{}",
        text.lines().filter(|l| !l.starts_with('#')).map(|l| format!("  {l}\n")).collect::<String>()
    );
    policy::compile("suggestion.yaml", &policy_text)
        .map_err(|e| format!("internal: the suggestion does not compile: {e}"))?;
    Ok(text)
}

fn suggest(args: &SuggestArgs) -> Result<ExitCode> {
    let r = crate::client::call(&args.socket.path(), "action.get", json!({"id": args.id}))?;
    let rec = faramesh_log::dpr::DecisionRecord::parse(&r.to_string())
        .ok_or_else(|| anyhow::anyhow!("the daemon answered something that is not a decision record"))?;
    let text = match suggested_rule(&rec, args.any_agent) {
        Ok(t) => t,
        Err(why) => {
            eprintln!("faramesh: {}", safe(&why));
            return Ok(ExitCode::from(EXIT_MISMATCH));
        }
    };
    match &args.write {
        None => print!("{}", crate::term::safe_lines(&text)),
        Some(file) => {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .with_context(|| format!("cannot open `{}`", file.display()))?;
            f.write_all(format!("\n{text}").as_bytes())
                .with_context(|| format!("cannot write `{}`", file.display()))?;
            println!("appended the suggested rule to {} (the live policy is unchanged)", file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
