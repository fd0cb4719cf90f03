//! Every PERMIT has a provenance: a grant is an approval of future calls, so no one grants
//! themselves, and a grant covers only the caller of the call it was made with (its uid or
//! token, and its session), unless the approver widens it to any caller; `decide` runs the same
//! stages as `govern` and applies nothing.

use super::*;

const SHELL_DEFER: &str =
    "version: 1\nrules:\n  - id: shell\n    match: { tool: shell }\n    require_approval: true\n";

/// One HTTP request with a bearer token; `(status, body as JSON)`.
fn http_json(port: u16, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    let body = if body.is_null() { String::new() } else { body.to_string() };
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("0").parse().unwrap();
    (status, serde_json::from_str(body.trim()).unwrap_or(Value::Null))
}

/// A daemon on HTTP with a tokens file: `bot-a` and `bot-b` (agent tokens), `alice` (an
/// approver), and `ops` (an approver token that also runs an agent).
fn start_with_tokens(policy: &str) -> (Daemon, u16) {
    let mut daemon = Daemon::new(policy, false);
    daemon.stop();
    let tokens = daemon.dir.join("tokens.json");
    std::fs::write(
        &tokens,
        json!([
            {"name": "bot-a", "role": "agent", "token": "bot-a-secret-0123456789"},
            {"name": "bot-b", "role": "agent", "token": "bot-b-secret-0123456789"},
            {"name": "alice", "role": "approver", "token": "alice-secret-0123456789"},
            {"name": "ops", "role": "approver", "token": "ops-secret-0123456789"},
            {"name": "coder-bot", "role": "agent", "token": "coder-secret-0123456789", "agents": ["coder"]},
        ])
        .to_string(),
    )
    .unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let tokens_arg = tokens.display().to_string();
    daemon.spawn_with(&["--listen", &listen, "--tokens-file", &tokens_arg]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the HTTP listener did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (daemon, port)
}

fn shell(cmd: &str) -> Value {
    json!({"agent_id": "coder", "tool": "shell", "operation": "exec", "params": {"cmd": cmd}})
}

/// Regression: an approver token that also ran the agent was refused approving its own DEFER
/// but could `POST /v1/grants` for its own agent/tool/operation, and every later DEFER of that
/// agent became PERMIT `GRANT_APPLIED`.
#[test]
fn a_token_cannot_grant_itself_what_it_may_not_approve() {
    let (_daemon, port) = start_with_tokens(SHELL_DEFER);
    let ops = "ops-secret-0123456789";
    let (status, first) = http_json(port, "POST", "/v1/evaluate", ops, shell("ls"));
    assert_eq!((status, first["effect"].as_str()), (200, Some("DEFER")), "{first}");
    let approve = format!("/v1/actions/{}/approval", first["action_id"].as_str().unwrap());
    let (status, refused) = http_json(port, "POST", &approve, ops, json!({"approve": true}));
    assert_eq!(status, 403, "approving its own call: {refused}");
    let (status, refused) =
        http_json(port, "POST", &approve, ops, json!({"approve": true, "grant_minutes": 30}));
    assert_eq!(status, 403, "approving its own call with a grant: {refused}");
    // A grant naming its own token: refused like an approval.
    let own = json!({"agent_id": "coder", "tool": "shell", "operation": "exec", "minutes": 1440, "token": "approver:ops"});
    let (status, refused) = http_json(port, "POST", "/v1/grants", ops, own);
    assert_eq!(status, 403, "{refused}");
    assert!(refused.to_string().contains("may not grant its own calls"), "{refused}");
    // A grant that names no caller is refused, naming the field.
    let unbound = json!({"agent_id": "coder", "tool": "shell", "operation": "exec", "minutes": 1440});
    let (status, refused) = http_json(port, "POST", "/v1/grants", ops, unbound);
    assert_eq!((status, refused["error"]["field"].as_str()), (422, Some("uid")), "{refused}");
    // "Any caller" is accepted, and still never covers the grantor's own calls.
    let any = json!({"agent_id": "coder", "tool": "shell", "operation": "exec", "minutes": 1440, "any_caller": true});
    let (status, made) = http_json(port, "POST", "/v1/grants", ops, any);
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["covers"], json!({"any_caller": true}), "{made}");
    let (_, again) = http_json(port, "POST", "/v1/evaluate", ops, shell("uptime"));
    assert_eq!(again["effect"], "DEFER", "the grantor's own call stays deferred: {again}");
    let (_, other) = http_json(port, "POST", "/v1/evaluate", "bot-a-secret-0123456789", shell("uptime"));
    assert_eq!(
        (other["effect"].as_str(), other["reason_code"].as_str()),
        (Some("PERMIT"), Some("GRANT_APPLIED"))
    );
    assert_eq!(other["provenance"]["kind"], "grant", "{other}");
    assert_eq!(other["provenance"]["by"]["token"], "approver:ops", "{other}");
}

