//! The policy crate is pure: it gets text and calls and returns values. Cargo holds the crate's
//! dependencies to pure crates (checked here against its `Cargo.toml`); the standard library's
//! IO, environment, processes and clocks are checked here by reading the crate's sources.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::path::{Path, PathBuf};

/// What the crate may depend on: the wire types and pure parsing, matching and serialization.
const PURE: &[&str] = &["faramesh-proto", "regex", "saphyr-parser", "serde", "serde_json", "thiserror"];

/// Names of the standard library's IO, environment, processes, threads and clocks. A pure
/// parse (`"::1".parse::<std::net::IpAddr>()`) is not among them.
const IMPURE: &[&str] = &[
    "std::fs",
    "std::env",
    "std::process",
    "std::thread",
    "std::os",
    "std::io::stdin",
    "std::io::stdout",
    "std::io::stderr",
    "SystemTime",
    "Instant",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "UnixStream",
    "UnixListener",
    "ToSocketAddrs",
    "OpenOptions",
    "File::",
    "Command::new",
    "println!",
    "eprintln!",
    "print!",
    "eprint!",
    "dbg!",
];

#[path = "../../proto/tests/manifest/mod.rs"]
mod manifest;
use manifest::dependencies;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path, text));
        }
    }
}

/// Whether `line` names `name` as a whole path or identifier (`SimpleCommand::new` does not
/// name `Command::new`).
fn names(line: &str, name: &str) -> bool {
    line.match_indices(name)
        .any(|(i, _)| !line[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_'))
}

/// The lines of `code` (comments aside) that name IO, the environment or a clock.
fn impure_lines(code: &str) -> Vec<String> {
    code.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .filter(|l| {
            IMPURE.iter().any(|n| names(l, n))
                || (l.contains("std::{")
                    && ["fs", "env", "process", "thread", "os", "time"].iter().any(|m| l.contains(m)))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_policy_crate_does_no_io() {
    let mut sources = Vec::new();
    walk(&crate_dir().join("src"), &mut sources);
    assert!(sources.len() > 10, "found the sources: {}", sources.len());
    let mut found = Vec::new();
    for (path, code) in &sources {
        for line in impure_lines(code) {
            found.push(format!("{}: {line}", path.strip_prefix(crate_dir()).unwrap().display()));
        }
    }
    assert!(
        found.is_empty(),
        "the policy crate reads no file, environment or clock; the daemon does and passes values in:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scan_sees_io() {
    let code = "// std::fs in a comment\nlet t = std::fs::read_to_string(p)?;\nlet now = Instant::now();\nuse std::{env, fmt};\nlet ip = \"::1\".parse::<std::net::IpAddr>();\nSimpleCommand::new(\"ls\", &[])?;\nCommand::new(\"sh\");\n";
    assert_eq!(
        impure_lines(code),
        [
            "let t = std::fs::read_to_string(p)?;",
            "let now = Instant::now();",
            "use std::{env, fmt};",
            "Command::new(\"sh\");"
        ]
    );
}

#[test]
fn the_policy_crate_depends_on_pure_crates_only() {
    let manifest = std::fs::read_to_string(crate_dir().join("Cargo.toml")).unwrap();
    let deps = dependencies(&manifest);
    assert!(deps.iter().any(|d| d == "faramesh-proto"), "read the dependencies: {deps:?}");
    let impure: Vec<&String> = deps.iter().filter(|d| !PURE.contains(&d.as_str())).collect();
    assert!(impure.is_empty(), "the policy crate depends on pure crates only, not {impure:?}");
}
