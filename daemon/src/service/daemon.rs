//! The composition root: [`Daemon::open`] opens the log, loads the policy and builds the core's
//! state; [`Opened::start`] records the start and runs the background tasks (policy reloads,
//! retention, notifications, export, witnesses) with the outbound adapters it was given
//! ([`super::outbound`]); [`Daemon::close`] records the stop and closes the log. The doors (`server`) only bind, accept and translate: they get a [`Service`] and
//! never see the log or the state's fields.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::outbound::{Export, Outbound};
use super::state::{Limits, Loaded, PolicyFileError, State};
use super::{Service, approvals, fleet, limits, logins, metrics, retention, state, witness};
use crate::log::{CommitObserver, Log, LogError, LogKey, LogOptions, dpr, entry};

/// What the core needs to open: the door-independent part of `faramesh serve`'s settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The policy file.
    pub policy_path: PathBuf,
    /// Where the log and its key live.
    pub state_dir: PathBuf,
    /// The socket the daemon serves (shown by `status`).
    pub socket_path: PathBuf,
    /// Limits.
    pub limits: Limits,
    /// Retention the daemon applies itself (`--retention`), if any.
    pub retention: Option<retention::Retention>,
    /// Single-user mode (see `State::single_user`).
    pub single_user: bool,
    /// A demo daemon (`faramesh serve --demo`).
    pub demo: bool,
    /// Where the log's entries are exported, each with the adapter that ships to it.
    pub export: Vec<Export>,
    /// The adapters that deliver notifications and submit checkpoints to witnesses.
    pub outbound: Outbound,
    /// The witnesses the log's checkpoints are submitted to, if any.
    pub witnesses: Option<witness::Config>,
    /// The kill file: while it exists, every call is DENY (`None`: no file is watched).
    pub kill_file: Option<PathBuf>,
    /// The fleet queue signed decisions from other machines are read from (`--postgres`).
    pub fleet_queue: Option<Arc<dyn super::outbound::DecisionQueue>>,
    /// Signed policy bundles instead of a policy file (`--policy-from postgres`).
    pub bundle: Option<super::bundle::BundleConfig>,
    /// Counters shared by the fleet, for `scope: fleet` limits (`--postgres`).
    pub fleet_counter: Option<Arc<dyn super::outbound::FleetCounter>>,
}

/// Why the core could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The policy file cannot be read or does not compile.
    #[error(transparent)]
    Policy(#[from] PolicyFileError),
    /// The state directory cannot be created.
    #[error("cannot create the directory `{}`: {source}", .path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The decision log cannot be opened or written.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// The core, opened and not yet started: nothing is recorded until [`Opened::start`], so a door
/// that cannot bind stops the start cleanly.
pub struct Opened {
    state: State,
    log: Arc<Log>,
    options: Options,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").field("policy_path", &self.options.policy_path).finish_non_exhaustive()
    }
}

/// The running core: its service, and the background tasks it stops on [`Daemon::close`].
pub struct Daemon {
    service: Service,
    state: Arc<State>,
    log: Arc<Log>,
    options: Options,
    _watcher: Option<notify::RecommendedWatcher>,
    retention: JoinHandle<()>,
    outbox: JoinHandle<()>,
    outbox_stop: CancellationToken,
    exports: Vec<JoinHandle<()>>,
    witness: Option<JoinHandle<()>>,
    witness_stop: CancellationToken,
    queue: Option<JoinHandle<()>>,
    bundles: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon").field("policy_path", &self.options.policy_path).finish_non_exhaustive()
    }
}

/// Creates `dir` (and missing parents) mode 0700 when missing.
fn private_dir(dir: &Path) -> Result<(), OpenError> {
    crate::log::create_private_dir(dir).map_err(|source| OpenError::StateDir { path: dir.to_owned(), source })
}

