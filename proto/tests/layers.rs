//! The wire types sit at the bottom of the layers: `proto` depends on serialization, hashing
//! and error crates only, no runtime, storage or other Faramesh crate. Cargo holds it (a crate
//! can use only what its `Cargo.toml` lists); this test holds the list.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

/// What `proto` may depend on.
const ALLOWED: &[&str] = &["hex", "ryu", "serde", "serde_json", "sha2", "strsim", "thiserror"];

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
