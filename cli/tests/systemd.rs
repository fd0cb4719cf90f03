//! systemd integration against the real binary: the notify protocol on a test `NOTIFY_SOCKET`
//! (path and abstract), the watchdog pings, socket
//! activation through `systemd-socket-activate`, and journald fields on the native protocol.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const POLICY: &str = "version: 1\nrules:\n  - id: read-ok\n    match: { tool: read_file, op: \"*\" }\n    allow: true\n  - id: no-delete\n    match: { tool: delete_file, op: \"*\" }\n    deny: true\n    description: Deleting files is not allowed\n";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_faramesh")
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
        Setup { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn serve(&self) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--policy"])
            .arg(self.path("policy.yaml"))
            .arg("--socket")
            .arg(self.path("f.sock"))
            .arg("--state-dir")
            .arg(self.path("state"))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }
}

fn call(socket: &Path, method: &str, params: Value) -> Value {
    let mut s = UnixStream::connect(socket).unwrap();
    let line = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string() + "\n";
    s.write_all(line.as_bytes()).unwrap();
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).unwrap();
    serde_json::from_str(&reply).unwrap()
}

/// Datagrams received on a test notify socket.
struct Notes {
    sock: UnixDatagram,
    seen: Vec<(Instant, String)>,
}

impl Notes {
    fn new(sock: UnixDatagram) -> Notes {
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        Notes { sock, seen: Vec::new() }
    }
    fn poll(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.sock.recv(&mut buf) {
            self.seen.push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
        }
    }
    /// Waits (up to 20 s) for a datagram containing `what`; returns it.
    fn wait_for(&mut self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some((_, m)) = self.seen.iter().find(|(_, m)| m.contains(what)) {
                let m = m.clone();
                self.seen.retain(|(_, x)| *x != m);
                return m;
            }
            assert!(Instant::now() < deadline, "no notification with {what:?}; saw {:?}", self.seen);
            self.poll();
        }
    }
    fn pings_between(&self, from: Instant, to: Instant) -> usize {
        self.seen.iter().filter(|(t, m)| *t >= from && *t <= to && m == "WATCHDOG=1").count()
    }
}

fn stop(mut child: Child) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    child.wait().unwrap();
}

#[test]
fn notify_ready_reload_watchdog_and_stopping() {
    let s = Setup::new();
    let notify_path = s.path("notify.sock");
    let mut notes = Notes::new(UnixDatagram::bind(&notify_path).unwrap());
    let child = s.serve().env("NOTIFY_SOCKET", &notify_path).env("WATCHDOG_USEC", "400000").spawn().unwrap();

    let ready = notes.wait_for("READY=1");
    // READY=1 only once the socket answers.
    assert_eq!(
        call(&s.path("f.sock"), "status", json!({}))["result"]["log"]["size"].as_u64().map(|n| n >= 2),
        Some(true)
    );
    assert!(ready.contains("STATUS=serving, policy "), "{ready}");
    assert!(ready.contains(", 0 decisions"), "{ready}");

    // The watchdog pings at half its interval while healthy.
    notes.wait_for("WATCHDOG=1");
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(1200));
    notes.poll();
    assert!(notes.pings_between(t0, Instant::now()) >= 3, "{:?}", notes.seen);

    // SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGHUP)
        .unwrap();
    let reloading = notes.wait_for("RELOADING=1");
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(usec > 0);
    notes.wait_for("READY=1");

    // A hung commit stopping the pings is tested on the log itself (log/tests/log.rs,
    // `a_commit_that_hangs_shows_as_a_busy_writer_until_it_ends`) and in `systemd::healthy`.

    stop(child);
    notes.wait_for("STOPPING=1");
}

#[test]
fn notify_to_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let s = Setup::new();
    let name = format!("faramesh-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let mut notes = Notes::new(UnixDatagram::bind_addr(&addr).unwrap());
    let child = s.serve().env("NOTIFY_SOCKET", format!("@{name}")).spawn().unwrap();
    assert!(notes.wait_for("READY=1").contains("STATUS=serving"));
    stop(child);
    notes.wait_for("STOPPING=1");
}

