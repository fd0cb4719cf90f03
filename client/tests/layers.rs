//! The client side's place in the layers: the hooks, the MCP gateway and the socket client talk
//! to the daemon over its socket only, and never link the daemon (its core, log or policy).
//! Cargo holds the crate graph; this test holds the list.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::path::PathBuf;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[path = "../../proto/tests/manifest/mod.rs"]
mod manifest;
use manifest::dependencies;

#[test]
fn the_client_side_depends_on_the_wire_types_and_the_shared_http_checks_only() {
    let manifest = std::fs::read_to_string(crate_dir().join("Cargo.toml")).unwrap();
    let mut ours: Vec<String> =
        dependencies(&manifest).into_iter().filter(|d| d.starts_with("faramesh")).collect();
    ours.sort();
    assert_eq!(ours, ["faramesh-net", "faramesh-proto"], "the client side never links the daemon");
}
