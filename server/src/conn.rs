//! One client connection: newline-delimited JSON-RPC framing, limits, dispatch (the core reads
//! the method and its params once, `service::apply::Request::parse`, and `Service::apply` runs it
//! with the peer's credentials as the caller's identity), pipelined replies.

use std::sync::Arc;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{Mutex, watch};
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, FramedRead};

use super::rpc::{self, codes};
use faramesh_daemon::service::apply::Request;
use faramesh_daemon::service::{Identity, Seen, Service};

/// One request being handled: its reply line, if it gets one (notifications do not).
type BoxedReply = std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send>>;

/// A JSON-RPC error response line.
pub fn error_line(id: &Value, code: i32, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

/// Serves one connection until the peer closes it, it idles out, breaks a limit, or the
/// daemon shuts down.
pub async fn serve(stream: UnixStream, service: Service, mut shutdown: watch::Receiver<bool>) {
    let counted = service.clone();
    let _open = counted.connection(faramesh_daemon::service::metrics::Transport::Socket);
    let who = super::peercred::identity(&stream);
    let limits = service.limits().clone();
    let (read_half, write_half) = stream.into_split();
    let codec = AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), Vec::new(), limits.max_line_bytes);
    let mut frames = FramedRead::new(read_half, codec);
    let out = Arc::new(Out { half: Mutex::new(Some(write_half)) });
    let conn = Conn { service, who, out: Arc::clone(&out) };
    let conn = Arc::new(conn);
    // The requests of this connection run as futures of this one task: no task spawned per
    // line and no wake-up hop between tasks, and replies that are ready together leave in one
    // write. Replies may overtake each other (JSON-RPC ids pair them); requests still run
    // concurrently with each other, up to the in-flight limit.
    let mut pending: FuturesUnordered<BoxedReply> = FuturesUnordered::new();
    let max_in_flight = limits.max_in_flight_per_connection.max(1);
    loop {
        let idle = pending.is_empty();
        let can_read = pending.len() < max_in_flight;
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(reply) = pending.next(), if !pending.is_empty() => {
                let mut ready: Vec<String> = reply.into_iter().collect();
                // Every other reply that is ready now goes out with it.
                while let Some(Some(more)) = pending.next().now_or_never() {
                    ready.extend(more);
                }
                if !ready.is_empty() && out.send_all(ready).await.is_err() {
                    break;
                }
            }
            next = tokio::time::timeout(limits.idle_timeout, frames.next()), if can_read => {
                let frame = match next {
                    Err(_) if idle => break, // idle timeout
                    Err(_) => continue,
                    Ok(None) => break,
                    Ok(Some(Err(AnyDelimiterCodecError::MaxChunkLengthExceeded))) => {
                        let msg = format!(
                            "request line exceeds the {}-byte limit; closing the connection",
                            limits.max_line_bytes
                        );
                        counted.count_error(false);
                        let _ = out.send(error_line(&Value::Null, codes::INVALID_REQUEST, &msg)).await;
                        break;
                    }
                    Ok(Some(Err(_))) => break,
                    Ok(Some(Ok(bytes))) => bytes,
                };
                let conn = Arc::clone(&conn);
                pending.push(Box::pin(async move { conn.handle_line(&frame).await }));
            }
        }
    }
    // Finish what is in flight, then close the writing side (subscriptions stop at their next
    // entry).
    while let Some(reply) = pending.next().await {
        if let Some(reply) = reply {
            let _ = out.send(reply).await;
        }
    }
    drop(conn);
    out.close().await;
}

/// The writing half of a connection. Each reply is written by the task that produced it, whole,
/// under the lock (no hop through a writer task: on a machine where a wake-up costs more than
/// the write, that hop was a measurable part of every request).
struct Out {
    half: Mutex<Option<OwnedWriteHalf>>,
}

impl Out {
    /// Writes `line` and a newline; `Err` once the connection is closed or broken.
    async fn send(&self, line: String) -> Result<(), ()> {
        self.send_all(vec![line]).await
    }

    /// Writes `lines`, each followed by a newline, in one write.
    async fn send_all(&self, lines: Vec<String>) -> Result<(), ()> {
        let mut buf = match <[String; 1]>::try_from(lines) {
            Ok([one]) => one,
            Err(many) => many.join("\n"),
        };
        buf.push('\n');
        let mut half = self.half.lock().await;
        let w = half.as_mut().ok_or(())?;
        if w.write_all(buf.as_bytes()).await.is_err() {
            *half = None;
            return Err(());
        }
        Ok(())
    }

    async fn close(&self) {
        if let Some(mut w) = self.half.lock().await.take() {
            let _ = w.shutdown().await;
        }
    }
}

struct Conn {
    service: Service,
    who: Identity,
    out: Arc<Out>,
}

impl Conn {
    /// An error reply, counted in `status`.
    fn error(&self, id: &Value, code: i32, message: &str) -> String {
        self.service.count_error(code == codes::INTERNAL_ERROR);
        error_line(id, code, message)
    }

