//! The daemon's doors: a Unix socket speaking newline-delimited JSON-RPC 2.0, the HTTP(S)
//! listener and the dashboard. `run` binds them over the core the composition root opens
//! (`faramesh_daemon::service::daemon::Daemon`).
//!
//! A request's path: listener (connection limit) → `conn::serve` (framing, limits) → the core's
//! `Request::parse` and `Service::apply` with the peer's credentials as an `Identity` → reply.
//! The HTTP door (`http/`) and the dashboard (`dashboard.rs`) map onto the same `Service`.
//!
//! The doors see the core's `Service` and nothing under it. A door names the core:
//!
//! ```
//! use faramesh_daemon::service::{Identity, Service};
//! use faramesh_daemon::service::apply::Request;
//! ```
//!
//! and cannot name the log or the policy, through the core or directly:
//!
//! ```compile_fail
//! use faramesh_daemon::log::Log;
//! ```
//!
//! ```compile_fail
//! use faramesh_daemon::policy::Policy;
//! ```
//!
//! ```compile_fail
//! use faramesh_daemon::permit::Permit;
//! ```
//!
//! ```compile_fail
//! use faramesh_log::Log;
//! ```
//!
//! ```compile_fail
//! use faramesh_policy::permit::Permit;
//! ```

pub mod conn;
mod dashboard;
pub mod http;
mod http_slots;
mod peercred;
pub mod rpc;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{Semaphore, watch};

use faramesh_daemon::service::daemon::{Daemon, OpenError, Options};
use faramesh_daemon::service::retention;
pub use faramesh_daemon::service::state::Limits;
use faramesh_daemon::systemd;

/// What `faramesh serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The policy file.
    pub policy_path: PathBuf,
    /// Where to listen.
    pub socket_path: PathBuf,
    /// Where the log and its key live.
    pub state_dir: PathBuf,
    /// Permission bits of the socket file (default 0660).
    pub socket_mode: u32,
    /// Server limits.
    pub limits: Limits,
    /// The optional HTTP(S) listener.
    pub http: Option<http::HttpConfig>,
    /// Retention the daemon applies itself (`--retention`), if any.
    pub retention: Option<retention::Retention>,
    /// Single-user mode (see `State::single_user`).
    pub single_user: bool,
    /// A demo daemon (`faramesh serve --demo`): said by `status` and the dashboard.
    pub demo: bool,
    /// Where the log's entries are exported (`docs/fleet.md`).
    pub export: Vec<faramesh_daemon::service::outbound::Export>,
    /// The witnesses the log's checkpoints are submitted to (`serve --witnesses`), if any.
    pub witnesses: Option<faramesh_daemon::service::witness::Config>,
    /// The adapters that deliver notifications and submit checkpoints to witnesses.
    pub outbound: faramesh_daemon::service::outbound::Outbound,
    /// The kill file: while it exists, every call is DENY (`None`: none is watched).
    pub kill_file: Option<PathBuf>,
    /// The fleet queue signed decisions from other machines are read from (`--postgres`).
    pub fleet_queue: Option<std::sync::Arc<dyn faramesh_daemon::service::outbound::DecisionQueue>>,
    /// Signed policy bundles instead of a policy file (`--policy-from postgres`).
    pub bundle: Option<faramesh_daemon::service::bundle::BundleConfig>,
    /// Counters shared by the fleet, for `scope: fleet` limits (`--postgres`).
    pub fleet_counter: Option<std::sync::Arc<dyn faramesh_daemon::service::outbound::FleetCounter>>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The core could not open: the policy file (file, line and column in the error), the state
    /// directory, or the decision log (locked, corrupt, unreadable).
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A file or directory a door needs (socket, TLS files) cannot be used.
    #[error("cannot {action} `{}`: {source}", .path.display())]
    Io {
        /// What was being done (`bind`, ...).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A live daemon already answers on the socket path.
    #[error("another daemon is already listening on `{}`", .0.display())]
    SocketInUse(PathBuf),
    /// The HTTP listener cannot start (address, TLS, tokens).
    #[error(transparent)]
    Http(#[from] http::ListenerError),
}

impl ServerError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> ServerError {
        ServerError::Io { action, path: path.to_owned(), source }
    }
}

/// Creates `dir` (and missing parents) mode 0700 when missing.
pub(crate) fn private_dir(dir: &Path) -> Result<(), ServerError> {
    faramesh_daemon::service::files::create_private_dir(dir)
        .map_err(|e| ServerError::io("create the directory", dir, e))
}

