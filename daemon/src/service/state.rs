//! What the daemon holds while it runs: the loaded policy (swapped atomically on reload), the
//! decision log, counters, and the configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use serde_json::{Value, json};

use crate::log::{Log, dpr};
use crate::policy::Policy;

/// Why a policy file cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    /// The file cannot be read.
    #[error("cannot read policy `{}`: {source}", .path.display())]
    Read {
        /// The policy file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The policy does not compile (file, line and column in the error).
    #[error(transparent)]
    Compile(#[from] crate::policy::PolicyError),
}

/// Reads and compiles a policy file.
pub fn load_policy(path: &Path) -> Result<Policy, PolicyFileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| PolicyFileError::Read { path: path.to_owned(), source })?;
    Ok(crate::policy::compile(&path.display().to_string(), &text)?)
}

/// The policy of a host that takes signed bundles: the last good bundle in `dir` (checked
/// again), else the empty policy that denies every call.
pub fn load_bundled(
    cfg: &super::bundle::BundleConfig,
    applied: &Option<(u64, String)>,
) -> Result<(Policy, Option<super::bundle::BundleInfo>), PolicyFileError> {
    match super::bundle::load_last_good(cfg, applied)? {
        Some((policy, info)) => Ok((policy, Some(info))),
        None => Ok((crate::policy::compile("no bundle yet", super::bundle::NO_BUNDLE_YET)?, None)),
    }
}

/// A compiled policy and where it came from.
#[derive(Debug)]
pub struct Loaded {
    /// The policy.
    pub policy: Policy,
    /// When it was loaded (RFC 3339).
    pub loaded_at: String,
    /// The signed bundle it came from (`--policy-from postgres`).
    pub bundle: Option<super::bundle::BundleInfo>,
}

/// Limits and settings of the socket server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest request line in bytes (default 1 MiB).
    pub max_line_bytes: usize,
    /// Most simultaneous connections (default 1024).
    pub max_connections: usize,
    /// Most requests being handled at once on one connection (default 64).
    pub max_in_flight_per_connection: usize,
    /// A connection with nothing in flight and nothing received for this long is closed.
    pub idle_timeout: std::time::Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: std::time::Duration,
    /// The decision log's page cache in bytes (default 16 MiB; redb's own default is 1 GiB).
    pub log_cache_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_bytes: 1 << 20,
            max_connections: 1024,
            max_in_flight_per_connection: 64,
            idle_timeout: std::time::Duration::from_secs(300),
            shutdown_grace: std::time::Duration::from_secs(10),
            log_cache_bytes: crate::log::DEFAULT_CACHE_BYTES,
        }
    }
}

/// Decision counters.
#[derive(Debug, Default)]
pub struct Counts {
    /// PERMIT answers.
    pub permit: AtomicU64,
    /// DENY answers.
    pub deny: AtomicU64,
    /// DEFER answers.
    pub defer: AtomicU64,
    /// Requests refused with an error (both kinds below).
    pub errors: AtomicU64,
    /// Of those, the client's mistakes: bad JSON, unknown method, bad params, unknown id,
    /// wrong state, not authorized.
    pub client_errors: AtomicU64,
    /// Of those, faults inside the daemon.
    pub internal_errors: AtomicU64,
}