#[test]
fn socket_activation_uses_the_passed_socket() {
    let Ok(activate) = which("systemd-socket-activate") else {
        panic!("systemd-socket-activate is needed (Debian package systemd)");
    };
    let s = Setup::new();
    let sock = s.path("f.sock");
    let log = std::fs::File::create(s.path("daemon.log")).unwrap();
    let mut child = Command::new(activate)
        .arg("-l")
        .arg(&sock)
        .arg(bin())
        .args(["serve", "--policy"])
        .arg(s.path("policy.yaml"))
        .arg("--socket")
        .arg(&sock)
        .arg("--state-dir")
        .arg(s.path("state"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // systemd-socket-activate binds the path, then starts the daemon on the first connection.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "systemd-socket-activate did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&sock).unwrap());
    let reply = call(&sock, "govern", json!({"agent_id": "a", "tool": "read_file", "operation": "invoke"}));
    assert_eq!(reply["result"]["effect"], "PERMIT", "{reply}");
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&sock).unwrap()),
        inode,
        "the daemon bound the path itself"
    );
    let log_text = std::fs::read_to_string(s.path("daemon.log")).unwrap();
    assert!(log_text.contains("using the socket passed by systemd"), "{log_text}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    child.wait().unwrap();
    assert!(sock.exists(), "a passed socket is left to its owner");
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.exists()))
        .ok_or(())
}

/// Parses journald's native protocol: `KEY=value\n`, or `KEY\n<u64 LE length><value>\n`.
fn journal_fields(datagram: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let nl = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.push((
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            ));
            rest = rest.get(nl + 1..).unwrap_or_default();
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let len = u64::from_le_bytes(rest[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let value = &rest[nl + 9..nl + 9 + len];
            out.push((key, String::from_utf8_lossy(value).into_owned()));
            rest = rest.get(nl + 10 + len..).unwrap_or_default();
        }
    }
    out
}

#[test]
#[ignore = "needs root and no running journald: it listens on /run/systemd/journal/socket itself"]
fn decisions_reach_journald_with_structured_fields() {
    let journal = Path::new("/run/systemd/journal/socket");
    assert!(!journal.exists(), "a journald is running here; this test needs the path for itself");
    std::fs::create_dir_all(journal.parent().unwrap()).unwrap();
    let sock = UnixDatagram::bind(journal).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_file("/run/systemd/journal/socket");
        }
    }
    let _cleanup = Cleanup;
    let s = Setup::new();
    let child = s.serve().env("JOURNAL_STREAM", "8:12345").spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(s.path("f.sock")).is_err() {
        assert!(Instant::now() < deadline, "daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let reply = call(
        &s.path("f.sock"),
        "govern",
        json!({"agent_id": "j-agent", "tool": "delete_file", "operation": "invoke"}),
    );
    let action_id = reply["result"]["action_id"].as_str().unwrap().to_owned();
    let mut found = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 1 << 16];
    while found.is_none() && Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let fields = journal_fields(&buf[..n]);
            if fields.iter().any(|(k, v)| k == "FARAMESH_ACTION_ID" && *v == action_id) {
                found = Some(fields);
            }
        }
    }
    stop(child);
    let fields = found.expect("no journal entry for the decision");
    let get = |k: &str| fields.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    assert_eq!(get("FARAMESH_EFFECT"), Some("DENY"));
    assert_eq!(get("FARAMESH_REASON"), Some("POLICY_DENY"));
    assert_eq!(get("FARAMESH_AGENT"), Some("j-agent"));
    assert_eq!(get("FARAMESH_TOOL"), Some("delete_file"));
    assert!(get("FARAMESH_LATENCY_US").and_then(|v| v.parse::<u64>().ok()).is_some());
    assert_eq!(get("SYSLOG_IDENTIFIER"), Some("faramesh"));
    assert_eq!(get("MESSAGE"), Some("decision"));
}
