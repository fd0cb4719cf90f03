//! `faramesh mcp --listen ADDR --upstream URL`: the MCP gateway for streamable-HTTP servers.
//! Every request body is parsed strictly and relayed as the proxy re-serializes it (`faramesh_proto::mcp`),
//! never as the bytes received; a body it cannot parse, a batch, or a `tools/call` it refuses
//! is answered (HTTP 400 with a JSON-RPC error) and sent nowhere. A `tools/call` is decided
//! first like in the stdio mode. The answers the proxy acts on (to `tools/list`, and to a call
//! held while it waits for a person) are read strictly and re-written message by message; other
//! responses (JSON or SSE) stream back unchanged: they go to the client only.
//!
//! Before any of that, every request passes the daemon's own door checks (`faramesh_net::guard`,
//! which the daemon's HTTP listener runs too): a `Host` that names loopback and the proxy's port
//! (DNS rebinding), no `Origin` but the proxy's own on any request (a web page on another site
//! neither reads the server's event stream nor sends calls), and a JSON body.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

/// http:// or https:// (rustls with ring and the web PKI roots) upstreams.
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::Shared;
use super::gate::{Verdict, gate};
use faramesh_net::guard::{self, Door};
use faramesh_proto::mcp::{self as mcp_msg, Message, Refusal};

/// The largest request body relayed.
const MAX_BODY: usize = 16 << 20;

#[derive(Clone)]
struct Proxy {
    shared: Arc<Shared>,
    client: Client<Connector, Body>,
    upstream: Uri,
    /// The listener, as the door checks see it.
    door: Door,
}

pub fn serve(shared: Arc<Shared>, listen: SocketAddr, upstream: &str) -> Result<ExitCode> {
    let upstream: Uri = upstream.parse().map_err(|_| anyhow!("`--upstream` `{upstream}` is not a URL"))?;
    if !matches!(upstream.scheme_str(), Some("http" | "https")) {
        return Err(anyhow!("`--upstream` must be an http:// or https:// URL; got `{upstream}`"));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let tls = rustls_client_config()?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on `{listen}`"))?;
        let local = listener.local_addr()?;
        let door = Door { guard_reads: true, ..Door::at(&local, false) };
        let app =
            Router::new().fallback(relay).with_state(Proxy { shared, client, upstream: upstream.clone(), door });
        eprintln!("faramesh mcp: serving MCP clients on http://{local}/mcp, relaying to {upstream}");
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
                }
            })
            .await
            .context("the HTTP proxy failed")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// TLS for https:// upstreams: ring, the web PKI roots, and the certificates in
/// `SSL_CERT_FILE` when it is set (a private CA).
fn rustls_client_config() -> Result<rustls::ClientConfig> {
    let ca = std::env::var_os("SSL_CERT_FILE")
        .filter(|f| !f.is_empty())
        .map(|f| faramesh_net::tls::PemFile::new("SSL_CERT_FILE", f));
    faramesh_net::tls::client_config(ca.as_ref(), None).map_err(|e| anyhow::anyhow!(e))
}

