//! The log tools, private state files, paging, pruning and retention.

#[allow(unused_imports)]
use super::*;

/// Regression: `{"cmd":"rm -rf /","cmd":"ls"}` was PERMITted on the last value.
#[test]
fn duplicate_keys_are_refused_on_the_socket() {
    let daemon = Daemon::start(POLICY);
    let mut c = daemon.client();
    let reply = c.raw(
        br#"{"jsonrpc":"2.0","id":7,"method":"govern","params":{"agent_id":"a","tool":"http","operation":"get","args":{"cmd":"rm -rf /","cmd":"ls"}}}"#,
    );
    assert_eq!(reply["id"], 7, "{reply}");
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    assert!(
        reply["error"]["message"].as_str().unwrap().contains("duplicate key `params.args.cmd`"),
        "{reply}"
    );
    // Nothing was recorded for it.
    assert_eq!(c.result("action.list", json!({}))["actions"].as_array().unwrap().len(), 0);
}

/// Regression: the socket fallback of `verify-log`, `export` and `log checkpoint`
/// (used while the daemon holds the log) ignored `--socket` and asked the default socket.
#[test]
fn log_tools_fall_back_to_the_given_socket() {
    let daemon = Daemon::start(POLICY);
    daemon.client().result("govern", json!({"agent_id": "a", "tool": "http", "operation": "get"}));
    let run = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .arg("--state-dir")
            .arg(&daemon.state)
            .arg("--socket")
            .arg(&daemon.socket)
            .env_remove("FARAMESH_SOCKET")
            .env("HOME", &daemon.dir)
            .output()
            .unwrap()
    };
    let out = run(&["verify-log"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));
    let out = run(&["export"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(lines >= 3, "daemon_start, policy_load and the decision: {lines}");
    let out = run(&["log", "checkpoint"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("faramesh/"));
}

/// Regression: files and dirs a command creates are private to the daemon's user.
#[test]
fn state_files_are_private_whichever_command_creates_them() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let state = dir.path().join("new/state");
    let socket = dir.path().join("run/faramesh.sock");
    let out = Command::new(bin())
        .args(["apply", "--policy"])
        .arg(&policy)
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let modes = [
        mode(&state),
        mode(socket.parent().unwrap()),
        mode(&state.join("log.redb")),
        mode(&state.join("log.key")),
        mode(&state.join("daemon.log")),
    ];
    Command::new(bin()).arg("stop").arg("--socket").arg(&socket).output().unwrap();
    assert_eq!(modes, [0o700, 0o700, 0o600, 0o600, 0o600]);
    let log = std::fs::read_to_string(state.join("daemon.log")).unwrap();
    assert!(
        log.contains("faramesh is serving") && !log.contains('\x1b'),
        "colour escapes in a file: {log:?}"
    );
}

pub(crate) fn run(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).env_remove("FARAMESH_STATE_DIR").output().unwrap()
}