    async fn handle_line(&self, raw: &[u8]) -> Option<String> {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t,
            Err(e) => {
                let msg = format!(
                    "parse error: request is not valid UTF-8 (invalid byte at offset {})",
                    e.valid_up_to()
                );
                return Some(self.error(&Value::Null, codes::PARSE_ERROR, &msg));
            }
        };
        let value: Value = match faramesh_proto::parse_strict(text.as_bytes()) {
            Ok(v) => v,
            Err(faramesh_proto::StrictJsonError::DuplicateKey(path)) => {
                // Parsers disagree on which value of a repeated key counts: refuse, never guess.
                let id = serde_json::from_str::<Value>(text).ok().and_then(|v| v.get("id").cloned());
                let msg = format!("invalid params: duplicate key `{path}`: a key may appear once per object");
                return Some(self.error(&id.unwrap_or(Value::Null), codes::INVALID_PARAMS, &msg));
            }
            Err(e) => {
                let e = e.to_string();
                let detail = if e.contains("recursion limit") {
                    "JSON nested deeper than 128 levels".to_owned()
                } else {
                    e
                };
                return Some(self.error(&Value::Null, codes::PARSE_ERROR, &format!("parse error: {detail}")));
            }
        };
        match value {
            Value::Array(items) if items.is_empty() => {
                Some(self.error(&Value::Null, codes::INVALID_REQUEST, "invalid request: empty batch"))
            }
            Value::Array(items) => {
                let mut replies = Vec::new();
                for item in items {
                    if let Some(r) = self.dispatch(item).await {
                        replies.push(r);
                    }
                }
                if replies.is_empty() { None } else { Some(format!("[{}]", replies.join(","))) }
            }
            other => self.dispatch(other).await,
        }
    }

    async fn dispatch(&self, request: Value) -> Option<String> {
        let Value::Object(mut obj) = request else {
            return Some(self.error(
                &Value::Null,
                codes::INVALID_REQUEST,
                "invalid request: expected an object",
            ));
        };
        let id = obj.remove("id");
        let is_notification = id.is_none();
        let id = id.unwrap_or(Value::Null);
        if !matches!(id, Value::Null | Value::String(_) | Value::Number(_)) {
            return Some(self.error(
                &Value::Null,
                codes::INVALID_REQUEST,
                "invalid request: `id` must be a string, number or null",
            ));
        }
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Some(self.error(
                &id,
                codes::INVALID_REQUEST,
                "invalid request: `jsonrpc` must be \"2.0\"",
            ));
        }
        let Some(Value::String(method)) = obj.remove("method") else {
            return Some(self.error(&id, codes::INVALID_REQUEST, "invalid request: missing `method`"));
        };
        // Params are by name only: an array of positional params (which JSON-RPC allows) is
        // refused like any other non-object. (An array as the whole line is a batch, above.)
        let params = match obj.remove("params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Some(self.error(
                    &id,
                    codes::INVALID_PARAMS,
                    "invalid params: `params` must be an object (parameters by name, not an array)",
                ));
            }
        };
        if method == "log.subscribe" {
            return Some(self.subscribe(&id));
        }
        let outcome = match Request::parse(&method, &params) {
            Ok(Some(request)) => self.service.apply(request, &self.who).await,
            Ok(None) if is_notification => return None,
            Ok(None) => {
                return Some(self.error(&id, codes::METHOD_NOT_FOUND, &format!("unknown method `{method}`")));
            }
            Err(e) => Err(e),
        };
        if is_notification {
            return None;
        }
        Some(match outcome {
            Ok(result) => format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{result}}}"),
            Err(e) => {
                self.service.count_error(e.kind == faramesh_daemon::service::ErrorKind::Internal);
                let mut error = json!({"code": rpc::code_of(&e), "message": e.message});
                if let (Some(field), Value::Object(m)) = (&e.field, &mut error) {
                    m.insert("data".into(), json!({ "field": field }));
                }
                json!({"jsonrpc": "2.0", "id": id, "error": error}).to_string()
            }
        })
    }

    /// `log.subscribe`: answers with a subscription id, then sends every committed entry as a
    /// `log.entry` notification until the connection closes.
    fn subscribe(&self, id: &Value) -> String {
        let sub_id = faramesh_daemon::service::files::new_id();
        // Who may see what is decided by the core; this only relays.
        let mut entries = self.service.subscribe(&self.who);
        let out = Arc::clone(&self.out);
        let sub = sub_id.clone();
        tokio::spawn(async move {
            while let Some(seen) = entries.next().await {
                let line = match seen {
                    Seen::Entry(record) => format!(
                        "{{\"jsonrpc\":\"2.0\",\"method\":\"log.entry\",\"params\":{{\"subscription\":\"{sub}\",\"result\":{record}}}}}"
                    ),
                    Seen::Lagged(n) => json!({
                        "jsonrpc": "2.0", "method": "log.lagged",
                        "params": {"subscription": sub, "result": {"missed": n}}
                    })
                    .to_string(),
                };
                if out.send(line).await.is_err() {
                    break;
                }
            }
        });
        json!({"jsonrpc": "2.0", "id": id, "result": sub_id}).to_string()
    }
}
