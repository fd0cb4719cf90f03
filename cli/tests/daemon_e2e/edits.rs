//! Approval with edits: `faramesh approve ID --set amount=50` approves the call with changed
//! arguments; the edited call is decided again by the policy (a DENY refuses the approval), the
//! agent may resume only with the edited arguments, and the log keeps the proposed, edited and
//! executed arguments with who edited.

use super::*;

const POLICY: &str = "version: 1
approvals:
  allow_same_uid: true
rules:
  - id: big-refunds-denied
    match: { tool: payments, op: refund, amount_gt: 1000 }
    deny: true
  - id: refunds-need-approval
    match: { tool: payments, op: refund }
    require_approval: true
";

fn refund(amount: u64) -> Value {
    json!({"agent_id": "billing", "tool": "payments", "operation": "refund",
           "args": {"amount": amount, "customer": "c-17", "note": "late delivery"}})
}

fn approve(daemon: &Daemon, args: &[&str]) -> std::process::Output {
    Command::new(bin()).arg("approve").args(args).arg("--socket").arg(&daemon.socket).output().unwrap()
}

fn effect(r: &Value) -> (&str, &str) {
    (r["effect"].as_str().unwrap(), r["reason_code"].as_str().unwrap())
}

#[test]
fn an_approval_with_edits_lets_only_the_edited_call_run_and_the_log_keeps_all_three() {
    let mut daemon = Daemon::start(POLICY);
    let mut agent = daemon.client();
    let d = agent.result("govern", refund(500));
    assert_eq!(effect(&d), ("DEFER", "POLICY_DEFER"), "{d}");
    let approval_id = d["approval_id"].as_str().unwrap().to_owned();

    let out = approve(&daemon, &[&approval_id[..10], "--set", "amount=50", "--reason", "50 is enough"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(" approved (payments/refund by agent billing)"), "{text}");
    assert!(
        text.contains(r#"edited arguments: {"amount":50,"customer":"c-17","note":"late delivery"}"#),
        "{text}"
    );

    // The agent sees the edit where it waits.
    let w = agent.result("approval.wait", json!({"approval_id": approval_id, "timeout_seconds": 1}));
    assert_eq!(w["status"], "approved");
    assert_eq!(w["edit"]["params"]["amount"], 50, "{w}");
    assert_eq!(w["edit"]["effect"], "DEFER");
    // The v1 action shows it too (what the SDKs read over HTTP).
    let v1 = agent.result("action.get", json!({"id": d["action_id"], "format": "v1"}));
    assert_eq!(v1["edit"]["params"]["amount"], 50, "{v1}");

    // The original arguments no longer run.
    let mut original = refund(500);
    original["approval_id"] = json!(approval_id);
    let r = agent.result("govern", original);
    assert_eq!(effect(&r), ("DENY", "APPROVAL_DENIED"), "{r}");
    assert!(r["reason"].as_str().unwrap().contains("edited arguments"), "{r}");
    // The edited call does, once, with the approval as its provenance.
    let mut edited = refund(50);
    edited["approval_id"] = json!(approval_id);
    let r = agent.result("govern", edited.clone());
    assert_eq!(effect(&r), ("PERMIT", "APPROVAL_GRANTED"), "{r}");
    assert_eq!(r["provenance"]["kind"], "approval", "{r}");
    let executed = r["action_id"].as_str().unwrap().to_owned();
    let again = agent.result("govern", edited);
    assert_eq!(effect(&again), ("DENY", "APPROVAL_DENIED"), "{again}");

    assert_eq!(daemon.stop().code(), Some(0));
    let export = Command::new(bin()).arg("export").arg("--state-dir").arg(&daemon.state).output().unwrap();
    let entries: Vec<Value> =
        String::from_utf8_lossy(&export.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let proposed = entries.iter().find(|e| e["id"] == d["action_id"]).unwrap();
    assert_eq!(proposed["params"]["amount"], 500);
    let edit = entries
        .iter()
        .find(|e| {
            e["kind"] == "approval" && e["approval_id"] == approval_id.as_str() && e["status"] == "approved"
        })
        .unwrap();
    assert_eq!(edit["edit"]["params"]["amount"], 50, "{edit}");
    assert!(edit["edit"]["by"]["uid"].is_u64(), "who edited: {edit}");
    assert_eq!(edit["reason"], "50 is enough");
    let ran = entries.iter().find(|e| e["id"] == executed.as_str()).unwrap();
    assert_eq!(ran["params"]["amount"], 50);
    assert_eq!(ran["approval_id"], approval_id.as_str());
    let v = Command::new(bin()).arg("verify-log").arg("--state-dir").arg(&daemon.state).output().unwrap();
    assert_eq!(v.status.code(), Some(0));
}

#[test]
fn an_edited_call_the_policy_denies_is_not_approved() {
    let daemon = Daemon::start(POLICY);
    let mut agent = daemon.client();
    let d = agent.result("govern", refund(500));
    let approval_id = d["approval_id"].as_str().unwrap().to_owned();

    let out = approve(&daemon, &[&approval_id, "--set", "amount=5000"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(" denied (payments/refund"), "{text}");
    assert!(
        text.contains("not approved: the edited call is denied by the policy (rule `big-refunds-denied`)"),
        "{text}"
    );

    let w = agent.result("approval.wait", json!({"approval_id": approval_id, "timeout_seconds": 1}));
    assert_eq!((w["status"].as_str(), w["edit"]["effect"].as_str()), (Some("denied"), Some("DENY")), "{w}");
    for (amount, code) in [(500, "APPROVAL_DENIED"), (5000, "POLICY_DENY")] {
        let mut resumed = refund(amount);
        resumed["approval_id"] = json!(approval_id);
        let r = agent.result("govern", resumed);
        assert_eq!(effect(&r), ("DENY", code), "{r}");
    }
}

#[test]
fn edits_are_refused_where_they_cannot_be_read() {
    let daemon = Daemon::start(POLICY);
    let mut agent = daemon.client();
    let d = agent.result("govern", refund(500));
    let id = d["approval_id"].as_str().unwrap().to_owned();
    let mut person = daemon.client();
    for (params, field) in [
        (json!({"approval_id": id, "set": {"amount.x": 1}}), "set"),
        (json!({"approval_id": id, "params": [1]}), "params"),
        (json!({"approval_id": id, "set": {"amount": 1}, "grant_minutes": 5}), "grant_minutes"),
    ] {
        let r = person.call("approval.approve", params.clone());
        assert_eq!(r["error"]["code"], -32602, "{params} -> {r}");
        assert_eq!(r["error"]["data"]["field"], field, "{params} -> {r}");
    }
    let r = person.call("approval.deny", json!({"approval_id": id, "set": {"amount": 1}}));
    assert_eq!(r["error"]["data"]["field"], "set", "{r}");
    // Still pending after every refusal.
    let w = agent.result("approval.wait", json!({"approval_id": id, "timeout_seconds": 0}));
    assert_eq!(w["status"], "pending");

    // A value the log keeps redacted cannot be rebuilt with `set`.
    let secret = json!({"agent_id": "billing", "tool": "payments", "operation": "refund",
                        "args": {"amount": 5, "api_key": "hunter2hunter2"}});
    let d = agent.result("govern", secret);
    let id = d["approval_id"].as_str().unwrap().to_owned();
    let r = person.call("approval.approve", json!({"approval_id": id, "set": {"amount": 4}}));
    assert_eq!(r["error"]["data"]["field"], "set", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("params.api_key"), "{r}");
}

/// A hook cannot substitute arguments: the retry of a call approved with edits is refused, and
/// the refusal names the edited call.
#[test]
fn a_hook_gets_the_edit_as_a_refusal_with_the_suggested_call() {
    let daemon = Daemon::start(super::hooks::HOOK_POLICY);
    let runtime = daemon.dir.join("xdg");
    std::fs::create_dir(&runtime).unwrap();
    let decision = || {
        let out = super::hooks::run_hook("gemini-cli", &runtime, &daemon.socket, "before-shell-ls.json");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (v["decision"].as_str().unwrap().to_owned(), v["reason"].as_str().unwrap().to_owned())
    };
    let (d, why) = decision();
    assert_eq!(d, "deny", "{why}");
    let approval =
        why.split("faramesh approve ").nth(1).and_then(|r| r.split('`').next()).unwrap().to_owned();
    let mut c = daemon.client();
    let pending = c.result("approval.list", json!({}));
    let action = pending["approvals"][0]["action_id"].as_str().unwrap().to_owned();
    let record = c.result("action.get", json!({"id": action}));
    let mut params = record["params"].clone();
    params["command"] = json!("pwd");
    let out = approve(&daemon, &[&approval, "--params", &params.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let (d, why) = decision();
    assert_eq!(d, "deny", "the host would run `ls -la`: {why}");
    assert!(why.contains("edited arguments"), "{why}");
    assert!(
        why.contains("make it again with these arguments instead:") && why.contains(r#""command":"pwd""#),
        "{why}"
    );
}

/// Regressions from an outside attack on approvals with edits.
#[test]
fn an_approval_with_edits_cannot_be_started_as_proposed_or_read_in_clear_by_others() {
    let daemon = Daemon::start(POLICY);
    let mut agent = daemon.client();
    let mut call = refund(500);
    call["args"]["api_key"] = json!("sk_live_0123456789abcdefABCDEF01");
    let d = agent.result("govern", call.clone());
    let id = d["approval_id"].as_str().unwrap().to_owned();
    let params = json!({"amount": 50, "customer": "c-17", "note": "late delivery", "api_key": "sk_live_0123456789abcdefABCDEF01"});
    let out = approve(&daemon, &[&id, "--params", &params.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("sk_live_"), "the approver is shown it redacted");

    // The v1 flow's start would run the proposed arguments: refused.
    let started = agent.call("action.start", json!({"id": d["action_id"]}));
    assert_eq!(started["error"]["code"], -32003, "{started}");
    assert!(started["error"]["message"].as_str().unwrap().contains("edit.params"), "{started}");

    // The caller that made the call reads the edit in full (it runs it); a reader of everything
    // (the approvers' listing) reads it redacted.
    let w = agent.result("approval.wait", json!({"approval_id": id, "timeout_seconds": 0}));
    assert_eq!(w["edit"]["params"]["api_key"], "sk_live_0123456789abcdefABCDEF01");
    let listed =
        Command::new(bin()).args(["pending", "--json", "--socket"]).arg(&daemon.socket).output().unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("sk_live_"));

    let mut edited = refund(50);
    edited["args"] = params;
    edited["approval_id"] = json!(id);
    assert_eq!(effect(&agent.result("govern", edited)), ("PERMIT", "APPROVAL_GRANTED"));
    // Used, the approval keeps the edit only as the log does.
    let w = agent.result("approval.wait", json!({"approval_id": id, "timeout_seconds": 0}));
    assert_eq!(w["status"], "used");
    assert_eq!(w["edit"]["params"]["api_key"], "[REDACTED]", "{w}");
}

#[test]
fn deep_paths_and_mistyped_numbers_are_refused() {
    let daemon = Daemon::start(POLICY);
    let mut agent = daemon.client();
    let d = agent.result("govern", refund(500));
    let id = d["approval_id"].as_str().unwrap().to_owned();
    let mut person = daemon.client();
    let deep = vec!["a"; 17].join(".");
    let r = person.call("approval.approve", json!({"approval_id": id, "set": {deep: 1}}));
    assert_eq!(r["error"]["data"]["field"], "set", "{r}");
    let mut nested = json!(1);
    for _ in 0..101 {
        nested = json!({"a": nested});
    }
    let r = person.call("approval.approve", json!({"approval_id": id, "set": {"x": nested}}));
    assert_eq!(r["error"]["data"]["field"], "set", "{r}");
    for typo in ["amount=5000.", "amount=0x1F4", "amount="] {
        let out = approve(&daemon, &[&id, "--set", typo]);
        assert_eq!(out.status.code(), Some(1), "{typo}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--set"), "{typo}");
    }
    let w = agent.result("approval.wait", json!({"approval_id": id, "timeout_seconds": 0}));
    assert_eq!(w["status"], "pending", "every refusal left it pending");
    // The daemon still serves, and its log verifies.
    assert_eq!(agent.result("govern", refund(5))["effect"], "DEFER");
}

#[test]
fn an_approval_does_not_override_a_deny_of_the_policy_as_it_stands() {
    let daemon = Daemon::start(POLICY);
    let mut agent = daemon.client();
    let d = agent.result("govern", refund(500));
    let id = d["approval_id"].as_str().unwrap().to_owned();
    let out = approve(&daemon, &[&id]);
    assert_eq!(out.status.code(), Some(0));
    // A rule added since denies refunds to this customer.
    let stricter = POLICY.replace(
        "rules:\n",
        "rules:\n  - id: no-refunds-c17\n    match: { tool: payments, field: customer, value: c-17 }\n    deny: true\n",
    );
    std::fs::write(&daemon.policy, stricter).unwrap();
    agent.result("policy.reload", json!({}));
    let mut resumed = refund(500);
    resumed["approval_id"] = json!(id);
    let r = agent.result("govern", resumed);
    assert_eq!((effect(&r).0, r["rule_id"].as_str()), ("DENY", Some("no-refunds-c17")), "{r}");
}
