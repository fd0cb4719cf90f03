//! The stdio proxy: the MCP server runs as a child; the client speaks on our stdin and stdout.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use faramesh_proto::mcp::{self as mcp_msg, Message};
use serde_json::{Map, Value, json};

use super::Shared;
use super::gate::{Verdict, gate, on_listing, refusal};

/// The longest line relayed (either way); longer ones are refused, not forwarded.
const MAX_LINE: usize = 16 << 20;

fn id_key(id: &Value) -> String {
    id.to_string()
}

/// Starts the server command and relays both ways until the server exits.
pub(super) fn run(shared: Arc<Shared>) -> Result<ExitCode> {
    let Some((program, rest)) = shared.args.command.split_first() else {
        bail!("give the MCP server's command after `--` (stdio), or `--listen ADDR --upstream URL` (HTTP)");
    };
    let mut child: Child = Command::new(program)
        .args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start the MCP server `{program}`"))?;
    if let Ok(mut to_server) = shared.to_server.lock() {
        *to_server = child.stdin.take();
    }
    let child_stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout from the MCP server"))?;

    // Server -> client.
    let from_server = {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || relay_server(&shared, child_stdout))
    };
    // Client -> server, until the client closes stdin.
    {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            relay_client(&shared);
            // The client is gone: close the server's stdin so it exits.
            if let Ok(mut s) = shared.to_server.lock() {
                s.take();
            }
        });
    }
    let _ = from_server.join();
    // The server closed its stdout: wait for it (a server that lingers is stopped).
    let status = wait_or_stop(&mut child)?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::from(1),
    })
}

fn wait_or_stop(child: &mut Child) -> Result<std::process::ExitStatus> {
    for _ in 0..100 {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    Ok(child.wait()?)
}

/// Reads one line of at most MAX_LINE bytes; `Ok(None)` at EOF, `Err(n)` for an over-long line
/// (skipped up to its end).
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<Result<(), usize>>> {
    buf.clear();
    let n = reader.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') && buf.len() > MAX_LINE {
        // Skip the rest of the line.
        let mut skipped = buf.len();
        loop {
            let chunk = reader.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    skipped += i + 1;
                    reader.consume(i + 1);
                    break;
                }
                None => {
                    let len = chunk.len();
                    skipped += len;
                    reader.consume(len);
                }
            }
        }
        return Ok(Some(Err(skipped)));
    }
    // The `\n` ends the line; anything else (a `\r` included) is for `mcp_msg::frame` to judge.
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    Ok(Some(Ok(())))
}

fn relay_client(shared: &Arc<Shared>) {
    let mut reader = BufReader::new(std::io::stdin().lock());
    let mut buf = Vec::new();
    loop {
        match read_line(&mut reader, &mut buf) {
            Ok(None) | Err(_) => return,
            Ok(Some(Err(n))) => {
                eprintln!("faramesh mcp: dropped a {n}-byte message from the client (over {MAX_LINE} bytes)");
                shared.send_client(&json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": format!("message over the proxy's {MAX_LINE}-byte limit")}}));
            }
            Ok(Some(Ok(()))) => {
                if buf.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
                    continue;
                }
                match mcp_msg::read(&buf) {
                    Err(refusal) => {
                        eprintln!(
                            "faramesh mcp: refused a message from the client: {}",
                            crate::term::safe(&refusal.message)
                        );
                        shared.send_client(&refusal.to_json());
                    }
                    Ok(Message::ToolsCall { id, name, arguments, msg }) => {
                        let shared = Arc::clone(shared);
                        std::thread::spawn(move || tools_call(&shared, id, &name, &arguments, msg));
                    }
                    Ok(Message::ToolsList { id, msg }) => {
                        if let Ok(mut l) = shared.listing.lock() {
                            l.insert(id_key(&id), ());
                        }
                        shared.send_server(&mcp_msg::encode_map(&msg));
                    }
                    Ok(Message::Other(msg)) => {
                        shared.send_server(&mcp_msg::encode_map(&msg));
                    }
                }
            }
        }
    }
}