impl Counts {
    /// Counts one error reply; `internal` for a fault of the daemon's own.
    pub fn error(&self, internal: bool) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let kind = if internal { &self.internal_errors } else { &self.client_errors };
        kind.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one answered decision.
    pub fn count(&self, d: &faramesh_proto::Decision) {
        let counter = match d.effect {
            faramesh_proto::Effect::Permit => &self.permit,
            faramesh_proto::Effect::Deny => &self.deny,
            faramesh_proto::Effect::Defer => &self.defer,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The daemon's shared state.
pub struct State {
    /// The policy file being served.
    pub policy_path: PathBuf,
    /// Signed policy bundles from the fleet database (`--policy-from postgres`), if so.
    pub bundle: Option<super::bundle::BundleConfig>,
    /// What the bundle fetcher has seen.
    pub bundle_progress: std::sync::Mutex<super::bundle::Progress>,
    /// The policy in force.
    pub policy: ArcSwap<Loaded>,
    /// The last reload error (`path:line:column: message`), cleared by a successful load.
    pub last_error: ArcSwap<Option<String>>,
    /// Held by the reload in progress.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// One-time dashboard sign-in links.
    pub logins: Arc<crate::service::logins::LoginLinks>,
    /// Single-user mode (`faramesh dev`, or `faramesh serve` with nothing configured): the
    /// person at the terminal runs the daemon and its agents as one uid, so that uid may approve
    /// (while the policy lists no approvers). Never under systemd or with a token configured.
    pub single_user: bool,
    /// A demo daemon (`faramesh serve --demo`).
    pub demo: bool,
    /// Successful loads since start.
    pub reloads: AtomicU64,
    /// The decision log.
    pub log: Arc<Log>,
    /// The socket path.
    pub socket_path: PathBuf,
    /// The state directory (absolute) whose log this daemon holds: tools asked about a state
    /// dir check it is this one before trusting the daemon's answer.
    pub state_dir: PathBuf,
    /// The daemon process's real uid (`getuid`), which may approve like root. (Not the owner of
    /// the state dir: a root-owned daemon may serve a dir another user created.)
    pub own_uid: u32,
    /// When the daemon started.
    pub started: Instant,
    /// Counters.
    pub counts: Counts,
    /// Server limits.
    pub limits: Limits,
    /// Pending and decided approvals.
    pub approvals: super::approvals::Book,
    /// Pinned MCP tool definitions.
    pub mcp_pins: super::mcp_pins::Pins,
    /// Live grants.
    pub grants: super::grants::Grants,
    /// The kill switch.
    pub kill: super::kill::KillSwitch,
    /// What each session and agent did before (for `after:` conditions).
    pub recent: super::sequence::Recent,
    /// Units of fleet-scoped limits this host holds.
    pub leases: super::fleet_limits::Leases,
    /// The fleet database's counters (`--postgres`), for `scope: fleet` limits.
    pub fleet_counter: Option<Arc<dyn super::outbound::FleetCounter>>,
    /// What the fleet queue's reader has seen (`status`'s `fleet_queue`).
    pub fleet_queue: super::fleet::queue::QueueStatus,
    /// How many refused signed statements each approval has had recorded (bounded).
    pub signed_refusals: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// Notification outbox counters.
    pub outbox: super::notify::OutboxStats,
    /// Wakes the outbox sender when a commit queued notifications.
    pub outbox_wake: tokio::sync::Notify,
    /// Export destinations (`docs/fleet.md`).
    pub destinations: Arc<Vec<Arc<super::fleet::Destination>>>,
    /// Rate-limit buckets.
    pub rate: super::limits::RateLimiter,
    /// Budget counters (cache of the `budget/…` state rows).
    pub budgets: std::sync::Mutex<std::collections::HashMap<String, (u64, std::time::Instant)>>,
    /// Prometheus metrics.
    pub metrics: Arc<super::metrics::Metrics>,
    /// The HTTP listener's address and TLS certificate fingerprint, when it runs.
    pub http: Option<HttpInfo>,
}

/// What `status` says about the HTTP listener.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HttpInfo {
    /// `http://…` or `https://…`.
    pub url: String,
    /// SHA-256 of the certificate (DER), `AB:CD:…`, for TLS.
    pub tls_fingerprint: Option<String>,
    /// Tokenless callers are served as unauthenticated agents (loopback, no token configured).
    pub anonymous_agents: bool,
    /// The listener is on a loopback address.
    pub loopback: bool,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("policy_path", &self.policy_path).finish_non_exhaustive()
    }
}

/// What `status` and the dashboard say in single-user mode.
pub const SINGLE_USER_NOTICE: &str = "single-user mode: agents of this user could approve their own calls";

impl State {
    /// Whether single-user mode applies now: configured so, and the policy lists no approvers.
    pub fn single_user_now(&self) -> bool {
        self.single_user && self.policy.load().policy.approvals.approvers.is_empty()
    }

    /// Reloads the policy file: on success swaps it in and records a `policy_load` entry; on
    /// failure keeps the last good policy, records `policy_reload_failed` and remembers the error.
    ///
    /// Reloads run one at a time (others wait their turn), and a failure that repeats the last
    /// one (same error) is not recorded again: a flood of reload requests cannot grow the log.
    pub async fn reload(&self) -> Result<String, PolicyFileError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        crate::systemd::reloading();
        let result = self.reload_inner().await;
        crate::systemd::notify(&format!("READY=1\nSTATUS={}", self.systemd_status()));
        result
    }

