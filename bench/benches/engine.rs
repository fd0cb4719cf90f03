//! `scripts/bench.sh engine`: decide on policies of 10, 1,000 and 10,000 rules with the indexed
//! table, the linear reference scan, and cedar-policy on an equivalent policy, in one run.
//! Prints `bench <name> <median> <unit>` lines.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "benchmark harness")]

use std::hint::black_box;
use std::str::FromStr;
use std::time::Instant;

use cedar_policy::{Authorizer, Context, Entities, EntityUid, PolicySet, Request};
use faramesh_policy::{compile, decide, decide_linear};
use faramesh_proto::{Call, Effect};
use serde_json::json;

const N_TOOLS: usize = 50;

/// Rule `i`: tool `tool_{i % 50}`, operation `op_{i}`, `amount_gt: i`, allow.
/// The benchmarked call matches the last rule of the policy.
fn policy_text(n_rules: usize) -> String {
    let mut out = String::from("version: 1\nrules:\n");
    for i in 0..n_rules {
        out.push_str(&format!(
            "  - id: r{i}\n    match: {{ tool: tool_{}, op: op_{i}, amount_gt: {i} }}\n    allow: true\n",
            i % N_TOOLS
        ));
    }
    out
}

fn cedar_text(n_rules: usize) -> String {
    let mut out = String::new();
    for i in 0..n_rules {
        out.push_str(&format!(
            "permit(principal, action == Action::\"tool_{}/op_{i}\", resource) when {{ context.amount > {i} }};\n",
            i % N_TOOLS
        ));
    }
    out
}

fn call_for(n_rules: usize) -> Call {
    let last = n_rules - 1;
    let mut call = Call::new("bench-agent", &format!("tool_{}", last % N_TOOLS), &format!("op_{last}"));
    call.params = json!({"amount": n_rules + 5, "note": "benchmark"});
    call
}

/// Median nanoseconds per call over `samples` batches of `batch` calls.
fn median_ns(samples: usize, batch: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..batch {
        f();
    }
    let mut times: Vec<f64> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                f();
            }
            start.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn report(name: &str, ns: f64) {
    println!("bench {name} {ns:.1} ns");
}

fn main() {
    let mut medians = Vec::new();
    for n in [10usize, 1_000, 10_000] {
        let policy = compile("bench.yaml", &policy_text(n)).unwrap();
        let call = call_for(n);
        assert_eq!(decide(&policy, &call).effect, Effect::Permit);
        assert_eq!(decide_linear(&policy, &call), decide(&policy, &call));

        let table = median_ns(101, 2_000, || {
            black_box(decide(black_box(&policy), black_box(&call)));
        });
        report(&format!("engine_decide_{n}_rules"), table);
        let linear_batch = if n >= 10_000 { 20 } else { 500 };
        let linear = median_ns(51, linear_batch, || {
            black_box(decide_linear(black_box(&policy), black_box(&call)));
        });
        report(&format!("engine_linear_scan_{n}_rules"), linear);

        let cedar_policies = PolicySet::from_str(&cedar_text(n)).unwrap();
        let authorizer = Authorizer::new();
        let entities = Entities::empty();
        let build_request = || {
            let principal = EntityUid::from_str("Agent::\"bench-agent\"").unwrap();
            let action =
                EntityUid::from_str(&format!("Action::\"{}/{}\"", call.tool, call.operation)).unwrap();
            let resource = EntityUid::from_str("Tool::\"target\"").unwrap();
            let context = Context::from_json_value(json!({"amount": n + 5}), None).unwrap();
            Request::new(principal, action, resource, context, None).unwrap()
        };
        let request = build_request();
        assert_eq!(
            authorizer.is_authorized(&request, &cedar_policies, &entities).decision(),
            cedar_policies::Decision::Allow
        );
        let cedar_batch = if n >= 10_000 { 20 } else { 500 };
        let cedar = median_ns(51, cedar_batch, || {
            let request = build_request();
            black_box(authorizer.is_authorized(&request, black_box(&cedar_policies), &entities));
        });
        report(&format!("cedar_is_authorized_{n}_rules"), cedar);
        medians.push((n, table, linear, cedar));
    }
    let small = medians[0].1;
    for (n, table, _, cedar) in &medians {
        println!("bench engine_ratio_{n}_vs_10_rules {:.2} x", table / small);
        println!("bench cedar_over_engine_{n}_rules {:.1} x", cedar / table);
    }
    detectors();
}

/// Params of about `bytes` bytes that look like a tool call's: notes, a command, headers, nested
/// items, one of them holding an email address (what a `detect: pii` rule finds).
fn params_of(bytes: usize) -> serde_json::Value {
    let mut items = Vec::new();
    let mut size = 0;
    let mut i = 0;
    while size < bytes {
        let item = json!({
            "id": format!("ord_{i:08}"),
            "note": format!("customer asked for a refund of order {i} on 2026-12-0{}; shipped late, box damaged", i % 9 + 1),
            "sku": format!("SKU-{:06}-B", i * 7),
            "trace": format!("{:032x}", (i as u128) * 0x9e37_79b9_7f4a_7c15),
        });
        size += item.to_string().len();
        items.push(item);
        i += 1;
    }
    json!({"cmd": "curl -s https://api.example.com/v1/orders", "headers": {"accept": "application/json"},
           "contact": "jane.doe@fastmail.com", "items": items})
}

/// `detect:` on a 4 KB and a 64 KB params object (every detector), and a decision with a
/// `detect: [secrets, pii]` rule against the same decision without it.
fn detectors() {
    use faramesh_policy::detect::{DetectSet, scan};
    for (name, bytes) in [("4kb", 4 << 10), ("64kb", 64 << 10)] {
        let params = params_of(bytes);
        assert_eq!(scan(&params, DetectSet::all()).len(), 1, "the email address, nothing else");
        let batch = if bytes > 8 << 10 { 20 } else { 200 };
        let ns = median_ns(51, batch, || {
            black_box(scan(black_box(&params), DetectSet::all()));
        });
        report(&format!("detect_all_{name}"), ns);
        let plain =
            compile("b.yaml", "version: 1\nrules:\n  - match: { tool: http }\n    allow: true\n").unwrap();
        let with = compile(
            "b.yaml",
            "version: 1\nrules:\n  - match: { tool: http, detect: secrets }\n    deny: true\n  - match: { tool: http, detect: pii }\n    require_approval: true\n  - match: { tool: http }\n    allow: true\n",
        )
        .unwrap();
        let mut call = Call::new("bench-agent", "http", "post");
        call.params = params.clone();
        assert_eq!(decide(&with, &call).effect, Effect::Defer);
        let base = median_ns(51, batch, || {
            black_box(decide(black_box(&plain), black_box(&call)));
        });
        let detected = median_ns(51, batch, || {
            black_box(decide(black_box(&with), black_box(&call)));
        });
        report(&format!("decide_{name}_without_detect"), base);
        report(&format!("decide_{name}_with_detect"), detected);
    }
}

mod cedar_policies {
    pub use cedar_policy::Decision;
}
