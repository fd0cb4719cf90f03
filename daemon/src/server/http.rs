//! The HTTP(S) door: `POST /v1/evaluate`, the v1 actions API of the published Python SDK,
//! `GET /v1/events` (SSE), `/health`, `/ready`, `/metrics`. Routing by axum on hyper's HTTP/1
//! server, TLS by rustls (ring). Every route is a thin mapping onto [`crate::service`]; the
//! caller's identity is its bearer token's. See `docs/http.md`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use faramesh_proto::Effect;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::ServerError;
use crate::service::Seen;
use crate::service::metrics::Transport;
use crate::service::{
    ActionView, CallRequest, ErrorKind, Identity, ListQuery, Role, Service, ServiceError, TokenIdentity,
    Transition,
};

/// How the listener does TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Plain HTTP (loopback addresses only).
    None,
    /// A certificate chain and key (PEM files).
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// A certificate generated once into `<state dir>/tls/` and reused.
    SelfSigned,
}

/// Limits of the HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request body (default 1 MiB).
    pub max_body_bytes: usize,
    /// Time to read a request's headers (and finish a TLS handshake) (default 10 s).
    pub header_timeout: Duration,
    /// Time to read a request's body (default 10 s).
    pub body_timeout: Duration,
    /// Most simultaneous connections (default 1024).
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 1 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// What `--listen` needs.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// TLS mode.
    pub tls: Tls,
    /// An agent token (`FARAMESH_TOKEN`), acting for any agent.
    pub agent_token: Option<String>,
    /// An approver token (`FARAMESH_APPROVER_TOKEN`).
    pub approver_token: Option<String>,
    /// A tokens file (JSON), default `<state dir>/tokens.json` when it exists.
    pub tokens_file: Option<PathBuf>,
    /// A one-time secret that opens one approver session in the dashboard (the sign-in link
    /// printed at start).
    pub login_secret: Option<String>,
    /// Tokenless callers are unauthenticated agents (loopback only; set when no token is
    /// configured): they submit calls and read back their actions by id, never list, stream or
    /// approve.
    pub anonymous_agents: bool,
    /// Plain HTTP on a non-loopback address (`--plain-http`): the operator says something else
    /// keeps it private (a container port published on the host's loopback, a TLS-terminating
    /// proxy). Tokens are still required; tokenless agents stay loopback-only.
    pub plain_beyond_loopback: bool,
    /// Limits.
    pub limits: HttpLimits,
}

/// One configured token: the SHA-256 of its value and whom it identifies.
#[derive(Debug, Clone)]
struct TokenEntry {
    sha256: [u8; 32],
    identity: TokenIdentity,
}

/// The configured tokens, checked in constant time.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hash_name(digest: &[u8; 32]) -> String {
    format!("sha256:{}", &faramesh_proto::canonical::to_hex(digest)[..12])
}

impl Tokens {
    /// Reads the env tokens and the tokens file.
    ///
    /// Tokens file: a JSON array of `{"name", "role": "agent"|"approver", "token" or
    /// "token_sha256", "agents": [..]?}`.
    pub fn load(config: &HttpConfig) -> Result<Tokens, ServerError> {
        let mut entries = Vec::new();
        for (token, role) in [(&config.agent_token, Role::Agent), (&config.approver_token, Role::Approver)] {
            if let Some(t) = token.as_deref().filter(|t| !t.is_empty()) {
                let digest = sha256(t.as_bytes());
                entries.push(TokenEntry {
                    sha256: digest,
                    identity: TokenIdentity { name: hash_name(&digest), role, agents: None },
                });
            }
        }
        if let Some(path) = &config.tokens_file {
            entries.extend(read_tokens_file(path)?);
        }
        if entries.is_empty() && config.login_secret.is_none() && !config.anonymous_agents {
            return Err(ListenerError::NoTokens.into());
        }
        Ok(Tokens { entries })
    }

    /// The identity of a presented token, comparing against every configured token in
    /// constant time.
    pub fn identify(&self, presented: &str) -> Option<TokenIdentity> {
        let digest = sha256(presented.as_bytes());
        let mut found = None;
        for e in &self.entries {
            if crate::service::logins::constant_time_eq(&e.sha256, &digest) && found.is_none() {
                found = Some(e.identity.clone());
            }
        }
        found
    }
}

