//! A running daemon: `faramesh apply` (check, then hot-reload or start it, under systemd when
//! its unit is installed), `status`, `stop` and `dashboard`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::args::{SocketArg, StateDir};
use crate::client;

use super::config::{absolute, check_socket_path, precheck_policy};
use super::start::private_dir;

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  eval \"$(faramesh apply --policy policies/default.yaml)\"")]
pub struct ApplyArgs {
    /// The policy file.
    #[arg(long, env = "FARAMESH_POLICY", default_value = "policies/default.yaml")]
    pub policy: PathBuf,
    #[command(flatten)]
    pub socket: SocketArg,
    #[command(flatten)]
    pub state: StateDir,
}

pub fn apply(args: ApplyArgs, json_out: bool) -> Result<ExitCode> {
    let policy = absolute(&args.policy);
    if let Some(code) = precheck_policy(&policy)? {
        return Ok(code);
    }
    // An installed, enabled unit serving this policy is driven through systemd.
    if let Some(unit) = installed_unit().filter(|u| u.policy == policy) {
        let running = client::call(&unit.socket, "status", json!({})).is_ok();
        let outcome = apply_with_unit(&unit, running)?;
        if json_out {
            println!("{outcome}");
        } else {
            eprintln!("faramesh: {} ({})", outcome["action"].as_str().unwrap_or(""), policy.display());
            println!("export FARAMESH_SOCKET={}", unit.socket.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let socket = absolute(&args.socket.path());
    check_socket_path(&socket)?;
    let running = client::call(&socket, "policy.status", json!({}));
    let outcome = match running {
        Ok(status) => {
            let served = status.get("path").and_then(Value::as_str).unwrap_or_default().to_owned();
            if served != policy.display().to_string() {
                bail!(
                    "the daemon on `{}` serves `{served}`, not `{}`: edit that file, or stop the daemon first",
                    socket.display(),
                    policy.display()
                );
            }
            let r = client::call(&socket, "policy.reload", json!({}))?;
            if r.get("ok").and_then(Value::as_bool) != Some(true) {
                bail!("reload failed: {}", r.get("error").and_then(Value::as_str).unwrap_or("unknown error"));
            }
            json!({"action": "reloaded", "policy_hash": r.get("policy_hash"), "socket": socket.display().to_string()})
        }
        Err(_) => {
            let state_dir = absolute(&args.state.path()?);
            private_dir(&state_dir)?;
            let log_path = state_dir.join("daemon.log");
            let log_file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&log_path)
                .with_context(|| format!("cannot open `{}`", log_path.display()))?;
            let exe = std::env::current_exe().context("cannot find the faramesh binary")?;
            let mut child = std::process::Command::new(exe)
                .arg("serve")
                .arg("--policy")
                .arg(&policy)
                .arg("--socket")
                .arg(&socket)
                .arg("--state-dir")
                .arg(&state_dir)
                .stdin(std::process::Stdio::null())
                .stdout(log_file.try_clone()?)
                .stderr(log_file)
                .process_group(0)
                .spawn()
                .context("cannot start the daemon")?;
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            loop {
                if client::call(&socket, "status", json!({})).is_ok() {
                    break;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("the daemon exited ({status}); see `{}`", log_path.display());
                }
                if std::time::Instant::now() > deadline {
                    bail!("the daemon did not answer within 15 s; see `{}`", log_path.display());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            json!({"action": "started", "pid": child.id(), "socket": socket.display().to_string(), "log": log_path.display().to_string()})
        }
    };
    if json_out {
        println!("{outcome}");
    } else {
        eprintln!("faramesh: {} ({})", outcome["action"].as_str().unwrap_or(""), policy.display());
        println!("export FARAMESH_SOCKET={}", socket.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(socket: &SocketArg, json_out: bool) -> Result<ExitCode> {
    let s = client::call(&socket.path(), "status", json!({}))?;
    if json_out {
        println!("{s}");
        return Ok(ExitCode::SUCCESS);
    }
    let p = &s["policy"];
    println!(
        "faramesh {} (pid {}, up {}s)",
        s["version"].as_str().unwrap_or("?"),
        s["pid"],
        s["uptime_seconds"]
    );
    let kill = &s["kill"];
    if kill["engaged"] == true {
        for k in kill["switches"].as_array().into_iter().flatten() {
            let whom = k["agent_id"]
                .as_str()
                .map_or("every agent".to_owned(), |a| format!("agent {}", crate::term::safe(a)));
            let why = k["reason"].as_str().map(|r| format!(": {}", crate::term::safe(r))).unwrap_or_default();
            println!(
                "{}",
                crate::ops_cmd::red(&format!(
                    "KILLED    every call of {whom} is denied since {}{why}",
                    k["since"].as_str().unwrap_or("?")
                ))
            );
        }
        if kill["file_present"] == true {
            println!(
                "{}",
                crate::ops_cmd::red(&format!(
                    "KILLED    every call is denied: the kill file {} is present",
                    kill["file"].as_str().unwrap_or("?")
                ))
            );
        }
    }
    println!("socket    {}", s["socket"].as_str().unwrap_or("?"));
    if let Some(url) = s["http"]["url"].as_str() {
        match s["http"]["tls_fingerprint"].as_str() {
            Some(fp) => println!("http      {url} (certificate SHA-256 {fp})"),
            None if s["http"]["loopback"] == false => {
                println!("http      {url} (plain HTTP beyond loopback, --plain-http)")
            }
            None => println!("http      {url} (plain HTTP, loopback only)"),
        }
        if s["http"]["anonymous_agents"] == true {
            println!("          tokenless callers are served as agents (loopback, no token configured)");
        }
    }
    if let Some(notice) = s["notice"].as_str() {
        println!("mode      {notice}");
    }
    if s["demo"] == true {
        println!("demo      a demo daemon: its state dir is fresh and every call in it is a demo call");
    }
    println!(
        "policy    {} ({} rules, {})",
        p["path"].as_str().unwrap_or("?"),
        p["rules"],
        p["policy_hash"].as_str().unwrap_or("?")
    );
    if let Some(e) = p["last_error"].as_str() {
        println!("reload    FAILED: {} (the previous policy is still serving)", crate::term::safe(e));
    }
    let b = &p["bundle"];
    if b.is_object() {
        let labels: Vec<&str> =
            b["labels"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let labels =
            if labels.is_empty() { "no labels".to_owned() } else { format!("labels {}", labels.join(",")) };
        match b["serial"].as_u64() {
            Some(serial) => println!(
                "bundle    {serial} by {}, expires {}, {labels}{}",
                crate::term::safe(b["publisher"].as_str().unwrap_or("?")),
                b["expires_at"].as_str().unwrap_or("?"),
                if b["stale"] == true { " — STALE" } else { "" },
            ),
            None => println!("bundle    none yet ({labels})"),
        }
        if let Some(w) = b["warning"].as_str() {
            println!("          {}", crate::ops_cmd::red(&format!("WARNING: {w}")));
        }
        if let Some(r) = b["refused"].as_object() {
            println!(
                "          last refused: bundle {}: {}",
                r.get("serial").unwrap_or(&Value::Null),
                crate::term::safe(r.get("error").and_then(Value::as_str).unwrap_or("?"))
            );
        }
        if let Some(e) = b["last_error"].as_str() {
            println!("          the fleet database: {}", crate::term::safe(e));
        }
    }
    let q = &s["fleet_queue"];
    if q.is_object() {
        println!(
            "fleet     signed decisions from the fleet database: {} applied, {} refused{}",
            q["applied"],
            q["refused"],
            q["last_error"]
                .as_str()
                .map(|e| format!("; last error: {}", crate::term::safe(e)))
                .unwrap_or_default()
        );
    }
    let c = &s["counts"];
    println!(
        "decisions {} permit, {} deny, {} defer; errors: {} from clients, {} internal",
        c["permit"], c["deny"], c["defer"], c["client_errors"], c["internal_errors"]
    );
    let n = &s["notifications"];
    if n["channels"].as_array().is_some_and(|c| !c.is_empty()) {
        let channels: Vec<&str> =
            n["channels"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        // The last error may quote what a webhook's server answered.
        let line = format!(
            "notify    {}: {} delivered, {} failed, {} waiting{}",
            channels.join(", "),
            n["delivered"],
            n["failed"],
            n["waiting"],
            n["last_error"].as_str().map(|e| format!(" (last error: {e})")).unwrap_or_default()
        );
        println!("{}", crate::term::safe(&line));
    }
    for d in s["export"].as_array().into_iter().flatten() {
        let line = format!(
            "export    {} {}{}: through entry {} of {}, {} behind ({} s){}",
            d["name"].as_str().unwrap_or("?"),
            d["target"].as_str().unwrap_or("?"),
            if d["required"] == true { " (required: retention waits for it)" } else { "" },
            d["cursor"],
            d["head"],
            d["lag_entries"],
            d["lag_seconds"],
            d["last_error"].as_str().map(|e| format!("; last error: {e}")).unwrap_or_default()
        );
        println!("{}", crate::term::safe(&line));
    }
    for w in s["witnesses"].as_array().into_iter().flatten() {
        let state = match (&w["alarm"], w["size"].as_u64().unwrap_or(0)) {
            (a, _) if !a.is_null() => {
                format!("ALARM ({}): {}", a["status"], a["message"].as_str().unwrap_or(""))
            }
            (_, 0) => "no checkpoint cosigned yet".to_owned(),
            (_, size) => format!("cosigned through entry {size} ({})", w["last_ok"].as_str().unwrap_or("?")),
        };
        println!(
            "witness   {} {}: {state}{}",
            w["name"].as_str().unwrap_or("?"),
            w["url"].as_str().unwrap_or("?"),
            w["last_error"].as_str().map(|e| format!("; last error: {e}")).unwrap_or_default()
        );
    }
    let pruned = match s["log"]["first_seq"].as_u64() {
        Some(first) if first > 1 => format!(" (entries before {first} pruned)"),
        _ => String::new(),
    };
    println!(
        "log       {} entries{pruned}, head {}",
        s["log"]["size"],
        s["log"]["head_hash"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}

pub fn stop(socket: &SocketArg) -> Result<ExitCode> {
    let path = socket.path();
    let s = client::call(&path, "status", json!({}))?;
    let pid = s["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| anyhow!("the daemon did not say its pid"))?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)
        .map_err(|e| anyhow!("cannot signal pid {pid}: {e}"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while path.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if path.exists() {
        bail!("pid {pid} did not stop within 15 s");
    }
    eprintln!("faramesh: stopped (pid {pid})");
    Ok(ExitCode::SUCCESS)
}

/// Where the installed systemd units run the daemon (scripts/install.sh).
#[derive(Debug, Clone)]
pub(crate) struct Unit {
    /// `systemctl --user` units rather than system ones.
    pub user: bool,
    /// The policy the unit serves.
    pub policy: PathBuf,
    /// The socket the unit's daemon answers on.
    pub socket: PathBuf,
}

impl Unit {
    fn systemctl(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        let mut cmd = std::process::Command::new("systemctl");
        if self.user {
            cmd.arg("--user");
        }
        cmd.args(args).stdin(std::process::Stdio::null()).output()
    }

    /// `system` or `user`, for messages.
    pub fn scope(&self) -> &'static str {
        if self.user { "user" } else { "system" }
    }
}

/// The installed and enabled faramesh unit (system first, then the user's), if any.
pub(crate) fn installed_unit() -> Option<Unit> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let candidates = [
        Unit {
            user: false,
            policy: "/etc/faramesh/policy.yaml".into(),
            socket: "/run/faramesh/faramesh.sock".into(),
        },
        Unit {
            user: true,
            policy: home.join(".faramesh/policy.yaml"),
            socket: home.join(".faramesh/runtime/faramesh.sock"),
        },
    ];
    candidates.into_iter().find(|u| {
        ["faramesh.socket", "faramesh.service"]
            .iter()
            .any(|name| u.systemctl(&["is-enabled", "--quiet", name]).is_ok_and(|o| o.status.success()))
    })
}

/// `faramesh apply` through systemd: reload the running unit, or start it.
fn apply_with_unit(unit: &Unit, running: bool) -> Result<Value> {
    let action = if running { "reload" } else { "start" };
    let units: &[&str] =
        if running { &["faramesh.service"] } else { &["faramesh.socket", "faramesh.service"] };
    let mut args = vec![action];
    args.extend_from_slice(units);
    let out = unit.systemctl(&args).context("cannot run systemctl")?;
    if !out.status.success() {
        bail!(
            "`systemctl{} {}` failed: {}",
            if unit.user { " --user" } else { "" },
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while client::call(&unit.socket, "status", json!({})).is_err() {
        if std::time::Instant::now() > deadline {
            bail!(
                "the {} unit did not answer on `{}` within 15 s (`journalctl -u faramesh`)",
                unit.scope(),
                unit.socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let verb = if running { "reloaded" } else { "started" };
    Ok(
        json!({"action": format!("{verb} (systemd {} unit)", unit.scope()), "socket": unit.socket.display().to_string()}),
    )
}

/// `faramesh dashboard`: a fresh one-time sign-in link to the daemon's dashboard (and a browser
/// opened on it when there is one).
pub fn dashboard(socket: &SocketArg, json_out: bool) -> Result<ExitCode> {
    let r = client::call(&socket.path(), "dashboard.login", json!({}))?;
    let Some(url) = r["url"].as_str() else {
        bail!(
            "the daemon serves no dashboard: start it with `--listen 127.0.0.1:8000` (or `faramesh serve` alone)"
        );
    };
    if json_out {
        println!("{r}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{url}");
    eprintln!("this link signs you in once, as an approver, within 10 minutes");
    let graphical = std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if graphical {
        let opener =
            std::env::var("BROWSER").ok().filter(|b| !b.is_empty()).unwrap_or_else(|| "xdg-open".into());
        let _ = std::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    Ok(ExitCode::SUCCESS)
}
