//! The offline policy tools, run as the real binary: exit codes and the text people read.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn faramesh(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faramesh")).args(args).current_dir(dir).output().unwrap()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_the_default_policy() {
    let out = faramesh(&["policy", "check", "policies/default.yaml"], &repo());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("ok: policies/default.yaml is valid (5 rules, policy_hash "));
}

#[test]
fn check_rejects_with_location_and_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "rules:\n  - match: { tool: x, amount_gtt: 5 }\n    allow: true\n",
    )
    .unwrap();
    let out = faramesh(&["policy", "check", "p.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        text(&out.stderr),
        "error: p.yaml:2:23: unknown match key `amount_gtt`, did you mean `amount_gt`?\n"
    );
}

#[test]
fn check_warns_about_shadowed_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "rules:\n  - match: { tool: \"*\" }\n    deny: true\n  - id: never\n    match: { tool: http, op: get }\n    allow: true\n",
    )
    .unwrap();
    let out = faramesh(&["policy", "check", "p.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stderr),
        "warning: p.yaml:4: rule `never` can never match: rule `rule-1` (p.yaml:2) always matches first\n"
    );
}

#[test]
fn policy_test_passes_and_fails_with_expected_and_actual() {
    let out = faramesh(&["policy", "test", "policies/default.yaml", "policies/default.cases.yaml"], &repo());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).ends_with("36 passed, 0 failed\n"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.yaml"),
        "cases:\n  - name: shell is allowed?\n    call: { agent_id: a, tool: shell, operation: exec, params: { cmd: ls } }\n    expect: { effect: PERMIT }\n",
    )
    .unwrap();
    let policy = repo().join("policies/default.yaml");
    let out = faramesh(&["policy", "test", policy.to_str().unwrap(), "c.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2), "a wrong decision is a mismatch (exit 2), not an error");
    assert_eq!(
        text(&out.stdout),
        "FAIL shell is allowed?: expected effect PERMIT (got DEFER); reason: Shell commands need a human's approval\n0 passed, 1 failed\n"
    );
}

#[test]
fn explain_lists_rules_considered_and_why_they_missed() {
    let call = r#"{"agent_id":"a","tool":"shell","operation":"exec","params":{"cmd":"ls"}}"#;
    let out = faramesh(&["policy", "explain", "policies/default.yaml", "--call", call], &repo());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "call      shell/exec by agent a");
    assert_eq!(lines[1], "profile   none");
    assert_eq!(lines[2], "risk      low");
    // Every rule before the deciding one, rules of other tools included ("why didn't my
    // deny rule fire?" is often a misspelled tool).
    assert_eq!(lines[3], "rules considered: 5");
    assert_eq!(
        lines[4],
        "  skip  http-read                policies/default.yaml:35  tool: `shell` does not match `http`"
    );
    assert_eq!(
        lines[5],
        "  skip  http-head                policies/default.yaml:40  tool: `shell` does not match `http`"
    );
    assert_eq!(
        lines[6],
        "  skip  shell-destructive        policies/default.yaml:45  command: no command matches (programs: ls)"
    );
    assert_eq!(
        lines[7],
        "  skip  shell-approver-commands  policies/default.yaml:56  command: no command matches (programs: ls)"
    );
    assert_eq!(lines[8], "  match shell-approval           policies/default.yaml:70  all conditions hold");
    assert_eq!(
        lines[9],
        "decision  DEFER POLICY_DEFER by shell-approval (policies/default.yaml:70): Shell commands need a human's approval"
    );
}