fn read_tokens_file(path: &Path) -> Result<Vec<TokenEntry>, ServerError> {
    let text = std::fs::read_to_string(path).map_err(|e| ServerError::io("read the tokens file", path, e))?;
    let items: Vec<Value> = serde_json::from_str(&text)
        .map_err(|source| ListenerError::TokensJson { path: path.to_owned(), source })?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = |k: &str| item.get(k).and_then(Value::as_str);
        let bad = |why: String| {
            ServerError::from(ListenerError::TokenEntry { path: path.to_owned(), entry: i + 1, why })
        };
        let role = match field("role") {
            Some("agent") => Role::Agent,
            Some("approver") => Role::Approver,
            other => return Err(bad(format!("`role` must be `agent` or `approver`, not {other:?}"))),
        };
        let digest = match (field("token"), field("token_sha256")) {
            (Some(t), None) if !t.is_empty() => sha256(t.as_bytes()),
            (None, Some(h)) => (0..h.len())
                .step_by(2)
                .map(|j| h.get(j..j + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
                .collect::<Option<Vec<u8>>>()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| bad("`token_sha256` must be 64 hex characters".into()))?,
            _ => return Err(bad("give one of `token` or `token_sha256`".into())),
        };
        let agents = match item.get("agents") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("`agents` must be a list of agent ids".into()))?,
            ),
            Some(_) => return Err(bad("`agents` must be a list of agent ids".into())),
        };
        let name = field("name").map_or_else(|| hash_name(&digest), |n| format!("{}:{n}", role.as_str()));
        out.push(TokenEntry { sha256: digest, identity: TokenIdentity { name, role, agents } });
    }
    Ok(out)
}

