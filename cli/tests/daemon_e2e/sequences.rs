//! `after:` conditions: what a session did before decides this call, and the daemon reads it
//! back from its log after a restart.

use super::*;

const SEQUENCE: &str = "version: 1
rules:
  - id: no-upload-after-secret
    match: { tool: http, op: post, after: { tool: secrets, op: read, within: 10m } }
    require_approval: true
  - id: secrets-ok
    match: { tool: secrets }
    allow: true
  - id: http-ok
    match: { tool: http }
    allow: true
";

fn call(tool: &str, op: &str, session: &str) -> Value {
    json!({"agent_id": "bot", "tool": tool, "operation": op, "args": {}, "session_id": session})
}

#[test]
fn an_upload_after_a_secret_read_waits_for_a_person_even_after_a_restart() {
    let mut daemon = Daemon::start(SEQUENCE);
    let mut c = daemon.client();
    assert_eq!(c.result("govern", call("http", "post", "s1"))["effect"], "PERMIT", "nothing read yet");
    assert_eq!(c.result("govern", call("secrets", "read", "s1"))["effect"], "PERMIT");
    let after = c.result("govern", call("http", "post", "s1"));
    assert_eq!(
        (&after["effect"], &after["rule_id"]),
        (&json!("DEFER"), &json!("no-upload-after-secret")),
        "{after}"
    );
    assert_eq!(c.result("govern", call("http", "post", "s2"))["effect"], "PERMIT", "another session");
    // A denied or deferred call is not something that happened.
    daemon.stop();
    daemon.spawn();
    let mut c = daemon.client();
    let again = c.result("govern", call("http", "post", "s1"));
    assert_eq!(again["effect"], "DEFER", "read back from the log: {again}");
    assert_eq!(c.result("govern", call("http", "post", "s3"))["effect"], "PERMIT");
    let status = c.result("status", json!({}));
    assert_eq!(status["sequences"]["window_seconds"], 600, "{status}");
    // Offline tools have no history: `explain` says why the rule does not match there.
    let out = Command::new(bin())
        .args(["policy", "explain"])
        .arg(&daemon.policy)
        .arg("--call")
        .arg(json!({"agent_id": "bot", "tool": "http", "operation": "post"}).to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("known only to the daemon"), "{text}");
}