#[test]
fn request_hash_matches_the_published_vectors() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_faramesh"))
        .arg("request-hash")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"agent_id\":\"test\",\"tool\":\"http\",\"operation\":\"get\",\"params\":{\"url\":\"https://example.com\"},\"context\":{}}\n{\"agent_id\":\"a\",\"tool\":\"t\",\"operation\":\"o\",\"params\":{\"x\":1e999}}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        text(&out.stdout),
        "aef18e9d0014c759d9e9b91d6eca27bf34ff52bde361123c64fd17272688b0b5\nerror: `params`: number `1e+999` is not finite: NaN and infinities are not allowed in canonical JSON\n"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn policy_diff_lists_rule_changes_and_changed_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let old = "rules:\n  - id: get\n    match: { tool: http, op: get }\n    allow: true\n  - id: gone\n    match: { tool: db }\n    deny: true\n";
    let new = "rules:\n  - id: get\n    match: { tool: http, op: \"*\" }\n    allow: true\n  - id: fresh\n    match: { tool: shell }\n    require_approval: true\n";
    let cases = "cases:\n  - name: post\n    call: { agent_id: a, tool: http, operation: post }\n    expect: { effect: DENY }\n  - name: get\n    call: { agent_id: a, tool: http, operation: get }\n    expect: { effect: PERMIT }\n";
    for (name, text) in [("old.yaml", old), ("new.yaml", new), ("c.yaml", cases)] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = faramesh(&["policy", "diff", "old.yaml", "new.yaml", "--cases", "c.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stdout),
        "- removed  gone\n~ changed  get\n+ added    fresh\n1 of 2 calls would be decided differently\n  post: http/post by a: DENY DEFAULT_DENY_NO_MATCH (-) -> PERMIT POLICY_PERMIT (get)\n"
    );
    let same = faramesh(&["policy", "diff", "old.yaml", "old.yaml"], dir.path());
    assert_eq!((same.status.code(), text(&same.stdout)), (Some(0), "rules: no changes\n".to_owned()));
}

#[test]
fn init_writes_a_tested_policy_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = faramesh(&["init"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let test =
        faramesh(&["policy", "test", "policies/default.yaml", "policies/default.cases.yaml"], dir.path());
    assert_eq!(test.status.code(), Some(0));
    let again = faramesh(&["init"], dir.path());
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("already exist; pass --force to overwrite"));
    assert_eq!(faramesh(&["init", "--force"], dir.path()).status.code(), Some(0));
}

#[test]
fn completions_and_help_with_examples() {
    let out = faramesh(&["completions", "bash"], &repo());
    assert!(text(&out.stdout).contains("_faramesh()"));
    for cmd in [
        "serve",
        "dev",
        "apply",
        "status",
        "stop",
        "list",
        "get",
        "events",
        "pending",
        "approve",
        "deny",
        "explain",
        "tail",
        "replay",
        "verify-log",
        "export",
        "init",
        "doctor",
        "completions",
    ] {
        let help = faramesh(&[cmd, "--help"], &repo());
        assert!(text(&help.stdout).contains("Example"), "`faramesh {cmd} --help` has no example");
    }
}

/// `faramesh policy explain … | head -1`: output to a pipe nobody reads any more ends the
/// command quietly, as other Unix tools end (exit 141, as a shell reports a tool SIGPIPE ended),
/// instead of a panic; whether the text is printed (`policy explain`) or written
/// (`request-hash`).
#[test]
fn a_closed_stdout_pipe_ends_the_command_quietly() {
    let call = r#"{"agent_id":"a","tool":"shell","operation":"exec","params":{"cmd":"ls"}}"#;
    let runs: [(&[&str], &str); 2] =
        [(&["policy", "explain", "policies/default.yaml", "--call", call], ""), (&["request-hash"], call)];
    for (args, stdin) in runs {
        // The read end is closed before the command starts: its first write fails with EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut child = Command::new(env!("CARGO_BIN_EXE_faramesh"))
            .args(args)
            .current_dir(repo())
            .stdin(std::process::Stdio::piped())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            writeln!(input, "{stdin}").unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(text(&out.stderr), "", "{args:?}");
        assert_eq!(out.status.code(), Some(141), "{args:?}");
    }
}