/// Why the HTTP listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// No token is configured: nobody could use the listener.
    #[error(
        "the HTTP listener needs at least one token: set FARAMESH_TOKEN (agents), FARAMESH_APPROVER_TOKEN \
         (approvers), or write a tokens file (docs/http.md)"
    )]
    NoTokens,
    /// The tokens file is not a JSON array.
    #[error("tokens file `{}`: {source}", .path.display())]
    TokensJson {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// An entry of the tokens file is malformed.
    #[error("tokens file `{}`: entry {entry}: {why}", .path.display())]
    TokenEntry {
        /// The file.
        path: PathBuf,
        /// 1-based entry number.
        entry: usize,
        /// What is wrong.
        why: String,
    },
    /// Plain HTTP asked for on an address other hosts can reach.
    #[error(
        "refusing plain HTTP on `{0}`: it is not a loopback address; use --tls-cert/--tls-key or --tls self-signed \
         (or --plain-http when a proxy or the container's port mapping keeps it private)"
    )]
    PlainNotLoopback(SocketAddr),
    /// A PEM file does not hold what it should.
    #[error("cannot read {what} `{}`: {source}", .path.display())]
    Pem {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The PEM reader's error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("no certificate in `{}`", .0.display())]
    NoCertificate(PathBuf),
    /// rustls refused the configuration (for example the key does not fit the certificate).
    #[error("TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// The self-signed certificate cannot be generated.
    #[error("cannot generate a self-signed certificate: {0}")]
    SelfSigned(#[source] rcgen::Error),
    /// The address cannot be bound.
    #[error("cannot listen on `{addr}`: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

/// An HTTP error reply: `{"error": {"code", "message", "field"?}, "detail": message}`.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl HttpError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> HttpError {
        HttpError { status, code, message: message.into(), field: None }
    }

    pub(super) fn internal(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<faramesh_proto::CallError> for HttpError {
    fn from(e: faramesh_proto::CallError) -> HttpError {
        HttpError::from(ServiceError::from(e))
    }
}

impl From<ServiceError> for HttpError {
    fn from(e: ServiceError) -> HttpError {
        let (status, code) = match e.kind {
            ErrorKind::InvalidParams => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_params"),
            ErrorKind::NotAuthorized => (StatusCode::FORBIDDEN, "forbidden"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        HttpError { status, code, message: e.message, field: e.field }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let (Some(f), Value::Object(m)) = (&self.field, &mut error) {
            m.insert("field".into(), json!(f));
        }
        let body = json!({"error": error, "detail": self.message});
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

pub(super) type HttpResult = Result<Response, HttpError>;

#[derive(Clone)]
pub(super) struct App {
    pub(super) service: Service,
    pub(super) tokens: Arc<Tokens>,
    pub(super) limits: HttpLimits,
    pub(super) sessions: Arc<super::dashboard::Sessions>,
    /// Tokenless callers are unauthenticated agents (loopback, no token configured).
    pub(super) anonymous: bool,
}

impl App {
    /// The caller's identity from `Authorization: Bearer …`, else from a dashboard session
    /// cookie: 401 when neither is there or known.
    pub(super) fn who(&self, headers: &HeaderMap) -> Result<Identity, HttpError> {
        self.identify(headers, false)
    }

    /// [`App::who`] for a state-changing request: a session cookie counts only with the
    /// session's CSRF token (bearer tokens are not sent by browsers on their own).
    pub(super) fn who_write(&self, headers: &HeaderMap) -> Result<Identity, HttpError> {
        self.identify(headers, true)
    }

    fn identify(&self, headers: &HeaderMap, write: bool) -> Result<Identity, HttpError> {
        let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim);
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            if let Some(session) = self.sessions.identify(headers, write) {
                return session.map(Identity::Token);
            }
            if self.anonymous {
                return Ok(Identity::Anonymous);
            }
            return Err(HttpError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing bearer token: send `Authorization: Bearer <token>`",
            ));
        };
        self.tokens
            .identify(token)
            .map(Identity::Token)
            .ok_or_else(|| HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown bearer token"))
    }

    /// Reads a JSON object body within the size and time limits.
    pub(super) async fn body(&self, body: Body, required: bool) -> Result<Map<String, Value>, HttpError> {
        let limit = self.limits.max_body_bytes;
        let read = tokio::time::timeout(self.limits.body_timeout, axum::body::to_bytes(body, limit)).await;
        let bytes: Bytes = match read {
            Err(_) => {
                return Err(HttpError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    format!("request body not received within {} s", self.limits.body_timeout.as_secs()),
                ));
            }
            Ok(Err(_)) => {
                return Err(HttpError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("request body over the {limit}-byte limit"),
                ));
            }
            Ok(Ok(b)) => b,
        };
        if bytes.iter().all(u8::is_ascii_whitespace) && !required {
            return Ok(Map::new());
        }
        match faramesh_proto::parse_strict(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => {
                Err(HttpError::new(StatusCode::BAD_REQUEST, "bad_request", "the body must be a JSON object"))
            }
            Err(faramesh_proto::StrictJsonError::DuplicateKey(path)) => Err(HttpError {
                status: StatusCode::BAD_REQUEST,
                code: "bad_request",
                message: format!("duplicate key `{path}`: a key may appear once per object"),
                field: Some(path),
            }),
            Err(e) => Err(HttpError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body is not JSON: {e}"),
            )),
        }
    }
}

pub(super) fn json_response(status: StatusCode, v: &Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// The router.
fn router(app: App) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/evaluate", post(evaluate))
        .route("/v1/gate/decide", post(gate_decide))
        .route("/v1/actions", post(submit_action).get(list_actions))
        .route("/v1/actions/{id}", get(get_action))
        .route("/v1/actions/{id}/events", get(action_events))
        .route("/v1/actions/{id}/approval", post(approval))
        .route("/v1/actions/{id}/start", post(start_action))
        .route("/v1/actions/{id}/result", post(report_result))
        .route("/v1/events", get(events))
        .merge(super::dashboard::routes())
        .fallback(not_found)
        .with_state(app)
}

async fn not_found(req: Request) -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {} {}", req.method(), req.uri().path()),
    )
}

async fn health() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

async fn ready(AxState(app): AxState<App>, headers: HeaderMap) -> HttpResult {
    app.who(&headers)?;
    let state = app.service.state();
    let writable = state.metrics.log_writable();
    let body = json!({
        "ready": writable,
        "policy_hash": state.policy.load().policy.hash,
        "log_writable": writable,
    });
    let status = if writable { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Ok(json_response(status, &body))
}

async fn metrics(AxState(app): AxState<App>, headers: HeaderMap) -> HttpResult {
    // A token is needed, except where tokenless loopback callers are served (the quickstart),
    // which `who` already answers for.
    app.who(&headers)?;
    let state = app.service.state();
    let pending = state
        .approvals
        .all()
        .iter()
        .filter(|a| a.status == crate::service::approvals::Status::Pending)
        .count();
    let text = state.metrics.render(pending, state.log.queue_depth());
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(resp)
}

async fn evaluate(AxState(app): AxState<App>, headers: HeaderMap, body: Body) -> HttpResult {
    let who = app.who_write(&headers)?;
    let req = CallRequest::from_json(&app.body(body, true).await?)?;
    let reply = app.service.govern(req, &who).await?;
    Ok(json_response(StatusCode::OK, &reply.to_json()))
}

fn outcome(effect: Effect) -> &'static str {
    match effect {
        Effect::Permit => "EXECUTE",
        Effect::Deny => "HALT",
        Effect::Defer => "ABSTAIN",
    }
}

