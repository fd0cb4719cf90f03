//! Set-up commands: `init` (a starting policy and its cases), `doctor` (is everything in order),
//! `completions` (shell completion scripts).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::args::SocketArg;
use crate::args::StateDir;
use crate::client;

/// The bundled default policy (`policies/default.yaml`).
pub(crate) const DEFAULT_POLICY: &str = include_str!("../../policies/default.yaml");
const DEFAULT_CASES: &str = include_str!("../../policies/default.cases.yaml");

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  faramesh init && faramesh policy test policies/default.yaml policies/default.cases.yaml"
)]
pub struct InitArgs {
    /// Where to create `policies/` (default: the current directory).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

pub fn init(args: InitArgs) -> Result<ExitCode> {
    let policies = args.dir.join("policies");
    let files = [
        (policies.join("default.yaml"), DEFAULT_POLICY),
        (policies.join("default.cases.yaml"), DEFAULT_CASES),
    ];
    if !args.force {
        let existing: Vec<String> =
            files.iter().filter(|(p, _)| p.exists()).map(|(p, _)| p.display().to_string()).collect();
        if !existing.is_empty() {
            bail!(
                "{} already exist{}; pass --force to overwrite",
                existing.join(" and "),
                if existing.len() == 1 { "s" } else { "" }
            );
        }
    }
    std::fs::create_dir_all(&policies).with_context(|| format!("cannot create `{}`", policies.display()))?;
    for (path, text) in &files {
        std::fs::write(path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
        println!("wrote {}", path.display());
    }
    let p = files[0].0.display();
    let c = files[1].0.display();
    println!(
        "\nnext:\n  faramesh policy test {p} {c}\n  eval \"$(faramesh apply --policy {p})\"\n  faramesh status"
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
#[command(after_help = "Exit codes: 0 when every check passes, 1 otherwise.\n\nExample:\n  faramesh doctor")]
pub struct DoctorArgs {
    #[command(flatten)]
    socket: SocketArg,
    #[command(flatten)]
    state: StateDir,
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(".faramesh-doctor");
    let ok = std::fs::write(&probe, b"x").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

pub fn doctor(args: DoctorArgs, json_out: bool) -> Result<ExitCode> {
    let mut checks: Vec<(String, bool, String)> = Vec::new();
    checks.push(match crate::daemon_cmd::installed_unit() {
        Some(u) => (
            "systemd".into(),
            true,
            format!(
                "the {} unit faramesh.service is installed and enabled (policy {}, socket {}); `faramesh apply` reloads or starts it",
                u.scope(),
                u.policy.display(),
                u.socket.display()
            ),
        ),
        None => (
            "systemd".into(),
            true,
            "no faramesh unit installed and enabled: `faramesh apply` starts a detached daemon (scripts/install.sh installs the units)".into(),
        ),
    });
    checks.push(("hooks".into(), true, crate::hooks::wired_hosts()));
    let socket = args.socket.path();
    let status = client::call(&socket, "status", json!({}));
    match &status {
        Ok(s) => checks.push((
            "socket".into(),
            true,
            format!("daemon pid {} answers on {}", s["pid"], socket.display()),
        )),
        Err(e) => checks.push(("socket".into(), false, format!("{e:#}"))),
    }
    if let Ok(meta) = std::fs::metadata(&socket) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        let ok = mode & 0o007 == 0;
        let note = if ok {
            "not open to everyone".to_owned()
        } else {
            "others may connect: use --socket-mode 660".to_owned()
        };
        checks.push(("permissions".into(), ok, format!("socket mode {mode:03o}, {note}")));
    }
    match &status {
        Ok(s) => {
            let p = &s["policy"];
            match p["last_error"].as_str() {
                None => checks.push((
                    "policy".into(),
                    true,
                    format!("{} ({} rules) loaded", p["path"].as_str().unwrap_or("?"), p["rules"]),
                )),
                Some(e) => checks.push((
                    "policy".into(),
                    false,
                    format!("last reload failed: {e}; fix the file (the previous policy still serves)"),
                )),
            }
            match client::call(&socket, "log.verify", json!({})) {
                Ok(r) if r["ok"] == Value::Bool(true) => {
                    checks.push(("log".into(), true, format!("{} entries verify", r["size"])))
                }
                Ok(r) => checks.push((
                    "log".into(),
                    false,
                    format!(
                        "verification failed at entry {}: {}",
                        r["first_bad_seq"],
                        r["problem"].as_str().unwrap_or("?")
                    ),
                )),
                Err(e) => checks.push(("log".into(), false, format!("{e:#}"))),
            }
        }
        Err(_) => checks.push((
            "policy".into(),
            false,
            "cannot ask the daemon: start it with `faramesh apply`".into(),
        )),
    }
    let state = args.state.path()?;
    if state.exists() {
        let ok = writable(&state);
        let note = if ok {
            "writable".to_owned()
        } else {
            "not writable by this user: run as the daemon's user".to_owned()
        };
        checks.push(("state dir".into(), ok, format!("{} {note}", state.display())));
    } else {
        checks.push((
            "state dir".into(),
            false,
            format!("{} does not exist: the daemon creates it on first start", state.display()),
        ));
    }
    if let Ok(s) = &status {
        // Agents running as an approver's uid: the kernel uid is the trust boundary between an
        // agent and the person approving its calls.
        let daemon_uid = s["uid"].as_u64();
        let recent = client::call(&socket, "action.list", json!({"limit": 200})).unwrap_or(Value::Null);
        let agent_uids: std::collections::BTreeSet<u64> = recent["actions"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["caller"]["uid"].as_u64()).collect())
            .unwrap_or_default();
        let shared: Vec<String> =
            agent_uids.iter().filter(|u| **u == 0 || Some(**u) == daemon_uid).map(u64::to_string).collect();
        let (ok, note) = if shared.is_empty() {
            (true, "no recent agent call came from root or the daemon's uid".to_owned())
        } else {
            (
                false,
                format!(
                    "agents call as uid {} which may also approve: run agents as another user (same-uid \
                     approvals are refused unless `approvals.allow_same_uid`; root can approve anything)",
                    shared.join(", ")
                ),
            )
        };
        checks.push(("approvers".into(), ok, note));
    }
    let journald = Path::new("/run/systemd/journal/socket").exists();
    let note = if journald { "available".to_owned() } else { "not found: logs go to stderr".to_owned() };
    checks.push(("journald".into(), journald, note));
    // Warnings, not failures: journald (stderr works) and approvers (a set-up choice).
    let warn_only = |name: &str| matches!(name, "journald" | "approvers");
    let all_ok = checks.iter().filter(|(name, _, _)| !warn_only(name)).all(|(_, ok, _)| *ok);
    if json_out {
        let list: Vec<Value> =
            checks.iter().map(|(n, ok, m)| json!({"check": n, "ok": ok, "detail": m})).collect();
        println!("{}", json!({"ok": all_ok, "checks": list}));
    } else {
        for (name, ok, detail) in &checks {
            let mark = match (ok, warn_only(name)) {
                (true, _) => "ok  ",
                (false, true) => "warn",
                (false, false) => "FAIL",
            };
            println!("{mark} {name:<12} {detail}");
        }
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  faramesh completions bash > /etc/bash_completion.d/faramesh")]
pub struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

pub fn completions(args: CompletionsArgs, cmd: &mut clap::Command) -> Result<ExitCode> {
    clap_complete::generate(args.shell, cmd, "faramesh", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