/// Regression: a grant made with an approval covered every caller using the same agent id, so
/// another caller's unrelated call in the same tool/operation was PERMIT.
#[test]
fn grant_does_not_cover_another_caller() {
    let (_daemon, port) = start_with_tokens(SHELL_DEFER);
    let (a, b, alice) = ("bot-a-secret-0123456789", "bot-b-secret-0123456789", "alice-secret-0123456789");
    let (_, first) = http_json(port, "POST", "/v1/evaluate", a, shell("ls"));
    assert_eq!(first["effect"], "DEFER");
    let approve = format!("/v1/actions/{}/approval", first["action_id"].as_str().unwrap());
    let (status, answered) =
        http_json(port, "POST", &approve, alice, json!({"approve": true, "grant_minutes": 30}));
    assert_eq!(status, 200, "{answered}");
    let (_, grants) = http_json(port, "GET", "/v1/grants", alice, Value::Null);
    assert_eq!(grants["grants"][0]["covers"], json!({"token": "agent:bot-a"}), "{grants}");
    let (_, same) = http_json(port, "POST", "/v1/evaluate", a, shell("ls -l"));
    assert_eq!(
        (same["effect"].as_str(), same["reason_code"].as_str()),
        (Some("PERMIT"), Some("GRANT_APPLIED"))
    );
    let (_, other) = http_json(port, "POST", "/v1/evaluate", b, shell("ls ./build"));
    assert_eq!(
        (other["effect"].as_str(), other["reason_code"].as_str()),
        (Some("DEFER"), Some("POLICY_DEFER")),
        "another caller with the same agent id: {other}"
    );
    // Widened explicitly, it covers the other caller too.
    let (_, second) = http_json(port, "POST", "/v1/evaluate", b, shell("ls"));
    let approve = format!("/v1/actions/{}/approval", second["action_id"].as_str().unwrap());
    let (status, _) = http_json(
        port,
        "POST",
        &approve,
        alice,
        json!({"approve": true, "grant_minutes": 30, "grant_any_caller": true}),
    );
    assert_eq!(status, 200);
    let (_, widened) = http_json(port, "POST", "/v1/evaluate", b, shell("ls ./build"));
    assert_eq!(widened["reason_code"], "GRANT_APPLIED", "{widened}");
}

/// A grant made with the approval of a hook's call covers that caller's session only.
#[test]
fn grant_from_a_session_covers_only_that_session() {
    let daemon = Daemon::start(SHELL_DEFER);
    let mut agent = daemon.client();
    let call = |c: &mut Client, session: &str, cmd: &str| {
        c.result(
            "govern",
            json!({"agent_id": "claude-code", "tool": "shell", "operation": "exec", "args": {"cmd": cmd}, "session_id": session}),
        )
    };
    let first = call(&mut agent, "s-1", "ls");
    let out = Command::new(bin())
        .args(["approve", first["action_id"].as_str().unwrap(), "--grant", "30m", "--socket"])
        .arg(&daemon.socket)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("in session s-1"), "the CLI says whom the grant covers: {said}");
    assert_eq!(call(&mut agent, "s-1", "ls -l")["reason_code"], "GRANT_APPLIED");
    assert_eq!(call(&mut agent, "s-2", "ls -l")["effect"], "DEFER", "another session");
    let listed = Command::new(bin()).args(["grants", "--socket"]).arg(&daemon.socket).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("CALLER") && listed.contains("in session s-1"), "{listed}");
}

