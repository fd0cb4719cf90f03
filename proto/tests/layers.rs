//! The wire types sit at the bottom of the layers: `proto` depends on serialization, hashing
//! and error crates only, no runtime, storage or other Faramesh crate. Cargo holds it (a crate
//! can use only what its `Cargo.toml` lists); this test holds the list.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

/// What `proto` may depend on.
const ALLOWED: &[&str] = &["hex", "ryu", "serde", "serde_json", "sha2", "strsim", "thiserror"];

#[path = "manifest/mod.rs"]
mod manifest;
use manifest::dependencies;

#[test]
fn proto_depends_on_wire_format_crates_only() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let deps = dependencies(&manifest);
    assert!(deps.iter().any(|d| d == "serde"), "read the dependencies: {deps:?}");
    let other: Vec<&String> = deps.iter().filter(|d| !ALLOWED.contains(&d.as_str())).collect();
    assert!(other.is_empty(), "proto depends on {ALLOWED:?} only, not {other:?}");
}

#[test]
fn the_reader_sees_every_kind_of_dependency() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\n# tokio = \"1\"\nserde.workspace = true\nredb = { version = \"4\" }\n[target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n[dev-dependencies]\ntempfile = \"3\"\n";
    assert_eq!(dependencies(manifest), ["serde", "redb", "libc"]);
}
