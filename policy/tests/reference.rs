//! Property test: the indexed decision table agrees with a deliberately simple reference
//! evaluator (a linear scan written straight from DESIGN §3) on random policies and calls.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use faramesh_policy::{compile, decide, decide_linear};
use faramesh_proto::{Call, Effect, ReasonCode, canonical_json};
use proptest::prelude::*;
use serde_json::{Value, json};

const TOOLS: &[&str] = &["shell", "http", "stripe", "stripe_eu", "db"];
const OPS: &[&str] = &["get", "post", "refund", "exec", "list_all"];
const AGENTS: &[&str] = &["bot-a", "bot-b", "payments-bot"];

#[derive(Debug, Clone)]
struct SpecRule {
    tool: Option<String>,
    op: Option<String>,
    agent_id: Option<String>,
    amount: Option<(&'static str, f64)>,
    method: Option<String>,
    contains: Option<String>,
    effect: Effect,
    risk: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct Spec {
    global: Vec<SpecRule>,
    agent_rules: Vec<SpecRule>, // for agent `payments-bot`
    risk_high_tool: Option<String>,
}

fn name_pat(names: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some("*".to_owned())),
        4 => proptest::sample::select(names).prop_map(|s| Some(s.to_owned())),
        1 => proptest::sample::select(names).prop_map(|s| Some(format!("{}*", &s[..2]))),
    ]
}

fn spec_rule() -> impl Strategy<Value = SpecRule> {
    (
        name_pat(TOOLS),
        name_pat(OPS),
        prop_oneof![3 => Just(None), 1 => proptest::sample::select(AGENTS).prop_map(|s| Some(s.to_owned()))],
        prop_oneof![
            2 => Just(None),
            1 => (proptest::sample::select(&["amount_gt", "amount_lt", "amount_gte", "amount_lte"][..]), proptest::sample::select(&[0i32, 50, 100, 150][..]))
                .prop_map(|(k, v)| Some((k, f64::from(v)))),
        ],
        prop_oneof![3 => Just(None), 1 => proptest::sample::select(&["GET", "post"][..]).prop_map(|s| Some(s.to_owned()))],
        prop_oneof![3 => Just(None), 1 => proptest::sample::select(&["rm", "x\"y", "é"][..]).prop_map(|s| Some(s.to_owned()))],
        proptest::sample::select(&[Effect::Permit, Effect::Deny, Effect::Defer][..]),
        prop_oneof![4 => Just(None), 1 => proptest::sample::select(&["low", "high"][..]).prop_map(Some)],
    )
        .prop_map(|(tool, op, agent_id, amount, method, contains, effect, risk)| {
            let mut r = SpecRule { tool, op, agent_id, amount, method, contains, effect, risk };
            if r.tool.is_none() && r.op.is_none() && r.agent_id.is_none() && r.amount.is_none()
                && r.method.is_none() && r.contains.is_none()
            {
                r.tool = Some("*".to_owned());
            }
            r
        })
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::collection::vec(spec_rule(), 0..25),
        proptest::collection::vec(spec_rule(), 0..5),
        prop_oneof![Just(None), proptest::sample::select(TOOLS).prop_map(|s| Some(s.to_owned()))],
    )
        .prop_map(|(global, agent_rules, risk_high_tool)| Spec { global, agent_rules, risk_high_tool })
}

fn call() -> impl Strategy<Value = Call> {
    (
        proptest::sample::select(AGENTS),
        proptest::sample::select(TOOLS),
        proptest::sample::select(OPS),
        prop_oneof![
            Just(Value::Null),
            (-10i32..210).prop_map(|v| json!(v)),
            proptest::sample::select(&[0i32, 50, 100, 150][..]).prop_map(|v| json!(v)),
            Just(json!(100.5)),
            (0u32..2000).prop_map(|v| json!(f64::from(v) / 10.0)),
            Just(json!("50")),
        ],
        prop_oneof![Just(Value::Null), Just(json!("get")), Just(json!("POST")), Just(json!(1))],
        prop_oneof![Just("ls"), Just("rm -rf"), Just("x\"y"), Just("café")],
        any::<bool>(),
    )
        .prop_map(|(agent, tool, op, amount, method, cmd, amount_in_context)| {
            let mut c = Call::new(agent, tool, op);
            let mut params = serde_json::Map::new();
            params.insert("cmd".into(), json!(cmd));
            let mut context = serde_json::Map::new();
            if !amount.is_null() {
                if amount_in_context {
                    context.insert("amount".into(), amount);
                } else {
                    params.insert("amount".into(), amount);
                }
            }
            if !method.is_null() {
                params.insert("method".into(), method);
            }
            c.params = Value::Object(params);
            c.context = Value::Object(context);
            c
        })
}

fn render_rule(out: &mut String, indent: &str, id: &str, r: &SpecRule) {
    let mut m = serde_json::Map::new();
    if let Some(t) = &r.tool {
        m.insert("tool".into(), json!(t));
    }
    if let Some(o) = &r.op {
        m.insert("op".into(), json!(o));
    }
    if let Some(a) = &r.agent_id {
        m.insert("agent_id".into(), json!(a));
    }
    if let Some((k, v)) = r.amount {
        m.insert(k.into(), json!(v));
    }
    if let Some(me) = &r.method {
        m.insert("method".into(), json!(me));
    }
    if let Some(c) = &r.contains {
        m.insert("contains".into(), json!(c));
    }
    let effect = match r.effect {
        Effect::Permit => "allow",
        Effect::Deny => "deny",
        Effect::Defer => "require_approval",
    };
    out.push_str(&format!(
        "{indent}- id: {id}\n{indent}  match: {}\n{indent}  {effect}: true\n",
        Value::Object(m)
    ));
    if let Some(risk) = r.risk {
        out.push_str(&format!("{indent}  risk: {risk}\n"));
    }
}

