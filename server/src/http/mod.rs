//! The HTTP(S) door: `POST /v1/evaluate`, the v1 actions API of the published Python SDK,
//! `GET /v1/events` (SSE), `/health`, `/ready`, `/metrics`. Routing by axum on hyper's HTTP/1
//! server, TLS by rustls (ring). Every route is a thin mapping onto [`faramesh_daemon::service`]; the
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
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;

mod app;
pub mod guard;
mod sse;
mod tlog;
mod tls;
mod tokens;
mod v1;

pub(crate) use app::{App, Caller, HttpError, HttpResult, JsonObject, Writer, json_response};
use tls::{self_signed, tls_acceptor};
pub use tokens::Tokens;
use v1::router;

use super::ServerError;
use faramesh_daemon::service::Seen;
use faramesh_daemon::service::metrics::Transport;
use faramesh_daemon::service::{
    CallRequest, ErrorKind, Identity, ListQuery, Role, Service, ServiceError, TokenIdentity, Transition,
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

/// The listener, bound and ready to serve.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tokens: Arc<Tokens>,
    limits: HttpLimits,
    sessions: Arc<crate::dashboard::Sessions>,
    anonymous: bool,
    door: guard::Door,
    /// What `status` shows.
    pub info: faramesh_daemon::service::state::HttpInfo,
}

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Checks the configuration, loads tokens and TLS, and binds (or uses `passed`, a listening
/// socket from systemd socket activation, whose own address then counts).
pub async fn bind(
    config: &HttpConfig,
    state_dir: &Path,
    passed: Option<std::net::TcpListener>,
    links: Arc<faramesh_daemon::service::logins::LoginLinks>,
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
    let info = faramesh_daemon::service::state::HttpInfo {
        url: format!("{scheme}://{local}"),
        tls_fingerprint,
        anonymous_agents: anonymous,
        loopback: is_loopback(&local),
    };
    if let Some(secret) = &config.login_secret {
        // Printed to whoever started the daemon: a session opened with it is the daemon's own
        // user (so an agent of another uid never approves through it as someone else).
        let me = faramesh_daemon::service::PeerCred {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
        };
        links.add_lasting(secret.clone(), Some(me));
    }
    let sessions = Arc::new(crate::dashboard::Sessions::new(tls.is_some()));
    let door = guard::Door::at(&local, tls.is_some());
    Ok(Listener {
        tcp,
        door,
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
        let Listener { tcp, tls, tokens, limits, sessions, anonymous, door, .. } = self;
        let app = App { service, tokens, limits: limits.clone(), sessions, anonymous, door };
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
                let _open = app.service.connection(Transport::Http);
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
    use super::tokens::sha256;
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
        let links = Arc::new(faramesh_daemon::service::logins::LoginLinks::default());
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
        std::fs::write(&path, r#"[{"name":"x","role":"agent","token":"t","agent":["a"]}]"#).unwrap();
        let e = Tokens::load(&config(None, None, Some(path.clone()))).unwrap_err();
        assert!(e.to_string().contains("unknown field `agent`"), "a misspelled `agents` is refused: {e}");
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
            let e = HttpError::from(ServiceError { kind, message: "m".into(), field: None, source: None });
            assert_eq!(e.status, status);
        }
    }
}