    async fn reload_inner(&self) -> Result<String, PolicyFileError> {
        let path = self.policy_path.clone();
        let bundled = self.bundle.clone().map(|b| (b, super::bundle::applied(&self.log)));
        let compiled = tokio::task::spawn_blocking(move || match bundled {
            // From signed bundles: the last good one kept on disk, checked again (its signature,
            // and that it is the one the log says was applied).
            Some((cfg, applied)) => load_bundled(&cfg, &applied),
            None => load_policy(&path).map(|p| (p, None)),
        })
        .await
        .unwrap_or_else(|e| {
            Err(PolicyFileError::Read { path: self.policy_path.clone(), source: std::io::Error::other(e) })
        });
        match compiled {
            Ok((policy, bundle)) => {
                let hash = policy.hash.clone();
                let changed = self.policy.load().policy.hash != hash;
                let n_rules = policy.n_rules();
                self.policy.store(Arc::new(Loaded {
                    policy,
                    loaded_at: crate::log::entry::rfc3339(crate::log::entry::now_ms()),
                    bundle,
                }));
                self.last_error.store(Arc::new(None));
                self.reloads.fetch_add(1, Ordering::Relaxed);
                self.metrics.reload(true);
                if changed {
                    let body = dpr::event_entry(
                        "policy_load",
                        json!({"path": self.policy_path.display().to_string(), "policy_hash": hash, "rules": n_rules}),
                    );
                    if let Err(e) = self.log.append(body).await {
                        tracing::error!(error = %e, "cannot record the policy load");
                    }
                }
                tracing::info!(policy_hash = %hash, rules = n_rules, "policy loaded");
                Ok(hash)
            }
            Err(error) => {
                let message = error.to_string();
                tracing::error!(error = %message, "policy reload failed; the last good policy keeps serving");
                let repeated = self.last_error.load().as_deref() == Some(message.as_str());
                self.last_error.store(Arc::new(Some(message.clone())));
                self.metrics.reload(false);
                if repeated {
                    return Err(error);
                }
                let body = dpr::event_entry(
                    "policy_reload_failed",
                    json!({"path": self.policy_path.display().to_string(), "error": message}),
                );
                if let Err(e) = self.log.append(body).await {
                    tracing::error!(error = %e, "cannot record the failed reload");
                }
                Err(error)
            }
        }
    }

    /// `policy.status`.
    pub fn policy_status(&self) -> Value {
        let loaded = self.policy.load();
        json!({
            "path": self.policy_path.display().to_string(),
            "policy_hash": loaded.policy.hash,
            "rules": loaded.policy.n_rules(),
            "loaded_at": loaded.loaded_at,
            "reloads": self.reloads.load(Ordering::Relaxed),
            "last_error": **self.last_error.load(),
            "bundle": self.bundle_status(),
        })
    }

    /// The one-line status systemd shows (`systemctl status`): "serving, policy c383edb1,
    /// 1,204 decisions".
    pub fn systemd_status(&self) -> String {
        let c = &self.counts;
        let n = c.permit.load(Ordering::Relaxed)
            + c.deny.load(Ordering::Relaxed)
            + c.defer.load(Ordering::Relaxed);
        let hash = self.policy.load().policy.hash.clone();
        let digits = n.to_string();
        let mut grouped = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        let failed = if self.last_error.load().is_some() { " (last reload failed)" } else { "" };
        format!("serving, policy {}{failed}, {grouped} decisions", hash.get(..8).unwrap_or(&hash))
    }

