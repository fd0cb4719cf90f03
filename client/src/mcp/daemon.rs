//! The daemon's socket, as the proxy uses it: a few connections kept open and reused (a call
//! takes an idle one or opens one, and puts it back when the answer came), so a `tools/call`
//! costs no connect. Calls in parallel use connections of their own.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Result;
use faramesh_proto::GovernAnswer;
use serde_json::Value;

use crate::socket;

/// Idle connections kept for reuse.
const KEEP: usize = 8;
/// An idle connection older than this is closed rather than reused: well inside the daemon's
/// idle timeout (300 s by default), so a reused connection is never one the daemon closed.
const FRESH: Duration = Duration::from_secs(60);

/// The daemon at one socket path.
pub(crate) struct Daemon {
    socket: PathBuf,
    idle: Mutex<Vec<(UnixStream, Instant)>>,
}

impl Daemon {
    pub(crate) fn new(socket: PathBuf) -> Daemon {
        Daemon { socket, idle: Mutex::new(Vec::new()) }
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// Calls `method`; the result, or the daemon's error (a connection that failed is dropped).
    pub(crate) fn call(&self, method: &str, params: Value) -> Result<Value> {
        let stream = self.take()?;
        let result = socket::call_on(&stream, method, params);
        // An answer, or an error the daemon sent, leaves the connection usable; anything else
        // (a broken or half-read connection) drops it.
        if result.as_ref().map_or_else(|e| e.downcast_ref::<socket::RpcError>().is_some(), |_| true) {
            self.give_back(stream);
        }
        result
    }

    /// `govern` (records the decision) or `decide` (does not), read as the typed answer.
    pub(crate) fn decision(&self, method: &str, call: Value) -> Result<GovernAnswer> {
        Ok(serde_json::from_value(self.call(method, call)?)?)
    }

    fn take(&self) -> Result<UnixStream> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((stream, since)) = idle.pop() {
            if since.elapsed() < FRESH {
                return Ok(stream);
            }
        }
        drop(idle);
        socket::connect(&self.socket)
    }

    fn give_back(&self, stream: UnixStream) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < KEEP {
            idle.push((stream, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;
    use std::path::Path;

    use super::Daemon;

    /// A stand-in socket peer that answers every line with `{"result": <connection number>}`
    /// and counts the connections it accepted.
    fn echo_daemon(path: &Path) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
        let listener = UnixListener::bind(path).unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = std::sync::Arc::clone(&accepted);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                let stream = stream.unwrap();
                std::thread::spawn(move || {
                    let mut w = stream.try_clone().unwrap();
                    for line in BufReader::new(stream).lines() {
                        let line = line.unwrap();
                        let reply = if line.contains("\"fail\"") {
                            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#.to_owned()
                        } else {
                            format!(r#"{{"jsonrpc":"2.0","id":1,"result":{n}}}"#)
                        };
                        writeln!(w, "{reply}").unwrap();
                    }
                });
            }
        });
        accepted
    }

    #[test]
    fn calls_reuse_one_connection_and_an_error_answer_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let accepted = echo_daemon(&path);
        let daemon = Daemon::new(path);
        for _ in 0..5 {
            assert_eq!(daemon.call("status", serde_json::json!({})).unwrap(), 1);
        }
        assert!(daemon.call("fail", serde_json::json!({})).is_err());
        assert_eq!(daemon.call("status", serde_json::json!({})).unwrap(), 1);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