fn json_reply(v: &Value) -> Response {
    let mut resp = (StatusCode::OK, mcp_msg::encode(v)).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A refused request: HTTP 400 with the JSON-RPC error.
fn refused(refusal: &Refusal) -> Response {
    eprintln!("faramesh mcp: refused a request: {}", crate::term::safe(&refusal.message));
    let mut resp = (StatusCode::BAD_REQUEST, mcp_msg::encode(&refusal.to_json())).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A request the door checks turned away: their status (421, 403, 415, 400) with a JSON-RPC
/// error without id naming the header.
fn turned_away(r: &guard::Refused) -> Response {
    eprintln!("faramesh mcp: refused a request: {}", crate::term::safe(&r.message));
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": mcp_msg::INVALID_REQUEST, "message": r.message, "data": {"field": r.field}},
    });
    let mut resp = (r.status, mcp_msg::encode(&body)).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

async fn relay(State(p): State<Proxy>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if let Err(r) = guard::check(p.door, &parts.method, &parts.uri, &parts.headers) {
        return turned_away(&r);
    }
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, "request body over the proxy's 16 MiB limit")
                .into_response();
        }
    };
    if !bytes.is_empty()
        && let Err(r) = guard::require_json(&parts.headers)
    {
        return turned_away(&r);
    }
    if parts.headers.get(header::CONTENT_ENCODING).is_some_and(|v| v.as_bytes() != b"identity") {
        return refused(&Refusal {
            id: Value::Null,
            code: mcp_msg::INVALID_REQUEST,
            message: "an encoded (compressed) request body is not relayed".into(),
        });
    }
    // The id of a `tools/list` whose answer is reported to the daemon (and filtered).
    let mut listing: Option<Value> = None;
    // The id and action of a `tools/call` whose result the policy reads.
    let mut check: Option<(Value, String)> = None;
    // No body (GET opens the server's stream, DELETE ends a session): nothing to decide.
    let bytes: axum::body::Bytes = if bytes.is_empty() {
        bytes
    } else {
        let message = match mcp_msg::read_body(&bytes) {
            Ok(m) => m,
            Err(refusal) => return refused(&refusal),
        };
        match message {
            Message::ToolsCall { id, name, arguments, msg } => {
                if let Some(v) = parts.headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok())
                    && let Ok(mut proto) = p.shared.protocol.lock()
                {
                    *proto = Some(v.to_owned());
                }
                let params = msg.get("params").cloned().unwrap_or(Value::Null);
                // A call `--defer wait` may hold, from a client that reads event streams and
                // asked for progress: answered as an event stream, progress first.
                let streams = parts
                    .headers
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("text/event-stream"));
                if streams
                    && matches!(p.shared.defer, super::Defer::Wait(_))
                    && params.pointer("/_meta/progressToken").is_some()
                {
                    return held_call(p, parts, id, name, arguments, msg, params);
                }
                let shared = Arc::clone(&p.shared);
                let call_id = id.clone();
                let verdict =
                    tokio::task::spawn_blocking(move || gate(&shared, &id, &name, &arguments, &params, None))
                        .await;
                match verdict {
                    Ok(Verdict::Answer(reply)) => return json_reply(&reply),
                    Ok(Verdict::Forward { edited, check: action }) => {
                        check = action.map(|a| (call_id, a));
                        let mut msg = Value::Object(msg);
                        Verdict::rewrite(edited, &mut msg);
                        mcp_msg::encode(&msg).into()
                    }
                    Err(_) => {
                        return (StatusCode::INTERNAL_SERVER_ERROR, "the decision task failed")
                            .into_response();
                    }
                }
            }
            Message::ToolsList { id, msg } => {
                listing = Some(id);
                mcp_msg::encode_map(&msg).into()
            }
            other => mcp_msg::encode_map(other.body()).into(),
        }
    };
    // Relay to the upstream endpoint, keeping the query.
    forward(&p, parts, bytes, listing, check).await
}

/// Sends a request the proxy decided on (re-serialized) to the upstream, and relays the answer
/// (a `tools/list` answer is reported to the daemon first).
async fn forward(
    p: &Proxy,
    mut parts: axum::http::request::Parts,
    bytes: axum::body::Bytes,
    listing: Option<Value>,
    check: Option<(Value, String)>,
) -> Response {
    let mut target = p.upstream.clone().into_parts();
    if let Some(q) = parts.uri.query()
        && let Some(pq) = target.path_and_query.as_ref()
        && let Ok(joined) = format!("{}?{q}", pq.path()).parse()
    {
        target.path_and_query = Some(joined);
    }
    parts.uri = match Uri::from_parts(target) {
        Ok(u) => u,
        Err(_) => return (StatusCode::BAD_GATEWAY, "bad upstream URL").into_response(),
    };
    parts.headers.remove(header::HOST);
    parts.headers.remove(header::CONTENT_LENGTH);
    if !bytes.is_empty() {
        parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let upstream_req = axum::http::Request::from_parts(parts, Body::from(bytes));
    match p.client.request(upstream_req).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            match (listing, check) {
                (Some(id), _) => filter_listing(p, parts, Body::new(body), id).await,
                (None, Some((id, action))) => check_answer(p, parts, Body::new(body), id, action).await,
                (None, None) => Response::from_parts(parts, Body::new(body)),
            }
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("the MCP server at {} did not answer: {e}", p.upstream))
            .into_response(),
    }
}

