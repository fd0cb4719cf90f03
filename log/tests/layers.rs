//! The log's place in the layers. It knows no caller: it depends on the wire types and storage
//! crates, never on the core, the policy or the doors (Cargo holds it: a crate can use only what
//! its `Cargo.toml` lists; this test holds the list). And one thread writes the log: every
//! transaction that writes the file off the writer thread is one of the few listed here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::path::{Path, PathBuf};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[path = "../../proto/tests/manifest/mod.rs"]
mod manifest;
use manifest::dependencies;

#[test]
fn the_log_knows_no_caller() {
    let manifest = std::fs::read_to_string(crate_dir().join("Cargo.toml")).unwrap();
    let deps = dependencies(&manifest);
    assert!(deps.iter().any(|d| d == "redb"), "read the dependencies: {deps:?}");
    let ours: Vec<&String> = deps.iter().filter(|d| d.starts_with("faramesh")).collect();
    assert_eq!(ours, ["faramesh-proto"], "the log depends on the wire types only of Faramesh's crates");
}

/// The crate's sources, by path relative to `src/`.
fn sources() -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let name = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.push((name, text));
            }
        }
    }
    let root = crate_dir().join("src");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    assert!(out.len() > 10, "found the sources: {}", out.len());
    out
}

/// The function a line is in: the last `fn name` before it.
fn enclosing_fn(lines: &[&str], at: usize) -> String {
    lines[..=at]
        .iter()
        .rev()
        .find_map(|l| {
            let rest = l.split_once("fn ")?.1;
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            (!name.is_empty() && !l.trim_start().starts_with("//")).then_some(name)
        })
        .unwrap_or_default()
}

/// Every `(file, function)` whose code calls `needle`, comments aside.
fn sites(sources: &[(String, String)], needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (file, code) in sources {
        let lines: Vec<&str> = code.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.contains(needle)
                && !line.trim_start().starts_with("//")
                && !line.contains(&format!("fn {}", needle.trim_end_matches('(')))
            {
                out.push(format!("{file} {}", enclosing_fn(&lines, i)));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn writes_off_the_writer_thread_are_the_listed_ones() {
    let sources = sources();
    // Every write transaction outside the writer thread's file, and why it may be there.
    let expected = [
        // A consistent copy into a new file, not a write to the log.
        "backup.rs backup_txn",
        // `Log::open`, before the writer thread starts (and the writer's reopen, on its thread).
        "index.rs catch_up",
        "store/open.rs init_tables",
        "store/tree.rs catch_up",
        // A prune's deletes: called by the writer thread only (checked below).
        "prune.rs delete_batches",
        "prune.rs delete_index_and_state",
        // The two writes on the caller's thread: a state row each, no entry.
        "store/export.rs mark_exported",
        "store/export.rs state_put_lazy",
    ];
    let mut expected = expected.map(str::to_owned);
    expected.sort();
    let found: Vec<String> =
        sites(&sources, "begin_write(").into_iter().filter(|s| !s.starts_with("store/writer.rs ")).collect();
    assert_eq!(
        found, expected,
        "a new write transaction off the writer thread: say why here and in ARCHITECTURE.md"
    );

    for (callee, callers) in [
        ("delete_batches(", &["store/writer.rs prune"][..]),
        ("delete_index_and_state(", &["store/writer.rs prune"][..]),
        ("init_tables(", &["store/mod.rs open_with"][..]),
        ("index::catch_up(", &["store/mod.rs open_with"][..]),
        ("tree::catch_up(", &["store/mod.rs open_with", "store/writer.rs current_db"][..]),
    ] {
        assert_eq!(sites(&sources, callee), callers, "who calls {callee}");
    }
}
