//! Every entry a request causes is written through `Service::commit`: this test reads the
//! core's and the doors' sources and lists every call that appends to the log. Besides
//! `Service::commit`, only the daemon's own events append: its start and stop
//! (`service/daemon.rs`) and policy loads and failed reloads (`State::reload`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::path::{Path, PathBuf};

/// Calls that append an entry to the log.
const APPENDS: &[&str] = &["log.append(", ".append_with_state(", ".append_blocking("];

/// `code` without its `#[cfg(test)] mod … { … }` blocks (tests append by hand on purpose).
fn without_test_modules(code: &str) -> String {
    let mut out = Vec::new();
    let mut lines = code.lines().peekable();
    while let Some(line) = lines.next() {
        let starts_tests = line.trim() == "#[cfg(test)]"
            && lines.peek().is_some_and(|next| {
                let next = next.trim();
                (next.starts_with("mod ") || next.starts_with("pub mod ")) && next.ends_with('{')
            });
        if !starts_tests {
            out.push(line);
            continue;
        }
        let mut depth = 0i64;
        for inner in lines.by_ref() {
            depth += inner.matches('{').count() as i64 - inner.matches('}').count() as i64;
            if depth <= 0 && inner.contains('}') {
                break;
            }
        }
    }
    out.join("\n")
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            out.push((rel, without_test_modules(&text)));
        }
    }
}

/// The function a line is in: the last `fn name` before it.
fn enclosing_fn(lines: &[&str], at: usize) -> String {
    lines[..=at]
        .iter()
        .rev()
        .filter(|l| !l.trim_start().starts_with("//"))
        .find_map(|l| {
            let rest = l.split_once("fn ")?.1;
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            (!name.is_empty()).then_some(name)
        })
        .unwrap_or_default()
}

fn append_sites(sources: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (file, code) in sources {
        let lines: Vec<&str> = code.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.trim_start().starts_with("//") && APPENDS.iter().any(|a| line.contains(a)) {
                found.push(format!("{file} {}", enclosing_fn(&lines, i)));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn entries_are_appended_by_service_commit_and_the_daemons_own_events_only() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut sources = Vec::new();
    for krate in ["daemon", "server"] {
        walk(&root.join(krate).join("src"), &root, &mut sources);
    }
    assert!(sources.len() > 30, "found the sources: {}", sources.len());
    assert_eq!(
        append_sites(&sources),
        [
            // The daemon's stop and its start (with the policy it loaded).
            "daemon/src/service/daemon.rs close",
            "daemon/src/service/daemon.rs start",
            // Every entry a request causes.
            "daemon/src/service/mod.rs commit",
            // A policy load and a failed reload.
            "daemon/src/service/state.rs reload_inner",
            "daemon/src/service/state.rs reload_inner",
        ],
        "a new way to append: a request's entries go through Service::commit"
    );
}

#[test]
fn test_modules_are_left_out_and_the_code_after_them_is_kept() {
    let code = "fn commit() {\n    log.append(x);\n}\n#[cfg(test)]\nmod tests {\n    fn t() {\n        log.append(json!({}));\n    }\n}\nfn later() {\n    log.append(y);\n}\n";
    let sources = [("f.rs".to_owned(), without_test_modules(code))];
    assert_eq!(append_sites(&sources), ["f.rs commit", "f.rs later"]);
}
