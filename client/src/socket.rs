//! A small synchronous JSON-RPC client for the daemon's socket, used by every command that talks
//! to a running daemon.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow};
use serde_json::{Value, json};

/// The socket: `--socket`, `FARAMESH_SOCKET`, or `~/.faramesh/runtime/faramesh.sock`.
pub fn default_socket() -> PathBuf {
    if let Some(s) = std::env::var_os("FARAMESH_SOCKET").filter(|s| !s.is_empty()) {
        return PathBuf::from(s);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".faramesh/runtime/faramesh.sock")
}

/// An error the daemon returned.
#[derive(Debug)]
pub struct RpcError {
    /// The JSON-RPC error code (`docs/protocol.md`), for programs; people read the message.
    pub code: i64,
    /// The daemon's message: what happened, in words.
    pub message: String,
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RpcError {}

/// Connects to the daemon, with errors a person can act on.
pub fn connect(socket: &Path) -> Result<UnixStream> {
    match UnixStream::connect(socket) {
        Ok(s) => {
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            Ok(s)
        }
        Err(e)
            if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) =>
        {
            Err(anyhow!(
                "the daemon is not running on `{}` (start it with `faramesh apply` or `faramesh serve`, or set FARAMESH_SOCKET)",
                socket.display()
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let owner = std::fs::metadata(socket)
                .map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    format!("uid {} or gid {}", m.uid(), m.gid())
                })
                .unwrap_or_else(|_| "its owner or group".to_owned());
            Err(anyhow!(
                "permission denied on `{}`: only {owner} may connect (ask to be added to the group)",
                socket.display()
            ))
        }
        Err(e) => Err(anyhow!("cannot connect to `{}`: {e}", socket.display())),
    }
}

/// Calls `method` and returns its result (or the daemon's error).
pub fn call(socket: &Path, method: &str, params: Value) -> Result<Value> {
    let stream = connect(socket)?;
    call_on(&stream, method, params)
}

/// Calls `method` on an open connection.
pub fn call_on(stream: &UnixStream, method: &str, params: Value) -> Result<Value> {
    let mut w = stream;
    let line = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    w.write_all(line.as_bytes())?;
    w.write_all(b"\n")?;
    let mut reader = BufReader::new(stream);
    let mut reply = String::new();
    reader.read_line(&mut reply)?;
    if reply.is_empty() {
        return Err(anyhow!("the daemon closed the connection without answering"));
    }
    let v: Value = serde_json::from_str(&reply)?;
    if let Some(err) = v.get("error") {
        return Err(RpcError {
            code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: err.get("message").and_then(Value::as_str).unwrap_or("error").to_owned(),
        }
        .into());
    }
    Ok(v.get("result").cloned().unwrap_or(Value::Null))
}
