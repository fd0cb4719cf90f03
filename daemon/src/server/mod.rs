//! The daemon: a Unix socket speaking newline-delimited JSON-RPC 2.0, the policy hot-reloaded
//! from its file, every decision recorded in the log before it is answered.
//!
//! A request's path: listener (connection limit) → `conn::serve` (framing, limits) → the method
//! table `rpc::method` with the peer's credentials as an `Identity` → the core's `Service` →
//! reply. The HTTP door (`http/`) and the dashboard (`dashboard.rs`) map onto the same
//! `Service`.

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
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde_json::json;
use tokio::net::UnixListener;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::log::{Log, LogKey, LogOptions, dpr};
pub use crate::service::state::{Limits, Loaded, State};
use crate::service::{approvals, limits, metrics, retention, state};
use crate::systemd;

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
    pub export: Vec<crate::service::fleet::Spec>,
    /// The witnesses the log's checkpoints are submitted to (`serve --witnesses`), if any.
    pub witnesses: Option<crate::service::witness::Config>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The policy file cannot be read or does not compile (file, line and column in the error).
    #[error(transparent)]
    Policy(#[from] crate::service::state::PolicyFileError),
    /// A file or directory the daemon needs (state dir, socket, TLS files) cannot be used.
    #[error("cannot {action} `{}`: {source}", .path.display())]
    Io {
        /// What was being done (`create the state directory`, `bind`, ...).
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
    /// The decision log cannot be opened or written (locked, corrupt, unreadable).
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
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
    crate::log::create_private_dir(dir).map_err(|e| ServerError::io("create the directory", dir, e))
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
    let policy = state::load_policy(&config.policy_path)?;
    private_dir(&config.state_dir)?;
    let key = LogKey::load_or_create(&config.state_dir.join("log.key"))?;
    let metrics = Arc::new(metrics::Metrics::new());
    let observer: crate::log::CommitObserver = {
        let metrics = Arc::clone(&metrics);
        Arc::new(move |records, took, ok| metrics.observe_commit(records, took, ok))
    };
    let options = LogOptions {
        on_commit: Some(observer),
        cache_bytes: config.limits.log_cache_bytes,
        ..LogOptions::default()
    };
    let log = Log::open(&config.state_dir.join("log.redb"), key, options)?;
    let log = Arc::new(log);
    let book = approvals::Book::load(Arc::clone(&log))?;
    let mcp_pins = crate::service::mcp_pins::Pins::load(&log)?;
    let grants = crate::service::grants::Grants::load(&log)?;
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

    let hash = policy.hash.clone();
    let n_rules = policy.n_rules();
    let mut state = State {
        policy_path: config.policy_path.clone(),
        policy: ArcSwap::from_pointee(Loaded {
            policy,
            loaded_at: crate::log::entry::rfc3339(crate::log::entry::now_ms()),
        }),
        last_error: ArcSwap::from_pointee(None),
        reload_lock: tokio::sync::Mutex::new(()),
        logins: Arc::default(),
        single_user: config.single_user,
        demo: config.demo,
        reloads: AtomicU64::new(0),
        log: Arc::clone(&log),
        socket_path: config.socket_path.clone(),
        state_dir: std::fs::canonicalize(&config.state_dir).unwrap_or_else(|_| config.state_dir.clone()),
        own_uid: nix::unistd::getuid().as_raw(),
        started: Instant::now(),
        counts: state::Counts::default(),
        limits: config.limits.clone(),
        approvals: book,
        mcp_pins,
        grants,
        outbox: Default::default(),
        outbox_wake: Default::default(),
        destinations: Arc::new(
            config
                .export
                .iter()
                .map(|d| {
                    Arc::new(crate::service::fleet::Destination::new(&d.name, d.kind.clone(), d.required))
                })
                .collect(),
        ),
        rate: limits::RateLimiter::default(),
        budgets: std::sync::Mutex::new(std::collections::HashMap::new()),
        metrics,
        http: None,
    };
    // The HTTP listener binds before anything is recorded, so a bad address, certificate or
    // token set stops the start cleanly.
    let http_bound = match &config.http {
        Some(http_config) => {
            let bound =
                http::bind(http_config, &config.state_dir, activated_tcp.take(), Arc::clone(&state.logins))
                    .await;
            match bound {
                Ok(l) => {
                    state.http = Some(l.info.clone());
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
    let state = Arc::new(state);
    let service = crate::service::Service::new(Arc::clone(&state));
    let pid = std::process::id();
    let start = dpr::event_entry("daemon_start", json!({"version": dpr::RUNTIME_VERSION, "pid": pid}));
    let load = dpr::event_entry(
        "policy_load",
        json!({"path": config.policy_path.display().to_string(), "policy_hash": hash, "rules": n_rules}),
    );
    for body in [start, load] {
        log.append(body).await?;
    }

    let _watcher = spawn_reloader(Arc::clone(&state));
    let retention =
        retention::spawn(Arc::clone(&state), Arc::clone(service.clock()), config.retention.clone());
    // Notifications: the sender delivers what the outbox holds (including what a previous run
    // queued and did not deliver).
    let outbox_stop = tokio_util::sync::CancellationToken::new();
    let outbox = {
        let (svc, stop) = (service.clone(), outbox_stop.clone());
        tokio::spawn(async move { svc.run_outbox(stop).await })
    };
    // Export: each destination's sender ships what follows its cursor.
    let export_tasks: Vec<_> = state
        .destinations
        .iter()
        .map(|d| {
            tracing::info!(destination = %d.name, target = %d.target(), required = d.required, "exporting the log");
            tokio::spawn(Arc::clone(d).run(Arc::clone(&log), Arc::clone(&state.destinations), outbox_stop.clone()))
        })
        .collect();
    // Witnesses: the newest checkpoint submitted every interval and once more at shutdown.
    let witness_stop = tokio_util::sync::CancellationToken::new();
    let witness_task = config.witnesses.clone().map(|w| {
        tracing::info!(
            witnesses = w.policy.witnesses.len(),
            interval_s = w.interval.as_secs_f64(),
            "submitting checkpoints to witnesses"
        );
        let (svc, stop) = (service.clone(), witness_stop.clone());
        tokio::spawn(async move { svc.run_witnesses(w, stop).await })
    });
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
    tracing::info!(socket = %config.socket_path.display(), policy = %config.policy_path.display(), policy_hash = %hash, "faramesh is serving");
    systemd::notify(&format!("READY=1\nSTATUS={}", state.systemd_status()));
    let heartbeat = Arc::new(systemd::Heartbeat::default());
    heartbeat.beat();
    let watchdog = systemd::watchdog_interval();
    let _watchdog = watchdog.map(|iv| systemd::spawn_watchdog(iv, Arc::clone(&heartbeat), Arc::clone(&log)));
    let _status = std::env::var_os("NOTIFY_SOCKET").map(|_| {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            every.tick().await;
            loop {
                every.tick().await;
                systemd::notify(&format!("STATUS={}", state.systemd_status()));
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
    let stop = dpr::event_entry("daemon_stop", json!({"version": dpr::RUNTIME_VERSION, "pid": pid}));
    if let Err(e) = log.append(stop).await {
        tracing::error!(error = %e, "cannot record the stop");
    }
    // The checkpoint that records the stop goes to the witnesses before the log closes.
    witness_stop.cancel();
    if let Some(task) = witness_task {
        let _ = tokio::time::timeout(Duration::from_secs(25), task).await;
    }
    if !socket_activated {
        // A passed socket belongs to systemd, which keeps it for the next start.
        let _ = std::fs::remove_file(&config.socket_path);
    }
    retention.abort();
    outbox_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), outbox).await;
    for task in export_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    drop(service);
    drop(state);
    log.close();
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

/// Watches the policy's directory (editors save by rename) and reloads on change, debounced.
/// Also reloads on SIGHUP.
fn spawn_reloader(state: Arc<State>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let file_name = state.policy_path.file_name().map(|n| n.to_owned());
    let watch_tx = tx.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let ours = event.paths.iter().any(|p| p.file_name().map(|n| n.to_owned()) == file_name);
            if ours && !matches!(event.kind, notify::EventKind::Access(_)) {
                let _ = watch_tx.send(());
            }
        }
    });
    let watcher = match watcher {
        Ok(mut w) => {
            let dir =
                state.policy_path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            match w.watch(dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the policy directory; reload with SIGHUP or `policy.reload`");
                    None
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the policy; reload with SIGHUP or `policy.reload`");
            None
        }
    };
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        let tx = tx.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = tx.send(());
            }
        });
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: editors write in several steps.
            tokio::time::sleep(Duration::from_millis(150)).await;
            while rx.try_recv().is_ok() {}
            let _ = state.reload().await;
        }
    });
    watcher
}