/// A `tools/call` held while it waits for a person, answered as an event stream: progress
/// notifications while it waits, then the answer (the refusal, or the server's answer once it is
/// permitted and forwarded).
fn held_call(
    p: Proxy,
    parts: axum::http::request::Parts,
    id: Value,
    name: String,
    arguments: serde_json::Map<String, Value>,
    msg: serde_json::Map<String, Value>,
    params: Value,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::convert::Infallible>>(16);
    let event = |v: &Value| format!("event: message\ndata: {}\n\n", mcp_msg::encode(v));
    tokio::spawn(async move {
        let shared = Arc::clone(&p.shared);
        let progress_tx = tx.clone();
        let verdict = tokio::task::spawn_blocking(move || {
            let send = |note: Value| {
                let _ = progress_tx.blocking_send(Ok(event(&note)));
            };
            gate(&shared, &id, &name, &arguments, &params, Some(&send))
        })
        .await;
        let last = match verdict {
            Ok(Verdict::Answer(reply)) => event(&reply),
            Ok(Verdict::Forward { edited, check }) => {
                // A client that went away while the call was held gets nothing run for it.
                if tx.is_closed() {
                    eprintln!("faramesh mcp: the client left while its call waited; the call was not sent");
                    return;
                }
                let mut msg = Value::Object(msg);
                Verdict::rewrite(edited, &mut msg);
                let check = check.map(|a| (msg.get("id").cloned().unwrap_or(Value::Null), a));
                let resp = forward(&p, parts, mcp_msg::encode(&msg).into(), None, check).await;
                let is_stream = resp
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|t| t.starts_with("text/event-stream"));
                // The server's answer is read and re-written message by message (its event stream
                // as events, a JSON answer as one event); one it cannot read ends the stream.
                let Ok(b) = axum::body::to_bytes(resp.into_body(), MAX_BODY).await else { return };
                let reencoded = if is_stream {
                    reencode(&b, true, |v| mcp_msg::encode(&v))
                } else {
                    reencode(&b, false, |v| event(&v))
                };
                match reencoded {
                    Some(text) => text,
                    None => {
                        eprintln!("faramesh mcp: dropped an answer from the server that is not JSON-RPC");
                        return;
                    }
                }
            }
            Err(_) => return,
        };
        let _ = tx.send(Ok(last)).await;
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// The server's answer read strictly and written again message by message: one JSON-RPC message
/// (`stream` false: `each`'s text is the body) or an event stream whose events' `data` lines each
/// hold one (re-written as `data: <each>`; the events' other fields kept). `None` when any of it
/// is not UTF-8 or not JSON.
fn reencode(bytes: &[u8], stream: bool, mut each: impl FnMut(Value) -> String) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    if !stream {
        return Some(each(faramesh_proto::parse_strict(text.as_bytes()).ok()?));
    }
    let text = text.replace("\r\n", "\n");
    let mut out = String::new();
    for event in text.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let mut data = Vec::new();
        for line in event.lines() {
            match line.strip_prefix("data:") {
                Some(d) => data.push(d.strip_prefix(' ').unwrap_or(d)),
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        if !data.is_empty() {
            out.push_str("data: ");
            out.push_str(&each(faramesh_proto::parse_strict(data.join("\n").as_bytes()).ok()?));
            out.push('\n');
        }
        out.push('\n');
    }
    Some(out)
}

/// The server's answer to a `tools/list` (JSON, or an event stream carrying it), read whole and
/// relayed as `gate::on_listing` leaves it (tools reported to the daemon and pinned, quarantined
/// descriptions replaced, denied tools dropped with `--hide-denied-tools`), as in stdio mode. An
/// answer it cannot read is refused, not relayed.
/// The server's answer to a `tools/call` whose result the policy reads, each message read
/// strictly; the one answering `id` goes through [`checked_answer`](super::gate::checked_answer).
async fn check_answer(
    p: &Proxy,
    parts: axum::http::response::Parts,
    body: Body,
    id: Value,
    action: String,
) -> Response {
    let shared = Arc::clone(&p.shared);
    rewrite_answer(parts, body, "the MCP server's answer", move |msg| {
        if msg.get("id") == Some(&id) && msg.get("method").is_none() {
            super::gate::checked_answer(&shared, msg, &action)
        } else {
            msg
        }
    })
    .await
}

/// The server's answer to a `tools/list`, reported to the daemon and filtered.
async fn filter_listing(p: &Proxy, parts: axum::http::response::Parts, body: Body, id: Value) -> Response {
    let shared = Arc::clone(&p.shared);
    rewrite_answer(parts, body, "the MCP server's tools/list answer", move |mut msg| {
        if msg.get("id") == Some(&id) {
            super::gate::on_listing(&shared, &mut msg);
        }
        msg
    })
    .await
}

/// The server's answer read whole (up to 16 MiB), each message (one JSON answer, or each event of
/// a stream) read strictly and passed through `rewrite` (off the async runtime: it may ask the
/// daemon), then written again. An answer that cannot be read is not relayed (502).
async fn rewrite_answer(
    mut parts: axum::http::response::Parts,
    body: Body,
    what: &'static str,
    rewrite: impl Fn(Value) -> Value + Send + 'static,
) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::BAD_GATEWAY, format!("{what} is over 16 MiB")).into_response();
    };
    let stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let rewritten =
        tokio::task::spawn_blocking(move || reencode(&bytes, stream, |msg| mcp_msg::encode(&rewrite(msg))))
            .await;
    match rewritten {
        Ok(Some(text)) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(text))
        }
        _ => (StatusCode::BAD_GATEWAY, format!("{what} could not be read: not relayed")).into_response(),
    }
}