fn decision_word(effect: &str) -> &'static str {
    match effect {
        "PERMIT" => "allow",
        "DEFER" => "require_approval",
        _ => "deny",
    }
}

async fn gate_decide(AxState(app): AxState<App>, headers: HeaderMap, body: Body) -> HttpResult {
    let who = app.who_write(&headers)?;
    let req = CallRequest::from_json(&app.body(body, true).await?)?;
    let reply = app.service.decide(&req, &who)?;
    let mut v = reply.to_json();
    if let Value::Object(m) = &mut v {
        let d = &reply.decision;
        m.insert("outcome".into(), json!(outcome(d.effect)));
        m.insert("decision".into(), json!(decision_word(d.effect.as_str())));
        m.insert("policy_version".into(), json!(d.policy_hash));
        m.insert("runtime_version".into(), json!(crate::log::dpr::RUNTIME_VERSION));
        m.insert("provenance_id".into(), Value::Null);
    }
    Ok(json_response(StatusCode::OK, &v))
}

/// The v1 action object of a recorded action, as the published SDK reads it.
fn v1_action(service: &crate::service::Service, view: &ActionView, who: &Identity) -> Value {
    let rec = &view.record;
    let get = |k: &str| rec.get(k).cloned().unwrap_or(Value::Null);
    let effect = rec.get("effect").and_then(Value::as_str).unwrap_or("DENY");
    let effect_enum = match effect {
        "PERMIT" => Effect::Permit,
        "DEFER" => Effect::Defer,
        _ => Effect::Deny,
    };
    let approval_id = get("approval_id");
    json!({
        "id": get("id"),
        "agent_id": get("agent_id"),
        "tool": get("tool"),
        "operation": get("operation"),
        "params": get("params"),
        "context": rec.get("context").cloned().filter(Value::is_object).unwrap_or_else(|| json!({})),
        "status": view.status,
        "decision": decision_word(effect),
        "effect": effect,
        "outcome": outcome(effect_enum),
        "reason": get("reason"),
        "reason_code": get("reason_code"),
        "risk_level": get("risk_level"),
        "rule_id": get("rule_id"),
        "rule_ref": get("rule_ref"),
        "request_hash": get("request_hash"),
        "policy_hash": get("policy_hash"),
        "policy_version": get("policy_hash"),
        "runtime_version": get("runtime_version"),
        "provenance_id": get("id"),
        "approval_id": approval_id,
        // Approval is authorized by the approver's bearer token; the core says who is shown the id.
        "approval_token": if service.shows_approval_token(who, view) { approval_id } else { Value::Null },
        "caller": get("caller"),
        "created_at": get("ts"),
        "updated_at": get("ts"),
    })
}

async fn submit_action(AxState(app): AxState<App>, headers: HeaderMap, body: Body) -> HttpResult {
    let who = app.who_write(&headers)?;
    let req = CallRequest::from_json(&app.body(body, true).await?)?;
    let call = req.call.clone();
    let reply = app.service.govern(req, &who).await?;
    let d = &reply.decision;
    let view = app.service.decided_view(&call, &reply, &who);
    let mut v = v1_action(&app.service, &view, &who);
    if let Value::Object(m) = &mut v {
        m.insert(
            "structured_denial".into(),
            serde_json::to_value(&d.structured_denial).unwrap_or(Value::Null),
        );
        m.insert("defer_token".into(), json!(reply.approval_id));
    }
    Ok(json_response(StatusCode::OK, &v))
}

fn query_map(q: HashMap<String, String>) -> Map<String, Value> {
    q.into_iter().map(|(k, v)| (k, Value::String(v))).collect()
}

