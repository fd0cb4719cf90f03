//! The policy hash: recorded in every decision, so it must not change for a policy that did not.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::path::PathBuf;

use faramesh_policy::compile;

fn repo_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[test]
fn the_default_policy_keeps_the_hash_the_readme_quotes() {
    let hash = "70e3231e1af96769ee68d52d1e1fd96bdef66f9535a1905f76d7a372faa1eba5";
    let policy = compile("policies/default.yaml", &repo_file("policies/default.yaml")).unwrap();
    assert_eq!(policy.hash, hash);
    assert!(repo_file("README.md").contains(hash), "README.md quotes the default policy's hash");
}

#[test]
fn the_hash_is_of_the_policy_as_written_not_of_its_decision_table() {
    // The same (empty) decision table, written four ways: the hash tells them apart, so it is
    // computed over the normalized text, not derived from the compiled policy.
    let texts = [
        "version: 1\n",
        "version: 1\nrules: []\n",
        "version: 1\ndescription: x\n",
        "version: 1\napprovals: {}\n",
    ];
    let policies: Vec<_> = texts.iter().map(|t| compile("p.yaml", t).unwrap()).collect();
    for p in &policies {
        assert_eq!(p.n_rules(), 0);
    }
    let mut hashes: Vec<&str> = policies.iter().map(|p| p.hash.as_str()).collect();
    hashes.sort_unstable();
    hashes.dedup();
    assert_eq!(hashes.len(), texts.len(), "{hashes:?}");
}
