//! Rules in shadow mode on live traffic: the daemon decides as if they were not there, records
//! what each would have changed, and `faramesh policy shadow` counts it; the counts agree with a
//! replay of the same calls under the policy with the rule enforced.

use super::*;

const SHADOW: &str = "version: 1
rules:
  - id: no-big-refunds
    mode: shadow
    match: { tool: payments, op: refund, amount_gt: 100 }
    deny: true
  - id: refunds-ok
    match: { tool: payments, op: refund }
    allow: true
";

#[test]
fn shadow_counts_agree_with_a_replay_under_the_enforced_rule() {
    let daemon = Daemon::start(SHADOW);
    let mut c = daemon.client();
    let amounts = [20, 150, 99, 101, 5000, 100, 250];
    let calls: Vec<Value> = amounts
        .iter()
        .enumerate()
        .map(|(i, a)| json!({"agent_id": format!("bot-{}", i % 2), "tool": "payments", "operation": "refund", "args": {"amount": a}}))
        .collect();
    for call in &calls {
        let r = c.result("govern", call.clone());
        assert_eq!(r["effect"], "PERMIT", "the shadow rule decides nothing: {r}");
        assert!(r.get("shadow").is_none(), "agents are not told: {r}");
    }
    // The records say which calls the shadow rule would have denied.
    let entries = c.result("log.entries", json!({"from_seq": 1, "limit": 100}));
    let marked = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["shadow"]["rule_id"] == "no-big-refunds")
        .count();

    // The replay: the same calls under the policy with the rule enforced, decided offline.
    let enforced = daemon.dir.join("enforced.yaml");
    std::fs::write(&enforced, SHADOW.replace("    mode: shadow\n", "")).unwrap();
    let mut would_change = 0;
    for call in &calls {
        let mut offline = call.clone();
        offline["params"] = offline["args"].take();
        let out = Command::new(bin())
            .args(["--json", "policy", "explain"])
            .arg(&enforced)
            .arg("--call")
            .arg(offline.to_string())
            .output()
            .unwrap();
        let e: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        if e["decision"]["effect"] != "PERMIT" {
            would_change += 1;
        }
    }
    assert_eq!(would_change, 4, "150, 101, 5000 and 250 are over 100");
    assert_eq!(marked, would_change);

    let out = Command::new(bin())
        .args(["--json", "policy", "shadow", "--socket"])
        .arg(&daemon.socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rule = &report["rules"][0];
    assert_eq!((&rule["rule_id"], &rule["would"]), (&json!("no-big-refunds"), &json!("DENY")), "{report}");
    assert_eq!(rule["calls"], would_change, "{report}");
    assert_eq!(rule["instead_of"]["PERMIT"], would_change, "{report}");
    assert_eq!(report["decisions"], calls.len(), "{report}");
    // In words, for a person.
    let out =
        Command::new(bin()).args(["policy", "shadow", "--socket"]).arg(&daemon.socket).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("no-big-refunds") && text.contains("would have denied 4 calls, instead of 4 PERMIT"),
        "{text}"
    );
}