async fn list_actions(
    AxState(app): AxState<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> HttpResult {
    let who = app.who(&headers)?;
    let query = ListQuery::from_json(&query_map(q), 20)?;
    let views = app.service.action_list(&query, &who)?;
    let actions: Vec<Value> = views.iter().map(|v| v1_action(&app.service, v, &who)).collect();
    let full = actions.len() == query.limit;
    let next = full.then_some(query.offset + actions.len());
    let next_cursor = views.last().filter(|_| full).map(ActionView::id);
    Ok(json_response(
        StatusCode::OK,
        &json!({"actions": actions, "limit": query.limit, "offset": query.offset, "next_offset": next,
                "next_cursor": next_cursor}),
    ))
}

async fn get_action(
    AxState(app): AxState<App>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> HttpResult {
    let who = app.who(&headers)?;
    let view = app.service.find_action(&id, &who)?;
    Ok(json_response(StatusCode::OK, &v1_action(&app.service, &view, &who)))
}

/// The v1 name of a log entry's event.
fn event_type(e: &Value) -> String {
    let status = e.get("status").and_then(Value::as_str).unwrap_or_default();
    match e.get("kind").and_then(Value::as_str).unwrap_or_default() {
        "decision" => "decision_made".to_owned(),
        "approval" => status.to_owned(),
        "action" => match status {
            "executing" => "started".to_owned(),
            other => other.to_owned(),
        },
        other => other.to_owned(),
    }
}

async fn action_events(
    AxState(app): AxState<App>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> HttpResult {
    let who = app.who(&headers)?;
    let (view, entries) = app.service.action_events(&id, &who)?;
    let action_id = view.id().to_owned();
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let created_at = e.get("ts").cloned().unwrap_or(Value::Null);
        if i == 0 {
            out.push(json!({"id": format!("{action_id}-created"), "action_id": action_id, "event_type": "created", "meta": {}, "created_at": created_at}));
        }
        let mut meta = e.clone();
        if let Value::Object(m) = &mut meta {
            for k in ["kind", "seq", "prev_hash", "entry_hash", "params", "context"] {
                m.remove(k);
            }
            if i == 0 {
                m.insert(
                    "decision".into(),
                    json!(decision_word(e.get("effect").and_then(Value::as_str).unwrap_or(""))),
                );
            }
        }
        out.push(json!({
            "id": e.get("seq").map(|s| format!("seq-{s}")),
            "action_id": action_id,
            "event_type": event_type(e),
            "meta": meta,
            "created_at": created_at,
        }));
    }
    Ok(json_response(StatusCode::OK, &Value::Array(out)))
}

async fn approval(
    AxState(app): AxState<App>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    body: Body,
) -> HttpResult {
    let who = app.who_write(&headers)?;
    let body = app.body(body, true).await?;
    let f = crate::service::Fields(&body);
    let approve = f.boolean("approve")?.ok_or_else(|| ServiceError::missing("approve"))?;
    let reason = f.string("reason")?;
    let given = f.string("token")?;
    let view = app.service.approve_action(&id, approve, reason, given.as_deref(), &who).await?;
    Ok(json_response(StatusCode::OK, &v1_action(&app.service, &view, &who)))
}

async fn start_action(
    AxState(app): AxState<App>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> HttpResult {
    let who = app.who_write(&headers)?;
    let view = app.service.action_transition(&id, Transition::Start, &who).await?;
    Ok(json_response(StatusCode::OK, &v1_action(&app.service, &view, &who)))
}

async fn report_result(
    AxState(app): AxState<App>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    body: Body,
) -> HttpResult {
    let who = app.who_write(&headers)?;
    let t = Transition::result_from_json(&app.body(body, true).await?)?;
    let view = app.service.action_transition(&id, t, &who).await?;
    Ok(json_response(StatusCode::OK, &v1_action(&app.service, &view, &who)))
}

/// An SSE frame for a log entry, if it passes the filters and the reader may see it.
fn sse_frame(record: &str, agent: Option<&str>, effect: Option<&str>) -> Option<(u64, String)> {
    let mut v: Value = serde_json::from_str(record).ok()?;
    let seq = v.get("seq").and_then(Value::as_u64)?;
    if agent.is_some_and(|a| v.get("agent_id").and_then(Value::as_str) != Some(a))
        || effect.is_some_and(|e| v.get("effect").and_then(Value::as_str) != Some(e))
    {
        return None;
    }
    let et = event_type(&v);
    if let Value::Object(m) = &mut v {
        m.insert("event_type".into(), json!(et));
        if m.get("kind").and_then(Value::as_str) == Some("decision") {
            let id = m.get("id").cloned().unwrap_or(Value::Null);
            m.insert("action_id".into(), id);
        }
    }
    Some((seq, format!("id: {seq}\ndata: {v}\n\n")))
}

async fn events(
    AxState(app): AxState<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> HttpResult {
    let who = app.who(&headers)?;
    let agent = q.get("agent_id").or(q.get("agent")).cloned();
    let effect = q.get("effect").map(|e| e.to_ascii_uppercase());
    let last_id = match headers.get("last-event-id").map(|v| v.to_str().map(|s| s.trim().parse::<u64>())) {
        None => None,
        Some(Ok(Ok(n))) => Some(n),
        Some(_) => {
            return Err(HttpError {
                status: StatusCode::BAD_REQUEST,
                code: "bad_request",
                message: "`Last-Event-ID` must be a sequence number".into(),
                field: Some("Last-Event-ID".into()),
            });
        }
    };
    // Subscribe first, then replay: nothing committed in between is missed; duplicates are
    // skipped by seq.
    // Who sees what is decided by the core (the replay and the live stream alike).
    let mut live = app.service.subscribe(&who);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(256);
    tokio::spawn(async move {
        let mut sent = last_id.unwrap_or(0);
        let _ = tx.send(Ok(Bytes::from_static(b": faramesh events\n\n"))).await;
        if let Some(from) = last_id {
            let mut next = from + 1;
            while let Ok((records, next_seq)) = app.service.entries(Some(next), None, 1000, &who) {
                if records.is_empty() {
                    break;
                }
                for r in &records {
                    if let Some((seq, frame)) = sse_frame(&r.to_string(), agent.as_deref(), effect.as_deref())
                    {
                        sent = sent.max(seq);
                        if tx.send(Ok(Bytes::from(frame))).await.is_err() {
                            return;
                        }
                    }
                }
                next = next_seq;
            }
            sent = sent.max(next.saturating_sub(1));
        }
        let mut keepalive = tokio::time::interval(Duration::from_secs(15));
        loop {
            tokio::select! {
                r = live.next() => match r {
                    Some(Seen::Entry(record)) => {
                        if let Some((seq, frame)) = sse_frame(&record, agent.as_deref(), effect.as_deref()) {
                            if seq <= sent {
                                continue;
                            }
                            sent = seq;
                            if tx.send(Ok(Bytes::from(frame))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Some(Seen::Lagged(n)) => {
                        let note = format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n");
                        if tx.send(Ok(Bytes::from(note))).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                _ = keepalive.tick() => {
                    if tx.send(Ok(Bytes::from_static(b": keep-alive\n\n"))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// The listener, bound and ready to serve.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tokens: Arc<Tokens>,
    limits: HttpLimits,
    sessions: Arc<super::dashboard::Sessions>,
    anonymous: bool,
    /// What `status` shows.
    pub info: crate::service::state::HttpInfo,
}

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Loads or creates the self-signed certificate in `<state dir>/tls/`.
fn self_signed(state_dir: &Path, listen: &SocketAddr) -> Result<(PathBuf, PathBuf), ServerError> {
    let dir = state_dir.join("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if !listen.ip().is_unspecified() && !is_loopback(listen) {
        names.push(listen.ip().to_string());
    }
    let made = rcgen::generate_simple_self_signed(names).map_err(ListenerError::SelfSigned)?;
    super::private_dir(&dir)?;
    write_private(&key, made.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, made.cert.pem()).map_err(|e| ServerError::io("write", &cert, e))?;
    Ok((cert, key))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    use std::io::Write;
    crate::log::create_private(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| ServerError::io("write", path, e))
}

/// `AB:CD:…` of the SHA-256 of the first certificate's DER.
fn fingerprint(der: &[u8]) -> String {
    sha256(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<(tokio_rustls::TlsAcceptor, String), ListenerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem = |what, path: &Path| {
        let path = path.to_owned();
        move |source| ListenerError::Pem { what, path, source }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(pem("certificate", cert))?;
    let first = certs.first().ok_or_else(|| ListenerError::NoCertificate(cert.to_owned()))?;
    let print = fingerprint(first.as_ref());
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem("private key", key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ListenerError::Tls)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(ListenerError::Tls)?;
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), print))
}

/// Checks the configuration, loads tokens and TLS, and binds (or uses `passed`, a listening
/// socket from systemd socket activation, whose own address then counts).
pub async fn bind(
    config: &HttpConfig,
    state_dir: &Path,
    passed: Option<std::net::TcpListener>,
    links: Arc<crate::service::logins::LoginLinks>,
) -> Result<Listener, ServerError> {
    let addr = match &passed {
        Some(l) => l.local_addr().map_err(|source| ListenerError::Listen { addr: config.listen, source })?,
        None => config.listen,
    };
    if config.tls == Tls::None && !is_loopback(&addr) && !config.plain_beyond_loopback {
        return Err(ListenerError::PlainNotLoopback(addr).into());
    }
    // Unauthenticated agents only ever on loopback.
    let anonymous = config.anonymous_agents && is_loopback(&addr);
    let tokens = Tokens::load(&HttpConfig { anonymous_agents: anonymous, ..config.clone() })?;
    let (tls, tls_fingerprint) = match &config.tls {
        Tls::None => (None, None),
        Tls::Files { cert, key } => {
            let (a, p) = tls_acceptor(cert, key)?;
            (Some(a), Some(p))
        }
        Tls::SelfSigned => {
            let (cert, key) = self_signed(state_dir, &addr)?;
            let (a, p) = tls_acceptor(&cert, &key)?;
            (Some(a), Some(p))
        }
    };
    let tcp = match passed {
        Some(l) => l
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(l))
            .map_err(|source| ListenerError::Listen { addr, source })?,
        None => TcpListener::bind(addr).await.map_err(|source| ListenerError::Listen { addr, source })?,
    };
    let local = tcp.local_addr().map_err(|source| ListenerError::Listen { addr, source })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let info = crate::service::state::HttpInfo {
        url: format!("{scheme}://{local}"),
        tls_fingerprint,
        anonymous_agents: anonymous,
        loopback: is_loopback(&local),
    };
    if let Some(secret) = &config.login_secret {
        links.add_lasting(secret.clone());
    }
    let sessions = Arc::new(super::dashboard::Sessions::new(tls.is_some()));
    Ok(Listener {
        tcp,
        tls,
        tokens: Arc::new(tokens),
        limits: config.limits.clone(),
        sessions,
        anonymous,
        info,
    })
}

impl Listener {
    /// Serves until `stop` turns true; connections then get the grace period to finish.
    pub async fn serve(self, service: Service, mut stop: watch::Receiver<bool>, grace: Duration) {
        let Listener { tcp, tls, tokens, limits, sessions, anonymous, .. } = self;
        let app = App { service, tokens, limits: limits.clone(), sessions, anonymous };
        let router = router(app.clone());
        let slots = super::http_slots::Slots::new(limits.max_connections);
        let mut tasks = tokio::task::JoinSet::new();
        let mut backoff = super::AcceptBackoff::default();
        loop {
            let accepted = tokio::select! {
                _ = stop.changed() => break,
                a = tcp.accept() => a,
            };
            let Some((stream, _)) = backoff.check(accepted, "http").await else { continue };
            let _ = stream.set_nodelay(true);
            let (router, tls, limits, app, stop, slots) =
                (router.clone(), tls.clone(), limits.clone(), app.clone(), stop.clone(), Arc::clone(&slots));
            tasks.spawn(async move {
                // Over the connection cap with no idle connection to close: dropped.
                let Some(slot) = slots.take().await else { return };
                let _open = app.service.state().metrics.connection(Transport::Http);
                let activity = Arc::clone(&slot.activity);
                match tls {
                    None => serve_conn(stream, router, &limits, stop, activity).await,
                    Some(acceptor) => {
                        // A handshake that fails or is too slow just closes the connection.
                        if let Ok(Ok(tls_stream)) =
                            tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
                        {
                            serve_conn(tls_stream, router, &limits, stop, activity).await;
                        }
                    }
                }
                drop(slot);
            });
            while tasks.try_join_next().is_some() {}
        }
        drop(tcp);
        if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await.is_err() {
            tasks.abort_all();
        }
    }
}

async fn serve_conn<S>(
    io: S,
    router: Router,
    limits: &HttpLimits,
    mut stop: watch::Receiver<bool>,
    activity: Arc<super::http_slots::Activity>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let inner = hyper_util::service::TowerToHyperService::new(router);
    let busy_on = Arc::clone(&activity);
    // A request keeps its connection busy (never closed for a newcomer) until its response
    // body, an event stream included, is done.
    let service = hyper::service::service_fn(move |req: axum::http::Request<hyper::body::Incoming>| {
        let busy = busy_on.begin();
        let response = hyper::service::Service::call(&inner, req);
        async move {
            let response = response.await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _held = &busy;
                    frame
                }))
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = &mut conn => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        () = activity.evict.notified() => {
            // Idle and needed by a newcomer: close (anything in flight finishes first).
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(agent: Option<&str>, approver: Option<&str>, file: Option<PathBuf>) -> HttpConfig {
        HttpConfig {
            login_secret: None,
            anonymous_agents: false,
            plain_beyond_loopback: false,
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: Tls::None,
            agent_token: agent.map(str::to_owned),
            approver_token: approver.map(str::to_owned),
            tokens_file: file,
            limits: HttpLimits::default(),
        }
    }

    #[test]
    fn tokens_identify_by_role_and_never_by_prefix() {
        let t = Tokens::load(&config(Some("agent-secret"), Some("approver-secret"), None)).unwrap();
        assert_eq!(t.identify("agent-secret").unwrap().role, Role::Agent);
        assert_eq!(t.identify("approver-secret").unwrap().role, Role::Approver);
        assert!(t.identify("agent-secre").is_none());
        assert!(t.identify("agent-secret ").is_none());
        assert!(t.identify("").is_none());
        // The identity names a hash prefix, never the token.
        let name = t.identify("agent-secret").unwrap().name;
        assert!(name.starts_with("sha256:") && !name.contains("secret"), "{name}");
    }

    #[tokio::test]
    async fn plain_http_beyond_loopback_only_when_asked_for_and_never_tokenless() {
        let state = tempfile::tempdir().unwrap();
        let links = Arc::new(crate::service::logins::LoginLinks::default());
        let anywhere =
            HttpConfig { listen: "0.0.0.0:0".parse().unwrap(), ..config(Some("agent-secret"), None, None) };
        let e = bind(&anywhere, state.path(), None, Arc::clone(&links)).await.err().unwrap();
        assert!(matches!(e, ServerError::Http(ListenerError::PlainNotLoopback(_))), "{e}");
        assert!(e.to_string().contains("--plain-http"), "{e}");
        let asked = HttpConfig { plain_beyond_loopback: true, anonymous_agents: true, ..anywhere.clone() };
        let bound = bind(&asked, state.path(), None, Arc::clone(&links)).await.unwrap();
        assert!(!bound.info.loopback && !bound.info.anonymous_agents, "{:?}", bound.info);
        assert!(bound.info.url.starts_with("http://0.0.0.0:"), "{}", bound.info.url);
        let tokenless = HttpConfig { agent_token: None, anonymous_agents: true, ..asked };
        let e = bind(&tokenless, state.path(), None, links).await.err().unwrap();
        assert!(matches!(e, ServerError::Http(ListenerError::NoTokens)), "{e}");
    }

    #[test]
    fn a_listener_without_tokens_is_refused() {
        let e = Tokens::load(&config(None, Some(""), None)).unwrap_err();
        assert!(matches!(e, ServerError::Http(ListenerError::NoTokens)), "{e}");
    }

    #[test]
    fn tokens_file_binds_agents_and_names_bad_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let hash = faramesh_proto::canonical::to_hex(&sha256(b"hashed"));
        std::fs::write(
            &path,
            format!(
                r#"[{{"name":"ci","role":"agent","token":"t1","agents":["ci-bot"]}},
                   {{"name":"alice","role":"approver","token_sha256":"{hash}"}}]"#
            ),
        )
        .unwrap();
        let t = Tokens::load(&config(None, None, Some(path.clone()))).unwrap();
        let ci = t.identify("t1").unwrap();
        assert_eq!((ci.name.as_str(), ci.agents), ("agent:ci", Some(vec!["ci-bot".to_owned()])));
        assert_eq!(t.identify("hashed").unwrap().name, "approver:alice");
        std::fs::write(&path, r#"[{"name":"x","role":"admin","token":"t"}]"#).unwrap();
        let e = Tokens::load(&config(None, None, Some(path))).unwrap_err();
        assert!(
            matches!(&e, ServerError::Http(ListenerError::TokenEntry { entry: 1, why, .. }) if why.contains("`role` must be")),
            "{e}"
        );
    }

    #[test]
    fn service_errors_map_to_http_statuses() {
        for (kind, status) in [
            (ErrorKind::InvalidParams, StatusCode::UNPROCESSABLE_ENTITY),
            (ErrorKind::NotAuthorized, StatusCode::FORBIDDEN),
            (ErrorKind::NotFound, StatusCode::NOT_FOUND),
            (ErrorKind::Conflict, StatusCode::CONFLICT),
            (ErrorKind::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            let e = HttpError::from(ServiceError { kind, message: "m".into(), field: None });
            assert_eq!(e.status, status);
        }
    }
}
