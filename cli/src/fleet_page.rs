//! `faramesh fleet serve`: a page on this machine's loopback listing every host's waiting calls
//! from the fleet database, where the operator approves or denies them, one or many at once.
//! Each decision is a statement signed here with the operator's SSH key (ssh-agent or
//! `--key`), put in the fleet queue exactly as `faramesh fleet approve --sign` does; the page
//! itself approves nothing. It answers only requests carrying the token printed at start.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use faramesh_adapters::export::postgres as fleet_pg;
use serde_json::{Value, json};

use crate::fleet_cmd::{pending_call, statement_for, wait_outcomes};

const INDEX: &str = include_str!("fleet_page/index.html");
const JS: &str = include_str!("fleet_page/fleet.js");
const CSS: &str = include_str!("fleet_page/fleet.css");
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The most calls one request decides.
const MAX_BATCH: usize = 200;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The fleet database.
    #[arg(long, env = "FARAMESH_POSTGRES_URL", value_name = "URL", hide_env_values = true)]
    url: String,
    /// Where the page listens (loopback only: it signs with your key).
    #[arg(long, default_value = "127.0.0.1:8700", value_name = "ADDR")]
    listen: SocketAddr,
    /// Your approver name as the hosts' policy lists it (default: `$USER`).
    #[arg(long = "as", value_name = "NAME")]
    as_name: Option<String>,
    /// The key to sign with (a private key, or a public key whose private half is in ssh-agent;
    /// default: the first Ed25519 key in ssh-agent).
    #[arg(long, value_name = "FILE")]
    key: Option<std::path::PathBuf>,
    /// How long each signed statement may be used (at most 1h).
    #[arg(long, default_value = "15m", value_name = "DURATION")]
    valid: String,
}

struct Page {
    client: tokio::sync::Mutex<fleet_pg::Client>,
    token: String,
    approver: String,
    key: Option<std::path::PathBuf>,
    valid_ms: u64,
    database: String,
    port: u16,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

impl Page {
    /// The request is for this page as this machine's loopback names it (no other `Host`, so a
    /// name rebound to 127.0.0.1 reaches nothing), from its own origin when the browser says one.
    fn same_site(&self, headers: &HeaderMap) -> bool {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let port = self.port;
        let ours = [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")];
        let origin_ok = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|o| o.strip_prefix("http://").is_some_and(|h| h == host));
        ours.iter().any(|h| h == host) && origin_ok
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        faramesh_daemon::service::logins::constant_time_eq(given.as_bytes(), self.token.as_bytes())
    }
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn pending(State(page): State<Arc<Page>>, headers: HeaderMap) -> Response {
    if !page.same_site(&headers) {
        return error(StatusCode::FORBIDDEN, "not this page's host or origin");
    }
    if !page.authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "open the link `faramesh fleet serve` printed");
    }
    let client = page.client.lock().await;
    let filter = fleet_pg::FleetFilter { pending: true, limit: 1000, ..Default::default() };
    match fleet_pg::decisions(&client, &filter).await {
        Ok(actions) => {
            axum::Json(json!({"approver": page.approver, "database": page.database, "actions": actions}))
                .into_response()
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

async fn decide(State(page): State<Arc<Page>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| {
        t.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !page.same_site(&headers) || !json {
        return error(StatusCode::FORBIDDEN, "not this page's host or origin, or not JSON");
    }
    if !page.authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "open the link `faramesh fleet serve` printed");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    let approve = match req["decision"].as_str() {
        Some("approve") => true,
        Some("deny") => false,
        _ => return error(StatusCode::BAD_REQUEST, "`decision` must be `approve` or `deny`"),
    };
    let ids: Vec<String> = req["approval_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    if ids.is_empty() || ids.len() > MAX_BATCH {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`approval_ids` must list 1 to {MAX_BATCH} approvals"),
        );
    }
    let mut client = page.client.lock().await;
    let mut out = Vec::new();
    let mut rows = Vec::new();
    for id in ids {
        let sent = async {
            let call = pending_call(&client, &id).await?;
            let st = statement_for(&call, approve, &page.approver, page.valid_ms);
            let text = st.text();
            let key = page.key.clone();
            let signed = text.clone();
            let signature =
                tokio::task::spawn_blocking(move || crate::ops_cmd::ssh_sign(&signed, key.as_deref()))
                    .await
                    .map_err(|e| anyhow!("signing stopped: {e}"))??;
            let row = fleet_pg::submit_decision(&mut client, &st.host, &st.approval, &text, &signature)
                .await
                .map_err(|e| anyhow!(e))?;
            anyhow::Ok((call, row))
        }
        .await;
        match sent {
            Ok((call, row)) => {
                rows.push((out.len(), row));
                out.push(json!({"approval_id": call["approval_id"], "host": call["host"], "row": row, "outcome": null}));
            }
            Err(e) => out.push(json!({"approval_id": id, "error": format!("{e:#}")})),
        }
    }
    let ids: Vec<i64> = rows.iter().map(|(_, r)| *r).collect();
    match wait_outcomes(&client, &ids, 10_000).await {
        Ok(outcomes) => {
            for ((i, _), o) in rows.iter().zip(outcomes) {
                out[*i]["outcome"] = json!(o);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the hosts' outcomes"),
    }
    axum::Json(json!({"decisions": out})).into_response()
}

/// Runs the page until Ctrl-C.
pub fn serve(args: ServeArgs) -> Result<ExitCode> {
    if !args.listen.ip().is_loopback() {
        bail!("`--listen` must be a loopback address: the page signs with your key");
    }
    let approver = crate::ops_cmd::signer_name(args.as_name.as_deref())?;
    let valid_ms = crate::ops_cmd::statement_validity(&args.valid)?;
    let token = faramesh_log::random_hex(24).context("cannot read /dev/urandom")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let client = fleet_pg::connect(&args.url).await.map_err(|e| anyhow!(e))?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let page = Arc::new(Page {
            client: tokio::sync::Mutex::new(client),
            token: token.clone(),
            approver,
            key: args.key.clone(),
            valid_ms,
            database: fleet_pg::redacted(&args.url),
            port: addr.port(),
        });
        let app = Router::new()
            .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
            .route("/fleet.js", get(|| async { asset("text/javascript; charset=utf-8", JS) }))
            .route("/fleet.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
            .route("/api/pending", get(pending))
            .route("/api/decide", post(decide))
            .with_state(page);
        println!("fleet page: http://{addr}/#token={token}");
        println!(
            "signing as {} with {}",
            args.as_name.as_deref().unwrap_or("$USER"),
            args.key
                .as_ref()
                .map_or_else(|| "the first Ed25519 key in ssh-agent".to_owned(), |k| k.display().to_string())
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the fleet page stopped")?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
