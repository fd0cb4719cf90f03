//! Approvals, rate limits, budgets, the operator commands and their output.

#[allow(unused_imports)]
use super::*;

pub(crate) const APPROVAL_POLICY: &str = "version: 1
agents:
  limited-bot:
    rate_limit: { \"http/*\": \"2/second\" }
  budget-bot:
    budget: { max_calls: 2, per: day, on_exceed: deny }
  pinned-bot:
    uid: 12345
rules:
  - id: shell-approval
    match: { tool: shell }
    require_approval: true
  - id: http-ok
    match: { tool: http }
    allow: true
approvals:
  expire_after: 60m
";

pub(crate) fn shell_call(cmd: &str) -> Value {
    json!({"agent_id": "ops-bot", "tool": "shell", "operation": "exec", "args": {"cmd": cmd}})
}

pub(crate) fn with_approval(mut call: Value, approval_id: &str) -> Value {
    call["approval_id"] = json!(approval_id);
    call
}

pub(crate) const APPROVE_CHILD_ENV: &str = "FARAMESH_APPROVE_CHILD";

/// Not a test on its own: run as another uid by `non_approvers_cannot_approve_or_deny` and
/// `same_uid_cannot_approve_unless_the_policy_allows_it` (spec: `socket|method|params JSON`).
#[test]
#[ignore = "a helper process the approval tests run as another uid, not a test on its own"]
fn approve_child() {
    let Ok(spec) = std::env::var(APPROVE_CHILD_ENV) else { return };
    let (socket, method, params) = {
        let mut parts = spec.splitn(3, '|');
        (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned())
    };
    let mut c = Client::new(Path::new(&socket));
    let reply = c.call(&method, serde_json::from_str(&params).unwrap());
    println!("REPLY\t{reply}");
}

/// Runs one request as `uid` with no supplementary groups (through a copy of this test binary
/// under setpriv); needs root.
pub(crate) fn call_as_uid(uid: u32, socket: &Path, method: &str, params: Value) -> Value {
    call_as_uid_in_groups(uid, None, socket, method, params)
}

/// Regression: the only self-approval check compared pids, so an agent could approve
/// its own deferred call from a second process of the same uid.
#[test]
#[ignore = "needs root to run clients as uid 65534; scripts/test.sh runs it when root"]
fn same_uid_cannot_approve_unless_the_policy_allows_it() {
    for allow in [false, true] {
        let policy = format!(
            "version: 1\nrules:\n  - id: shell-approval\n    match: {{ tool: shell }}\n    require_approval: true\n\
             approvals:\n  approvers: [\"uid:65534\"]\n  allow_same_uid: {allow}\n"
        );
        let daemon = Daemon::start_open(&policy);
        let d = call_as_uid(65534, &daemon.socket, "govern", shell_call("ls"));
        assert_eq!(d["result"]["effect"], "DEFER", "{d}");
        let id = d["result"]["approval_id"].as_str().unwrap().to_owned();
        let reply = call_as_uid(65534, &daemon.socket, "approval.approve", json!({"approval_id": id}));
        if allow {
            assert_eq!(reply["result"]["status"], "approved", "{reply}");
        } else {
            assert_eq!(reply["error"]["code"], -32001, "{reply}");
            let msg = reply["error"]["message"].as_str().unwrap();
            assert!(msg.contains("uid 65534 made this call") && msg.contains("allow_same_uid"), "{msg}");
            // Root still may.
            assert_eq!(
                daemon.client().result("approval.approve", json!({"approval_id": id}))["status"],
                "approved"
            );
        }
    }
}

#[test]
#[ignore = "needs root to run a client as uid 65534; scripts/test.sh runs it when root"]
fn non_approvers_cannot_approve_or_deny() {
    use std::os::unix::fs::PermissionsExt;
    let daemon = Daemon::start_open(APPROVAL_POLICY);
    let mut c = daemon.client();
    let d = c.result("govern", shell_call("ls"));
    assert_eq!(d["effect"], "DEFER");
    let approval_id = d["approval_id"].as_str().unwrap().to_owned();
    // Copy this test binary where uid 65534 can run it.
    let exe_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(exe_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = exe_dir.path().join("client");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    for method in ["approval.approve", "approval.deny"] {
        let out = Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(&exe)
            .args(["approvals::approve_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(
                APPROVE_CHILD_ENV,
                format!(
                    "{}|{method}|{}",
                    daemon.socket.display(),
                    json!({"approval_id": approval_id, "reason": "not mine to give"})
                ),
            )
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line =
            stdout.lines().find_map(|l| l.split_once("REPLY\t").map(|(_, r)| r)).unwrap_or_else(|| {
                panic!("no reply from the non-root client: {stdout} {}", String::from_utf8_lossy(&out.stderr))
            });
        let reply: Value = serde_json::from_str(line).unwrap();
        assert_eq!(reply["error"]["code"], -32001, "{method}: {reply}");
        assert!(reply["error"]["message"].as_str().unwrap().contains("uid 65534 is not an approver"));
    }
    let pending = c.result("approval.list", json!({}));
    let listed = &pending["approvals"][0];
    assert_eq!(
        (listed["approval_id"].as_str(), listed["status"].as_str()),
        (Some(approval_id.as_str()), Some("pending"))
    );
}

#[test]
fn approve_resume_once_and_only_for_the_same_call() {
    let daemon = Daemon::start(APPROVAL_POLICY);
    let mut agent = daemon.client();
    let mut person = daemon.client();
    let d = agent.result("govern", shell_call("ls -la"));
    assert_eq!((d["effect"].as_str(), d["reason_code"].as_str()), (Some("DEFER"), Some("POLICY_DEFER")));
    let approval_id = d["defer_token"].as_str().unwrap().to_owned();
    assert_eq!(approval_id.len(), 32);
    assert_eq!(d["structured_denial"]["resolution"]["approval_id"], approval_id.as_str());

    // Before anyone decides, resuming is still a DEFER and waiting times out.
    let r = agent.result("govern", with_approval(shell_call("ls -la"), &approval_id));
    assert_eq!(r["effect"], "DEFER");
    let w = agent.result("approval.wait", json!({"approval_id": approval_id, "timeout_seconds": 0.2}));
    assert_eq!((w["status"].as_str(), w["timed_out"].as_bool()), (Some("pending"), Some(true)));

    // A waiter is answered when a person approves.
    let socket = daemon.socket.clone();
    let id = approval_id.clone();
    let waiter = std::thread::spawn(move || {
        Client::new(&socket).result("approval.wait", json!({"approval_id": id, "timeout_seconds": 20}))
    });
    std::thread::sleep(Duration::from_millis(200));
    let a =
        person.result("approval.approve", json!({"approval_id": &approval_id[..10], "reason": "looks fine"}));
    assert_eq!(a["status"], "approved");
    let w = waiter.join().unwrap();
    assert_eq!((w["status"].as_str(), w["timed_out"].as_bool()), (Some("approved"), Some(false)));
    let again = person.call("approval.deny", json!({"approval_id": approval_id}));
    assert_eq!(again["error"]["code"], -32003);

    // Changed arguments are denied; the exact call is granted once.
    let changed = agent.result("govern", with_approval(shell_call("rm -rf /"), &approval_id));
    assert_eq!(
        (changed["effect"].as_str(), changed["reason_code"].as_str()),
        (Some("DENY"), Some("APPROVAL_DENIED"))
    );
    let granted = agent.result("govern", with_approval(shell_call("ls -la"), &approval_id));
    assert_eq!(
        (granted["effect"].as_str(), granted["reason_code"].as_str()),
        (Some("PERMIT"), Some("APPROVAL_GRANTED"))
    );
    let twice = agent.result("govern", with_approval(shell_call("ls -la"), &approval_id));
    assert_eq!(
        (twice["effect"].as_str(), twice["reason_code"].as_str()),
        (Some("DENY"), Some("APPROVAL_DENIED"))
    );

    // The permitted action's lifecycle.
    let action = granted["action_id"].as_str().unwrap().to_owned();
    assert_eq!(agent.call("action.result", json!({"id": action, "success": true}))["error"]["code"], -32003);
    assert_eq!(agent.result("action.start", json!({"id": action}))["status"], "executing");
    assert_eq!(agent.call("action.start", json!({"id": action}))["error"]["code"], -32003);
    let done = agent
        .result("action.result", json!({"id": action, "success": true, "result": {"stdout": "total 0"}}));
    assert_eq!(done["status"], "succeeded");
    assert_eq!(agent.result("action.get", json!({"id": action}))["status"], "succeeded");
    let events = agent.result("action.events", json!({"id": action}));
    let statuses: Vec<&str> =
        events["events"].as_array().unwrap().iter().filter_map(|e| e["status"].as_str()).collect();
    assert_eq!(statuses, vec!["executing", "succeeded"]);
    // A deferred action cannot start.
    let deferred = d["action_id"].as_str().unwrap();
    assert_eq!(agent.call("action.start", json!({"id": deferred}))["error"]["code"], -32003);

    // A denied approval denies the resume.
    let d2 = agent.result("govern", shell_call("whoami"));
    let id2 = d2["approval_id"].as_str().unwrap().to_owned();
    person.result("approval.deny", json!({"approval_id": id2, "reason": "no"}));
    let r2 = agent.result("govern", with_approval(shell_call("whoami"), &id2));
    assert_eq!(r2["reason_code"], "APPROVAL_DENIED");

    // Every transition is in the chain, and the chain verifies.
    let mut daemon = daemon;
    assert_eq!(daemon.stop().code(), Some(0));
    let export = Command::new(bin()).arg("export").arg("--state-dir").arg(&daemon.state).output().unwrap();
    let text = String::from_utf8_lossy(&export.stdout);
    let approvals: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "approval")
        .collect();
    let transitions: Vec<(&str, &str)> = approvals
        .iter()
        .map(|v| (v["approval_id"].as_str().unwrap(), v["status"].as_str().unwrap()))
        .collect();
    assert!(transitions.contains(&(approval_id.as_str(), "approved")));
    assert!(transitions.contains(&(id2.as_str(), "denied")));
    assert!(text.contains("\"reason_code\":\"APPROVAL_GRANTED\""));
    let v = Command::new(bin()).arg("verify-log").arg("--state-dir").arg(&daemon.state).output().unwrap();
    assert_eq!(v.status.code(), Some(0));
}

#[test]
fn approvals_expire_and_survive_a_restart() {
    let policy = APPROVAL_POLICY.replace("expire_after: 60m", "expire_after: 1s");
    let mut daemon = Daemon::start(&policy);
    let mut c = daemon.client();
    let d = c.result("govern", shell_call("uptime"));
    let id = d["approval_id"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(1300));
    let r = c.result("govern", with_approval(shell_call("uptime"), &id));
    assert_eq!((r["effect"].as_str(), r["reason_code"].as_str()), (Some("DENY"), Some("APPROVAL_EXPIRED")));
    assert_eq!(c.call("approval.approve", json!({"approval_id": id}))["error"]["code"], -32003);

    // With a longer expiry, a pending approval survives a restart and can then be approved.
    std::fs::write(&daemon.policy, APPROVAL_POLICY).unwrap();
    c.result("policy.reload", json!({}));
    let d = c.result("govern", shell_call("df -h"));
    let id = d["approval_id"].as_str().unwrap().to_owned();
    drop(c);
    assert_eq!(daemon.stop().code(), Some(0));
    daemon.spawn();
    let mut c = daemon.client();
    let list = c.result("approval.list", json!({}));
    assert!(list["approvals"].as_array().unwrap().iter().any(|a| a["approval_id"] == id.as_str()));
    c.result("approval.approve", json!({"approval_id": id}));
    let r = c.result("govern", with_approval(shell_call("df -h"), &id));
    assert_eq!(r["reason_code"], "APPROVAL_GRANTED");
}

#[test]
fn rate_limits_budgets_pinning_and_dry_runs() {
    let mut daemon = Daemon::start(APPROVAL_POLICY);
    let mut c = daemon.client();
    let http = |agent: &str| json!({"agent_id": agent, "tool": "http", "operation": "get"});

    // decide consumes nothing.
    for _ in 0..10 {
        assert_eq!(c.result("decide", http("limited-bot"))["effect"], "PERMIT");
    }
    assert_eq!(c.result("govern", http("limited-bot"))["effect"], "PERMIT");
    assert_eq!(c.result("govern", http("limited-bot"))["effect"], "PERMIT");
    let limited = c.result("govern", http("limited-bot"));
    assert_eq!(
        (limited["effect"].as_str(), limited["reason_code"].as_str()),
        (Some("DENY"), Some("RATE_EXCEEDED"))
    );
    let resolution = &limited["structured_denial"]["resolution"];
    assert_eq!(resolution["type"], "retry_after");
    let wait = resolution["retry_after_seconds"].as_u64().unwrap();
    assert!((1..=1).contains(&wait), "2/second leaves a bucket that refills within a second: {wait}");
    std::thread::sleep(Duration::from_secs(wait));
    assert_eq!(
        c.result("govern", http("limited-bot"))["effect"],
        "PERMIT",
        "waiting retry_after_seconds is enough"
    );

    // Budgets: two calls a day, then BUDGET_EXCEEDED until the next UTC midnight, across restarts.
    assert_eq!(c.result("govern", http("budget-bot"))["effect"], "PERMIT");
    assert_eq!(c.result("govern", http("budget-bot"))["effect"], "PERMIT");
    let over = c.result("govern", http("budget-bot"));
    assert_eq!(over["reason_code"], "BUDGET_EXCEEDED");
    let resets_at = over["structured_denial"]["resolution"]["resets_at"].as_str().unwrap().to_owned();
    assert!(resets_at.ends_with("T00:00:00.000Z"), "{resets_at}");
    drop(c);
    assert_eq!(daemon.stop().code(), Some(0));
    daemon.spawn();
    let mut c = daemon.client();
    assert_eq!(
        c.result("govern", http("budget-bot"))["reason_code"],
        "BUDGET_EXCEEDED",
        "day counters survive a restart"
    );

    // An agent id pinned to another uid cannot be claimed.
    let pinned = c.result("govern", http("pinned-bot"));
    assert_eq!(
        (pinned["effect"].as_str(), pinned["reason_code"].as_str()),
        (Some("DENY"), Some("AGENT_IDENTITY_MISMATCH"))
    );
    assert_eq!(c.result("decide", http("pinned-bot"))["reason_code"], "AGENT_IDENTITY_MISMATCH");
}

#[test]
fn operator_cli_pending_approve_explain_and_tail() {
    let daemon = Daemon::start_open(APPROVAL_POLICY);
    let sock = daemon.socket.to_str().unwrap().to_owned();
    let cli = |args: &[&str]| Command::new(bin()).args(args).env("FARAMESH_SOCKET", &sock).output().unwrap();
    let mut tail =
        Command::new(bin()).arg("tail").env("FARAMESH_SOCKET", &sock).stdout(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut c = daemon.client();
    let d = c.result("govern", shell_call("ls /srv"));
    let approval_id = d["approval_id"].as_str().unwrap().to_owned();
    let action_id = d["action_id"].as_str().unwrap().to_owned();

    let pending = cli(&["pending"]);
    let text = String::from_utf8_lossy(&pending.stdout);
    assert!(text.starts_with("APPROVAL"), "{text}");
    assert!(text.contains(&approval_id) && text.contains("shell/exec"), "{text}");

    if nix::unistd::getuid().is_root() {
        let out = Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(bin())
            .args(["approve", &approval_id[..8]])
            .env("FARAMESH_SOCKET", &sock)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not authorized: uid 65534 is not an approver"), "{err}");
        assert_eq!(
            c.result("approval.list", json!({}))["approvals"][0]["status"],
            "pending",
            "still pending"
        );
    } else {
        eprintln!("SKIPPED the non-approver part: needs root to run the CLI as uid 65534");
    }
    let ok = cli(&["approve", &approval_id[..8], "--reason", "fine"]);
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains(" approved (shell/exec by agent ops-bot)"));
    let none = cli(&["pending"]);
    assert_eq!(String::from_utf8_lossy(&none.stdout), "no approvals are waiting\n", "an empty table says so");

    let explain = cli(&["explain", &action_id[..8]]);
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(text.contains("recorded  DEFER POLICY_DEFER"), "{text}");
    assert!(text.contains("match shell-approval"), "{text}");
    let listed = cli(&["list", "--agent", "ops-bot"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&action_id));
    let missing = cli(&["get", "ffffffffffffffff"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no action `ffffffffffffffff`"));

    // `tail` saw the decision made after it started.
    std::thread::sleep(Duration::from_millis(300));
    tail.kill().unwrap();
    let out = tail.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("DEFER POLICY_DEFER shell/exec agent=ops-bot {action_id}")), "{text}");
    assert!(text.contains(&format!("approved {approval_id}")), "{text}");

    let down =
        Command::new(bin()).arg("status").env("FARAMESH_SOCKET", "/nonexistent/x.sock").output().unwrap();
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("the daemon is not running on `/nonexistent/x.sock`")
    );
}

/// Snapshots of the text people read, against a real daemon. Ids, hashes, times and paths are
/// replaced by placeholders.
#[test]
fn snapshots_of_operator_output() {
    let daemon = Daemon::start(APPROVAL_POLICY);
    let sock = daemon.socket.to_str().unwrap().to_owned();
    let run = |args: &[&str]| {
        let out = Command::new(bin())
            .args(args)
            .env("FARAMESH_SOCKET", &sock)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let mut c = daemon.client();
    let deferred = c.result("govern", shell_call("ls /srv"));
    let permitted = c.result("govern", json!({"agent_id": "ops-bot", "tool": "http", "operation": "get", "args": {"url": "https://example.com", "api_key": "k"}}));
    let action = permitted["action_id"].as_str().unwrap().to_owned();
    c.result("action.start", json!({"id": action}));
    c.result("action.result", json!({"id": action, "success": true, "result": {"status": 200}}));
    let deferred_id = deferred["action_id"].as_str().unwrap().to_owned();

    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"[0-9a-f]{64}", "[hash]");
    settings.add_filter(r"[0-9a-f]{32}", "[approval]");
    settings.add_filter(r"\b[0-9a-f]{16}\b", "[action]");
    settings.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", "[time]");
    settings.add_filter(r"/tmp/[^ :]*/policy\.yaml", "[policy]");
    settings.add_filter(r"/[^ `]*/run/faramesh\.sock", "[socket]");
    settings.add_filter(r#""pid":\d+"#, r#""pid":[pid]"#);
    settings.add_filter(r"pid \d+", "pid [pid]");
    settings.add_filter(r"/tmp/\.tmp\w+", "[tmp]");
    settings.bind(|| {
        insta::assert_snapshot!("list", run(&["list"]));
        insta::assert_snapshot!("get", run(&["get", &action]));
        insta::assert_snapshot!("events", run(&["events", &action]));
        insta::assert_snapshot!("explain", run(&["explain", &deferred_id]));
        insta::assert_snapshot!("pending", run(&["pending"]));
        insta::assert_snapshot!("error_not_found", run(&["get", "ffffffffffffffff"]));
        insta::assert_snapshot!("error_ambiguous_or_short", run(&["get", "abc"]));
        insta::assert_snapshot!("error_no_approval", run(&["approve", "ffffffffffffffffffffffffffffffff"]));
        let approval = deferred["approval_id"].as_str().unwrap();
        assert!(
            run(&["deny", approval, "--reason", "not now"]).contains(" denied (shell/exec by agent ops-bot)")
        );
        insta::assert_snapshot!("error_wrong_state", run(&["approve", approval]));
        let down =
            Command::new(bin()).arg("list").env("FARAMESH_SOCKET", "/nonexistent/x.sock").output().unwrap();
        insta::assert_snapshot!("error_daemon_down", String::from_utf8_lossy(&down.stderr));
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("old.yaml"), APPROVAL_POLICY).unwrap();
    std::fs::write(
        dir.path().join("new.yaml"),
        APPROVAL_POLICY
            .replace("require_approval: true", "deny: true")
            .replace("id: http-ok", "id: http-read"),
    )
    .unwrap();
    let diff = Command::new(bin())
        .args(["policy", "diff", "old.yaml", "new.yaml", "--against-log", "--state-dir"])
        .arg(&daemon.state)
        .current_dir(dir.path())
        .output();
    // The daemon holds the log file: --against-log asks for it to be stopped (or a copy).
    let diff_text = String::from_utf8_lossy(&diff.unwrap().stderr).into_owned();
    let mut daemon = daemon;
    daemon.stop();
    let diff_after = Command::new(bin())
        .args(["policy", "diff", "old.yaml", "new.yaml", "--against-log", "--state-dir"])
        .arg(&daemon.state)
        .current_dir(dir.path())
        .output()
        .unwrap();
    settings.bind(|| {
        insta::assert_snapshot!("policy_diff_log_in_use", diff_text);
        insta::assert_snapshot!("policy_diff_against_log", String::from_utf8_lossy(&diff_after.stdout));
    });
}

/// Regression: `replay` of a call PERMITted after approval reported PERMIT → DEFER,
/// a change that did not happen; it compares the policy's part (DEFER by the same rule).
#[test]
fn replay_and_explain_of_an_approved_call_compare_like_with_like() {
    let daemon = Daemon::start(APPROVAL_POLICY);
    let sock = daemon.socket.to_str().unwrap().to_owned();
    let cli = |args: &[&str]| Command::new(bin()).args(args).env("FARAMESH_SOCKET", &sock).output().unwrap();
    let mut c = daemon.client();
    let d = c.result("govern", shell_call("uptime"));
    let approval_id = d["approval_id"].as_str().unwrap().to_owned();
    c.result("approval.approve", json!({"approval_id": approval_id}));
    let granted = c.result("govern", with_approval(shell_call("uptime"), &approval_id));
    assert_eq!(granted["reason_code"], "APPROVAL_GRANTED");
    let id = granted["action_id"].as_str().unwrap();
    let out = cli(&["replay", id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("the decision would be the same"), "{text}");
    assert!(text.contains("a person approved this call"), "{text}");
    let explained = String::from_utf8_lossy(&cli(&["explain", id]).stdout).into_owned();
    assert!(explained.contains("the policy's own decision was DEFER by `shell-approval`"), "{explained}");
    // A plain decision still reports a real change: edit the policy so the call is denied.
    std::fs::write(&daemon.policy, APPROVAL_POLICY.replace("require_approval: true", "deny: true")).unwrap();
    c.result("policy.reload", json!({}));
    let out = cli(&["replay", id]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
}