pub(crate) fn out_text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn listing_pages_through_the_index_and_a_prune_runs_while_serving() {
    let mut d = Daemon::start("rules:\n  - match: { tool: http }\n    allow: true\n");
    let socket = d.socket.to_str().unwrap().to_owned();
    let state = d.state.to_str().unwrap().to_owned();
    // 600 decisions from two agents, pipelined on one connection 50 at a time (a reader that
    // never reads would block the daemon's replies, and so its own writes).
    let mut c = d.client();
    for chunk in 0..12 {
        for i in chunk * 50..(chunk + 1) * 50 {
            let agent = if i % 3 == 0 { "agent-a" } else { "agent-b" };
            let line = json!({"jsonrpc": "2.0", "id": i, "method": "govern",
                              "params": {"agent_id": agent, "tool": "http", "operation": "get", "params": {"i": i}}});
            c.send_raw(line.to_string().as_bytes());
        }
        for _ in 0..50 {
            assert_eq!(c.read().unwrap()["result"]["effect"], "PERMIT");
        }
    }

    // Every decision of agent-a, newest first, by cursor.
    let page_all = |c: &mut Client| {
        let mut seqs = Vec::new();
        let mut cursor = Value::Null;
        loop {
            let r = c.result("action.list", json!({"agent_id": "agent-a", "limit": 60, "cursor": cursor}));
            seqs.extend(r["actions"].as_array().unwrap().iter().map(|a| a["seq"].as_u64().unwrap()));
            cursor = r["next_cursor"].clone();
            if cursor.is_null() {
                return seqs;
            }
        }
    };
    let seqs = page_all(&mut c);
    assert_eq!(seqs.len(), 200);
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first, no repeats");
    let bad = c.call("action.list", json!({"cursor": "not-an-id"}));
    assert_eq!(bad["error"]["data"]["field"], "cursor", "{bad}");

    // Never exported: the prune is refused and nothing is removed.
    let refused = run(&["log", "prune", "--keep-last", "100", "--socket", &socket, "--state-dir", &state]);
    assert_eq!(refused.status.code(), Some(1), "{}", out_text(&refused));
    assert!(
        out_text(&refused).contains("exported or archived only through entry 0"),
        "{}",
        out_text(&refused)
    );
    let dry =
        run(&["log", "prune", "--keep-last", "100", "--dry-run", "--socket", &socket, "--state-dir", &state]);
    assert!(out_text(&dry).starts_with("would prune "), "{}", out_text(&dry));

    // With an archive, while another client keeps governing.
    let socket_path = d.socket.clone();
    let busy = std::thread::spawn(move || {
        let mut c = Client::new(&socket_path);
        (0..300)
            .filter(|i| {
                let r = c.result(
                    "govern",
                    json!({"agent_id": "agent-a", "tool": "http", "operation": "get", "params": {"late": i}}),
                );
                r["effect"] == "PERMIT"
            })
            .count()
    });
    let archive = d.dir.join("archive.jsonl");
    let pruned = run(&[
        "log",
        "prune",
        "--keep-last",
        "100",
        "--archive",
        archive.to_str().unwrap(),
        "--socket",
        &socket,
        "--state-dir",
        &state,
    ]);
    assert_eq!(pruned.status.code(), Some(0), "{}", out_text(&pruned));
    assert!(String::from_utf8_lossy(&pruned.stdout).starts_with("pruned "), "{}", out_text(&pruned));
    assert_eq!(busy.join().unwrap(), 300, "every call during the prune was answered");
    let archived = std::fs::read_to_string(&archive).unwrap();
    let first_line: Value = serde_json::from_str(archived.lines().next().unwrap()).unwrap();
    assert_eq!(first_line["seq"], 1);
    let kept = archived.lines().count() as u64 + 1;
    assert!(kept > 400, "whole commits removed, most of the log: kept from {kept}");

    // The log verifies from its anchor and says what was pruned; listings start after the cut.
    let verified = run(&["verify-log", "--socket", &socket, "--state-dir", &state]);
    assert_eq!(verified.status.code(), Some(0), "{}", out_text(&verified));
    assert!(out_text(&verified).contains(&format!("ok: entries {kept} to ")), "{}", out_text(&verified));
    let status = run(&["status", "--socket", &socket]);
    assert!(out_text(&status).contains(&format!("(entries before {kept} pruned)")), "{}", out_text(&status));
    assert_eq!(c.result("status", json!({}))["log"]["first_seq"], kept);
    let seqs = page_all(&mut c);
    assert!(!seqs.is_empty() && seqs.iter().all(|&s| s >= kept));
    // A decision that is now only in the archive is no longer found.
    let archived_id = archived
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["kind"] == "decision")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let gone = c.call("action.get", json!({"id": archived_id}));
    assert!(gone["error"]["message"].as_str().unwrap().contains("no action"), "{gone}");
    let from_one = c.result("log.entries", json!({"from_seq": 1, "limit": 1}));
    assert_eq!(from_one["entries"][0]["seq"], kept, "reading from entry 1 starts at the first kept");

    // Stopped: the file verifies offline, and an export makes an offline prune possible.
    d.stop();
    let verified = run(&["verify-log", "--state-dir", &state]);
    assert_eq!(verified.status.code(), Some(0), "{}", out_text(&verified));
    let export = run(&["export", "--state-dir", &state]);
    assert_eq!(export.status.code(), Some(0), "{}", out_text(&export));
    let offline = run(&["log", "prune", "--keep-last", "10", "--state-dir", &state, "--socket", &socket]);
    assert_eq!(offline.status.code(), Some(0), "{}", out_text(&offline));
    let verified = run(&["verify-log", "--state-dir", &state]);
    assert_eq!(verified.status.code(), Some(0), "{}", out_text(&verified));
}

#[test]
fn retention_archives_then_prunes_old_entries_by_itself() {
    let mut d = Daemon::start("rules:\n  - match: { tool: http }\n    allow: true\n");
    let mut c = d.client();
    for i in 0..20 {
        c.result(
            "govern",
            json!({"agent_id": "old", "tool": "http", "operation": "get", "params": {"i": i}}),
        );
    }
    drop(c);
    d.stop();
    std::thread::sleep(Duration::from_millis(2500));
    let archive = d.dir.join("archive");
    d.spawn_with(&["--retention", "2s", "--retention-archive", archive.to_str().unwrap()]);
    let mut c = d.client();
    let report = pruned_beyond(&mut c, 0);
    assert_eq!(report["ok"], true, "{report}");
    let pruned = report["pruned_entries"].as_u64().unwrap();
    assert!(pruned >= 20, "the old decisions went: {report}");
    let files: Vec<_> = std::fs::read_dir(&archive).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(name, format!("faramesh-log-1-{pruned}.jsonl"));
    let lines: Vec<Value> = std::fs::read_to_string(&files[0])
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, pruned);
    assert_eq!(lines.iter().filter(|l| l["agent_id"] == "old").count(), 20);

    // The same from the policy's `retention:` section (no flags).
    for i in 0..5 {
        c.result(
            "govern",
            json!({"agent_id": "older", "tool": "http", "operation": "get", "params": {"i": i}}),
        );
    }
    drop(c);
    d.stop();
    std::thread::sleep(Duration::from_millis(2500));
    let from_policy = d.dir.join("archive-from-policy");
    std::fs::write(
        &d.policy,
        format!(
            "retention:\n  max_age: 2s\n  archive_dir: {}\nrules:\n  - match: {{ tool: http }}\n    allow: true\n",
            from_policy.display()
        ),
    )
    .unwrap();
    d.spawn();
    let mut c = d.client();
    let r = pruned_beyond(&mut c, pruned);
    assert_eq!(r["ok"], true, "{r}");
    let archived = std::fs::read_dir(&from_policy).unwrap().count();
    assert_eq!(archived, 1);
    let bad = Command::new(bin())
        .args(["serve", "--policy"])
        .arg(&d.policy)
        .args(["--socket", "/tmp/faramesh-retention-bad.sock", "--retention", "1w"])
        .output()
        .unwrap();
    assert_ne!(bad.status.code(), Some(0));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("`--retention` `1w` is not an age like 90d"), "{err}");
}

/// The daemon's verification report once more than `entries` have been pruned (retention runs
/// on its own timer), within 20 seconds.
pub(crate) fn pruned_beyond(c: &mut Client, entries: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.result("log.verify", json!({}));
        if r["pruned_entries"].as_u64().unwrap_or(0) > entries {
            return r;
        }
        assert!(Instant::now() < deadline, "retention did not prune past {entries} entries: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
