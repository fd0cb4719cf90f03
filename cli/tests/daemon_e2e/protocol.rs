//! Framing, bad input, the lifecycle, hot reloads and crashes.

#[allow(unused_imports)]
use super::*;

pub(crate) fn corpus_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_corpus_holds_through_decide_and_govern() {
    let mut n = 0;
    for file in corpus_files() {
        let parsed = parse_cases(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let daemon = Daemon::start(parsed.policy.as_deref().unwrap());
        let mut c = daemon.client();
        for case in &parsed.cases {
            n += 1;
            let label = format!("{}: {}", file.display(), case.label());
            for method in ["decide", "govern"] {
                let reply = c.call(method, case.call.json.clone());
                if let Some(err) = reply.get("error") {
                    // A call the socket refuses outright is never a PERMIT.
                    assert_eq!(
                        case.expect.reason_code,
                        Some(faramesh_proto::ReasonCode::InvalidRequest),
                        "{label}: {err}"
                    );
                    assert_eq!(err["code"], -32602, "{label}");
                    continue;
                }
                let d: faramesh_proto::Decision = serde_json::from_value(reply["result"].clone()).unwrap();
                if let Err(why) = case.expect.check(&d) {
                    panic!("{label} via {method}: {why}");
                }
                if method == "govern" {
                    let id = reply["result"]["action_id"].as_str().unwrap().to_owned();
                    let rec = c.result("action.get", json!({"id": id}));
                    assert_eq!(rec["effect"], reply["result"]["effect"], "{label}");
                    assert_eq!(rec["policy_hash"], reply["result"]["policy_hash"], "{label}");
                }
            }
        }
        assert!(c.result("log.verify", json!({}))["ok"].as_bool().unwrap());
    }
    assert!(n >= 60);
}

pub(crate) const POLICY: &str = "version: 1\nrules:\n  - id: http-get\n    match: { tool: http, op: get }\n    allow: true\n  - id: shell\n    match: { tool: shell }\n    require_approval: true\n";

#[test]
fn bad_input_gets_named_errors_and_never_stops_the_daemon() {
    let daemon = Daemon::start(POLICY);
    let mut bad = daemon.client();
    let mut good = daemon.client();
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let cases: Vec<(Vec<u8>, i64, &str)> = vec![
        (b"{not json".to_vec(), -32700, "parse error"),
        (vec![0xff, 0xfe, b'{', b'}'], -32700, "not valid UTF-8"),
        (deep.into_bytes(), -32700, "nested deeper than 128"),
        (br#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#.to_vec(), -32601, "unknown method `nope`"),
        (br#"{"jsonrpc":"1.0","id":1,"method":"status"}"#.to_vec(), -32600, "`jsonrpc` must be"),
        (br#"{"jsonrpc":"2.0","id":1}"#.to_vec(), -32600, "missing `method`"),
        (br#"[]"#.to_vec(), -32600, "empty batch"),
        (br#"42"#.to_vec(), -32600, "expected an object"),
        (br#"{"jsonrpc":"2.0","id":2,"method":"govern","params":{"tool":"http","operation":"get"}}"#.to_vec(), -32602, "missing field `agent_id`"),
        (br#"{"jsonrpc":"2.0","id":3,"method":"govern","params":{"agent_id":7,"tool":"http","operation":"get"}}"#.to_vec(), -32602, "`agent_id` must be a string"),
        (br#"{"jsonrpc":"2.0","id":4,"method":"govern","params":{"agent_id":"a","tool":"http","operation":"get","args":[1]}}"#.to_vec(), -32602, "`args` must be an object"),
        (br#"{"jsonrpc":"2.0","id":5,"method":"govern","params":{"agent_id":"a","tool":"http","operation":"get","args":{"x":NaN}}}"#.to_vec(), -32700, "parse error"),
        (br#"{"jsonrpc":"2.0","id":6,"method":"govern","params":{"agent_id":"a","tool":"http","operation":"get","args":{"x":1e999}}}"#.to_vec(), -32602, "not finite"),
        (br#"{"jsonrpc":"2.0","id":7,"method":"govern","params":"http"}"#.to_vec(), -32602, "`params` must be an object"),
        (br#"{"jsonrpc":"2.0","id":8,"method":"govern","params":["a","http","get"]}"#.to_vec(), -32602, "`params` must be an object"),
    ];
    for (line, code, needle) in cases {
        let reply = bad.raw(&line);
        assert_eq!(reply["error"]["code"], code, "{} -> {reply}", String::from_utf8_lossy(&line));
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message:?} should mention {needle:?}");
        assert!(reply.get("result").is_none());
        let ok = good.result("govern", json!({"agent_id": "a", "tool": "http", "operation": "get"}));
        assert_eq!(ok["effect"], "PERMIT");
    }
    // Identifiers that only look right are refused as INVALID_REQUEST decisions, never matched.
    for tool in ["htt\u{200b}p", "h\u{0442}tp", "http\0", " http"] {
        let d = good.result("govern", json!({"agent_id": "a", "tool": tool, "operation": "get"}));
        assert_eq!(
            (d["effect"].as_str(), d["reason_code"].as_str()),
            (Some("DENY"), Some("INVALID_REQUEST")),
            "{tool:?}"
        );
    }
    // Regression: client mistakes are counted apart from internal errors.
    let counts = good.result("status", json!({}))["counts"].clone();
    assert!(counts["client_errors"].as_u64().unwrap() > 0, "{counts}");
    assert_eq!(counts["internal_errors"], 0, "{counts}");
    assert_eq!(counts["errors"], counts["client_errors"], "{counts}");
}

#[test]
fn oversized_lines_are_refused_and_the_connection_closes() {
    let daemon = Daemon::start(POLICY);
    let mut c = daemon.client();
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"status","params":{{"pad":"{}"}}}}"#,
        "x".repeat(1 << 20)
    );
    c.send_raw(big.as_bytes());
    let reply = c.read().unwrap();
    assert_eq!(reply["error"]["code"], -32600);
    assert!(reply["error"]["message"].as_str().unwrap().contains("exceeds the 1048576-byte limit"));
    assert!(c.read().is_none(), "the connection is closed after an oversized line");
    assert_eq!(daemon.client().result("status", json!({}))["policy"]["rules"], 2);
}

#[test]
fn pipelined_batched_and_notification_requests() {
    let daemon = Daemon::start(POLICY);
    let mut c = daemon.client();
    let mut all = Vec::new();
    for id in 0..50 {
        all.extend_from_slice(
            json!({"jsonrpc":"2.0","id":id,"method":"decide","params":{"agent_id":"a","tool":"http","operation":"get"}})
                .to_string()
                .as_bytes(),
        );
        all.push(b'\n');
    }
    // A notification (no id) gets no reply.
    all.extend_from_slice(
        br#"{"jsonrpc":"2.0","method":"govern","params":{"agent_id":"n","tool":"http","operation":"get"}}"#,
    );
    all.push(b'\n');
    c.stream.write_all(&all).unwrap();
    let mut ids: Vec<i64> = (0..50).map(|_| c.read().unwrap()["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..50).collect::<Vec<_>>());
    let batch = c.raw(
        br#"[{"jsonrpc":"2.0","id":"a","method":"status"},{"jsonrpc":"2.0","method":"status"},{"jsonrpc":"2.0","id":"b","method":"nope"}]"#,
    );
    let arr = batch.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["id"], "a");
    assert_eq!(arr[1]["error"]["code"], -32601);
    // Odd ids come back as sent.
    assert_eq!(c.raw(br#"{"jsonrpc":"2.0","id":-7.5,"method":"status"}"#)["id"], -7.5);
}

#[test]
fn lifecycle_sigterm_stale_socket_and_a_live_daemon() {
    let mut daemon = Daemon::start(POLICY);
    // A second daemon on the same live socket is refused before it binds anything.
    let out = Command::new(bin())
        .args(["serve", "--policy"])
        .arg(&daemon.policy)
        .arg("--socket")
        .arg(&daemon.socket)
        .arg("--state-dir")
        .arg(daemon.dir.join("other-state"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another daemon is already listening"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&daemon.socket).unwrap().permissions().mode() & 0o777, 0o660);
    assert_eq!(
        std::fs::metadata(daemon.socket.parent().unwrap()).unwrap().permissions().mode() & 0o777,
        0o700
    );

    let status = daemon.stop();
    assert_eq!(status.code(), Some(0));
    assert!(!daemon.socket.exists(), "socket removed on exit");

    // A stale socket file (no one listening) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&daemon.socket).unwrap());
    assert!(daemon.socket.exists());
    daemon.spawn();
    assert_eq!(daemon.client().result("status", json!({}))["policy"]["rules"], 2);
    let status = daemon.stop();
    assert_eq!(status.code(), Some(0));
    let v = Command::new(bin()).arg("verify-log").arg("--state-dir").arg(&daemon.state).output().unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", String::from_utf8_lossy(&v.stdout));
}

#[test]
fn bad_configuration_exits_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let missing = Command::new(bin())
        .args(["serve", "--policy", "/nonexistent/policy.yaml", "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("--socket")
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot read policy `/nonexistent/policy.yaml`")
    );
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "rules:\n  - match: { tool: x }\n    alow: true\n").unwrap();
    let invalid = Command::new(bin())
        .args(["serve", "--policy"])
        .arg(&bad)
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    // An invalid policy exits 3 from every command (serve, dev, apply, policy check).
    assert_eq!(invalid.status.code(), Some(3));
    let err = String::from_utf8_lossy(&invalid.stderr);
    assert!(err.contains("bad.yaml:3:5: unknown rule key `alow`, did you mean `allow`?"), "{err}");
    assert!(!socket.exists());
    assert!(!dir.path().join("state").exists());
}

#[test]
fn hot_reload_swaps_good_policies_and_keeps_serving_on_a_bad_one() {
    let daemon = Daemon::start(POLICY);
    let mut c = daemon.client();
    let call = json!({"agent_id": "a", "tool": "http", "operation": "post"});
    assert_eq!(c.result("govern", call.clone())["effect"], "DENY");
    let first_hash = c.result("policy.status", json!({}))["policy_hash"].as_str().unwrap().to_owned();

    // Editors save by writing a temporary file and renaming it over the original.
    let tmp = daemon.dir.join(".policy.yaml.swp");
    std::fs::write(
        &tmp,
        format!("{POLICY}  - id: http-post\n    match: {{ tool: http, op: post }}\n    allow: true\n"),
    )
    .unwrap();
    std::fs::rename(&tmp, &daemon.policy).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let second_hash = loop {
        let h = c.result("policy.status", json!({}))["policy_hash"].as_str().unwrap().to_owned();
        if h != first_hash {
            break h;
        }
        assert!(Instant::now() < deadline, "reload not seen");
        std::thread::sleep(Duration::from_millis(50));
    };
    let d = c.result("govern", call.clone());
    assert_eq!(
        (d["effect"].as_str(), d["policy_hash"].as_str()),
        (Some("PERMIT"), Some(second_hash.as_str()))
    );

    std::fs::write(&daemon.policy, "rules:\n  - match: { tool: http, op: post }\n    allow: yes please\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = c.result("policy.status", json!({}));
        if let Some(e) = s["last_error"].as_str() {
            assert!(e.contains("policy.yaml:3:12: `allow` must be `true` or `false`"), "{e}");
            assert_eq!(s["policy_hash"], second_hash.as_str(), "the last good policy keeps serving");
            break;
        }
        assert!(Instant::now() < deadline, "failed reload not reported");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.result("govern", call.clone())["effect"], "PERMIT");
    // policy.reload reports the same error; the log holds the failed reload.
    let r = c.result("policy.reload", json!({}));
    assert_eq!(r["ok"], false);
    let exported = Command::new(bin()).arg("status").arg("--socket").arg(&daemon.socket).output().unwrap();
    assert!(String::from_utf8_lossy(&exported.stdout).contains("reload    FAILED"));
}

#[test]
fn sigkill_under_load_loses_no_answered_decision() {
    let mut daemon = Daemon::start(POLICY);
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (socket, answered, stop) = (daemon.socket.clone(), Arc::clone(&answered), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut c = Client::new(&socket);
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let line = json!({"jsonrpc":"2.0","id":i,"method":"govern","params":{"agent_id":format!("load-{t}"),"tool":"http","operation":"get","args":{"i":i}}});
                    if c.stream.write_all(format!("{line}\n").as_bytes()).is_err() {
                        break;
                    }
                    let Some(reply) = c.read() else { break };
                    if let Some(id) = reply["result"]["action_id"].as_str() {
                        answered.lock().unwrap().push(id.to_owned());
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    daemon.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() > 50, "only {} answers before the kill", answered.len());
    daemon.spawn();
    let mut c = daemon.client();
    for id in &answered {
        let rec = c.call("action.get", json!({"id": id}));
        assert_eq!(rec["result"]["id"], id.as_str(), "answered action {id} missing after SIGKILL: {rec}");
    }
    assert_eq!(daemon.stop().code(), Some(0));
    let v = Command::new(bin()).arg("verify-log").arg("--state-dir").arg(&daemon.state).output().unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", String::from_utf8_lossy(&v.stdout));
}

#[test]
fn editing_the_policy_under_load_never_fails_a_call_and_every_dpr_names_its_policy() {
    let policy_a = "version: 1\nrules:\n  - id: a\n    match: { tool: http }\n    allow: true\n";
    let policy_b = "version: 1\nrules:\n  - id: b\n    match: { tool: http }\n    deny: true\n";
    let hash_a = faramesh_policy::compile("x", policy_a).unwrap().hash;
    let hash_b = faramesh_policy::compile("x", policy_b).unwrap().hash;
    let expected: HashMap<String, &str> = [(hash_a, "PERMIT"), (hash_b, "DENY")].into_iter().collect();
    let daemon = Daemon::start(policy_a);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let editor = {
        let (policy, dir, stop) = (daemon.policy.clone(), daemon.dir.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut flip = false;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                flip = !flip;
                let tmp = dir.join("policy.yaml.new");
                std::fs::write(&tmp, if flip { policy_b } else { policy_a }).unwrap();
                std::fs::rename(&tmp, &policy).unwrap();
                n += 1;
                // Irregular intervals, so reloads do not fall into step with the edits.
                std::thread::sleep(Duration::from_millis(20 + (n * 37) % 190));
            }
            n
        })
    };
    const CLIENTS: u64 = 16;
    const TOTAL: u64 = 50_000;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let socket = daemon.socket.clone();
            std::thread::spawn(move || {
                let mut c = Client::new(&socket);
                let mut seen = Vec::new();
                for i in 0..TOTAL / CLIENTS {
                    let r = c.call("govern", json!({"agent_id": format!("edit-{t}"), "tool": "http", "operation": "get", "args": {"i": i}}));
                    assert!(r.get("error").is_none(), "call failed during reload: {r}");
                    let res = &r["result"];
                    seen.push((
                        res["action_id"].as_str().unwrap().to_owned(),
                        res["policy_hash"].as_str().unwrap().to_owned(),
                        res["effect"].as_str().unwrap().to_owned(),
                    ));
                }
                seen
            })
        })
        .collect();
    let results: Vec<(String, String, String)> =
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let edits = editor.join().unwrap();
    assert_eq!(results.len() as u64, TOTAL);
    let mut per_hash: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, hash, effect) in &results {
        let want = expected.get(hash).unwrap_or_else(|| panic!("unknown policy_hash {hash}"));
        assert_eq!(effect, want, "the decision must be the one its policy_hash's policy gives");
        *per_hash.entry(hash.as_str()).or_default() += 1;
    }
    assert!(edits > 5 && per_hash.len() == 2, "both policies served: {per_hash:?} over {edits} edits");
    // Spot-check the log against the answers.
    let mut c = daemon.client();
    for (id, hash, effect) in results.iter().step_by(997) {
        let rec = c.result("action.get", json!({"id": id}));
        assert_eq!(
            (rec["policy_hash"].as_str(), rec["effect"].as_str()),
            (Some(hash.as_str()), Some(effect.as_str()))
        );
    }
}
