//! Every PERMIT has a provenance, by construction: this test reads the workspace's sources and
//! enumerates every place that could make one. A PERMIT is built only in `policy/src/permit.rs`,
//! by its three constructors (a rule on a fully read call, an approval by someone else, a grant
//! by someone else covering that caller), and each constructor is called from one place.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The sources of every crate in the repository (each directory with a `Cargo.toml` and a
/// `src`), so a crate added later is scanned too.
fn sources() -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut crates: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|d| d.join("Cargo.toml").is_file() && d.join("src").is_dir())
        .collect();
    crates.sort();
    let names: Vec<String> =
        crates.iter().map(|d| d.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for known in ["cli", "client", "daemon", "log", "net", "policy", "proto", "server"] {
        assert!(names.iter().any(|n| n == known), "the crate `{known}` is scanned: {names:?}");
    }
    let mut out = Vec::new();
    for dir in &crates {
        walk(&dir.join("src"), &root, &mut out);
    }
    assert!(out.len() > 50, "found the sources: {}", out.len());
    out
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            // The code, without its unit tests (they build decisions by hand on purpose).
            let code = match text.find("#[cfg(test)]\nmod tests") {
                Some(i) => text[..i].to_owned(),
                None => text,
            };
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            out.push((rel, code));
        }
    }
}

/// Lines that name `Effect::Permit` as a value (not compared against, not matched on).
fn permit_values(code: &str) -> Vec<String> {
    code.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .filter(|l| l.contains("Effect::Permit"))
        .filter(|l| {
            let compared = l.contains("== Effect::Permit")
                || l.contains("!= Effect::Permit")
                || l.contains("== faramesh_proto::Effect::Permit");
            let matched = l.contains("=>") && l.find("Effect::Permit") < l.find("=>");
            let in_matches = l.contains("matches!(");
            !(compared || matched || in_matches)
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn only_the_permit_module_writes_a_permit() {
    let mut values = BTreeSet::new();
    for (file, code) in sources() {
        for line in permit_values(&code) {
            values.insert((file.clone(), line));
        }
    }
    let got: Vec<(&str, &str)> = values.iter().map(|(f, l)| (f.as_str(), l.as_str())).collect();
    // Every value use of `Effect::Permit` in the workspace, and why it is not a decision.
    let expected = vec![
        // The `effect` filter of a listing query.
        ("daemon/src/service/request.rs", "\"PERMIT\" => Effect::Permit,"),
        // A rule's declared effect when the policy is compiled (`allow: true`), not a decision.
        ("policy/src/load/rules.rs", "\"allow\" => Effect::Permit,"),
        ("policy/src/load/rules.rs", "\"permit\" | \"allow\" => Effect::Permit,"),
        // The one place a decision becomes PERMIT.
        ("policy/src/permit.rs", "d.effect = Effect::Permit;"),
    ];
    assert_eq!(
        got, expected,
        "a new place names Effect::Permit as a value: a PERMIT must come from permit.rs"
    );
}

#[test]
fn provenance_and_permit_reasons_are_written_only_by_the_permit_module() {
    for (file, code) in sources() {
        if file == "policy/src/permit.rs" || file == "proto/src/types.rs" {
            continue;
        }
        for needle in [
            "Provenance {",
            "ProvenanceKind::Rule",
            "ProvenanceKind::Approval",
            "ProvenanceKind::Grant",
            ".provenance =",
            "reason_code = ReasonCode::PolicyPermit",
            "reason_code = ReasonCode::ApprovalGranted",
            "reason_code = ReasonCode::GrantApplied",
        ] {
            assert!(
                !code.contains(needle),
                "{file} contains `{needle}`: only policy/src/permit.rs makes a PERMIT"
            );
        }
    }
}

#[test]
fn the_three_constructors_and_where_each_is_called() {
    let all = sources();
    let permit = &all.iter().find(|(f, _)| f == "policy/src/permit.rs").unwrap().1;
    // The constructors: every function of the module that returns a Permit.
    let mut constructors: Vec<&str> = permit
        .lines()
        .filter(|l| l.contains("fn ") && l.contains("(") && !l.trim_start().starts_with("//"))
        .filter_map(|l| l.split("fn ").nth(1)?.split('(').next())
        .filter(|name| {
            let start = permit.find(&format!("fn {name}(")).unwrap();
            let sig_end = permit[start..].find('{').unwrap();
            let sig = &permit[start..start + sig_end];
            sig.contains("-> Permit") || sig.contains("Result<Permit")
        })
        .collect();
    constructors.sort_unstable();
    assert_eq!(constructors, ["approval", "grant", "rule"]);
    let mut calls = BTreeSet::new();
    for (file, code) in &all {
        for ctor in &constructors {
            if code.contains(&format!("Permit::{ctor}(")) {
                calls.insert((file.as_str(), *ctor));
            }
        }
    }
    let calls: Vec<_> = calls.into_iter().collect();
    assert_eq!(
        calls,
        [
            ("daemon/src/service/govern.rs", "approval"),
            ("daemon/src/service/grants.rs", "grant"),
            ("policy/src/eval/decision.rs", "rule"),
        ]
    );
}

#[test]
fn the_classifier_sees_a_permit_written_elsewhere() {
    // The scan must be able to fail: a hand-made PERMIT is a value use.
    let code = "fn f(mut d: Decision) -> Decision {\n    d.effect = Effect::Permit;\n    if d.effect == Effect::Permit {}\n    match e { Effect::Permit => 1 }\n    d\n}\n";
    assert_eq!(permit_values(code), ["d.effect = Effect::Permit;"]);
    let literal = "Decision { effect: Effect::Permit, ..d }";
    assert_eq!(permit_values(literal), [literal]);
}
