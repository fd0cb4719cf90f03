//! What the core sends out, as traits it drives: notifications to people ([`Notifier`]), the
//! log's entries to export destinations ([`Exporter`]) and checkpoints to witnesses
//! ([`WitnessPost`]). The core decides what to send, when, how often to retry and what to
//! record; an adapter only speaks its protocol (HTTP, SMTP, PostgreSQL, OTLP). The
//! implementations live in the `faramesh-adapters` crate, and the composition root
//! ([`super::daemon::Daemon::open`]) takes them as arguments.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::policy::Channel;

use super::notify::Note;

/// Why an adapter did not deliver, its causes kept. The core records its text.
pub type Failure = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A delivery under way: `Ok` once the other side acknowledged.
pub type Sending<'a, T = ()> = Pin<Box<dyn Future<Output = Result<T, Failure>> + Send + 'a>>;

/// Delivers one notification to one of the policy's channels.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Posts `note` to `channel` in the channel's format; `now_ms` stamps a signature.
    fn deliver<'a>(&'a self, channel: &'a Channel, note: &'a Note, now_ms: u64) -> Sending<'a>;
}

/// One batch of committed entries for an export destination.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The log's id (its origin without `faramesh/`).
    pub log_id: String,
    /// This host's name.
    pub host: String,
    /// The log's public key, as `log pubkey` prints it.
    pub log_key: String,
    /// The newest signed checkpoint and its size, when the exporter asked for it.
    pub checkpoint: Option<(u64, String)>,
    /// `(seq, record)`, consecutive, in order.
    pub records: Vec<(u64, Arc<str>)>,
}

/// Ships batches of the log's entries to one destination.
pub trait Exporter: Send + Sync + std::fmt::Debug {
    /// What it speaks (`otlp`, `postgres`), shown by `status`.
    fn kind(&self) -> &'static str;
    /// Where it sends, without secrets.
    fn target(&self) -> String;
    /// Whether a batch should carry the newest checkpoint.
    fn wants_checkpoint(&self) -> bool {
        false
    }
    /// Ships `batch`; `Ok` once the destination acknowledged every entry in it.
    fn ship(&self, batch: Batch) -> Sending<'_>;
}

/// Posts a C2SP `add-checkpoint` request to a witness.
pub trait WitnessPost: Send + Sync + std::fmt::Debug {
    /// POSTs `body` to `url`: the answer's status and body.
    fn post<'a>(&'a self, url: &'a str, body: String) -> Sending<'a, (u16, String)>;
}

/// The adapters the core runs with.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Notification channels.
    pub notifier: Arc<dyn Notifier>,
    /// Witnesses.
    pub witness: Arc<dyn WitnessPost>,
}

/// A configured export destination: its name (its cursor row is `export/<name>`), whether
/// retention waits for it, and the adapter that ships to it.
#[derive(Debug, Clone)]
pub struct Export {
    /// Its name (`otlp`, `postgres`).
    pub name: String,
    /// Retention waits for it.
    pub required: bool,
    /// What ships to it.
    pub exporter: Arc<dyn Exporter>,
}

/// A signed decision found in the fleet database, addressed to this host. The row adds no
/// authority: the core applies it only if the statement and its signature pass every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDecision {
    /// The row's id (the queue's order).
    pub row: i64,
    /// The approval the row says it decides.
    pub approval_id: String,
    /// The statement, as signed.
    pub statement: String,
    /// The armored SSH signature of the statement.
    pub signature: String,
}

/// Where signed decisions made on other machines wait for this host (the fleet database).
pub trait DecisionQueue: Send + Sync + std::fmt::Debug {
    /// Where it reads from, without secrets.
    fn target(&self) -> String;
    /// The rows for log `log_id` that decide one of `approvals` and have no outcome yet, oldest
    /// first, at most a few per approval (so rows for one approval never hold up another's),
    /// leaving out the rows in `skip`.
    fn fetch<'a>(
        &'a self,
        log_id: &'a str,
        approvals: &'a [String],
        skip: &'a [i64],
    ) -> Sending<'a, Vec<SignedDecision>>;
    /// Notes on a row what this host did with it (informational: the log keeps the record).
    fn report<'a>(&'a self, log_id: &'a str, row: i64, outcome: &'a str) -> Sending<'a>;
    /// Returns when the database announces a decision for `log_id`, or after `at_most`.
    fn wait<'a>(
        &'a self,
        log_id: &'a str,
        at_most: std::time::Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// A policy bundle as the fleet database holds it: the signed text and its signature. The core
/// checks both; the row adds nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedBundle {
    /// The bundle's text, as signed.
    pub text: String,
    /// The armored SSH signature of the text.
    pub signature: String,
}

/// What a host runs, reported for `faramesh fleet hosts` (informational).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPolicy {
    /// The host's log id.
    pub log_id: String,
    /// Its name.
    pub host: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// The bundle in force, if any.
    pub serial: Option<u64>,
    /// Its digest.
    pub digest: Option<String>,
    /// When it expires.
    pub expires_at: Option<String>,
    /// When the database last answered.
    pub fetched_at: Option<String>,
    /// The last bundle refused and why (JSON).
    pub refusal: Option<String>,
}

/// Where signed policy bundles are published (the fleet database).
pub trait BundleSource: Send + Sync + std::fmt::Debug {
    /// Where it reads from, without secrets.
    fn target(&self) -> String;
    /// The newest bundle, by the database's account, with a serial above `after` for a host
    /// with `labels` (the core checks what it really is).
    fn newest<'a>(&'a self, after: u64, labels: &'a [String]) -> Sending<'a, Option<FetchedBundle>>;
    /// Records what this host runs.
    fn report<'a>(&'a self, host: &'a HostPolicy) -> Sending<'a>;
    /// Returns when the database announces a new bundle, or after `at_most`.
    fn wait<'a>(&'a self, at_most: std::time::Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// Counters shared by every host (the fleet database): rate limits and budgets with `scope:
/// fleet`.
pub trait FleetCounter: Send + Sync + std::fmt::Debug {
    /// Where it counts, without secrets.
    fn target(&self) -> String;
    /// Takes up to `want` units of counter `key` (at most `limit` in all, the counter ending at
    /// `expires_ms`), atomically: how many it got (0 when the limit is reached).
    fn take<'a>(&'a self, key: &'a str, limit: u64, want: u64, expires_ms: u64) -> Sending<'a, u64>;
}