    /// `status`.
    pub fn status(&self) -> Value {
        let (size, head) = self.log.head();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "runtime_version": dpr::RUNTIME_VERSION,
            "pid": std::process::id(),
            "uid": self.own_uid,
            "host": super::fleet::host_name(),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "single_user": self.single_user_now(),
            "demo": self.demo,
            "notice": self.single_user_now().then_some(SINGLE_USER_NOTICE),
            "socket": self.socket_path.display().to_string(),
            "http": self.http,
            "policy": self.policy_status(),
            "counts": {
                "permit": self.counts.permit.load(Ordering::Relaxed),
                "deny": self.counts.deny.load(Ordering::Relaxed),
                "defer": self.counts.defer.load(Ordering::Relaxed),
                "errors": self.counts.errors.load(Ordering::Relaxed),
                "client_errors": self.counts.client_errors.load(Ordering::Relaxed),
                "internal_errors": self.counts.internal_errors.load(Ordering::Relaxed),
            },
            "notifications": {
                "channels": self.policy.load().policy.notifications.channels.keys().collect::<Vec<_>>(),
                "queued": self.outbox.queued.load(Ordering::Relaxed),
                "delivered": self.outbox.delivered.load(Ordering::Relaxed),
                "failed": self.outbox.failed.load(Ordering::Relaxed),
                "waiting": self.outbox.waiting.load(Ordering::Relaxed),
                "oldest_seconds": self.outbox.oldest_ms.load(Ordering::Relaxed) / 1000,
                "last_error": self.outbox.last_error.lock().ok().and_then(|e| e.clone()),
            },
            "log": {
                "state_dir": self.state_dir.display().to_string(),
                "size": size,
                "head_hash": crate::log::entry::hex(&head),
                "origin": self.log.origin(),
                "first_seq": self.log.first_seq().ok(),
                "exported_through": self.log.exported_through().ok(),
            },
            "kill": self.kill.status(),
            "sequences": {
                "window_seconds": self.policy.load().policy.longest_after_ms / 1000,
                "calls": self.recent.size().0,
                "sessions": self.recent.size().1,
            },
            "export": self.destinations.iter().map(|d| d.status(&self.log)).collect::<Vec<_>>(),
            "fleet_queue": self.fleet_queue.shown(),
            "witnesses": self
                .log
                .state_scan(crate::service::witness::STATUS_PREFIX)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(_, v)| serde_json::from_slice::<Value>(&v).ok())
                .collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use faramesh_proto::{Effect, ReasonCode};
    use serde_json::json;

    use crate::service::{CallRequest, Identity, Peer, PeerCred};

    /// `State::reload` holds `reload_lock` across its log append (reloads run one at a time);
    /// no decision or approval takes that lock, so a reload in progress holds none of them up.
    /// A govern or an approval that waited for it would never finish here.
    #[tokio::test]
    async fn a_reload_in_progress_holds_up_no_decision_or_approval() {
        let dir = tempfile::tempdir().unwrap();
        let s = super::super::tests::service(
            dir.path(),
            "version: 1\nrules:\n  - match: { tool: http }\n    allow: true\n  - match: { tool: shell }\n    require_approval: true\n",
        );
        let agent = Identity::Peer(Peer::new(PeerCred { uid: 1000, gid: 1000, pid: 10 }));
        let root = Identity::Peer(Peer::new(PeerCred { uid: 0, gid: 0, pid: 1 }));
        let call = |tool: &str| {
            CallRequest::from_value(&json!({"agent_id": "bot", "tool": tool, "operation": "run"})).unwrap()
        };
        let _reloading = s.state.reload_lock.lock().await;
        let answers = async {
            let permit = s.govern(call("http"), &agent).await.unwrap();
            let deferred = s.govern(call("shell"), &agent).await.unwrap();
            let approved =
                s.approval_decide(&deferred.approval_id.unwrap(), true, None, &root).await.unwrap();
            (permit.decision.effect, deferred.decision.effect, approved.status)
        };
        let (permit, deferred, approved) =
            tokio::time::timeout(Duration::from_secs(60), answers).await.expect("waited for the reload lock");
        assert_eq!((permit, deferred), (Effect::Permit, Effect::Defer));
        assert_eq!(approved, crate::service::approvals::Status::Approved);
    }

    /// No PERMIT leaves the core unless its entry is committed: when the log cannot take it (here
    /// closed), the answer is DENY `INTERNAL_ERROR` with no action id.
    #[tokio::test]
    async fn a_permit_whose_entry_cannot_be_committed_is_deny_internal_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = super::super::tests::service(
            dir.path(),
            "version: 1\nrules:\n  - match: { tool: http }\n    allow: true\n",
        );
        let agent = Identity::Peer(Peer::new(PeerCred { uid: 1000, gid: 1000, pid: 10 }));
        let call =
            CallRequest::from_value(&json!({"agent_id": "bot", "tool": "http", "operation": "get"})).unwrap();
        assert_eq!(s.govern(call.clone(), &agent).await.unwrap().decision.effect, Effect::Permit);
        s.state.log.close();
        let reply = s.govern(call, &agent).await.unwrap();
        assert_eq!(
            (reply.decision.effect, reply.decision.reason_code),
            (Effect::Deny, ReasonCode::InternalError)
        );
        assert_eq!(reply.action_id, None);
    }
}