fn render(spec: &Spec) -> String {
    let mut out = String::from("version: 1\n");
    if let Some(t) = &spec.risk_high_tool {
        out.push_str(&format!("risk:\n  rules:\n    - name: hot\n      when: {{ tool: {t}, amount_gt: 100 }}\n      risk_level: high\n"));
    }
    out.push_str("agents:\n  payments-bot:\n    rules:\n");
    for (i, r) in spec.agent_rules.iter().enumerate() {
        render_rule(&mut out, "      ", &format!("a{i}"), r);
    }
    out.push_str("rules:\n");
    for (i, r) in spec.global.iter().enumerate() {
        render_rule(&mut out, "  ", &format!("g{i}"), r);
    }
    out
}

// ---- the reference: a linear scan, written from the spec without the engine's code ----

fn glob(pat: &str, name: &str) -> bool {
    if pat == "*" {
        return true;
    }
    match pat.split_once('*') {
        None => pat == name,
        Some((prefix, rest)) => {
            name.starts_with(prefix)
                && (0..=name.len() - prefix.len()).any(|skip| {
                    let tail = &name[prefix.len() + skip..];
                    glob(rest, tail) || (rest.is_empty())
                })
        }
    }
}

fn value_of<'a>(c: &'a Call, key: &str) -> Option<&'a Value> {
    c.params.get(key).or_else(|| c.context.get(key))
}

fn ref_matches(r: &SpecRule, c: &Call) -> bool {
    if r.tool.as_ref().is_some_and(|t| !glob(t, &c.tool)) {
        return false;
    }
    if r.op.as_ref().is_some_and(|o| !glob(o, &c.operation)) {
        return false;
    }
    if r.agent_id.as_ref().is_some_and(|a| a != &c.agent_id) {
        return false;
    }
    if let Some((k, bound)) = r.amount {
        let Some(n) = value_of(c, "amount").filter(|v| v.is_number()).and_then(Value::as_f64) else {
            return false;
        };
        let ok = match k {
            "amount_gt" => n > bound,
            "amount_lt" => n < bound,
            "amount_gte" => n >= bound,
            _ => n <= bound,
        };
        if !ok {
            return false;
        }
    }
    if let Some(m) = &r.method {
        match value_of(c, "method") {
            Some(Value::String(s)) if s.to_lowercase() == m.to_lowercase() => {}
            _ => return false,
        }
    }
    if let Some(needle) = &r.contains
        && !canonical_json(&c.params).unwrap().contains(needle.as_str())
    {
        return false;
    }
    true
}

fn reference(spec: &Spec, c: &Call) -> (Effect, ReasonCode, Option<String>) {
    let high = spec.risk_high_tool.as_ref().is_some_and(|t| {
        t == &c.tool
            && value_of(c, "amount")
                .filter(|v| v.is_number())
                .and_then(Value::as_f64)
                .is_some_and(|n| n > 100.0)
    });
    let agent = if c.agent_id == "payments-bot" { &spec.agent_rules[..] } else { &[][..] };
    let rules = agent
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("a{i}"), r))
        .chain(spec.global.iter().enumerate().map(|(i, r)| (format!("g{i}"), r)));
    // A command the reader cannot read in full (an unbalanced quote, a program name outside
    // ASCII) matches no allow rule: at least DEFER `COMMAND_UNRESOLVED` where one would match.
    let unresolved = matches!(c.params.get("cmd").and_then(Value::as_str), Some("x\"y" | "café"));
    if unresolved {
        let mut skipped = None;
        for (id, r) in rules.filter(|(_, r)| ref_matches(r, c)) {
            match r.effect {
                Effect::Permit => {
                    skipped.get_or_insert(id);
                }
                Effect::Deny => return (Effect::Deny, ReasonCode::PolicyDeny, Some(id)),
                Effect::Defer => return (Effect::Defer, ReasonCode::CommandUnresolved, Some(id)),
            }
        }
        return match skipped {
            Some(id) => (Effect::Defer, ReasonCode::CommandUnresolved, Some(id)),
            None => (Effect::Deny, ReasonCode::DefaultDenyNoMatch, None),
        };
    }
    let hit = rules.into_iter().find(|(_, r)| ref_matches(r, c));
    match hit {
        None => (Effect::Deny, ReasonCode::DefaultDenyNoMatch, None),
        Some((id, r)) => match r.effect {
            Effect::Permit if high && r.risk.is_none() => (Effect::Defer, ReasonCode::RiskUpgrade, Some(id)),
            Effect::Permit => (Effect::Permit, ReasonCode::PolicyPermit, Some(id)),
            Effect::Deny => (Effect::Deny, ReasonCode::PolicyDeny, Some(id)),
            Effect::Defer => (Effect::Defer, ReasonCode::PolicyDefer, Some(id)),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn table_agrees_with_reference(spec in spec(), calls in proptest::collection::vec(call(), 1..16)) {
        let text = render(&spec);
        let policy = compile("gen.yaml", &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        for c in &calls {
            let d = decide(&policy, c);
            let want = reference(&spec, c);
            prop_assert_eq!(&decide_linear(&policy, c), &d, "linear scan disagrees");
            prop_assert_eq!((d.effect, d.reason_code, d.rule_id.clone()), want, "call {:?}\npolicy:\n{}", c, text);
        }
    }
}

#[test]
fn reference_glob_sanity() {
    assert!(glob("st*", "stripe_eu"));
    assert!(glob("*", ""));
    assert!(!glob("st*", "shell"));
    assert!(glob("shell", "shell"));
}
