//! Feeds every `tests/corpus/*.yaml` file to the engine: each case's decision must match.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::path::PathBuf;

use faramesh_policy::{cases::parse_cases, compile};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus")
}

#[test]
fn corpus_cases_hold_in_the_engine() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "corpus files missing: {files:?}");
    let mut n_cases = 0;
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let parsed = parse_cases(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let policy_text = parsed.policy.unwrap_or_else(|| panic!("{name}: no `policy`"));
        let policy = compile(&name, &policy_text).unwrap_or_else(|e| panic!("{e}"));
        for case in &parsed.cases {
            n_cases += 1;
            let decision = faramesh_policy::decide_request(&policy, &case.call.request);
            if let Err(why) = case.expect.check(&decision) {
                failures.push(format!("{name}: {}: {why}", case.label()));
            }
        }
    }
    assert!(failures.is_empty(), "{} failing cases:\n{}", failures.len(), failures.join("\n"));
    assert!(n_cases >= 60, "only {n_cases} corpus cases");
}
