//! `faramesh mcp --listen ADDR --upstream URL`: the MCP gateway for streamable-HTTP servers.
//! Every request body is parsed strictly and relayed as the proxy re-serializes it (`faramesh_proto::mcp`),
//! never as the bytes received; a body it cannot parse, a batch, or a `tools/call` it refuses
//! is answered (HTTP 400 with a JSON-RPC error) and sent nowhere. A `tools/call` is decided
//! first like in the stdio mode. Responses (JSON or SSE) stream back unchanged: they go to the
//! client, and nothing in them reaches the server.

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
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::Shared;
use super::gate::{gate, strip_elicitation};
use faramesh_proto::mcp::{self as mcp_msg, Message, Refusal};

/// The largest request body relayed.
const MAX_BODY: usize = 16 << 20;

#[derive(Clone)]
struct Proxy {
    shared: Arc<Shared>,
    client: Client<HttpConnector, Body>,
    upstream: Uri,
}

pub fn serve(shared: Arc<Shared>, listen: SocketAddr, upstream: &str) -> Result<ExitCode> {
    let upstream: Uri = upstream.parse().map_err(|_| anyhow!("`--upstream` `{upstream}` is not a URL"))?;
    if upstream.scheme_str() != Some("http") {
        return Err(anyhow!("`--upstream` must be an http:// URL (a local MCP server); got `{upstream}`"));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let client = Client::builder(TokioExecutor::new()).build_http();
        let app = Router::new().fallback(relay).with_state(Proxy { shared, client, upstream: upstream.clone() });
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on `{listen}`"))?;
        let local = listener.local_addr()?;
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

fn json_reply(v: &Value) -> Response {
    let mut resp = (StatusCode::OK, mcp_msg::encode(v)).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A refused request: HTTP 400 with the JSON-RPC error.
fn refused(refusal: &Refusal) -> Response {
    eprintln!("faramesh mcp: refused a request: {}", refusal.message);
    let mut resp = (StatusCode::BAD_REQUEST, mcp_msg::encode(&refusal.to_json())).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

async fn relay(State(p): State<Proxy>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, "request body over the proxy's 16 MiB limit")
                .into_response();
        }
    };
    if parts.headers.get(header::CONTENT_ENCODING).is_some_and(|v| v.as_bytes() != b"identity") {
        return refused(&Refusal {
            id: Value::Null,
            code: mcp_msg::INVALID_REQUEST,
            message: "an encoded (compressed) request body is not relayed".into(),
        });
    }
    // The id of a `tools/list` whose answer is reported to the daemon (and filtered).
    let mut listing: Option<Value> = None;
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
                let shared = Arc::clone(&p.shared);
                let verdict =
                    tokio::task::spawn_blocking(move || gate(&shared, &id, &name, &arguments, &params, None))
                        .await;
                match verdict {
                    Ok(Some(reply)) => return json_reply(&reply),
                    Ok(None) => {
                        let mut msg = Value::Object(msg);
                        strip_elicitation(&mut msg);
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
            match listing {
                Some(id) => filter_listing(&p, parts, Body::new(body), id).await,
                None => Response::from_parts(parts, Body::new(body)),
            }
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("the MCP server at {} did not answer: {e}", p.upstream))
            .into_response(),
    }
}

/// `--hide-denied-tools`: the server's answer to a `tools/list` (JSON, or an event stream
/// carrying it), read whole and relayed with the tools the policy denies outright removed
/// (`gate::hide_denied`, as in stdio mode). An answer it cannot read is refused, not relayed.
async fn filter_listing(
    p: &Proxy,
    mut parts: axum::http::response::Parts,
    body: Body,
    id: Value,
) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::BAD_GATEWAY, "the MCP server's tools/list answer is over 16 MiB")
            .into_response();
    };
    let stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let shared = Arc::clone(&p.shared);
    let filtered = tokio::task::spawn_blocking(move || {
        let hide = |mut msg: Value| {
            if msg.get("id") == Some(&id) {
                super::gate::on_listing(&shared, &mut msg);
            }
            mcp_msg::encode(&msg)
        };
        let text = std::str::from_utf8(&bytes).ok()?;
        if !stream {
            return Some(hide(serde_json::from_str(text).ok()?));
        }
        let text = text.replace("\r\n", "\n");
        // Server-sent events: each event's `data` lines hold one JSON-RPC message.
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
                out.push_str(&hide(serde_json::from_str(&data.join("\n")).ok()?));
                out.push('\n');
            }
            out.push('\n');
        }
        Some(out)
    })
    .await;
    match filtered {
        Ok(Some(text)) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(text))
        }
        _ => {
            (StatusCode::BAD_GATEWAY, "the MCP server's tools/list answer could not be read").into_response()
        }
    }
}