impl Daemon {
    /// Loads the policy, opens the log in `state_dir` and builds the core's state.
    pub fn open(options: Options) -> Result<Opened, OpenError> {
        // A policy file is read first (its errors come before anything is created); a host that
        // takes signed bundles reads its kept bundle once the log (which says which it applied)
        // is open.
        let file_policy = match &options.bundle {
            Some(_) => None,
            None => Some(state::load_policy(&options.policy_path)?),
        };
        private_dir(&options.state_dir)?;
        let key = LogKey::load_or_create(&options.state_dir.join("log.key"))?;
        let metrics = Arc::new(metrics::Metrics::new());
        let observer: CommitObserver = {
            let metrics = Arc::clone(&metrics);
            Arc::new(move |records, took, ok| metrics.observe_commit(records, took, ok))
        };
        let log_options = LogOptions {
            on_commit: Some(observer),
            cache_bytes: options.limits.log_cache_bytes,
            ..retention::log_options()
        };
        let log = Arc::new(Log::open(&options.state_dir.join("log.redb"), key, log_options)?);
        let (policy, bundle) = match (file_policy, &options.bundle) {
            (Some(p), _) => (p, None),
            (None, Some(b)) => match state::load_bundled(b, &super::bundle::applied(&log)) {
                Ok(loaded) => loaded,
                // A kept bundle that is not the one the log applied is not used: the host starts
                // denying every call until the fleet database hands it a bundle that checks.
                Err(e) => {
                    tracing::error!(error = %e, "the kept policy bundle is not used; every call is denied until a signed bundle arrives");
                    (
                        crate::policy::compile("no bundle yet", super::bundle::NO_BUNDLE_YET)
                            .map_err(state::PolicyFileError::from)?,
                        None,
                    )
                }
            },
            (None, None) => (state::load_policy(&options.policy_path)?, None),
        };
        let approvals = approvals::Book::load(Arc::clone(&log))?;
        let mcp_pins = super::mcp_pins::Pins::load(&log)?;
        let grants = super::grants::Grants::load(&log)?;
        let kill = super::kill::KillSwitch::load(&log, options.kill_file.clone())?;
        // `after:` conditions read what each session did in the policy's longest window.
        let recent = super::sequence::Recent::rebuild(&log, entry::now_ms(), policy.longest_after_ms)?;
        let destinations = options.export.iter().map(|d| Arc::new(fleet::Destination::new(d))).collect();
        let state = State {
            policy_path: options.policy_path.clone(),
            policy: ArcSwap::from_pointee(Loaded {
                policy,
                loaded_at: entry::rfc3339(entry::now_ms()),
                bundle,
            }),
            bundle: options.bundle.clone(),
            bundle_progress: Default::default(),
            last_error: ArcSwap::from_pointee(None),
            reload_lock: tokio::sync::Mutex::new(()),
            logins: Arc::default(),
            single_user: options.single_user,
            demo: options.demo,
            reloads: AtomicU64::new(0),
            log: Arc::clone(&log),
            socket_path: options.socket_path.clone(),
            state_dir: std::fs::canonicalize(&options.state_dir)
                .unwrap_or_else(|_| options.state_dir.clone()),
            own_uid: nix::unistd::getuid().as_raw(),
            started: Instant::now(),
            counts: state::Counts::default(),
            limits: options.limits.clone(),
            approvals,
            mcp_pins,
            grants,
            kill,
            recent,
            signed_refusals: Default::default(),
            fleet_queue: Default::default(),
            leases: Default::default(),
            fleet_counter: options.fleet_counter.clone(),
            outbox: Default::default(),
            outbox_wake: Default::default(),
            destinations: Arc::new(destinations),
            rate: limits::RateLimiter::default(),
            budgets: std::sync::Mutex::new(std::collections::HashMap::new()),
            metrics,
            http: None,
        };
        Ok(Opened { state, log, options })
    }

    /// The core's service: what every door calls.
    pub fn service(&self) -> Service {
        self.service.clone()
    }

    /// The one-line status systemd shows (`STATUS=`).
    pub fn status_line(&self) -> String {
        self.state.systemd_status()
    }

    /// How long the log's writer has been working on its current batch (`None` while idle):
    /// what the systemd watchdog checks.
    pub fn writer_probe(&self) -> Arc<dyn Fn() -> Option<Duration> + Send + Sync> {
        let log = Arc::clone(&self.log);
        Arc::new(move || log.writer_busy_for())
    }