/// Binds the socket: refuses a path a live daemon answers on, replaces a stale file.
fn bind_socket(path: &Path, mode: u32) -> Result<UnixListener, ServerError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        private_dir(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServerError::SocketInUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(|e| ServerError::io("remove the stale socket", path, e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| ServerError::io("bind the socket", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ServerError::io("set the permissions of the socket", path, e))?;
    Ok(listener)
}

/// Runs the daemon until `shutdown` resolves, then drains in-flight requests (within the grace
/// period), records the stop, and removes the socket.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let mut opened = Daemon::open(Options {
        policy_path: config.policy_path.clone(),
        state_dir: config.state_dir.clone(),
        socket_path: config.socket_path.clone(),
        limits: config.limits.clone(),
        retention: config.retention.clone(),
        single_user: config.single_user,
        demo: config.demo,
        export: config.export.clone(),
        witnesses: config.witnesses.clone(),
        outbound: config.outbound.clone(),
        kill_file: config.kill_file.clone(),
        fleet_queue: config.fleet_queue.clone(),
        bundle: config.bundle.clone(),
        fleet_counter: config.fleet_counter.clone(),
    })?;
    // Sockets passed by systemd socket activation are used as they are; otherwise bind.
    let mut activated_unix = None;
    let mut activated_tcp = None;
    for (sock, name) in systemd::listen_fds() {
        match sock {
            systemd::Activated::Unix(l) if activated_unix.is_none() => activated_unix = Some(l),
            systemd::Activated::Tcp(l) if activated_tcp.is_none() => activated_tcp = Some(l),
            _ => tracing::warn!(name, "ignoring an extra passed socket"),
        }
    }
    let socket_activated = activated_unix.is_some();
    let listener = match activated_unix {
        Some(l) => {
            l.set_nonblocking(true)
                .map_err(|e| ServerError::io("use the passed socket", &config.socket_path, e))?;
            tracing::info!("using the socket passed by systemd (socket activation)");
            UnixListener::from_std(l)
                .map_err(|e| ServerError::io("use the passed socket", &config.socket_path, e))?
        }
        None => bind_socket(&config.socket_path, config.socket_mode)?,
    };
    // The HTTP listener binds before anything is recorded, so a bad address, certificate or
    // token set stops the start cleanly.
    let http_bound = match &config.http {
        Some(http_config) => {
            match http::bind(http_config, &config.state_dir, activated_tcp.take(), opened.logins()).await {
                Ok(l) => {
                    opened.set_http(Some(l.info.clone()));
                    Some(l)
                }
                Err(e) => {
                    if !socket_activated {
                        let _ = std::fs::remove_file(&config.socket_path);
                    }
                    return Err(e);
                }
            }
        }
        None => None,
    };
    let daemon = opened.start().await?;
    let service = daemon.service();
    let (stop_tx, stop_rx) = watch::channel(false);
    let http_task = http_bound.map(|l| {
        let info = l.info.clone();
        tracing::info!(url = %info.url, tls_fingerprint = ?info.tls_fingerprint, "HTTP listener is serving");
        // Printed whatever the log level: the operator needs the fingerprint to pin it.
        match &info.tls_fingerprint {
            Some(fp) => eprintln!("faramesh: serving {} (certificate SHA-256 {fp})", info.url),
            None if info.loopback => eprintln!("faramesh: serving {} (plain HTTP, loopback only)", info.url),
            None => eprintln!(
                "faramesh: serving {} (plain HTTP beyond loopback, --plain-http: tokens cross the network unencrypted \
                 unless a proxy or the host's port mapping keeps them private)",
                info.url
            ),
        }
        tokio::spawn(l.serve(service.clone(), stop_rx.clone(), config.limits.shutdown_grace))
    });
    tracing::info!(socket = %config.socket_path.display(), policy = %config.policy_path.display(), "faramesh is serving");
    systemd::notify(&format!("READY=1\nSTATUS={}", daemon.status_line()));
    let heartbeat = Arc::new(systemd::Heartbeat::default());
    heartbeat.beat();
    let watchdog = systemd::watchdog_interval();
    let _watchdog =
        watchdog.map(|iv| systemd::spawn_watchdog(iv, Arc::clone(&heartbeat), daemon.writer_probe()));
    let _status = std::env::var_os("NOTIFY_SOCKET").map(|_| {
        let service = service.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            every.tick().await;
            loop {
                every.tick().await;
                systemd::notify(&format!("STATUS={}", service.status_line()));
            }
        })
    });
    let beat_every = watchdog.map_or(Duration::from_secs(1), |iv| (iv / 4).min(Duration::from_secs(1)));
    let mut beat = tokio::time::interval(beat_every);

    let connections = Arc::new(Semaphore::new(config.limits.max_connections));
    let mut tasks = tokio::task::JoinSet::new();
    let mut accept_backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            _ = beat.tick() => {
                heartbeat.beat();
                continue;
            }
            a = listener.accept() => a,
        };
        heartbeat.beat();
        let Some((stream, _)) = accept_backoff.check(accepted, "socket").await else { continue };
        match Arc::clone(&connections).try_acquire_owned() {
            Ok(permit) => {
                let (service, stop) = (service.clone(), stop_rx.clone());
                tasks.spawn(async move {
                    conn::serve(stream, service, stop).await;
                    drop(permit);
                });
            }
            Err(_) => {
                let max = config.limits.max_connections;
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let mut stream = stream;
                    let line = conn::error_line(
                        &serde_json::Value::Null,
                        rpc::codes::OVERLOADED,
                        &format!("overloaded: the daemon already serves {max} connections"),
                    );
                    let _ = stream.write_all(format!("{line}\n").as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        }
        while tasks.try_join_next().is_some() {}
    }

    tracing::info!("shutting down: finishing requests in flight");
    systemd::notify("STOPPING=1\nSTATUS=stopping: finishing requests in flight");
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(config.limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
        if let Some(h) = http_task {
            let _ = h.await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("grace period over: closing remaining connections");
        tasks.abort_all();
    }
    // The socket goes before the log closes: a daemon started next opens the log only once this
    // one has closed it, and binds a socket this one must not remove.
    if !socket_activated {
        // A passed socket belongs to systemd, which keeps it for the next start.
        let _ = std::fs::remove_file(&config.socket_path);
    }
    drop(service);
    daemon.close().await;
    Ok(())
}

/// An accept loop's error handling: out of file descriptors (EMFILE) and the like back off
/// instead of spinning, and are logged once per episode. Shared by the socket and HTTP listeners.
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff {
    failing: bool,
}

impl AcceptBackoff {
    /// The accepted connection, or `None` after backing off from an error.
    pub(crate) async fn check<T>(&mut self, accepted: std::io::Result<T>, listener: &str) -> Option<T> {
        match accepted {
            Ok(conn) => {
                self.failing = false;
                Some(conn)
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(error = %e, listener, "accept failed; backing off");
                    self.failing = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                None
            }
        }
    }
}