/// Every PERMIT names where it came from, in the answer and in the DPR.
#[test]
fn every_permit_records_its_provenance() {
    let policy = "version: 1\nrules:\n  - id: reads\n    match: { tool: fs, op: read }\n    allow: true\n  - id: shell\n    match: { tool: shell }\n    require_approval: true\n";
    let daemon = Daemon::start(policy);
    let mut c = daemon.client();
    let read = c.result(
        "govern",
        json!({"agent_id": "a", "tool": "fs", "operation": "read", "args": {"path": "/tmp/x"}}),
    );
    assert_eq!(read["provenance"], json!({"kind": "rule", "id": "reads"}), "{read}");
    let deferred = c.result("govern", shell_call("ls"));
    assert!(deferred.get("provenance").is_none(), "a DEFER has no provenance: {deferred}");
    let approval_id = deferred["approval_id"].as_str().unwrap().to_owned();
    daemon.client().result("approval.approve", json!({"approval_id": approval_id}));
    let mut resume = shell_call("ls");
    resume["approval_id"] = json!(approval_id);
    let resumed = c.result("govern", resume);
    assert_eq!(resumed["effect"], "PERMIT", "{resumed}");
    assert_eq!(resumed["provenance"]["kind"], "approval");
    assert_eq!(resumed["provenance"]["id"], approval_id.as_str());
    assert!(resumed["provenance"]["by"]["uid"].is_u64(), "who decided: {resumed}");
    let rec = c.result("action.get", json!({"id": resumed["action_id"]}));
    let rec = if rec.get("record").is_some() { rec["record"].clone() } else { rec };
    assert_eq!(rec["provenance"]["kind"], "approval", "the DPR records it: {rec}");
}

/// Regression: `decide` skipped rate limits, budgets and resume; it runs govern's stages and
/// says which side effects it did not apply.
#[test]
fn decide_runs_the_same_stages_and_applies_nothing() {
    let policy = "version: 1\nagents:\n  bot:\n    budget: { max_calls: 1, per: day, on_exceed: deny }\n    rate_limit: { \"fs/*\": \"5/minute\" }\nrules:\n  - id: reads\n    match: { tool: fs }\n    allow: true\n";
    let daemon = Daemon::start(policy);
    let mut c = daemon.client();
    let call = json!({"agent_id": "bot", "tool": "fs", "operation": "read", "args": {}});
    for _ in 0..3 {
        let d = c.result("decide", call.clone());
        assert_eq!(d["effect"], "PERMIT", "{d}");
        assert_eq!(d["not_applied"], json!(["rate_limit", "budget"]), "{d}");
        assert!(d["action_id"].is_null());
    }
    assert_eq!(c.result("govern", call.clone())["effect"], "PERMIT", "decide used none of the budget");
    let over = c.result("decide", call.clone());
    assert_eq!(
        (over["effect"].as_str(), over["reason_code"].as_str()),
        (Some("DENY"), Some("BUDGET_EXCEEDED")),
        "{over}"
    );
    let mut resume = call;
    resume["approval_id"] = json!("00000000000000000000000000000000");
    let unknown = c.result("decide", resume);
    assert_eq!(unknown["reason_code"], "APPROVAL_DENIED", "{unknown}");
}

