//! The quickstart (`serve` with nothing configured), the HTTP door's checks, the demo, `tail`.

#[allow(unused_imports)]
use super::*;

/// `faramesh serve` with nothing configured (the upstream quickstart), in a fresh HOME, on a
/// free port: tokenless loopback callers are agents. Stopped when dropped.
pub(crate) struct Quickstart {
    child: Child,
    home: tempfile::TempDir,
    port: u16,
    /// What it printed on stderr so far.
    lines: Arc<Mutex<String>>,
}

impl Quickstart {
    fn start() -> Quickstart {
        let home = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut serve = Command::new(bin());
        serve.arg("serve").env("FARAMESH_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::piped());
        Quickstart::clean(&mut serve, home.path(), port);
        let mut child = serve.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(String::new()));
        {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push_str(&format!("{line}\n"));
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !lines.lock().unwrap().contains("single-user mode") {
            assert!(Instant::now() < deadline, "no start-up lines: {}", lines.lock().unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
        Quickstart { child, home, port, lines }
    }

    /// Nothing configured: no variable that would turn the quickstart off.
    fn clean(c: &mut Command, home: &Path, port: u16) {
        for k in [
            "FARAMESH_POLICY",
            "FARAMESH_SOCKET",
            "FARAMESH_STATE_DIR",
            "FARAMESH_LISTEN",
            "FARAMESH_TOKEN",
            "FARAMESH_APPROVER_TOKEN",
            "FARAMESH_TOKENS_FILE",
            "INVOCATION_ID",
            "LISTEN_FDS",
            "NOTIFY_SOCKET",
            "XDG_CONFIG_HOME",
        ] {
            c.env_remove(k);
        }
        c.env("HOME", home).env("FARAMESH_PORT", port.to_string()).env("NO_COLOR", "1").current_dir(home);
    }

    /// The CLI, as the same user with the same HOME.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut c = Command::new(bin());
        c.args(args);
        Quickstart::clean(&mut c, self.home.path(), self.port);
        c.output().unwrap()
    }

    /// The daemon's socket, as printed.
    fn client(&self) -> Client {
        let printed = self.lines.lock().unwrap().clone();
        let socket = printed
            .lines()
            .find_map(|l| l.trim().strip_prefix("export FARAMESH_SOCKET="))
            .unwrap_or_else(|| panic!("no socket line: {printed}"))
            .to_owned();
        Client::new(Path::new(&socket))
    }

    /// A tokenless `POST /v1/actions` of a shell call (DEFER under the default policy): its id.
    fn submit(&self) -> String {
        let (status, _, body) = http_request(
            self.port,
            "POST",
            "/v1/actions",
            r#"{"agent_id":"demo","tool":"shell","operation":"exec","params":{"cmd":"ls"}}"#,
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["id"].as_str().unwrap().to_owned()
    }

    /// The actions recorded so far (as the operator on the socket sees them).
    fn recorded(&self) -> Vec<Value> {
        self.client().result("action.list", json!({"limit": 100}))["actions"].as_array().unwrap().clone()
    }

    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The upstream quickstart as written: `faramesh serve` with nothing configured finds (or
/// writes) its policy, serves the dashboard and API on loopback, prints the socket line and a
/// sign-in link that works without JavaScript, takes a tokenless `curl` as an unauthenticated
/// agent that reads back its own action but lists nobody's, and `faramesh approve <action-id>`
/// works from the same user (single-user mode, said by `status`).
#[test]
fn serve_with_nothing_configured_is_the_upstream_quickstart() {
    let q = Quickstart::start();
    let port = q.port;
    let printed = q.lines.lock().unwrap().clone();
    let written = q.home.path().join(".config/faramesh/policy.yaml");
    assert!(written.exists() && printed.contains(&written.display().to_string()), "{printed}");
    assert!(printed.contains("export FARAMESH_SOCKET="), "{printed}");
    let link = printed
        .split_whitespace()
        .find(|w| w.contains("/login/"))
        .unwrap_or_else(|| panic!("no sign-in link: {printed}"))
        .to_owned();
    // The upstream docs' tokenless curl: an unauthenticated agent, recorded as such.
    let (status, _, body) = http_request(
        port,
        "POST",
        "/v1/actions",
        r#"{"agent_id":"demo","tool":"shell","operation":"exec","params":{"cmd":"ls"}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let action: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(action["caller"]["token"], "anonymous:loopback", "{action}");
    let id = action["id"].as_str().unwrap().to_owned();
    assert_eq!(http_request(port, "GET", &format!("/v1/actions/{id}"), "").0, 200);
    let (_, _, listed) = http_request(port, "GET", "/v1/actions", "");
    assert_eq!(
        serde_json::from_str::<Value>(&listed).unwrap()["actions"],
        json!([]),
        "tokenless callers list nothing"
    );
    assert_eq!(http_request(port, "GET", "/metrics", "").0, 200, "/metrics is open on loopback");
    let (status, _, _) =
        http_request(port, "POST", &format!("/v1/actions/{id}/approval"), r#"{"approve":true}"#);
    assert_eq!(status, 403, "a tokenless caller never approves");
    // The operator: status says single-user mode; approve by the action id from the curl.
    let status_text = out_text(&q.cli(&["status"]));
    assert!(status_text.contains("single-user mode") && status_text.contains("tokenless"), "{status_text}");
    let approved = q.cli(&["approve", &id]);
    assert!(approved.status.success() && out_text(&approved).contains("approved"), "{}", out_text(&approved));
    // The sign-in link works once, without JavaScript: a cookie and a redirect to the dashboard.
    let path = &link[link.find("/login/").unwrap()..];
    let (status, head, _) = http_request(port, "GET", path, "");
    assert_eq!(status, 303);
    assert!(head.contains("set-cookie: faramesh_session=") && head.contains("location: /"), "{head}");
    assert_eq!(http_request(port, "GET", path, "").0, 401, "a link signs in once");
    // `faramesh dashboard` prints a fresh one.
    let fresh = String::from_utf8_lossy(&q.cli(&["dashboard"]).stdout).trim().to_owned();
    assert!(fresh.contains("/login/") && fresh != link, "{fresh}");
    let fresh_path = &fresh[fresh.find("/login/").unwrap()..];
    assert_eq!(http_request(port, "GET", fresh_path, "").0, 303);
    q.stop();
}

/// The JSON error of a refused request names `field` (a header) and says `words`.
pub(crate) fn assert_refused(reply: &(u16, String, String), status: u16, field: &str, words: &str) {
    assert_eq!(reply.0, status, "{reply:?}");
    let v: Value = serde_json::from_str(&reply.2).unwrap_or_else(|_| panic!("not JSON: {reply:?}"));
    assert_eq!(v["error"]["field"], field, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains(words), "{v}");
}

/// Regression: the quickstart's listener served any `Host`, so a web page on a name its owner
/// points at 127.0.0.1 (DNS rebinding) could submit calls and read the answers as the page's
/// own origin. Only loopback names with the listener's port are served now.
#[test]
fn dns_rebinding_host_is_refused() {
    let q = Quickstart::start();
    let port = q.port;
    let call = r#"{"agent_id":"demo","tool":"shell","operation":"exec","params":{"cmd":"ls"}}"#;
    let json = ("content-type", "application/json");
    for host in [
        format!("evil.example:{port}"),
        "evil.example".into(),
        "127.0.0.1".into(),
        format!("127.0.0.1:{}", port + 1),
    ] {
        let reply = http_exact(port, "POST", "/v1/actions", &[("host", &host), json], call);
        assert_refused(&reply, 421, "Host", &format!("`Host: {host}` is not served here"));
        let page = http_exact(port, "GET", "/", &[("host", &host)], "");
        assert_eq!(page.0, 421, "the dashboard page too: {page:?}");
    }
    assert_refused(&http_exact(port, "GET", "/health", &[], ""), 421, "Host", "no `Host` header");
    // An absolute request target names the host too.
    let target = format!("http://evil.example:{port}/v1/actions");
    let reply = http_exact(port, "POST", &target, &[("host", &format!("127.0.0.1:{port}")), json], call);
    assert_refused(&reply, 421, "Host", "evil.example");
    assert!(q.recorded().is_empty(), "nothing was submitted: {:?}", q.recorded());
    // The loopback names, with the port, are served.
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")] {
        let reply = http_exact(port, "POST", "/v1/actions", &[("host", &host), json], call);
        assert_eq!(reply.0, 200, "{host}: {reply:?}");
    }
    assert_eq!(q.recorded().len(), 3);
}

/// Regression: a web page on any site could POST `text/plain` (a form or `fetch` with no
/// preflight) to the quickstart's `/v1/actions` and create a pending call. Bodies must be
/// declared JSON.
#[test]
fn cross_site_text_plain_post_is_refused() {
    let q = Quickstart::start();
    let port = q.port;
    let host = format!("127.0.0.1:{port}");
    let call = r#"{"agent_id":"demo","tool":"shell","operation":"exec","params":{"cmd":"rm -rf ~"}}"#;
    for ct in
        ["text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
    {
        let reply = http_exact(port, "POST", "/v1/actions", &[("host", &host), ("content-type", ct)], call);
        assert_refused(&reply, 415, "Content-Type", &format!("`Content-Type: {ct}`"));
    }
    let none = http_exact(port, "POST", "/v1/evaluate", &[("host", &host)], call);
    assert_refused(&none, 415, "Content-Type", "no `Content-Type`");
    // A route without a body refuses one that is not JSON as well.
    let start = http_exact(
        port,
        "POST",
        "/v1/actions/0123456789abcdef/start",
        &[("host", &host), ("content-type", "text/plain")],
        "x",
    );
    assert_refused(&start, 415, "Content-Type", "text/plain");
    assert!(q.recorded().is_empty(), "no call was recorded: {:?}", q.recorded());
    assert!(q.client().result("approval.list", json!({}))["approvals"].as_array().unwrap().is_empty());
}

/// Regression: a state-changing request from another site's page (its `Origin`) was served.
/// Only the server's own origin (the dashboard's) may change state from a browser.
#[test]
fn foreign_origin_post_is_refused() {
    let q = Quickstart::start();
    let port = q.port;
    let host = format!("127.0.0.1:{port}");
    let call = r#"{"agent_id":"demo","tool":"shell","operation":"exec","params":{"cmd":"ls"}}"#;
    let json = ("content-type", "application/json");
    for origin in [
        "http://evil.example",
        "null",
        &format!("http://localhost:{port}"),
        &format!("https://evil.example:{port}"),
    ] {
        let reply =
            http_exact(port, "POST", "/v1/actions", &[("host", &host), ("origin", origin), json], call);
        assert_refused(&reply, 403, "Origin", &format!("`Origin: {origin}` is not this server's"));
    }
    let fetched = http_exact(
        port,
        "POST",
        "/v1/actions",
        &[("host", &host), ("sec-fetch-site", "cross-site"), json],
        call,
    );
    assert_refused(&fetched, 403, "Sec-Fetch-Site", "cross-site");
    let signed_out =
        http_exact(port, "DELETE", "/v1/session", &[("host", &host), ("origin", "http://evil.example")], "");
    assert_refused(&signed_out, 403, "Origin", "evil.example");
    assert!(q.recorded().is_empty(), "nothing was submitted: {:?}", q.recorded());
    // The dashboard's own origin, and no origin at all (curl, the SDKs), are served.
    let own = format!("http://{host}");
    let reply = http_exact(
        port,
        "POST",
        "/v1/actions",
        &[("host", &host), ("origin", &own), ("sec-fetch-site", "same-origin"), json],
        call,
    );
    assert_eq!(reply.0, 200, "{reply:?}");
    assert_eq!(http_exact(port, "POST", "/v1/actions", &[("host", &host), json], call).0, 200);
    // Reads from another origin are no write (and a browser keeps their answers from the page).
    assert_eq!(
        http_exact(port, "GET", "/health", &[("host", &host), ("origin", "http://evil.example")], "").0,
        200
    );
}

/// Regression: a tokenless caller read `/v1/overview` (every agent's decision counts, the policy,
/// the log's checkpoint).
#[test]
fn unauthenticated_caller_cannot_read_overview() {
    let q = Quickstart::start();
    let reply = http_request(q.port, "GET", "/v1/overview", "");
    assert_eq!(reply.0, 403, "{reply:?}");
    assert!(reply.2.contains("may not read the overview"), "{reply:?}");
    assert_eq!(http_request(q.port, "GET", "/v1/stats", "").0, 403);
}

/// Regression: a tokenless caller read the explanation of calls it did not make, and found
/// actions by an id prefix (any other tokenless caller's, in a few billion guesses). It reads an
/// action by the full id its submission answered, and never an explanation.
#[test]
fn unauthenticated_caller_reads_only_its_action_by_full_id() {
    let q = Quickstart::start();
    let port = q.port;
    let id = q.submit();
    let mine = http_request(port, "GET", &format!("/v1/actions/{id}"), "");
    assert_eq!(mine.0, 200, "{mine:?}");
    assert_eq!(http_request(port, "GET", &format!("/v1/actions/{id}/events"), "").0, 200);
    let prefix = http_request(port, "GET", &format!("/v1/actions/{}", &id[..8]), "");
    assert_eq!(prefix.0, 404, "{prefix:?}");
    assert!(prefix.2.contains("full id"), "{prefix:?}");
    assert_eq!(http_request(port, "GET", &format!("/v1/actions/{}/events", &id[..12]), "").0, 404);
    // Nor by its approval's id.
    let approval =
        q.client().result("action.get", json!({"id": id}))["approval_id"].as_str().unwrap().to_owned();
    assert_eq!(http_request(port, "GET", &format!("/v1/actions/{approval}"), "").0, 404);
    // No explanation, of its own call or of another's (the operator's on the socket).
    let explained = http_request(port, "GET", &format!("/v1/actions/{id}/explain"), "");
    assert_eq!(explained.0, 403, "{explained:?}");
    let theirs = q.client().result(
        "govern",
        json!({"agent_id": "ops", "tool": "http", "operation": "get", "args": {"url": "https://example.com"}}),
    )["action_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(http_request(port, "GET", &format!("/v1/actions/{theirs}/explain"), "").0, 403);
    assert_eq!(
        http_request(port, "GET", &format!("/v1/actions/{theirs}"), "").0,
        404,
        "not a tokenless caller's"
    );
    // Starting takes the full id too.
    assert_eq!(http_request(port, "POST", &format!("/v1/actions/{}/start", &id[..8]), "").0, 404);
}

/// Regression: `faramesh dev` answered the quickstart's tokenless `curl` with 401 and printed no
/// word about a token; it says HTTP agents need one and how to give it.
#[test]
fn dev_says_http_agents_need_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut dev = Command::new(bin())
        .args(["dev", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("FARAMESH_LOG", "warn")
        .env_remove("FARAMESH_TOKEN")
        .env_remove("FARAMESH_APPROVER_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut printed = String::new();
    for line in BufReader::new(dev.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if line.starts_with("single-user mode") {
            break;
        }
    }
    let call =
        r#"{"agent_id":"demo","tool":"http","operation":"get","params":{"url":"https://example.com"}}"#;
    let (status, _, _) = http_request(port, "POST", "/v1/actions", call);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(dev.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    assert!(dev.wait().unwrap().success());
    assert_eq!(status, 401);
    assert!(
        printed.contains(&format!("agents calling http://127.0.0.1:{port}/v1/actions need a token here"))
            && printed.contains("FARAMESH_TOKEN=<secret>"),
        "{printed}"
    );
}

/// Anything configured keeps the quickstart's defaults off: no listener, no tokenless agents.
#[test]
fn serve_with_its_flags_opens_no_http_listener() {
    let daemon = Daemon::start(POLICY);
    let status = daemon.client().result("status", json!({}));
    assert_eq!(status["http"], Value::Null, "{status}");
    assert_eq!(status["single_user"], false);
}

/// `faramesh serve --demo`: a fresh state dir filled with the demo's calls (permits, denials by
/// rule and by profile, a rate-limited burst, an approved and finished call, a pending refund),
/// every record marked demo, and `status` saying it is a demo.
#[test]
fn serve_demo_fills_a_fresh_state_dir_with_marked_calls() {
    let home = tempfile::tempdir().unwrap();
    let (mut child, socket, dir) = start_demo(home.path(), None).unwrap();
    let mut c = Client::new(&socket);
    let status = c.result("status", json!({}));
    assert_eq!((status["demo"].as_bool(), status["single_user"].as_bool()), (Some(true), Some(true)));
    let actions = c.result("action.list", json!({"limit": 100}))["actions"].as_array().unwrap().clone();
    let codes: std::collections::BTreeSet<&str> =
        actions.iter().filter_map(|a| a["reason_code"].as_str()).collect();
    for code in [
        "POLICY_PERMIT",
        "POLICY_DENY",
        "RATE_EXCEEDED",
        "PROFILE_DISALLOWS_TOOL",
        "APPROVAL_GRANTED",
        "POLICY_DEFER",
    ] {
        assert!(codes.contains(code), "no {code} in the demo: {codes:?}");
    }
    assert!(actions.iter().all(|a| a["context"]["demo"] == true), "a record not marked demo");
    assert!(actions.iter().any(|a| a["status"] == "succeeded"), "no finished call");
    assert_eq!(c.result("approval.list", json!({}))["approvals"].as_array().unwrap().len(), 1);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(dir.starts_with(std::env::temp_dir()), "{}", dir.display());
    assert!(!dir.exists(), "the demo's state dir is removed when it stops: {}", dir.display());
}

/// Starts `faramesh serve --demo` with HOME a fresh directory and FARAMESH_SOCKET `inherited` (as a
/// shell that ran `eval "$(faramesh apply)"` passes it on); returns the process, its socket and
/// state dir once the demo's calls are in, or what it printed when it exited first.
pub(crate) fn start_demo(home: &Path, inherited: Option<&Path>) -> Result<(Child, PathBuf, PathBuf), String> {
    let mut serve = Command::new(bin());
    serve
        .args(["serve", "--demo"])
        .env("HOME", home)
        .env("FARAMESH_PORT", free_port().to_string())
        .env("FARAMESH_LOG", "warn")
        .current_dir(home)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for k in ["FARAMESH_POLICY", "FARAMESH_SOCKET", "FARAMESH_STATE_DIR", "FARAMESH_LISTEN", "FARAMESH_TOKEN"]
    {
        serve.env_remove(k);
    }
    if let Some(socket) = inherited {
        serve.env("FARAMESH_SOCKET", socket);
    }
    let mut child = serve.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut socket, mut dir, mut printed) = (None, None, String::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if let Some(s) = line.trim().strip_prefix("export FARAMESH_SOCKET=") {
            socket = Some(PathBuf::from(s));
        }
        if let Some(rest) = line.strip_prefix("faramesh demo: a fresh state dir ") {
            dir = rest.split_whitespace().next().map(PathBuf::from);
        }
        if line.contains("the demo's calls are in") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    match (socket, dir) {
        (Some(socket), Some(dir)) => Ok((child, socket, dir)),
        _ => {
            let status = child.wait().unwrap();
            Err(format!("{status}: {printed}"))
        }
    }
}

/// Regression: after the README's `eval "$(faramesh apply …)"` and `faramesh stop`, the shell
/// still exported FARAMESH_SOCKET and `faramesh serve --demo` refused to start. A variable that
/// points at no live daemon is ignored (the demo has its own socket); one that points at a
/// running daemon is named, with what to do.
#[test]
fn demo_ignores_an_inherited_socket_variable_with_no_daemon_behind_it() {
    let home = tempfile::tempdir().unwrap();
    let stale = home.path().join("gone/faramesh.sock");
    let (mut child, socket, dir) = start_demo(home.path(), Some(&stale)).unwrap();
    assert_ne!(socket, stale);
    assert_eq!(Client::new(&socket).result("status", json!({}))["demo"], true);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(!dir.exists(), "{}", dir.display());

    let live = Daemon::start(POLICY);
    let refused =
        start_demo(home.path(), Some(&live.socket)).expect_err("the demo started beside a live daemon");
    assert!(refused.contains("FARAMESH_SOCKET") && refused.contains("unset FARAMESH_SOCKET"), "{refused}");
    assert!(refused.contains(live.socket.to_str().unwrap()), "{refused}");
}

/// Regression: the demo's fresh state dir (under the system's temporary directory) was left
/// behind after Ctrl-C; it is removed when the demo stops.
#[test]
fn demo_removes_its_state_dir_on_ctrl_c() {
    let home = tempfile::tempdir().unwrap();
    let (mut child, _, dir) = start_demo(home.path(), None).unwrap();
    assert!(dir.join("state").is_dir(), "{}", dir.display());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(!dir.exists(), "the demo left {}", dir.display());
}

/// `faramesh tail` shows the last entries first, like `tail`, then follows (it looked hung).
#[test]
fn tail_shows_the_last_entries_then_follows() {
    let daemon = Daemon::start(POLICY);
    let mut c = daemon.client();
    let ids: Vec<String> = (0..3)
        .map(|_| {
            let d = c.result("govern", json!({"agent_id": "a", "tool": "http", "operation": "get"}));
            d["action_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut tail = Command::new(bin())
        .args(["tail", "-n", "2"])
        .env("FARAMESH_SOCKET", &daemon.socket)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    assert!(first.contains(&ids[1]) && second.contains(&ids[2]), "{first}\n{second}");
    let next = c.result("govern", json!({"agent_id": "a", "tool": "http", "operation": "get"}));
    let followed = lines.next().unwrap().unwrap();
    assert!(followed.contains(next["action_id"].as_str().unwrap()), "{followed}");
    let _ = tail.kill();
    let _ = tail.wait();
}
