//! The detectors against the committed corpus (policy/tests/detect_corpus, written by

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]
//! tests/detect/make_corpus.py): how many of the fake secrets and personal data are found, and
//! how many of the near misses are reported. The figures are printed (`--nocapture`) and quoted
//! in docs/policy.md.

use faramesh_policy::detect::{DetectSet, scan};
use faramesh_policy::{compile, decide, explain};
use faramesh_proto::{Call, Effect, Finding, ReasonCode, RiskLevel};
use serde_json::json;

fn corpus(name: &str) -> Vec<String> {
    let path = format!("{}/tests/detect_corpus/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).map(|l| l.replace("\\n", "\n")).collect()
}

#[test]
fn corpus_detection_and_false_positive_rates() {
    let positives = corpus("secrets.txt");
    let mut missed = Vec::new();
    for line in &positives {
        let (detector, text) = line.split_once('\t').unwrap_or_else(|| panic!("no tab in {line:?}"));
        let found = scan(&json!({ "value": text }), DetectSet::all());
        if !found.iter().any(|f| f.detector == detector) {
            missed.push(format!("{detector}: {text:?} (found {found:?})"));
        }
    }
    let near = corpus("near_misses.txt");
    let mut reported = Vec::new();
    for text in &near {
        let found = scan(&json!({ "value": text }), DetectSet::all());
        if !found.is_empty() {
            reported.push(format!("{text:?}: {found:?}"));
        }
    }
    let detection = 1.0 - missed.len() as f64 / positives.len() as f64;
    let false_positives = reported.len() as f64 / near.len() as f64;
    println!(
        "detected {}/{} ({:.1}%), false positives {}/{} ({:.1}%)",
        positives.len() - missed.len(),
        positives.len(),
        detection * 100.0,
        reported.len(),
        near.len(),
        false_positives * 100.0
    );
    for m in &missed {
        println!("missed {m}");
    }
    for r in &reported {
        println!("reported {r}");
    }
    // Every value in the positive corpus has a documented format, so each should be found; the
    // near misses hold random order ids, of which a card-network prefix with a valid Luhn digit
    // (about 1 in 40) is indistinguishable from a card number.
    assert!(detection >= 0.99, "detection rate {detection:.3} below 0.99: {missed:#?}");
    assert!(false_positives <= 0.02, "false-positive rate {false_positives:.3} above 0.02: {reported:#?}");
}

const POLICY: &str = r#"rules:
  - id: no-secrets-out
    match: { tool: http, detect: secrets }
    deny: true
  - id: pii-needs-a-person
    match: { tool: http, detect: [pii] }
    require_approval: true
  - id: cards-only
    match: { tool: notes, detect: card_number }
    deny: true
  - match: { tool: "*" }
    allow: true
risk:
  rules:
    - name: personal-data
      when: { detect: [email, phone] }
      risk_level: medium
"#;

fn call(tool: &str, params: serde_json::Value) -> Call {
    let mut c = Call::new("bot", tool, "post");
    c.params = params;
    c
}

#[test]
fn a_detect_rule_decides_and_the_decision_names_what_was_found_and_where() {
    let policy = compile("p.yaml", POLICY).unwrap();
    let d =
        decide(&policy, &call("http", json!({"headers": {"x": "ghp_R8aZc1LmQ2pW7xYb4NvK9sT3uE6hJ0dF5gHi"}})));
    assert_eq!(
        (d.effect, d.reason_code, d.rule_id.as_deref()),
        (Effect::Deny, ReasonCode::PolicyDeny, Some("no-secrets-out"))
    );
    assert_eq!(d.findings, vec![Finding { detector: "github_token".into(), path: "$.headers.x".into() }]);
    let text = serde_json::to_string(&d).unwrap();
    assert!(!text.contains("ghp_R8aZ"), "the value is never in the decision: {text}");

    let d = decide(&policy, &call("http", json!({"body": "reach me at anna.k@gmail.com"})));
    assert_eq!(
        (d.effect, d.rule_id.as_deref(), d.risk_level),
        (Effect::Defer, Some("pii-needs-a-person"), RiskLevel::Medium)
    );
    assert_eq!(d.findings, vec![Finding { detector: "email".into(), path: "$.body".into() }]);

    // Nothing found: no findings, and the JSON has no `findings` key.
    let d = decide(&policy, &call("http", json!({"body": "hello"})));
    assert_eq!((d.effect, d.findings.len()), (Effect::Permit, 0));
    assert!(!serde_json::to_string(&d).unwrap().contains("findings"));

    // A rule naming one detector ignores the others; findings still list what the policy's
    // detectors found.
    let d = decide(&policy, &call("notes", json!({"text": "anna.k@gmail.com"})));
    assert_eq!(d.effect, Effect::Permit);
    assert_eq!(d.findings.len(), 1);
    let d = decide(&policy, &call("notes", json!({"text": "card 5188 4396 5861 8791"})));
    assert_eq!((d.effect, d.rule_id.as_deref()), (Effect::Deny, Some("cards-only")));
}

#[test]
fn explain_says_why_a_detect_rule_did_not_match() {
    let policy = compile("p.yaml", POLICY).unwrap();
    let e = explain(&policy, &call("http", json!({"body": "hello"})));
    let failed = e.steps.first().and_then(|s| s.failed.clone()).unwrap();
    assert_eq!(failed, "detect: nothing of secrets found in params");
}

#[test]
fn an_unknown_detector_is_a_load_error_naming_the_line() {
    let text = "rules:\n  - match: { tool: http, detect: [secrets, credit_card] }\n    deny: true\n";
    let err = compile("p.yaml", text).unwrap_err().to_string();
    assert!(err.starts_with("p.yaml:2:"), "{err}");
    assert!(err.contains("unknown detector `credit_card` in `detect`"), "{err}");
    let err =
        compile("p.yaml", "rules:\n  - match: { detect: secret }\n    deny: true\n").unwrap_err().to_string();
    assert!(err.contains("did you mean `secrets`?"), "{err}");
    let err =
        compile("p.yaml", "rules:\n  - match: { detect: [] }\n    deny: true\n").unwrap_err().to_string();
    assert!(err.starts_with("p.yaml:2:") && err.contains("`detect` is empty"), "{err}");
}

#[test]
fn detect_names_are_part_of_the_policy_hash() {
    let a = compile("p.yaml", "rules:\n  - match: { detect: secrets }\n    deny: true\n").unwrap();
    let b = compile("p.yaml", "rules:\n  - match: { detect: [secrets] }\n    deny: true\n").unwrap();
    let c = compile("p.yaml", "rules:\n  - match: { detect: pii }\n    deny: true\n").unwrap();
    assert_eq!(a.hash, b.hash);
    assert_ne!(a.hash, c.hash);
}