/// Regression, on the socket: a uid listed as an approver that also runs the agent was refused
/// `approval.approve` on its own DEFER but `grant.create` for its own agent succeeded; and a
/// grant root made with one uid's approval covered another uid's calls.
#[test]
#[ignore = "needs root to run clients as uid 65534; scripts/test.sh runs it when root"]
fn a_uid_cannot_grant_itself_and_grants_cover_only_their_uid() {
    let policy = format!("{SHELL_DEFER}approvals:\n  approvers: [\"uid:65534\"]\n");
    let daemon = Daemon::start_open(&policy);
    let d = call_as_uid(65534, &daemon.socket, "govern", shell_call("ls"));
    assert_eq!(d["result"]["effect"], "DEFER", "{d}");
    let id = d["result"]["approval_id"].as_str().unwrap().to_owned();
    let approve = call_as_uid(65534, &daemon.socket, "approval.approve", json!({"approval_id": id}));
    assert_eq!(approve["error"]["code"], -32001, "{approve}");
    let with_grant = call_as_uid(
        65534,
        &daemon.socket,
        "approval.approve",
        json!({"approval_id": id, "grant_minutes": 1440}),
    );
    assert_eq!(with_grant["error"]["code"], -32001, "{with_grant}");
    let grant =
        json!({"agent_id": "ops-bot", "tool": "shell", "operation": "exec", "minutes": 1440, "uid": 65534});
    let own = call_as_uid(65534, &daemon.socket, "grant.create", grant);
    assert_eq!(own["error"]["code"], -32001, "{own}");
    let any = json!({"agent_id": "ops-bot", "tool": "shell", "operation": "exec", "minutes": 1440, "any_caller": true});
    let widened = call_as_uid(65534, &daemon.socket, "grant.create", any);
    assert!(widened["result"]["id"].is_string(), "{widened}");
    let again = call_as_uid(65534, &daemon.socket, "govern", shell_call("rm -rf /tmp/x"));
    assert_eq!(again["result"]["effect"], "DEFER", "its own grant does not cover it: {again}");
    let mut c = daemon.client();
    for g in c.result("grant.list", json!({}))["grants"].as_array().unwrap() {
        c.result("grant.revoke", json!({"id": g["id"]}));
    }

    // Root approves uid 65534's call with a grant: root's own agent (another uid) is not covered.
    let d = call_as_uid(65534, &daemon.socket, "govern", shell_call("ls"));
    let id = d["result"]["approval_id"].as_str().unwrap().to_owned();
    let granted = c.result("approval.approve", json!({"approval_id": id, "grant_minutes": 30}));
    assert_eq!(granted["grant"]["covers"], json!({"uid": 65534}), "{granted}");
    assert_eq!(c.result("govern", shell_call("ls /root"))["effect"], "DEFER", "uid 0 is not covered");
    let covered = call_as_uid(65534, &daemon.socket, "govern", shell_call("ls -l /tmp"));
    assert_eq!(covered["result"]["reason_code"], "GRANT_APPLIED", "{covered}");
}

/// Regression: `path_*` compared text, so `path_starts_with: /srv/` allowed
/// `/srv/../etc/passwd` from any caller that does not resolve paths itself (the MCP gateway,
/// the SDKs, HTTP agents).
#[test]
fn path_prefix_rule_cannot_be_walked_out_of_with_dotdot() {
    let policy = "version: 1\nrules:\n  - id: files-under-srv\n    match: { tool: files, path_starts_with: /srv/ }\n    allow: true\n";
    let daemon = Daemon::start(policy);
    let mut c = daemon.client();
    let read = |c: &mut Client, path: &str| {
        c.result(
            "govern",
            json!({"agent_id": "mcp", "tool": "files", "operation": "read_file", "args": {"path": path}}),
        )
    };
    assert_eq!(read(&mut c, "/srv/data/a.txt")["effect"], "PERMIT");
    for escape in ["/srv/../etc/passwd", "/srv/data/../../root/.ssh/id_ed25519", "/srv/./../etc/shadow"] {
        let d = read(&mut c, escape);
        assert_eq!(d["effect"], "DENY", "{escape}: {d}");
    }
    assert_eq!(read(&mut c, "/srv/data/../b.txt")["effect"], "PERMIT", "still under /srv/");
}

/// One HTTP request with extra headers; `(status, head, body)`.
fn http_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, Value) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n{extra}\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("0").parse().unwrap();
    (status, head.to_owned(), serde_json::from_str(body.trim()).unwrap_or(Value::Null))
}

/// A dashboard session opened with a sign-in link: `(cookie header, csrf)`.
fn open_session(port: u16, secret: &str) -> (String, String) {
    let (status, head, body) =
        http_with(port, "POST", "/v1/session", &[], &json!({"login": secret}).to_string());
    assert_eq!(status, 200, "{head} {body}");
    let cookie = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("set-cookie:").then(|| l[11..].trim().to_owned()))
        .unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    (cookie, body["csrf"].as_str().unwrap().to_owned())
}

