//! `faramesh verify-log`, `log pubkey`, `log checkpoint` and `export` on a real log file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::path::Path;
use std::process::{Command, Output};

use faramesh_log::{
    Log, LogKey, LogOptions, dpr,
    tables::{BATCHES, Batch},
};
use faramesh_proto::Call;
use redb::ReadableTable;
use serde_json::json;

fn faramesh(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faramesh")).args(args).env_remove("FARAMESH_STATE_DIR").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write_log(dir: &Path, n: u64) {
    let key = LogKey::load_or_create(&dir.join("log.key")).unwrap();
    let log = Log::open(&dir.join("log.redb"), key, LogOptions::default()).unwrap();
    for i in 0..n {
        let mut call = Call::new("bot", "http", "get");
        call.params = json!({"url": format!("https://example.com/{i}"), "token": "secret-value"});
        let policy =
            faramesh_policy::compile("p.yaml", "rules:\n  - match: { tool: http }\n    allow: true\n")
                .unwrap();
        let decision = faramesh_policy::decide(&policy, &call);
        let body = dpr::decision_entry(&call, &decision, None, None, log.redact_keys());
        log.append_blocking(body).unwrap();
    }
    log.close();
}

#[test]
fn verify_pubkey_checkpoint_and_export() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 12);
    let state = dir.path().to_str().unwrap();

    let out = faramesh(&["verify-log", "--state-dir", state]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("ok: 12 entries, 12 signed checkpoints, head "),
        "{}",
        text(&out.stdout)
    );

    let pubkey = text(&faramesh(&["log", "pubkey", "--state-dir", state]).stdout).trim().to_owned();
    assert!(pubkey.starts_with("faramesh/"), "{pubkey}");
    let checkpoint = text(&faramesh(&["log", "checkpoint", "--state-dir", state]).stdout);
    assert!(checkpoint.contains("\n12\n"), "{checkpoint}");
    let cp_file = dir.path().join("saved.checkpoint");
    std::fs::write(&cp_file, &checkpoint).unwrap();

    let out = faramesh(&["export", "--state-dir", state]);
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 12);
    assert!(lines.iter().all(|l| l.contains("\"token\":\"[REDACTED]\"") && !l.contains("secret-value")));
    let out = faramesh(&["export", "--state-dir", state, "--since", "1970-01-21T18:47:00Z"]);
    assert_eq!(text(&out.stdout).lines().count(), 12);
    let future = faramesh(&["export", "--state-dir", state, "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(text(&future.stdout).lines().count(), 0);
    let bad = faramesh(&["export", "--state-dir", state, "--since", "last week"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("`--since` `last week` is not an RFC 3339 UTC time"));

    // A copy, verified with only the public key and the saved checkpoint.
    let copy = dir.path().join("copy.redb");
    std::fs::copy(dir.path().join("log.redb"), &copy).unwrap();
    let out = faramesh(&[
        "verify-log",
        "--file",
        copy.to_str().unwrap(),
        "--pubkey",
        &pubkey,
        "--against",
        cp_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // Tamper with entry 5 of the copy.
    {
        let db = redb::Database::open(&copy).unwrap();
        let txn = db.begin_write().unwrap();
        {
            // Written by one appender: batch 5 holds entry 5 alone.
            let mut t = txn.open_table(BATCHES).unwrap();
            let mut batch = Batch::decode(t.get(5).unwrap().unwrap().value()).unwrap();
            let rec = String::from_utf8(batch.records[0].clone()).unwrap();
            assert!(rec.contains("\"PERMIT\""));
            batch.records[0] = rec.replace("\"PERMIT\"", "\"DENY\"").into_bytes();
            t.insert(5, batch.to_bytes().as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let out = faramesh(&["verify-log", "--file", copy.to_str().unwrap(), "--pubkey", &pubkey]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "FAILED at entry 5: entry 5: entry_hash does not match the entry's contents\n"
    );
    let out = faramesh(&["--json", "verify-log", "--file", copy.to_str().unwrap(), "--pubkey", &pubkey]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["first_bad_seq"], 5);
}

#[test]
fn missing_state_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = faramesh(&["verify-log", "--state-dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no log key at"), "{}", text(&out.stderr));
}

#[test]
fn a_receipt_for_one_entry_verifies_offline_and_an_altered_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 40);
    let state = dir.path().to_str().unwrap();
    let pubkey = text(&faramesh(&["log", "pubkey", "--state-dir", state]).stdout).trim().to_owned();
    let receipt = dir.path().join("17.tlog-proof");
    let out =
        faramesh(&["log", "proof", "--state-dir", state, "--seq", "17", "-o", receipt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("signed by this host only"), "no witness yet: {}", text(&out.stderr));
    let written = std::fs::read_to_string(&receipt).unwrap();
    assert!(written.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{written}");
    assert!(written.contains("\nindex 16\n"), "{written}");

    let out = faramesh(&["verify-proof", receipt.to_str().unwrap(), "--key", &pubkey]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("is entry 17 of faramesh/"), "{}", text(&out.stdout));

    // The receipt by action id names the same entry.
    let id = {
        let line = written.lines().nth(1).unwrap().trim_start_matches("extra ");
        let record: serde_json::Value =
            serde_json::from_slice(&faramesh_log::keys::base64_decode(line).unwrap()).unwrap();
        record["id"].as_str().unwrap().to_owned()
    };
    let out = faramesh(&["log", "proof", "--state-dir", state, "--id", &id]);
    assert_eq!(text(&out.stdout), written);

    // Another index for the same record, or a proof line changed: refused.
    let moved = dir.path().join("moved.tlog-proof");
    std::fs::write(&moved, written.replace("\nindex 16\n", "\nindex 15\n")).unwrap();
    let out = faramesh(&["verify-proof", moved.to_str().unwrap(), "--key", &pubkey]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let lines: Vec<&str> = written.lines().collect();
    let altered = written.replacen(lines[3], lines[4], 1);
    let bad = dir.path().join("bad.tlog-proof");
    std::fs::write(&bad, altered).unwrap();
    let out = faramesh(&["verify-proof", bad.to_str().unwrap(), "--key", &pubkey]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("inclusion proof does not take entry 17"), "{}", text(&out.stdout));
    // A witness policy whose quorum did not cosign: refused.
    let policy = dir.path().join("w.policy");
    let (_, wkey) = faramesh_log::keys::cosign(&[5u8; 32], "witness.example/w", 1, "x");
    std::fs::write(&policy, format!("witness w {wkey}\nquorum w\n")).unwrap();
    let out = faramesh(&[
        "verify-proof",
        receipt.to_str().unwrap(),
        "--key",
        &pubkey,
        "--witness-policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("not by the quorum `w`"), "{}", text(&out.stdout));
    // verify-log with that policy fails too: nothing is witnessed.
    let out = faramesh(&["verify-log", "--state-dir", state, "--witness-policy", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("none of its 40 entries is witnessed"), "{}", text(&out.stdout));
}
