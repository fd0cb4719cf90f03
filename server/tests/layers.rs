//! The doors' place in the layers: the socket, HTTP and the dashboard see the core's `service`
//! (and its `systemd` notifications) only, never the log or the policy. Cargo holds the crate
//! graph (a crate can use only what its `Cargo.toml` lists; this test holds the list), and the
//! sources are read for the paths the core re-exports (`faramesh_daemon::log`, `::policy`,
//! `::permit`) and for checks of an identity made in a door instead of in `service/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::path::{Path, PathBuf};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[path = "../../proto/tests/manifest/mod.rs"]
mod manifest;
use manifest::dependencies;

/// Every `.rs` file under `src/`, with its text, comment lines removed.
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let code: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect();
                out.push((path, code.join("\n")));
            }
        }
    }
    let mut out = Vec::new();
    walk(&crate_dir().join("src"), &mut out);
    assert!(out.len() > 5, "found the sources: {}", out.len());
    out
}

#[test]
fn the_doors_depend_on_the_core_not_on_the_log_or_the_policy() {
    let manifest = std::fs::read_to_string(crate_dir().join("Cargo.toml")).unwrap();
    let mut ours: Vec<String> =
        dependencies(&manifest).into_iter().filter(|d| d.starts_with("faramesh")).collect();
    ours.sort();
    assert_eq!(
        ours,
        ["faramesh-daemon", "faramesh-net", "faramesh-proto"],
        "the doors depend on the core, the shared HTTP checks and the wire types only"
    );
}

#[test]
fn the_doors_reach_the_core_through_its_service_only() {
    let mut found = Vec::new();
    for (path, code) in sources() {
        for (i, _) in code.match_indices("faramesh_daemon::") {
            let module: String = code[i + "faramesh_daemon::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if module != "service" && module != "systemd" {
                found.push(format!("{}: faramesh_daemon::{module}", path.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the doors use `faramesh_daemon::service` (and `systemd`) only:\n{}",
        found.join("\n")
    );
}

/// Ways of deciding who may do what from an identity's parts: the core's `authz` does that.
const IDENTITY_CHECKS: &[&str] = &[
    ".role ==",
    "== Role::",
    "Role::Approver =>",
    "Role::Agent =>",
    ".uid ==",
    ".uid !=",
    "groups.contains",
    "own_uid",
];

#[test]
fn the_doors_decide_no_permission_themselves() {
    let mut found = Vec::new();
    for (path, code) in sources() {
        for line in code.lines() {
            if IDENTITY_CHECKS.iter().any(|c| line.contains(c)) {
                found.push(format!("{}: {}", path.display(), line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "permission checks belong in the core's service/authz.rs:\n{}",
        found.join("\n")
    );
}
