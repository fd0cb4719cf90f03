//! The adapters' place in the layers: they implement the core's outbound traits and speak one
//! protocol each. They depend on the core (for the traits), the log's entry format, the policy's
//! channel settings, the shared TLS setup and the wire types, never on the doors; and the doors
//! do not depend on them (the CLI, the composition's caller, hands them to the core).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::path::PathBuf;

#[path = "../../proto/tests/manifest/mod.rs"]
mod manifest;
use manifest::dependencies;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn ours(krate: &str) -> Vec<String> {
    let manifest = std::fs::read_to_string(workspace().join(krate).join("Cargo.toml")).unwrap();
    let deps = dependencies(&manifest);
    assert!(!deps.is_empty(), "read the dependencies of {krate}");
    let mut ours: Vec<String> = deps.into_iter().filter(|d| d.starts_with("faramesh")).collect();
    ours.sort();
    ours
}

#[test]
fn the_adapters_depend_on_the_core_not_on_the_doors() {
    assert_eq!(
        ours("adapters"),
        ["faramesh-daemon", "faramesh-log", "faramesh-net", "faramesh-policy", "faramesh-proto"]
    );
}

#[test]
fn only_the_cli_and_the_benchmarks_hand_adapters_to_the_core() {
    let mut users = Vec::new();
    for krate in ["proto", "net", "client", "policy", "log", "daemon", "server", "cli", "bench"] {
        if ours(krate).iter().any(|d| d == "faramesh-adapters") {
            users.push(krate);
        }
    }
    assert_eq!(users, ["cli", "bench"]);
}
