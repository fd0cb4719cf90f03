//! End-to-end: the real `faramesh` binary serving on a temporary socket with a real redb log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faramesh_policy::cases::parse_cases;
use serde_json::{Value, json};

struct Daemon {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    dir: PathBuf,
    socket: PathBuf,
    state: PathBuf,
    policy: PathBuf,
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_faramesh")
}

impl Daemon {
    fn start(policy_text: &str) -> Daemon {
        Daemon::new(policy_text, false)
    }

    /// A daemon whose socket anyone on the host may connect to (for the non-approver test).
    fn start_open(policy_text: &str) -> Daemon {
        Daemon::new(policy_text, true)
    }

    fn new(policy_text: &str, open: bool) -> Daemon {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        if open {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::create_dir(dir.join("run")).unwrap();
            std::fs::set_permissions(dir.join("run"), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let policy = dir.join("policy.yaml");
        std::fs::write(&policy, policy_text).unwrap();
        let mut d = Daemon {
            child: None,
            socket: dir.join("run/faramesh.sock"),
            state: dir.join("state"),
            policy,
            dir,
            _dir: tmp,
        };
        d.spawn_with(if open { &["--socket-mode", "666"] } else { &[] });
        d
    }

    fn spawn(&mut self) {
        self.spawn_with(&[]);
    }

    fn spawn_with(&mut self, extra: &[&str]) {
        self.spawn_with_env(extra, &[]);
    }

    fn spawn_with_env(&mut self, extra: &[&str], env: &[(&str, &str)]) {
        let child = Command::new(bin())
            .args(["serve", "--policy"])
            .arg(&self.policy)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state)
            .args(extra)
            .env("FARAMESH_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&self.socket).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let mut err = String::new();
                self.child.as_mut().unwrap().stderr.take().unwrap().read_to_string(&mut err).unwrap();
                panic!("daemon exited early ({status}): {err}");
            }
            assert!(Instant::now() < deadline, "daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    fn stop(&mut self) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.child.take().unwrap().wait().unwrap()
    }

    fn kill9(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        self.child.take().unwrap().wait().unwrap();
    }

    fn client(&self) -> Client {
        Client::new(&self.socket)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Client {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl Client {
    fn new(socket: &Path) -> Client {
        let stream = UnixStream::connect(socket).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader, next_id: 1 }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
        self.stream.write_all(b"\n").unwrap();
    }

    fn read(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).unwrap()),
        }
    }

    fn raw(&mut self, bytes: &[u8]) -> Value {
        self.send_raw(bytes);
        self.read().expect("no reply")
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let reply = self.raw(
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string().as_bytes(),
        );
        assert_eq!(reply["id"], id, "{reply}");
        reply
    }

    fn result(&mut self, method: &str, params: Value) -> Value {
        let reply = self.call(method, params);
        assert!(reply.get("error").is_none(), "{method} failed: {reply}");
        reply["result"].clone()
    }
}

#[path = "daemon_e2e/protocol.rs"]
mod protocol;
#[allow(unused_imports)]
use protocol::*;

#[path = "daemon_e2e/approvals.rs"]
mod approvals;
#[allow(unused_imports)]
use approvals::*;

#[path = "daemon_e2e/log_tools.rs"]
mod log_tools;
#[allow(unused_imports)]
use log_tools::*;

#[path = "daemon_e2e/http_access.rs"]
mod http_access;
#[allow(unused_imports)]
use http_access::*;

#[path = "daemon_e2e/quickstart.rs"]
mod quickstart;
#[allow(unused_imports)]
use quickstart::*;

#[path = "daemon_e2e/hooks.rs"]
mod hooks;
#[allow(unused_imports)]
use hooks::*;

#[path = "daemon_e2e/hook_paths.rs"]
mod hook_paths;
#[allow(unused_imports)]
use hook_paths::*;

#[path = "daemon_e2e/notifications_grants.rs"]
mod notifications_grants;
#[allow(unused_imports)]
use notifications_grants::*;

#[path = "daemon_e2e/provenance.rs"]
mod provenance;

#[path = "daemon_e2e/mcp_gateway.rs"]
mod mcp_gateway;

#[path = "daemon_e2e/untrusted_text.rs"]
mod untrusted_text;

#[path = "daemon_e2e/kill_switch.rs"]
mod kill_switch;

#[path = "daemon_e2e/shadow.rs"]
mod shadow;

#[path = "daemon_e2e/sequences.rs"]
mod sequences;

#[path = "daemon_e2e/detect.rs"]
mod detect;

#[path = "daemon_e2e/edits.rs"]
mod edits;

#[path = "daemon_e2e/results.rs"]
mod results;

#[path = "daemon_e2e/signed.rs"]
mod signed;