/// Regression: a dashboard session opened with a sign-in link was one shared identity
/// (`dashboard:login-link`), so an approver uid that also ran an agent asked for a link and
/// approved (or granted) its own deferred calls through the dashboard, and in single-user mode
/// the very process that made a call approved it. The session is now the caller the link was
/// made for.
#[test]
#[ignore = "needs root to run clients as uid 65534; scripts/test.sh runs it when root"]
fn a_sign_in_link_does_not_let_its_asker_approve_its_own_calls() {
    let policy = format!("{SHELL_DEFER}approvals:\n  approvers: [\"uid:65534\"]\n");
    let mut daemon = Daemon::start_open(&policy);
    daemon.stop();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    daemon.spawn_with_env(
        &["--socket-mode", "666", "--listen", &listen],
        &[("FARAMESH_APPROVER_TOKEN", "approver-secret-0123456789")],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the HTTP listener did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let d = call_as_uid(65534, &daemon.socket, "govern", shell_call("make dash"));
    assert_eq!(d["result"]["effect"], "DEFER", "{d}");
    let action = d["result"]["action_id"].as_str().unwrap().to_owned();
    let link = call_as_uid(65534, &daemon.socket, "dashboard.login", json!({}));
    let secret = link["result"]["secret"].as_str().unwrap().to_owned();
    let (cookie, csrf) = open_session(port, &secret);
    let headers = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let (status, _, refused) =
        http_with(port, "POST", &format!("/v1/actions/{action}/approval"), &headers, r#"{"approve": true}"#);
    assert_eq!(status, 403, "approving its own call through the dashboard: {refused}");
    let grant =
        json!({"agent_id": "ops-bot", "tool": "shell", "operation": "exec", "minutes": 60, "uid": 65534});
    let (status, _, refused) = http_with(port, "POST", "/v1/grants", &headers, &grant.to_string());
    assert_eq!(status, 403, "granting its own uid through the dashboard: {refused}");
    // Another person's session (root asked for this link) approves it, recorded as who it is.
    let mut c = daemon.client();
    let secret = c.result("dashboard.login", json!({}))["secret"].as_str().unwrap().to_owned();
    let (cookie, csrf) = open_session(port, &secret);
    let headers = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let (status, _, ok) =
        http_with(port, "POST", &format!("/v1/actions/{action}/approval"), &headers, r#"{"approve": true}"#);
    assert_eq!(status, 200, "{ok}");
    let entries = c.result("log.entries", json!({"from_seq": 1, "limit": 100}));
    let approved = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "approval" && e["status"] == "approved")
        .unwrap();
    assert_eq!(approved["by"]["token"], "dashboard:uid:0", "{approved}");
    assert_eq!(approved["by"]["for_peer"]["uid"], 0, "{approved}");
}

/// Regression: a token bound to the agent id could start another caller's approved deferred
/// action, using up the approval its maker was waiting to use.
#[test]
fn only_the_maker_starts_an_approved_deferred_action() {
    let (_daemon, port) = start_with_tokens(SHELL_DEFER);
    let (a, b, alice) = ("bot-a-secret-0123456789", "bot-b-secret-0123456789", "alice-secret-0123456789");
    let (_, first) = http_json(port, "POST", "/v1/evaluate", a, shell("deploy prod"));
    let id = first["action_id"].as_str().unwrap().to_owned();
    let (status, _) =
        http_json(port, "POST", &format!("/v1/actions/{id}/approval"), alice, json!({"approve": true}));
    assert_eq!(status, 200);
    let (status, _) = http_json(port, "POST", &format!("/v1/actions/{id}/start"), b, json!({}));
    assert_eq!(status, 404, "a caller that cannot read it");
    // A token bound to the agent id reads the action, but did not make the call.
    let bound = "coder-secret-0123456789";
    let (status, refused) = http_json(port, "POST", &format!("/v1/actions/{id}/start"), bound, json!({}));
    assert_eq!(status, 403, "another caller of the same agent starting it: {refused}");
    let (status, started) = http_json(port, "POST", &format!("/v1/actions/{id}/start"), a, json!({}));
    assert_eq!(status, 200, "the maker still may: {started}");
}