fn relay_server(shared: &Arc<Shared>, stdout: std::process::ChildStdout) {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        match read_line(&mut reader, &mut buf) {
            Ok(None) | Err(_) => return,
            Ok(Some(Err(n))) => {
                eprintln!("faramesh mcp: dropped a {n}-byte message from the server (over {MAX_LINE} bytes)");
            }
            Ok(Some(Ok(()))) => {
                if buf.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
                    continue;
                }
                let mut msg = match mcp_msg::read(&buf) {
                    Ok(m) => Value::Object(m.body().clone()),
                    Err(refusal) => {
                        eprintln!(
                            "faramesh mcp: dropped a message from the server: {}",
                            crate::term::safe(&refusal.message)
                        );
                        continue;
                    }
                };
                // `initialize` (up to 2025-11-25) or `server/discover` (2026-07-28 and later).
                let name = msg
                    .pointer("/result/serverInfo/name")
                    .or_else(|| msg.pointer("/result/_meta/io.modelcontextprotocol~1serverInfo/name"))
                    .and_then(Value::as_str);
                if let Some(name) = name
                    && let Ok(mut n) = shared.server_name.lock()
                {
                    *n = Some(name.to_owned());
                }
                if let Some(v) = msg.pointer("/result/protocolVersion").and_then(Value::as_str)
                    && let Ok(mut p) = shared.protocol.lock()
                {
                    *p = Some(v.to_owned());
                }
                // The answer to the proxy's own listing: read, reported, and not relayed.
                let own = msg
                    .get("id")
                    .and_then(|id| shared.own_listings.lock().ok().and_then(|mut o| o.remove(&id_key(id))));
                if let Some(waiting) = own {
                    on_listing(shared, &mut msg);
                    let _ = waiting.send(msg);
                    continue;
                }
                let listed = msg
                    .get("id")
                    .and_then(|id| shared.listing.lock().ok().and_then(|mut l| l.remove(&id_key(id))))
                    .is_some();
                if listed {
                    on_listing(shared, &mut msg);
                }
                // The answer to a call whose result the policy reads: read by the daemon first.
                let checking = msg
                    .get("id")
                    .filter(|_| msg.get("method").is_none())
                    .and_then(|id| shared.checking.lock().ok().and_then(|mut c| c.remove(&id_key(id))));
                if let Some(action_id) = checking {
                    msg = super::gate::checked_answer(shared, msg, &action_id);
                }
                // Relayed as re-serialized, like every message.
                shared.send_client(&msg);
            }
        }
    }
}

/// The most pages of the proxy's own listing.
const MAX_PAGES: usize = 100;
/// How long the server may take to answer one page.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// Lists the server's tools itself (every page), for a client that calls a tool before it
/// listed any: a tool is decided only once its definition was seen and pinned.
fn list_tools(shared: &Arc<Shared>, envelope: Map<String, Value>) {
    let mut cursor: Option<Value> = None;
    for _ in 0..MAX_PAGES {
        let n = shared.own_seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = json!(format!("faramesh-list-{n}"));
        let (tx, rx) = std::sync::mpsc::channel();
        if let Ok(mut own) = shared.own_listings.lock() {
            own.insert(id_key(&id), tx);
        }
        let mut request = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {}});
        if let Some(c) = cursor.take() {
            request["params"]["cursor"] = c;
        }
        if !envelope.is_empty() {
            request["params"]["_meta"] = Value::Object(envelope.clone());
        }
        let answer = if shared.send_server(&mcp_msg::encode(&request)) {
            rx.recv_timeout(LIST_TIMEOUT).ok()
        } else {
            None
        };
        if let Ok(mut own) = shared.own_listings.lock() {
            own.remove(&id_key(&id));
        }
        match answer.and_then(|a| a.pointer("/result/nextCursor").cloned()) {
            Some(next) if !next.is_null() => cursor = Some(next),
            _ => return,
        }
    }
}

fn tools_call(
    shared: &Arc<Shared>,
    id: Value,
    name: &str,
    arguments: &Map<String, Value>,
    msg: Map<String, Value>,
) {
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    if shared.listed.lock().is_ok_and(|l| l.is_none()) {
        // From 2026-07-28 each request carries the protocol's envelope (version, the client's
        // capabilities) in `_meta`: the proxy's listing carries the client's call's.
        let envelope: Map<String, Value> = params
            .get("_meta")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.starts_with("io.modelcontextprotocol/"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        list_tools(shared, envelope);
        // A server that could not list its tools has none the proxy calls.
        if let Ok(mut l) = shared.listed.lock() {
            l.get_or_insert_default();
        }
    }
    let notify = |note: Value| shared.send_client(&note);
    match gate(shared, &id, name, arguments, &params, Some(&notify)) {
        Verdict::Answer(reply) => shared.send_client(&reply),
        Verdict::Forward { edited, check } => {
            if let Some(action_id) = check
                && let Ok(mut c) = shared.checking.lock()
            {
                c.insert(id_key(&id), action_id);
            }
            let mut msg = Value::Object(msg);
            Verdict::rewrite(edited, &mut msg);
            if !shared.send_server(&mcp_msg::encode(&msg)) {
                let gone = json!({"effect": "PERMIT", "reason_code": "SERVER_GONE"});
                shared.send_client(&refusal(shared, id, "the MCP server is gone", gone));
            }
        }
    }
}
