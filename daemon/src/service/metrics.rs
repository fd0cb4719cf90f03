//! Prometheus metrics (`GET /metrics`): decisions by effect and reason code, decide and log
//! commit latency, commit batch sizes, writer queue depth, reloads, pending approvals and open
//! connections per transport.

use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    effect: &'static str,
    reason_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WitnessLabels {
    witness: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: &'static str,
}

/// Which door a connection came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The Unix socket.
    Socket,
    /// The HTTP(S) listener.
    Http,
}

impl Transport {
    fn label(self) -> TransportLabels {
        TransportLabels {
            transport: match self {
                Transport::Socket => "socket",
                Transport::Http => "http",
            },
        }
    }
}

/// The daemon's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    decide_seconds: Histogram,
    commit_seconds: Histogram,
    commit_batch_records: Histogram,
    commit_failures: Counter,
    reloads: Counter,
    reload_failures: Counter,
    pending_approvals: Gauge,
    queue_depth: Gauge,
    connections: Family<TransportLabels, Gauge>,
    notifications: Family<NotificationLabels, Counter>,
    outbox_waiting: Gauge,
    outbox_oldest_seconds: Gauge,
    export_cursor: Family<DestinationLabels, Gauge>,
    export_lag_entries: Family<DestinationLabels, Gauge>,
    export_lag_seconds: Family<DestinationLabels, Gauge>,
    export_errors: Family<DestinationLabels, Gauge>,
    witness_size: Family<WitnessLabels, Gauge>,
    witness_alarm: Family<WitnessLabels, Gauge>,
    last_commit_ok: std::sync::atomic::AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set, registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("faramesh");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register("decisions", "Decisions answered, by effect and reason code", decisions.clone());
        let decide_seconds = Histogram::new(exponential_buckets(0.000_000_5, 2.0, 16));
        registry.register(
            "decide_seconds",
            "Time to evaluate the policy for one call",
            decide_seconds.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 14));
        registry.register(
            "log_commit_seconds",
            "Time of one durable log commit (fsync included)",
            commit_seconds.clone(),
        );
        let commit_batch_records = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "log_commit_batch_records",
            "Entries per group commit",
            commit_batch_records.clone(),
        );
        let commit_failures = Counter::default();
        registry.register("log_commit_failures", "Log commits that failed", commit_failures.clone());
        let reloads = Counter::default();
        registry.register("policy_reloads", "Successful policy loads after start", reloads.clone());
        let reload_failures = Counter::default();
        registry.register(
            "policy_reload_failures",
            "Policy reloads refused (the last good policy kept serving)",
            reload_failures.clone(),
        );
        let pending_approvals = Gauge::default();
        registry.register("pending_approvals", "Approvals waiting for a person", pending_approvals.clone());
        let queue_depth = Gauge::default();
        registry.register(
            "log_writer_queue_depth",
            "Appends waiting for the log writer",
            queue_depth.clone(),
        );
        let connections = Family::<TransportLabels, Gauge>::default();
        registry.register("open_connections", "Open client connections, by transport", connections.clone());
        for t in [Transport::Socket, Transport::Http] {
            connections.get_or_create(&t.label()).set(0);
        }
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notifications queued, delivered and given up (failed), by status",
            notifications.clone(),
        );
        for status in ["queued", "delivered", "failed"] {
            notifications.get_or_create(&NotificationLabels { status }).inc_by(0);
        }
        let outbox_waiting = Gauge::default();
        registry.register("outbox_waiting", "Notifications waiting in the outbox", outbox_waiting.clone());
        let outbox_oldest_seconds = Gauge::default();
        registry.register(
            "outbox_oldest_seconds",
            "Age of the oldest notification waiting in the outbox",
            outbox_oldest_seconds.clone(),
        );
        let export_cursor = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "export_cursor",
            "The last log entry each export destination acknowledged",
            export_cursor.clone(),
        );
        let export_lag_entries = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "export_lag_entries",
            "Log entries not yet acknowledged by each export destination",
            export_lag_entries.clone(),
        );
        let export_lag_seconds = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "export_lag_seconds",
            "Age of the oldest entry each export destination has not acknowledged",
            export_lag_seconds.clone(),
        );
        let export_errors = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "export_errors",
            "Batches an export destination did not acknowledge since the daemon started",
            export_errors.clone(),
        );
        let witness_size = Family::<WitnessLabels, Gauge>::default();
        registry.register(
            "witness_cosigned_size",
            "The largest checkpoint size each witness cosigned",
            witness_size.clone(),
        );
        let witness_alarm = Family::<WitnessLabels, Gauge>::default();
        registry.register(
            "witness_alarm",
            "1 while a witness refuses the log (it saw a larger log, or one this log is not consistent with)",
            witness_alarm.clone(),
        );
        Metrics {
            registry,
            witness_size,
            witness_alarm,
            export_cursor,
            export_lag_entries,
            export_lag_seconds,
            export_errors,
            notifications,
            outbox_waiting,
            outbox_oldest_seconds,
            decisions,
            decide_seconds,
            commit_seconds,
            commit_batch_records,
            commit_failures,
            reloads,
            reload_failures,
            pending_approvals,
            queue_depth,
            connections,
            last_commit_ok: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// One answered decision.
    pub fn decision(&self, effect: &'static str, reason_code: &'static str) {
        self.decisions.get_or_create(&DecisionLabels { effect, reason_code }).inc();
    }

    /// A notification queued, delivered or failed.
    pub fn notification(&self, status: &'static str) {
        self.notifications.get_or_create(&NotificationLabels { status }).inc();
    }

    /// The outbox as the sender last saw it.
    pub fn outbox(&self, waiting: u64, oldest_ms: u64) {
        self.outbox_waiting.set(i64::try_from(waiting).unwrap_or(i64::MAX));
        self.outbox_oldest_seconds.set(i64::try_from(oldest_ms / 1000).unwrap_or(i64::MAX));
    }

    /// One policy evaluation.
    pub fn observe_decide(&self, took: Duration) {
        self.decide_seconds.observe(took.as_secs_f64());
    }

    /// One log commit.
    pub fn observe_commit(&self, records: usize, took: Duration, ok: bool) {
        self.last_commit_ok.store(ok, Ordering::Relaxed);
        if ok {
            self.commit_seconds.observe(took.as_secs_f64());
            self.commit_batch_records.observe(records as f64);
        } else {
            self.commit_failures.inc();
        }
    }

    /// A reload's outcome.
    pub fn reload(&self, ok: bool) {
        if ok {
            self.reloads.inc()
        } else {
            self.reload_failures.inc()
        };
    }

    /// A connection opened; the guard closes it.
    pub fn connection(&self, transport: Transport) -> ConnectionGuard<'_> {
        self.connections.get_or_create(&transport.label()).inc();
        ConnectionGuard { metrics: self, transport }
    }

    /// Whether the last log commit succeeded (`/ready`).
    pub fn log_writable(&self) -> bool {
        self.last_commit_ok.load(Ordering::Relaxed)
    }

    /// An export destination's cursor, lag and errors (from its `status`), for the next render.
    pub fn export(&self, status: &serde_json::Value) {
        let labels = DestinationLabels { destination: status["name"].as_str().unwrap_or("?").to_owned() };
        let n = |k: &str| i64::try_from(status[k].as_u64().unwrap_or(0)).unwrap_or(i64::MAX);
        self.export_cursor.get_or_create(&labels).set(n("cursor"));
        self.export_lag_entries.get_or_create(&labels).set(n("lag_entries"));
        self.export_lag_seconds.get_or_create(&labels).set(n("lag_seconds"));
        self.export_errors.get_or_create(&labels).set(n("errors"));
    }

    /// A witness's cosigned size and alarm (from its status row), for the next render.
    pub fn witness(&self, status: &serde_json::Value) {
        let labels = WitnessLabels { witness: status["name"].as_str().unwrap_or("?").to_owned() };
        self.witness_size
            .get_or_create(&labels)
            .set(i64::try_from(status["size"].as_u64().unwrap_or(0)).unwrap_or(i64::MAX));
        self.witness_alarm.get_or_create(&labels).set(i64::from(!status["alarm"].is_null()));
    }

    /// The text exposition, with the gauges read now.
    pub fn render(&self, pending_approvals: usize, queue_depth: usize) -> String {
        self.pending_approvals.set(i64::try_from(pending_approvals).unwrap_or(i64::MAX));
        self.queue_depth.set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Decrements the open-connection gauge when dropped.
#[derive(Debug)]
pub struct ConnectionGuard<'a> {
    metrics: &'a Metrics,
    transport: Transport,
}

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.metrics.connections.get_or_create(&self.transport.label()).dec();
    }
}
