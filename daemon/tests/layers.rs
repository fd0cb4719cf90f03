//! The core's place in the layers: it decides, approves and authorizes over the policy and the
//! log, and sends nothing itself. Every protocol the daemon speaks outward (HTTP clients, SMTP,
//! PostgreSQL, OTLP, TLS) is an adapter in `faramesh-adapters`, behind the traits of
//! `service::outbound`. Cargo holds it (a crate can use only what its `Cargo.toml` lists); this
//! test holds the list.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::path::PathBuf;

#[path = "../../proto/tests/manifest/mod.rs"]
mod manifest;
use manifest::dependencies;

fn deps() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let deps = dependencies(&manifest);
    assert!(deps.iter().any(|d| d == "tokio"), "read the dependencies: {deps:?}");
    deps
}

#[test]
fn the_core_depends_on_the_policy_the_log_and_the_wire_types() {
    let mut ours: Vec<String> = deps().into_iter().filter(|d| d.starts_with("faramesh")).collect();
    ours.sort();
    assert_eq!(ours, ["faramesh-log", "faramesh-policy", "faramesh-proto"]);
}

#[test]
fn the_core_speaks_no_outbound_protocol() {
    let protocols = [
        "hyper",
        "hyper-util",
        "http-body-util",
        "rustls",
        "tokio-rustls",
        "lettre",
        "tokio-postgres",
        "tokio-postgres-rustls",
        "opentelemetry-proto",
        "prost",
        "faramesh-net",
    ];
    let found: Vec<String> = deps().into_iter().filter(|d| protocols.contains(&d.as_str())).collect();
    assert!(
        found.is_empty(),
        "the core depends on outbound protocol crates {found:?}: they belong in faramesh-adapters"
    );
}
