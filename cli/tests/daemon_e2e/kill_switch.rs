//! The kill switch: `faramesh kill` denies every call (of one agent, or all) from that moment,
//! denies the pending approvals, suspends grants, is kept across a restart and lifted by
//! `faramesh kill --lift`; the kill file does the same while it exists.

use super::*;

const POLICY: &str = "version: 1
rules:
  - id: http-ok
    match: { tool: http }
    allow: true
  - id: shell-approval
    match: { tool: shell }
    require_approval: true
";

fn http(agent: &str) -> Value {
    json!({"agent_id": agent, "tool": "http", "operation": "get", "args": {"url": "https://example.com"}})
}

fn kill_cli(daemon: &Daemon, args: &[&str]) -> String {
    let out =
        Command::new(bin()).arg("kill").args(args).arg("--socket").arg(&daemon.socket).output().unwrap();
    assert!(out.status.success(), "kill {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn effect(r: &Value) -> (&str, &str) {
    (r["effect"].as_str().unwrap(), r["reason_code"].as_str().unwrap())
}

#[test]
fn the_kill_switch_denies_every_call_until_lifted_and_survives_a_restart() {
    let mut daemon = Daemon::start(POLICY);
    let mut c = daemon.client();
    assert_eq!(effect(&c.result("govern", http("bot"))), ("PERMIT", "POLICY_PERMIT"));
    let pending = c.result(
        "govern",
        json!({"agent_id": "bot", "tool": "shell", "operation": "exec", "args": {"cmd": "ls"}}),
    );
    assert_eq!(pending["effect"], "DEFER");

    let said = kill_cli(&daemon, &["--reason", "agents are deleting files"]);
    assert!(
        said.contains("kill switch engaged for every agent") && said.contains("1 pending approval(s) denied"),
        "{said}"
    );
    let denied = c.result("govern", http("bot"));
    assert_eq!(effect(&denied), ("DENY", "KILL_SWITCH"), "{denied}");
    assert_eq!(denied["rule_id"], "kill_switch");
    assert!(denied["reason"].as_str().unwrap().contains("agents are deleting files"), "{denied}");
    // The call that waited for a person was denied, and resuming it is refused.
    let all = c.result("approval.list", json!({"status": "all"}));
    let approval = all["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["approval_id"] == pending["approval_id"])
        .unwrap();
    assert_eq!(approval["status"], "denied", "{approval}");
    assert!(c.result("approval.list", json!({}))["approvals"].as_array().unwrap().is_empty());
    let status = c.result("status", json!({}));
    assert_eq!(status["kill"]["engaged"], true, "{status}");
    assert_eq!(status["kill"]["switches"][0]["reason"], "agents are deleting files");

    // Kept across a restart.
    daemon.stop();
    daemon.spawn();
    let mut c = daemon.client();
    assert_eq!(effect(&c.result("govern", http("bot"))), ("DENY", "KILL_SWITCH"));
    let out = Command::new(bin()).args(["status", "--socket"]).arg(&daemon.socket).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("KILLED    every call of every agent is denied"), "{text}");

    let said = kill_cli(&daemon, &["--lift"]);
    assert!(said.contains("lifted"), "{said}");
    assert_eq!(effect(&c.result("govern", http("bot"))), ("PERMIT", "POLICY_PERMIT"));
    // Lifting twice says there is nothing to lift.
    let again = c.call("kill.lift", json!({}));
    assert_eq!(again["error"]["code"], -32002, "{again}");

    // Recorded as signed entries, and the log still verifies.
    let entries = c.result("log.entries", json!({"from_seq": 1, "limit": 500}));
    let kills: Vec<&Value> =
        entries["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "kill_switch").collect();
    assert_eq!(kills.len(), 2, "{kills:?}");
    assert_eq!((&kills[0]["state"], &kills[1]["state"]), (&json!("engaged"), &json!("lifted")));
    assert_eq!(kills[0]["by"]["uid"], 0, "{:?}", kills[0]);
    let verify = Command::new(bin())
        .args(["verify-log", "--state-dir"])
        .arg(&daemon.state)
        .arg("--socket")
        .arg(&daemon.socket)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
}

#[test]
fn a_kill_switch_for_one_agent_leaves_the_others() {
    let daemon = Daemon::start(POLICY);
    let mut c = daemon.client();
    kill_cli(&daemon, &["--agent", "bad-bot"]);
    assert_eq!(effect(&c.result("govern", http("bad-bot"))), ("DENY", "KILL_SWITCH"));
    assert_eq!(effect(&c.result("govern", http("good-bot"))), ("PERMIT", "POLICY_PERMIT"));
    // `decide` (the dry run) says the same.
    assert_eq!(effect(&c.result("decide", http("bad-bot"))), ("DENY", "KILL_SWITCH"));
    kill_cli(&daemon, &["--lift", "--agent", "bad-bot"]);
    assert_eq!(effect(&c.result("govern", http("bad-bot"))), ("PERMIT", "POLICY_PERMIT"));
}

#[test]
fn the_kill_file_denies_every_call_while_it_exists() {
    let mut daemon = Daemon::start(POLICY);
    daemon.stop();
    let file = daemon.dir.join("kill");
    let file_arg = file.display().to_string();
    daemon.spawn_with(&["--kill-file", &file_arg]);
    let mut c = daemon.client();
    assert_eq!(effect(&c.result("govern", http("bot"))), ("PERMIT", "POLICY_PERMIT"));
    std::fs::write(&file, "").unwrap();
    let denied = c.result("govern", http("bot"));
    assert_eq!(effect(&denied), ("DENY", "KILL_SWITCH"));
    assert!(denied["reason"].as_str().unwrap().contains("kill file"), "{denied}");
    assert_eq!(c.result("status", json!({}))["kill"]["file_present"], true);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(effect(&c.result("govern", http("bot"))), ("PERMIT", "POLICY_PERMIT"));
}

/// Regression: a call approved before the switch was engaged still resumed (PERMIT
/// `APPROVAL_GRANTED`), and `action.start` still started an approved action.
#[test]
fn a_call_approved_before_the_kill_switch_cannot_start() {
    let daemon = Daemon::start(&POLICY.replace("rules:", "approvals:\n  allow_same_uid: true\nrules:"));
    let mut c = daemon.client();
    let call = json!({"agent_id": "bot", "tool": "shell", "operation": "exec", "args": {"cmd": "free"}});
    let first = c.result("govern", call.clone());
    assert_eq!(first["effect"], "DEFER", "{first}");
    let second = c.result(
        "govern",
        json!({"agent_id": "bot", "tool": "shell", "operation": "exec", "args": {"cmd": "uptime"}}),
    );
    for d in [&first, &second] {
        c.result("approval.approve", json!({"approval_id": d["approval_id"]}));
    }
    kill_cli(&daemon, &["--agent", "bot"]);
    let mut resumed = call.clone();
    resumed["approval_id"] = first["approval_id"].clone();
    let r = c.result("govern", resumed);
    assert_eq!(effect(&r), ("DENY", "KILL_SWITCH"), "{r}");
    let started = c.call("action.start", json!({"action_id": second["action_id"]}));
    assert!(started["error"]["message"].as_str().unwrap_or("").contains("kill switch"), "{started}");
    // Lifted, the approved call may start.
    kill_cli(&daemon, &["--lift", "--agent", "bot"]);
    let started = c.result("action.start", json!({"action_id": second["action_id"]}));
    assert_eq!(started["status"], "executing", "{started}");
}
