//! Replays the fuzz targets' committed corpora (`fuzz/corpus/<target>/`) through the same
//! target bodies libFuzzer runs (`fuzz/targets.rs`): every input once found interesting, and
//! every crash once fixed, stays a test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]
#![allow(dead_code)]

include!("../../fuzz/targets.rs");

fn replay(target: &str, f: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        f(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "no corpus for {target} in {}", dir.display());
}

#[test]
fn socket_line_corpus() {
    replay("socket_line", socket_line);
}

#[test]
fn mcp_message_corpus() {
    replay("mcp_message", mcp_message);
}

#[test]
fn policy_load_corpus() {
    replay("policy_load", policy_load);
}

#[test]
fn log_batch_corpus() {
    replay("log_batch", log_batch);
}

#[test]
fn command_line_corpus() {
    replay("command_line", command_line);
}
