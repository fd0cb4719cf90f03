//! `faramesh serve --demo` (or `FARAMESH_DEMO=1`): a daemon in a fresh state dir with the demo
//! policy (`policies/demo.yaml`), filled at once (in about a second) with two dozen calls of
//! three agents, so the dashboard shows what the gate does: permits, denials by rule and by
//! profile, a rate-limited
//! burst, a refused destructive command, a call approved, started and finished, and a refund
//! left pending for you to approve. Every demo call carries `context.demo: true` (so every
//! record of it says demo), and `status` and the dashboard say the daemon runs a demo.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};

use crate::client;

/// The demo's policy.
pub const POLICY: &str = include_str!("../../policies/demo.yaml");

/// A fresh state dir for a demo (mode 0700), under the system's temporary directory.
pub fn fresh_dir() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let suffix = faramesh_log::random_hex(4).context("cannot read /dev/urandom")?;
    let dir = std::env::temp_dir().join(format!("faramesh-demo-{suffix}"));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create `{}`", dir.display()))?;
    let policy = dir.join("demo.yaml");
    std::fs::write(&policy, POLICY).with_context(|| format!("cannot write `{}`", policy.display()))?;
    Ok(dir)
}

/// One demo call.
fn call(agent: &str, tool: &str, operation: &str, params: Value) -> Value {
    json!({
        "agent_id": agent,
        "tool": tool,
        "operation": operation,
        "params": params,
        "context": {"demo": true, "session_id": format!("demo-{agent}")},
    })
}

/// Plays the demo's calls against the daemon on `socket` once it answers (in a thread: the
/// daemon runs in this process's foreground).
pub fn play_in_background(socket: PathBuf) {
    std::thread::spawn(move || {
        if let Err(e) = play(&socket) {
            eprintln!("faramesh demo: the demo calls stopped: {e:#}");
        }
    });
}

fn play(socket: &Path) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while client::call(socket, "status", json!({})).is_err() {
        if std::time::Instant::now() > deadline {
            return Err(anyhow!("the daemon did not answer"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stream = client::connect(socket)?;
    let govern = |c: Value| client::call_on(&stream, "govern", c);
    let pace = || std::thread::sleep(Duration::from_millis(40));
    // (agent, tool, operation, params): what each answers is up to the demo policy.
    let searches = [
        "refund policy",
        "refund window",
        "chargeback",
        "partial refund",
        "store credit",
        "refund fees",
        "refund api",
    ];
    let mut calls: Vec<(&str, &str, &str, Value)> = vec![
        ("support-bot", "http", "get", json!({"url": "https://status.example.com"})),
        ("support-bot", "http", "get", json!({"url": "https://docs.example.com/refunds"})),
        ("support-bot", "http", "get", json!({"url": "https://api.example.com/orders/1042"})),
    ];
    // A burst of searches: the fifth a minute is the last the rate limit lets through.
    calls.extend(searches.iter().map(|q| ("support-bot", "search_docs", "query", json!({"q": q}))));
    calls.extend([
        ("support-bot", "stripe", "refund", json!({"amount": 40, "currency": "usd", "charge": "ch_demo_1"})),
        (
            "support-bot",
            "stripe",
            "refund",
            json!({"amount": 25000, "currency": "usd", "charge": "ch_demo_2"}),
        ),
        ("support-bot", "stripe", "create_charge", json!({"amount": 99, "currency": "usd"})),
        ("ops-bot", "shell", "exec", json!({"cmd": "df -h"})),
        ("ops-bot", "shell", "exec", json!({"cmd": "uptime"})),
        ("ops-bot", "shell", "exec", json!({"cmd": "sudo rm -rf /var/lib/postgresql"})),
        ("ops-bot", "stripe", "refund", json!({"amount": 10})),
    ]);
    for (agent, tool, operation, params) in calls {
        govern(call(agent, tool, operation, params))?;
        if tool != "search_docs" {
            pace();
        }
    }
    // A restart a person approves; the agent resumes it, runs it and reports the result.
    let restart = call("ops-bot", "shell", "exec", json!({"cmd": "systemctl restart nginx"}));
    let deferred = govern(restart.clone())?;
    if let Some(approval) = deferred["approval_id"].as_str() {
        client::call_on(
            &stream,
            "approval.approve",
            json!({"approval_id": approval, "reason": "demo: restart during the maintenance window"}),
        )?;
        let mut resume = restart;
        resume["approval_id"] = json!(approval);
        let granted = govern(resume)?;
        if let Some(action) = granted["action_id"].as_str() {
            client::call_on(&stream, "action.start", json!({"id": action}))?;
            client::call_on(
                &stream,
                "action.result",
                json!({"id": action, "success": true, "result": {"stdout": "nginx restarted"}}),
            )?;
        }
    }
    pace();
    for (tool, params) in [
        ("http", json!({"url": "https://arxiv.org/list/cs.AI/recent"})),
        ("http", json!({"url": "https://example.org/paper.pdf"})),
        ("shell", json!({"cmd": "ls ~"})),
    ] {
        let operation = if tool == "http" { "get" } else { "exec" };
        govern(call("research-bot", tool, operation, params))?;
        pace();
    }
    // Left pending: approve it from the dashboard or with `faramesh approve <action id>`.
    let pending = govern(call(
        "support-bot",
        "stripe",
        "refund",
        json!({"amount": 250, "currency": "usd", "charge": "ch_demo_3"}),
    ))?;
    eprintln!(
        "faramesh demo: the demo's calls are in; a refund of 250 waits for you: `faramesh approve {}` (after the export line above) or in the dashboard",
        pending["action_id"].as_str().unwrap_or("?")
    );
    Ok(())
}
