//! The client side's place in the layers: the hooks, the MCP gateway and the socket client talk
//! to the daemon over its socket only, and never link the daemon (its core, log or policy).
//! Cargo holds the crate graph; this test holds the list.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::path::PathBuf;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The names in a manifest's `[dependencies]` (and target or build dependencies) tables.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut section = String::new();
    let mut deps = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        let is_dep_section = section == "[dependencies]"
            || section.starts_with("[target.") && section.ends_with(".dependencies]")
            || section == "[build-dependencies]";
        if is_dep_section
            && !line.starts_with('#')
            && let Some((name, _)) = line.split_once('=')
        {
            let name = name.trim().split('.').next().unwrap_or_default().trim_matches('"').to_owned();
            if !name.is_empty() {
                deps.push(name);
            }
        }
    }
    deps
}

#[test]
fn the_client_side_depends_on_the_wire_types_and_the_shared_http_checks_only() {
    let manifest = std::fs::read_to_string(crate_dir().join("Cargo.toml")).unwrap();
    let mut ours: Vec<String> =
        dependencies(&manifest).into_iter().filter(|d| d.starts_with("faramesh")).collect();
    ours.sort();
    assert_eq!(ours, ["faramesh-net", "faramesh-proto"], "the client side never links the daemon");
}
