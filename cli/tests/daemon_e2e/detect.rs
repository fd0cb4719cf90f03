//! `detect:` in the policy: a call carrying a secret is refused, one carrying personal data
//! waits for a person; the answer and the record name the detector and the path, and the value
//! itself is stored only as a keyed token (equal values, equal tokens), wherever the log is read.

use super::*;

const POLICY: &str = "version: 1
rules:
  - id: no-secrets-out
    match: { tool: http, detect: secrets }
    deny: true
  - id: pii-needs-a-person
    match: { tool: http, detect: pii }
    require_approval: true
  - id: http
    match: { tool: http }
    allow: true
";

/// A fake AWS access key id (random, in the documented format).
const KEY: &str = "AKIAERIYWA6BOLRMSEM6";
const EMAIL: &str = "anna.k@gmail.com";

fn http(params: Value) -> Value {
    json!({"agent_id": "bot", "tool": "http", "operation": "post", "params": params})
}

#[test]
fn detected_values_decide_the_call_and_are_stored_only_as_tokens() {
    let daemon = Daemon::start(POLICY);
    let mut c = daemon.client();

    let first = c.result("govern", http(json!({"url": "https://api.internal", "headers": {"x-key": KEY}})));
    assert_eq!(
        (first["effect"].as_str(), first["rule_id"].as_str()),
        (Some("DENY"), Some("no-secrets-out")),
        "{first}"
    );
    assert_eq!(first["findings"], json!([{"detector": "aws_access_key", "path": "$.headers[\"x-key\"]"}]));
    let second = c.result("govern", http(json!({"body": format!("upload with {KEY} please")})));
    assert_eq!(second["effect"], "DENY", "{second}");
    assert_eq!(second["findings"], json!([{"detector": "aws_access_key", "path": "$.body"}]));

    let pii = c.result("govern", http(json!({"to": EMAIL, "body": "hello"})));
    assert_eq!(
        (pii["effect"].as_str(), pii["rule_id"].as_str()),
        (Some("DEFER"), Some("pii-needs-a-person")),
        "{pii}"
    );
    assert_eq!(pii["findings"], json!([{"detector": "email", "path": "$.to"}]));
    assert!(pii["approval_id"].is_string(), "{pii}");

    let clean = c.result("govern", http(json!({"body": "hello"})));
    assert_eq!(clean["effect"], "PERMIT", "{clean}");
    assert!(clean.get("findings").is_none(), "no findings, no key: {clean}");

    // The records: findings, the request hash of the call as sent, the values as tokens.
    let entries = c.result("log.entries", json!({"limit": 100}));
    let text = entries.to_string();
    assert!(!text.contains(KEY) && !text.contains(EMAIL), "a detected value was stored: {text}");
    let decisions: Vec<&Value> =
        entries["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "decision").collect();
    let record = |answer: &Value| -> Value {
        (*decisions.iter().find(|e| e["id"] == answer["action_id"]).expect("the answer's record")).clone()
    };
    let (r1, r2, r3) = (record(&first), record(&second), record(&pii));
    assert_eq!(r1["request_hash"], first["request_hash"], "hashed before redaction");
    assert_eq!(r1["findings"], first["findings"]);
    assert_eq!(r3["findings"], pii["findings"]);
    assert!(record(&clean).get("findings").is_none());
    let token = r1["params"]["headers"]["x-key"].as_str().unwrap().to_owned();
    let hex = token.strip_prefix("[REDACTED:aws_access_key:").and_then(|t| t.strip_suffix(']')).unwrap_or("");
    assert!(hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    assert_eq!(r2["params"]["body"], format!("upload with {token} please"), "the same key, the same token");
    assert_eq!(r1["params"]["url"], "https://api.internal", "the rest is kept");
    let email_token = r3["params"]["to"].as_str().unwrap();
    assert!(email_token.starts_with("[REDACTED:email:"), "{email_token}");

    // The CLI reads the stored records: the same tokens, never the values.
    let run = |args: &[&str]| {
        let out = Command::new(bin())
            .args(args)
            .arg("--socket")
            .arg(&daemon.socket)
            .env("HOME", &daemon.dir)
            .output()
            .unwrap();
        let text = out_text(&out);
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    let action = first["action_id"].as_str().unwrap();
    for out in [
        run(&["--json", "list"]),
        run(&["get", action]),
        run(&["export", "--state-dir", daemon.state.to_str().unwrap()]),
    ] {
        assert!(!out.contains(KEY) && !out.contains(EMAIL), "{out}");
        assert!(out.contains(&token), "{out}");
    }
}

/// Regression: a secret used as an object key came back in the finding's path, and the same
/// value sent in the context (which is not scanned) was stored there as it was.
#[test]
fn a_finding_never_names_a_secret_in_its_path_and_the_context_keeps_no_copy() {
    let daemon = Daemon::start(POLICY);
    let mut c = daemon.client();
    let mut call = http(json!({KEY: KEY}));
    call["context"] = json!({"note": KEY});
    let r = c.result("govern", call);
    assert_eq!(r["effect"], "DENY", "{r}");
    assert_eq!(r["findings"], json!([{"detector": "aws_access_key", "path": "$[*]"}]), "{r}");
    let entries = c.result("log.entries", json!({"from_seq": 1, "limit": 100}));
    let decision =
        entries["entries"].as_array().unwrap().iter().find(|e| e["kind"] == "decision").unwrap().clone();
    let context = decision["context"].to_string();
    assert!(!context.contains(KEY) && context.contains("[REDACTED:aws_access_key:"), "{decision}");
}
