//! Rules in shadow mode (`mode: shadow`): tried on every call, recorded when they would have
//! decided otherwise, never deciding.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use faramesh_policy::{compile, decide, decide_linear, explain, shadowed_rules};
use faramesh_proto::{Call, Effect, ReasonCode};
use serde_json::json;

const POLICY: &str = "version: 1
rules:
  - id: no-big-refunds
    mode: shadow
    match: { tool: payments, op: refund, amount_gt: 100 }
    deny: true
  - id: refunds-ok
    match: { tool: payments, op: refund }
    allow: true
  - id: also-allow-refunds
    mode: shadow
    match: { tool: payments }
    allow: true
  - id: http-approval
    match: { tool: http }
    require_approval: true
";

fn refund(amount: u64) -> Call {
    let mut c = Call::new("bot", "payments", "refund");
    c.params = json!({"amount": amount});
    c
}

#[test]
fn a_shadow_rule_never_decides_and_says_what_it_would_have_done() {
    let p = compile("p.yaml", POLICY).unwrap();
    let big = decide(&p, &refund(500));
    assert_eq!((big.effect, big.reason_code), (Effect::Permit, ReasonCode::PolicyPermit));
    assert_eq!(big.rule_id.as_deref(), Some("refunds-ok"));
    let hit = big.shadow.clone().expect("the shadow rule would have denied it");
    assert_eq!(
        (hit.rule_id.as_str(), hit.effect, hit.rule_ref.as_str()),
        ("no-big-refunds", Effect::Deny, "p.yaml:3")
    );
    // Not in the answer an agent gets.
    assert!(serde_json::to_value(&big).unwrap().get("shadow").is_none());
    // Below the threshold the shadow rule does not match: nothing to record.
    assert_eq!(decide(&p, &refund(50)).shadow, None);
    // The index and the linear scan agree.
    assert_eq!(decide_linear(&p, &refund(500)).shadow, big.shadow);
}

#[test]
fn a_shadow_rule_that_agrees_or_comes_too_late_records_nothing() {
    let p = compile("p.yaml", POLICY).unwrap();
    // `also-allow-refunds` comes after the deciding rule: it would never have decided.
    assert_eq!(decide(&p, &refund(50)).shadow, None);
    // A shadow rule with the effect the call got changes nothing.
    let agrees = "version: 1\nrules:\n  - id: s\n    mode: shadow\n    match: { tool: http }\n    require_approval: true\n  - id: h\n    match: { tool: http }\n    require_approval: true\n";
    let p = compile("p.yaml", agrees).unwrap();
    let d = decide(&p, &Call::new("bot", "http", "get"));
    assert_eq!((d.effect, d.shadow), (Effect::Defer, None));
    // Where no rule decides, the shadow rule would have: a DEFAULT_DENY turned into PERMIT.
    let only_shadow =
        "version: 1\nrules:\n  - id: s\n    mode: shadow\n    match: { tool: http }\n    allow: true\n";
    let p = compile("p.yaml", only_shadow).unwrap();
    let d = decide(&p, &Call::new("bot", "http", "get"));
    assert_eq!(d.reason_code, ReasonCode::DefaultDenyNoMatch);
    assert_eq!(d.shadow.map(|s| s.effect), Some(Effect::Permit));
}

#[test]
fn explain_says_a_rule_is_in_shadow_mode() {
    let p = compile("p.yaml", POLICY).unwrap();
    let e = explain(&p, &refund(500));
    let step = e.steps.iter().find(|s| s.rule_id == "no-big-refunds").unwrap();
    assert!(!step.matched);
    assert!(step.failed.as_deref().unwrap().contains("shadow mode"), "{step:?}");
}

#[test]
fn mode_is_checked_and_a_shadow_rule_shadows_nothing() {
    let e = compile("p.yaml", "version: 1\nrules:\n  - match: { tool: x }\n    mode: dry\n    allow: true\n")
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("p.yaml:4") && text.contains("unknown `mode` `dry`"), "{text}");
    let p = compile("p.yaml", "version: 1\nrules:\n  - id: a\n    mode: shadow\n    match: { tool: x }\n    deny: true\n  - id: b\n    match: { tool: x }\n    allow: true\n").unwrap();
    assert!(shadowed_rules(&p).is_empty(), "rule `b` still decides: {:?}", shadowed_rules(&p));
    // `mode: enforce` is the default, and the hash says so.
    let plain = compile("p.yaml", "version: 1\nrules:\n  - match: { tool: x }\n    allow: true\n").unwrap();
    let enforce =
        compile("p.yaml", "version: 1\nrules:\n  - match: { tool: x }\n    mode: enforce\n    allow: true\n")
            .unwrap();
    assert_eq!(plain.hash, enforce.hash);
}

mod sequences {
    use faramesh_policy::{Earlier, History, compile, decide, decide_request_with};
    use faramesh_proto::{Call, CallRequest, Effect};
    use serde_json::json;

    const POLICY: &str = "version: 1
rules:
  - id: no-upload-after-secret
    match: { tool: http, op: post, after: { tool: secrets, op: read, within: 10m } }
    deny: true
  - match: { tool: \"*\" }
    allow: true
";

    fn req() -> CallRequest {
        CallRequest::from_value(&json!({"agent_id": "bot", "tool": "http", "operation": "post"})).unwrap()
    }

    fn earlier(tool: &str, at_ms: u64) -> Earlier {
        Earlier { tool: tool.into(), operation: "read".into(), at_ms }
    }

    #[test]
    fn after_reads_what_the_session_did_and_how_long_ago() {
        let p = compile("p.yaml", POLICY).unwrap();
        assert_eq!(p.longest_after_ms, 600_000);
        let now = 10_000_000;
        let with =
            |e: &[Earlier]| decide_request_with(&p, &req(), History { now_ms: now, earlier: e }).effect;
        assert_eq!(with(&[]), Effect::Permit);
        assert_eq!(with(&[earlier("secrets", now - 60_000)]), Effect::Deny);
        assert_eq!(with(&[earlier("secrets", now - 600_001)]), Effect::Permit, "too long ago");
        assert_eq!(with(&[earlier("files", now - 1)]), Effect::Permit, "another tool");
        assert_eq!(with(&[earlier("secrets", now + 5)]), Effect::Permit, "not before this call");
        // Without the daemon's history the condition does not hold.
        assert_eq!(decide(&p, &Call::new("bot", "http", "post")).effect, Effect::Permit);
    }

    #[test]
    fn after_is_checked_when_loaded() {
        for (text, says) in [
            ("after: { op: read, within: 10m }", "`after` needs `tool`"),
            ("after: { tool: s }", "`after` needs `within`"),
            ("after: { tool: s, within: 2d }", "over 24h"),
            ("after: { tool: s, within: soon }", "not a duration"),
            ("after: { tool: s, within: 1m, who: me }", "unknown after key `who`"),
        ] {
            let policy = format!("version: 1\nrules:\n  - match: {{ tool: http, {text} }}\n    deny: true\n");
            let e = compile("p.yaml", &policy).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
