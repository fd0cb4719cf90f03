//! The coding agents' hooks: each host's contract and `hook install`.

#[allow(unused_imports)]
use super::*;

/// The policy the hook contract tests decide by (the approving CLI runs as the test's uid).
pub(crate) const HOOK_POLICY: &str = "version: 1\napprovals:\n  allow_same_uid: true\nrules:\n\
    \x20 - id: shell-destructive\n    match: { tool: shell, command: [{ program: rm, flags: [\"-r|-R|--recursive\", \"-f|--force\"] }] }\n    deny: true\n    description: Destructive shell commands are never run\n\
    \x20 - id: shell-approval\n    match: { tool: shell }\n    require_approval: true\n    description: Shell commands need a person\n\
    \x20 - id: reads\n    match: { tool: file, op: read, path_starts_with: /home/me/demo/ }\n    allow: true\n";

/// Runs `faramesh hook HOST` with `fixture` (a file of `tests/hooks/HOST/`, else the text
/// itself) on stdin, as the host would.
pub(crate) fn run_hook(host: &str, runtime: &Path, socket: &Path, fixture: &str) -> std::process::Output {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/hooks").join(host).join(fixture);
    let input = std::fs::read(file).unwrap_or_else(|_| fixture.as_bytes().to_vec());
    let mut child = Command::new(bin())
        .args(["hook", host, "--socket"])
        .arg(socket)
        .env("XDG_RUNTIME_DIR", runtime)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    child.wait_with_output().unwrap()
}