    /// Records the stop, sends the last checkpoint to the witnesses, stops the background
    /// tasks and closes the log.
    pub async fn close(self) {
        let pid = std::process::id();
        let stop = dpr::event_entry("daemon_stop", json!({"version": dpr::RUNTIME_VERSION, "pid": pid}));
        if let Err(e) = self.log.append(stop).await {
            tracing::error!(error = %e, "cannot record the stop");
        }
        // The checkpoint that records the stop goes to the witnesses before the log closes.
        self.witness_stop.cancel();
        if let Some(task) = self.witness {
            let _ = tokio::time::timeout(Duration::from_secs(25), task).await;
        }
        self.retention.abort();
        self.outbox_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.outbox).await;
        if let Some(task) = self.bundles {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        if let Some(task) = self.queue {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        for task in self.exports {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        drop(self.service);
        drop(self.state);
        self.log.close();
    }
}

impl Opened {
    /// The sign-in links the dashboard's door shares with the core.
    pub fn logins(&self) -> Arc<logins::LoginLinks> {
        Arc::clone(&self.state.logins)
    }

    /// Tells the core about the HTTP listener a door bound (shown by `status`).
    pub fn set_http(&mut self, info: Option<super::state::HttpInfo>) {
        self.state.http = info;
    }

    /// Records the start and the policy loaded, and starts the background tasks.
    pub async fn start(self) -> Result<Daemon, OpenError> {
        let Opened { state, log, options } = self;
        let (hash, n_rules) = {
            let loaded = state.policy.load();
            (loaded.policy.hash.clone(), loaded.policy.n_rules())
        };
        let state = Arc::new(state);
        let service = Service::new(Arc::clone(&state));
        let pid = std::process::id();
        let start = dpr::event_entry("daemon_start", json!({"version": dpr::RUNTIME_VERSION, "pid": pid}));
        let load = dpr::event_entry(
            "policy_load",
            json!({"path": options.policy_path.display().to_string(), "policy_hash": hash, "rules": n_rules}),
        );
        for body in [start, load] {
            log.append(body).await?;
        }
        let watcher = spawn_reloader(Arc::clone(&state));
        let retention =
            retention::spawn(Arc::clone(&state), Arc::clone(service.clock()), options.retention.clone());
        // Notifications: the sender delivers what the outbox holds (including what a previous
        // run queued and did not deliver).
        let outbox_stop = CancellationToken::new();
        let outbox = {
            let (svc, stop, notifier) =
                (service.clone(), outbox_stop.clone(), Arc::clone(&options.outbound.notifier));
            tokio::spawn(async move { svc.run_outbox(notifier.as_ref(), stop).await })
        };
        // Export: each destination's sender ships what follows its cursor.
        let exports = state
            .destinations
            .iter()
            .map(|d| {
                tracing::info!(destination = %d.name, target = %d.target(), required = d.required, "exporting the log");
                tokio::spawn(Arc::clone(d).run(Arc::clone(&log), Arc::clone(&state.destinations), outbox_stop.clone()))
            })
            .collect();
        // Witnesses: the newest checkpoint submitted every interval and once more at shutdown.
        let witness_stop = CancellationToken::new();
        let witness = options.witnesses.clone().map(|w| {
            tracing::info!(
                witnesses = w.policy.witnesses.len(),
                interval_s = w.interval.as_secs_f64(),
                "submitting checkpoints to witnesses"
            );
            let (svc, stop, post) =
                (service.clone(), witness_stop.clone(), Arc::clone(&options.outbound.witness));
            tokio::spawn(async move { svc.run_witnesses(w, post.as_ref(), stop).await })
        });
        // Signed policy bundles from the fleet database.
        let bundles = options.bundle.clone().map(|b| {
            tracing::info!(target = %b.source.target(), labels = ?b.labels, "taking the policy from signed bundles");
            let (svc, stop) = (service.clone(), outbox_stop.clone());
            tokio::spawn(async move { svc.run_bundles(b, stop).await })
        });
        // The fleet queue: signed decisions made on other machines for this host's approvals.
        let queue = options.fleet_queue.clone().map(|q| {
            tracing::info!(target = %q.target(), "reading signed decisions from the fleet queue");
            let (svc, stop) = (service.clone(), outbox_stop.clone());
            tokio::spawn(async move { svc.run_decision_queue(q.as_ref(), stop).await })
        });
        tracing::info!(policy = %options.policy_path.display(), policy_hash = %hash, "the policy is loaded");
        Ok(Daemon {
            service,
            state,
            log,
            options,
            _watcher: watcher,
            retention,
            outbox,
            outbox_stop,
            exports,
            witness,
            witness_stop,
            queue,
            bundles,
        })
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