/// `faramesh hook claude-code` answers each documented payload in Claude Code's own format, from
/// the real daemon's decisions: deny, ask (DEFER), allow; `PostToolUse` records the outcome; a
/// payload it cannot read and a daemon it cannot reach block the call (exit 2, reason on stderr).
#[test]
fn claude_code_hook_contract() {
    let daemon = Daemon::start(HOOK_POLICY);
    let runtime = daemon.dir.join("xdg");
    std::fs::create_dir(&runtime).unwrap();
    let hook = |fixture: &str, socket: &Path| run_hook("claude-code", &runtime, socket, fixture);
    let decision = |fixture: &str| {
        let out = hook(fixture, &daemon.socket);
        assert!(out.status.success(), "{fixture}: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["hookSpecificOutput"]["hookEventName"], "PreToolUse", "{v}");
        let o = &v["hookSpecificOutput"];
        (
            o["permissionDecision"].as_str().unwrap().to_owned(),
            o["permissionDecisionReason"].as_str().unwrap().to_owned(),
        )
    };
    let (d, why) = decision("pre-bash-rm.json");
    assert_eq!(d, "deny");
    assert!(why.contains("shell-destructive") && why.contains("never run"), "{why}");
    let (d, why) = decision("pre-bash-ls.json");
    assert_eq!(d, "ask");
    assert!(why.contains("approval"), "{why}");
    let (d, why) = decision("pre-mcp.json");
    assert_eq!(d, "deny", "no rule for github/create_issue: {why}");
    assert!(why.contains("DEFAULT_DENY_NO_MATCH"), "{why}");
    let (d, _) = decision("pre-read.json");
    assert_eq!(d, "allow");
    let post = hook("post-read.json", &daemon.socket);
    assert!(post.status.success(), "{}", String::from_utf8_lossy(&post.stderr));

    // Every call is in the log as the host sent it, with the host and session in its context.
    let mut c = daemon.client();
    let listed = c.result("action.list", json!({"limit": 10}));
    let actions = listed["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 4, "{listed}");
    let read = actions.iter().find(|a| a["tool"] == "file").unwrap();
    assert_eq!(read["status"], "succeeded", "PostToolUse reported the outcome: {read}");
    let rec = c.result("action.get", json!({"id": read["id"]}));
    assert_eq!(rec["context"]["host"], "claude-code", "{rec}");
    assert_eq!(rec["context"]["session_id"], "abc123", "{rec}");
    assert_eq!(rec["params"]["path"], "/home/me/demo/README.md", "{rec}");
    assert!(actions.iter().any(|a| a["tool"] == "github" && a["operation"] == "create_issue"), "{listed}");

    // Fail closed.
    let garbage = hook("{\"hook_event_name\":", &daemon.socket);
    assert_eq!(garbage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&garbage.stderr).contains("not JSON"));
    let gone = hook("pre-read.json", &daemon.dir.join("missing.sock"));
    assert_eq!(gone.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("not reachable"), "{gone:?}");
    assert!(gone.stdout.is_empty(), "nothing a host could read as allow");
    // A misconfigured hook blocks too: the hosts read any exit but 0 and 2 as "carry on".
    for bad in [&["hook", "claude-code", "--defer", "bogus"][..], &["hook", "cursor"], &["hook"]] {
        let out = Command::new(bin()).args(bad).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `faramesh hook install claude-code` merges its hooks into a settings file idempotently,
/// keeping the user's own, and `--uninstall` gives the file back as it was.
#[test]
fn claude_code_hook_install_round_trips_the_settings_file() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    let original = json!({
        "model": "opus",
        "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "./lint.sh"}]}]}
    });
    std::fs::write(&settings, serde_json::to_string_pretty(&original).unwrap()).unwrap();
    let install = |extra: &[&str]| {
        let out = Command::new(bin())
            .args(["hook", "install", "claude-code", "--settings"])
            .arg(&settings)
            .args(extra)
            .env_remove("FARAMESH_SOCKET")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(install(&[]).contains("installed"));
    assert!(install(&[]).contains("already installed"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(v["model"], "opus");
    let pre = v["hooks"]["PreToolUse"].as_array().unwrap();
    assert_eq!(pre.len(), 2, "{v}");
    assert_eq!(pre[0]["hooks"][0]["command"], "./lint.sh");
    assert!(pre[1]["hooks"][0]["command"].as_str().unwrap().ends_with("hook claude-code"), "{v}");
    assert!(v["hooks"]["PostToolUse"].is_array() && v["hooks"]["PostToolUseFailure"].is_array(), "{v}");
    assert!(install(&["--uninstall"]).contains("removed"));
    let back: Value = serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(back, original);
}

/// `faramesh hook gemini-cli` answers Gemini CLI's `BeforeTool` with `decision`/`reason`. It has
/// no "ask": a DEFER is refused with how to approve, and the same call retried after
/// `faramesh approve` runs. `AfterTool` records the outcome; bad input and no daemon block (exit 2).
#[test]
fn gemini_cli_hook_contract() {
    let daemon = Daemon::start(HOOK_POLICY);
    let runtime = daemon.dir.join("xdg");
    std::fs::create_dir(&runtime).unwrap();
    let hook = |fixture: &str, socket: &Path| run_hook("gemini-cli", &runtime, socket, fixture);
    let decision = |fixture: &str| {
        let out = hook(fixture, &daemon.socket);
        assert!(out.status.success(), "{fixture}: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (v["decision"].as_str().unwrap().to_owned(), v["reason"].as_str().unwrap().to_owned())
    };
    let (d, why) = decision("before-shell-rm.json");
    assert_eq!(d, "deny");
    assert!(why.contains("shell-destructive"), "{why}");
    let (d, deferred_why) = decision("before-shell-ls.json");
    assert_eq!(d, "deny", "Gemini CLI cannot ask: a DEFER is refused with how to approve");
    assert!(deferred_why.contains("faramesh approve"), "{deferred_why}");
    let (d, _) = decision("before-read.json");
    assert_eq!(d, "allow");
    let after = hook("after-read.json", &daemon.socket);
    assert!(after.status.success());
    assert_eq!(
        serde_json::from_slice::<Value>(&after.stdout).unwrap(),
        json!({}),
        "stdout is JSON for Gemini CLI"
    );

    // A person approves the deferred call; the same call retried then runs, and only once.
    let approval = deferred_why.split("faramesh approve ").nth(1).and_then(|r| r.split('`').next()).unwrap();
    let ok =
        Command::new(bin()).args(["approve", approval, "--socket"]).arg(&daemon.socket).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let (d, why) = decision("before-shell-ls.json");
    assert_eq!(d, "allow", "the retry after approval runs: {why}");
    assert!(why.contains("APPROVAL_GRANTED"), "{why}");

    let mut c = daemon.client();
    let listed = c.result("action.list", json!({"limit": 20}));
    let read = listed["actions"].as_array().unwrap().iter().find(|a| a["tool"] == "file").cloned().unwrap();
    assert_eq!(read["status"], "succeeded", "AfterTool reported the outcome: {read}");
    let rec = c.result("action.get", json!({"id": read["id"]}));
    assert_eq!(rec["context"]["host"], "gemini-cli", "{rec}");
    assert_eq!(rec["params"]["path"], "/home/me/demo/README.md", "{rec}");
    // Every path `read_many_files` reads is decided on, relative ones against the `cwd`.
    let (d, why) = decision("before-read-many.json");
    assert_eq!(d, "allow", "{why}");
    let listed = c.result("action.list", json!({"limit": 3, "tool": "file"}));
    let paths: Vec<Value> = listed["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| c.result("action.get", json!({"id": a["id"]}))["params"]["path"].clone())
        .collect();
    assert_eq!(
        paths,
        [json!("/home/me/demo/src/**/*.ts"), json!("/home/me/demo/docs"), json!("/home/me/demo/README.md")],
        "one decision per path, newest first"
    );

    let garbage = hook("[1,2]", &daemon.socket);
    assert_eq!(garbage.status.code(), Some(2));
    let gone = hook("before-read.json", &daemon.dir.join("missing.sock"));
    assert_eq!(gone.status.code(), Some(2));
    assert!(gone.stdout.is_empty(), "nothing a host could read as allow");
}

/// The v1 action object is built once, by the daemon: the socket's `action.submit` and
/// `"format": "v1"` answer exactly what the HTTP API answers for the same action and caller
/// class (the SDKs' socket transports map nothing).
#[test]
fn the_socket_answers_the_same_v1_actions_as_http() {
    let (daemon, port) = start_with_http(POLICY, &[]);
    let mut c = daemon.client();
    let submitted = c.result(
        "action.submit",
        json!({"agent_id": "bot", "tool": "shell", "operation": "exec", "params": {"cmd": "ls"}}),
    );
    assert_eq!(
        (&submitted["status"], &submitted["decision"], &submitted["outcome"]),
        (&json!("pending_approval"), &json!("require_approval"), &json!("ABSTAIN")),
        "{submitted}"
    );
    assert_eq!(submitted["defer_token"], submitted["approval_id"]);
    let id = submitted["id"].as_str().unwrap().to_owned();
    let by_socket = c.result("action.get", json!({"id": id, "format": "v1"}));
    let http = |method: &str, path: &str| -> Value {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer approver-secret-0123456789\r\n\
             connection: close\r\ncontent-length: 0\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap()
    };
    // The socket peer here is root or the daemon's uid, which read everything; whether it is
    // shown the approval token depends on whether it may approve (root may, the daemon's own
    // uid may not by default), so that one field is compared on its own.
    let mut by_http = http("GET", &format!("/v1/actions/{id}"));
    assert_eq!(by_http["approval_token"], submitted["approval_id"], "an approver token sees it");
    let mut same = by_socket.clone();
    for v in [&mut same, &mut by_http] {
        v.as_object_mut().unwrap().remove("approval_token");
    }
    assert_eq!(same, by_http);
    let listed = c.result("action.list", json!({"format": "v1", "limit": 5}));
    assert_eq!(listed["actions"][0], by_socket);
    // The socket's own shape stays the default.
    assert_eq!(c.result("action.get", json!({"id": id}))["status"], "deferred");
    let bad = c.call("action.get", json!({"id": id, "format": "xml"}));
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    assert!(bad["error"]["message"].as_str().unwrap().contains("`format`"), "{bad}");
    // A permitted action, started and finished over the socket in the v1 shape.
    let allowed = c.result(
        "action.submit",
        json!({"agent_id": "bot", "tool": "http", "operation": "get", "params": {"url": "https://x"}}),
    );
    let aid = allowed["id"].as_str().unwrap().to_owned();
    assert_eq!(allowed["status"], "allowed");
    assert_eq!(c.result("action.start", json!({"id": aid, "format": "v1"}))["status"], "executing");
    let done = c.result("action.result", json!({"id": aid, "success": true, "format": "v1"}));
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done, http("GET", &format!("/v1/actions/{aid}")));
    let timeline = c.result("action.events", json!({"id": aid, "format": "v1"}));
    assert_eq!(timeline, http("GET", &format!("/v1/actions/{aid}/events")));
    let kinds: Vec<&str> =
        timeline.as_array().unwrap().iter().filter_map(|e| e["event_type"].as_str()).collect();
    assert_eq!(kinds, ["created", "decision_made", "started", "succeeded"]);
}

/// The hook policy with `git` commands allowed (for the hosts whose after-events are tested on
/// a shell command).
pub(crate) fn hook_policy_with_git() -> String {
    HOOK_POLICY.replacen(
        "rules:\n",
        "rules:\n  - id: shell-git\n    match: { tool: shell, command: [{ program: git }] }\n    allow: true\n",
        1,
    )
}

/// `faramesh hook cursor` answers Cursor's `beforeShellExecution`, `beforeMCPExecution` and
/// `beforeReadFile` with `permission` (and Cursor's own `ask` for a DEFER of a shell command),
/// records `afterShellExecution` as the outcome, and blocks what it cannot read (exit 2 and a
/// deny answer).
#[test]
fn cursor_hook_contract() {
    let daemon = Daemon::start(&hook_policy_with_git());
    let runtime = daemon.dir.join("xdg");
    std::fs::create_dir(&runtime).unwrap();
    let hook = |fixture: &str, socket: &Path| run_hook("cursor", &runtime, socket, fixture);
    let decision = |fixture: &str| {
        let out = hook(fixture, &daemon.socket);
        assert!(out.status.success(), "{fixture}: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["user_message"], v["agent_message"], "{v}");
        (v["permission"].as_str().unwrap().to_owned(), v["agent_message"].as_str().unwrap().to_owned())
    };
    let (d, why) = decision("before-shell-rm.json");
    assert_eq!(d, "deny");
    assert!(why.contains("shell-destructive"), "{why}");
    let (d, why) = decision("before-shell-ls.json");
    assert_eq!(d, "ask", "Cursor asks its user about a DEFER of a shell command: {why}");
    let (d, _) = decision("before-read.json");
    assert_eq!(d, "allow");
    let (d, why) = decision("before-read-secret.json");
    assert_eq!(d, "deny", "{why}");
    let (d, why) = decision("before-mcp.json");
    assert_eq!(d, "deny", "{why}");
    assert!(why.contains("DEFAULT_DENY_NO_MATCH"), "{why}");
    let (d, _) = decision("before-shell-git.json");
    assert_eq!(d, "allow");
    let after = hook("after-shell-git.json", &daemon.socket);
    assert!(after.status.success(), "{}", String::from_utf8_lossy(&after.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&after.stdout).unwrap(), json!({}));

    let mut c = daemon.client();
    let listed = c.result("action.list", json!({"limit": 20}));
    let actions = listed["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 6, "{listed}");
    let git = actions.iter().find(|a| a["rule_id"] == "shell-git").unwrap();
    assert_eq!(git["status"], "succeeded", "afterShellExecution reported the outcome: {git}");
    let rec = c.result("action.get", json!({"id": git["id"]}));
    assert_eq!(rec["params"], json!({"command": "git status"}), "{rec}");
    assert_eq!(
        (&rec["context"]["host"], &rec["context"]["session_id"], &rec["context"]["cwd"]),
        (&json!("cursor"), &json!("conv-7"), &json!("/home/me/demo")),
        "{rec}"
    );
    let read = actions.iter().find(|a| a["tool"] == "file" && a["effect"] == "DENY").unwrap();
    let rec = c.result("action.get", json!({"id": read["id"]}));
    assert_eq!(rec["params"], json!({"path": "/home/me/.ssh/id_ed25519"}), "no file content: {rec}");
    let mcp = actions.iter().find(|a| a["tool"] == "mcp").unwrap();
    let rec = c.result("action.get", json!({"id": mcp["id"]}));
    assert_eq!((&rec["operation"], &rec["params"]["repo"]), (&json!("create_issue"), &json!("me/demo")));
    assert_eq!(rec["context"]["mcp_server"], "npx @modelcontextprotocol/server-github", "{rec}");

    // Fail closed: both of Cursor's ways to block.
    for (input, socket, says) in [
        ("{\"hook_event_name\":", daemon.socket.clone(), "not JSON"),
        (
            r#"{"hook_event_name":"beforeMCPExecution","tool_name":"x","tool_input":"{\"a\":1,\"a\":2}"}"#,
            daemon.socket.clone(),
            "duplicate key",
        ),
        (
            r#"{"hook_event_name":"beforeTabFileRead","file_path":"/x"}"#,
            daemon.socket.clone(),
            "not `beforeTabFileRead`",
        ),
        ("before-read.json", daemon.dir.join("missing.sock"), "not reachable"),
    ] {
        let out = hook(input, &socket);
        assert_eq!(out.status.code(), Some(2), "{input}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{input}: {out:?}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["permission"], "deny", "{input}: {v}");
    }
}

/// `faramesh hook copilot-cli` answers GitHub Copilot CLI's `preToolUse` with
/// `permissionDecision`; a DEFER is refused with how to approve and the retry after approval
/// runs; `postToolUse` (the payload with `toolResult`) records the outcome.
#[test]
fn copilot_cli_hook_contract() {
    let daemon = Daemon::start(HOOK_POLICY);
    let runtime = daemon.dir.join("xdg");
    std::fs::create_dir(&runtime).unwrap();
    let hook = |fixture: &str, socket: &Path| run_hook("copilot-cli", &runtime, socket, fixture);
    let decision = |fixture: &str| {
        let out = hook(fixture, &daemon.socket);
        assert!(out.status.success(), "{fixture}: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v["permissionDecision"].as_str().unwrap().to_owned(),
            v["permissionDecisionReason"].as_str().unwrap().to_owned(),
        )
    };
    let (d, why) = decision("pre-bash-rm.json");
    assert_eq!(d, "deny");
    assert!(why.contains("shell-destructive"), "{why}");
    let (d, deferred_why) = decision("pre-bash-ls.json");
    assert_eq!(d, "deny", "a DEFER is refused with how to approve: {deferred_why}");
    let approval = deferred_why.split("faramesh approve ").nth(1).and_then(|r| r.split('`').next()).unwrap();
    let ok =
        Command::new(bin()).args(["approve", approval, "--socket"]).arg(&daemon.socket).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let (d, why) = decision("pre-bash-ls.json");
    assert_eq!(d, "allow", "the retry after approval runs: {why}");
    let (d, _) = decision("pre-view.json");
    assert_eq!(d, "allow");
    let post = hook("post-view.json", &daemon.socket);
    assert!(post.status.success(), "{}", String::from_utf8_lossy(&post.stderr));

    let mut c = daemon.client();
    let listed = c.result("action.list", json!({"limit": 20, "tool": "file"}));
    let read = &listed["actions"][0];
    assert_eq!(read["status"], "succeeded", "postToolUse reported the outcome: {read}");
    let rec = c.result("action.get", json!({"id": read["id"]}));
    assert_eq!(
        (&rec["context"]["host"], &rec["context"]["host_tool"]),
        (&json!("copilot-cli"), &json!("view"))
    );
    assert_eq!(rec["params"]["path"], "/home/me/demo/README.md", "{rec}");

    // Fail closed, in the form Copilot CLI documents for blocking: a deny answer.
    for (input, socket) in [
        ("[1]", daemon.socket.clone()),
        (r#"{"toolName":"bash","toolArgs":"rm -rf /"}"#, daemon.socket.clone()),
        ("pre-view.json", daemon.dir.join("missing.sock")),
    ] {
        let out = hook(input, &socket);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["permissionDecision"], "deny", "{input}: {v}");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }
}
