//! The redb store: the [`Log`] handle (open, append, subscribe), and its parts: `writer.rs` (the
//! group-commit writer thread), `reads.rs` (entries by seq, id, prefix; scans; state rows),
//! `export.rs` (JSON lines out, the exported mark), `pruning.rs` (retention's cut), `open.rs`
//! (tables, format, the chain's tail).
//!
//! One thread owns every transaction that appends. Appenders send entries through a bounded
//! queue and wait; the writer commits whatever is queued in one durable transaction (fsync),
//! signs a checkpoint in the same transaction, and only then answers each appender. A failed
//! commit fails that batch only; the database is reopened and the chain continues without a
//! gap. Two other writes, [`Log::mark_exported`] and [`Log::state_put_lazy`], each commit a state
//! row (no entry) on the caller's thread; opening the log writes before the writer starts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};
use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc, oneshot};

mod export;
mod open;
mod pruning;
mod reads;
mod tree;
mod writer;

use open::{init_tables, read_tail};
pub use pruning::{Cut, PruneOutcome, PrunePlan};
use reads::{corrupt, first_seq, record_ts};
pub use tree::COSIGNED;
pub(crate) use tree::{pruned_range, receipt_txn};
pub use writer::PruneStats;
use writer::{Msg, PruneJob, writer_loop};

use crate::entry::{self, GENESIS};
use crate::ids::{ActionIds, Scheme};
use crate::index::{self, Indexed, Keys, Pending};
use crate::keys::{Checkpoint, LogKey};
use crate::tables::{
    ACTION_EVENTS, BATCHES, Batch, BatchError, FORMAT, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_ENTRY_BYTES,
    META, POSTINGS, READS_FORMATS, STATE, TERMS,
};
use crate::{Corruption, LogError, verify};

/// Opens (or creates) the database; called again after an I/O failure poisoned the handle.
pub type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>;

/// Called by the writer after each commit attempt with the batch's record count, how long the
/// commit took, and whether it succeeded (the daemon's metrics).
pub type CommitObserver = Arc<dyn Fn(usize, Duration, bool) + Send + Sync>;

/// Tunables.
#[derive(Clone)]
pub struct LogOptions {
    /// Params keys whose values are redacted (substring, case-insensitive).
    pub redact_keys: Vec<String>,
    /// Appends that may wait in the queue before appenders themselves wait.
    pub queue_capacity: usize,
    /// Told about every commit.
    pub on_commit: Option<CommitObserver>,
    /// redb's page cache (default [`crate::DEFAULT_CACHE_BYTES`], 16 MiB).
    pub cache_bytes: usize,
    /// Which state rows a prune removes with the entries (default: none).
    pub state_retention: Option<crate::prune::StateRetention>,
}

impl std::fmt::Debug for LogOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogOptions")
            .field("redact_keys", &self.redact_keys)
            .field("queue_capacity", &self.queue_capacity)
            .finish_non_exhaustive()
    }
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            redact_keys: entry::DEFAULT_REDACT_KEYS.iter().map(|s| (*s).to_owned()).collect(),
            queue_capacity: 8192,
            on_commit: None,
            cache_bytes: crate::DEFAULT_CACHE_BYTES,
            state_retention: None,
        }
    }
}

/// An acknowledged append: committed durably.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The entry's sequence number.
    pub seq: u64,
    /// The entry's hash.
    pub entry_hash: [u8; 32],
    /// The action id the writer gave a decision entry (`None` for other kinds).
    pub id: Option<String>,
    /// The stored record (canonical JSON).
    pub record: Arc<str>,
}

/// State rows written in the same transaction as an entry, computed by the writer from the
/// entry's sequence number and action id: `(key, Some(value))` sets, `(key, None)` deletes.
pub type StateWrites = Box<dyn FnOnce(u64, Option<&str>) -> Vec<(String, Option<Vec<u8>>)> + Send>;

struct Job {
    body: entry::PreparedBody,
    /// A decision: the writer gives it an action id derived from its sequence number.
    assign_id: bool,
    /// What the entry adds to the query index.
    keys: Keys,
    state: Option<StateWrites>,
    reply: oneshot::Sender<Result<Appended, LogError>>,
}

fn job(
    body: Map<String, Value>,
    state: Option<StateWrites>,
) -> Result<(Job, oneshot::Receiver<Result<Appended, LogError>>), LogError> {
    let assign_id = body.get("kind").and_then(Value::as_str) == Some("decision");
    let keys = Keys::of(&body);
    let mut body = body;
    if assign_id {
        body.remove("id");
    }
    let body = entry::prepare(body).map_err(LogError::Invalid)?;
    if body.approx_len() > MAX_ENTRY_BYTES {
        return Err(LogError::TooLarge { size: body.approx_len(), limit: MAX_ENTRY_BYTES });
    }
    let (reply, rx) = oneshot::channel();
    Ok((Job { body, assign_id, keys, state, reply }, rx))
}

struct Shared {
    db: RwLock<Option<Arc<Database>>>,
    key: LogKey,
    origin: String,
    ids: ActionIds,
    head: Mutex<(u64, [u8; 32])>,
    /// The Merkle tree's frontier as of the last commit.
    tree: Mutex<crate::merkle::Frontier>,
    /// Index rows of committed entries not yet written to the index tables.
    pending: Mutex<Pending>,
    last_ts_ms: Mutex<u64>,
    committed: broadcast::Sender<(u64, Arc<str>)>,
    /// When the log was opened (the origin of `busy_since_us`).
    opened: std::time::Instant,
    /// Microseconds after `opened` (plus one) at which the writer took the batch it is working
    /// on; 0 while it waits for work. The systemd watchdog reads it.
    busy_since_us: std::sync::atomic::AtomicU64,
    /// Which state rows a prune keeps (its owner's rule).
    state_retention: Option<crate::prune::StateRetention>,
}

/// The decision log: append (group-committed, durable), read, verify.
pub struct Log {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    options: LogOptions,
    /// A prune is being recorded or carried out.
    pruning: std::sync::atomic::AtomicBool,
    /// The first entry a prune must keep (a required export destination has not acknowledged
    /// it yet); `u64::MAX`: no hold.
    prune_hold: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("origin", &self.shared.origin).finish_non_exhaustive()
    }
}

fn storage(e: impl Into<redb::Error>) -> LogError {
    LogError::storage(e)
}

impl Log {
    /// Opens the log file at `path` (created when missing), on a [`ZeroFilledFile`].
    ///
    /// [`ZeroFilledFile`]: crate::ZeroFilledFile
    pub fn open(path: &Path, key: LogKey, options: LogOptions) -> Result<Log, LogError> {
        let path: PathBuf = path.to_owned();
        let cache = options.cache_bytes;
        Log::open_with(Box::new(move || crate::open_db_with_cache(&path, cache)), key, options)
    }

    /// Opens the log through `opener` (tests pass a fault-injecting storage backend).
    pub fn open_with(opener: Opener, key: LogKey, options: LogOptions) -> Result<Log, LogError> {
        let db = opener().map_err(|e| LogError::Open(Arc::new(e)))?;
        let (log_id, scheme) = init_tables(&db)?;
        let ids = ActionIds::new(&log_id, scheme);
        index::catch_up(&db, &ids)?;
        let frontier = tree::catch_up(&db)?;
        let (head, last_ts) = read_tail(&db)?;
        let (committed, _) = broadcast::channel(1024);
        let origin = format!("faramesh/{log_id}");
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(Arc::new(db))),
            // Checkpoints are signed under the log's origin (C2SP `tlog-checkpoint`).
            key: key.named(&origin),
            origin,
            ids,
            head: Mutex::new(head),
            tree: Mutex::new(frontier),
            pending: Mutex::new(Pending::default()),
            last_ts_ms: Mutex::new(last_ts),
            committed,
            opened: std::time::Instant::now(),
            busy_since_us: std::sync::atomic::AtomicU64::new(0),
            state_retention: options.state_retention.clone(),
        });
        let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("faramesh-log-writer".into())
            .spawn({
                let observer = options.on_commit.clone();
                move || writer_loop(&writer_shared, &opener, rx, observer.as_ref())
            })
            .map_err(|e| LogError::io("start the log writer", Path::new("faramesh-log-writer"), e))?;
        let log = Log {
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            options,
            pruning: std::sync::atomic::AtomicBool::new(false),
            prune_hold: std::sync::atomic::AtomicU64::new(u64::MAX),
        };
        // A prune cut short (the daemon stopped or crashed) resumes now.
        if let Some(mark) = log.prune_mark()?
            && log.first_seq()? < mark.first_kept_seq
        {
            tracing::info!(first_kept_seq = mark.first_kept_seq, "resuming an unfinished prune");
            if let Some(tx) = log.tx.lock().ok().and_then(|g| g.clone()) {
                let _ = tx.try_send(Msg::Prune(PruneJob { first_kept: mark.first_kept_seq, reply: None }));
            }
        }
        Ok(log)
    }

    /// How long the writer has been working on its current batch (`None` while it waits for
    /// work): a commit that never ends (a hung disk) shows here.
    pub fn writer_busy_for(&self) -> Option<Duration> {
        let since = self.shared.busy_since_us.load(std::sync::atomic::Ordering::Relaxed);
        (since != 0).then(|| {
            let now = u64::try_from(self.shared.opened.elapsed().as_micros()).unwrap_or(u64::MAX);
            Duration::from_micros(now.saturating_sub(since - 1))
        })
    }

    /// Appends waiting in the writer's queue.
    pub fn queue_depth(&self) -> usize {
        self.tx.lock().ok().and_then(|g| g.as_ref().map(|tx| tx.max_capacity() - tx.capacity())).unwrap_or(0)
    }

    /// The params keys redacted before storing.
    pub fn redact_keys(&self) -> &[String] {
        &self.options.redact_keys
    }

    /// The log's origin line (`faramesh/<log id>`).
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// The signing key, named after the log's origin.
    pub fn key(&self) -> &LogKey {
        &self.shared.key
    }

    /// `(size, head hash)` as of the last commit.
    pub fn head(&self) -> (u64, [u8; 32]) {
        self.shared.head.lock().map_or((0, GENESIS), |h| *h)
    }

    /// A stream of committed records with their `seq`, in order.
    pub fn subscribe(&self) -> broadcast::Receiver<(u64, Arc<str>)> {
        self.shared.committed.subscribe()
    }

    fn sender(&self) -> Result<mpsc::Sender<Msg>, LogError> {
        self.tx.lock().ok().and_then(|g| g.clone()).ok_or(LogError::Closed)
    }

    /// Appends an entry and waits until it is durably committed. The writer sets `seq`, `ts`
    /// (commit time, never decreasing), `prev_hash` and `entry_hash`; the body's own values for
    /// them are dropped.
    pub async fn append(&self, body: Map<String, Value>) -> Result<Appended, LogError> {
        self.append_with_state(body, None).await
    }

    /// [`Log::append`], also writing state rows (approvals, counters) in the same transaction,
    /// so the entry and the state it implies are durable together or not at all.
    pub async fn append_with_state(
        &self,
        body: Map<String, Value>,
        state: Option<StateWrites>,
    ) -> Result<Appended, LogError> {
        let (job, rx) = job(body, state)?;
        self.sender()?.send(Msg::Append(job)).await.map_err(|_| LogError::Closed)?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    /// [`Log::append`] for threads outside an async runtime.
    pub fn append_blocking(&self, body: Map<String, Value>) -> Result<Appended, LogError> {
        let (job, rx) = job(body, None)?;
        self.sender()?.blocking_send(Msg::Append(job)).map_err(|_| LogError::Closed)?;
        rx.blocking_recv().map_err(|_| LogError::Closed)?
    }

    /// Stops accepting appends, lets the writer commit what is queued, and waits for it.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            let _ = handle.join();
            // The file is closed now, cleanly, even while tasks that hold the handle linger (a
            // process that exits before they drop it would leave a file redb must repair).
            let db = self.shared.db.write().ok().and_then(|mut slot| slot.take());
            drop(db);
        }
    }

    fn read<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T, LogError>) -> Result<T, LogError> {
        let db = self.shared.db.read().ok().and_then(|g| g.clone()).ok_or(LogError::Reopening)?;
        let txn = db.begin_read().map_err(storage)?;
        f(&txn)
    }

    /// The latest signed checkpoint note.
    pub fn latest_checkpoint(&self) -> Result<Option<String>, LogError> {
        self.read(|txn| {
            let t = txn.open_table(BATCHES).map_err(storage)?;
            match t.last().map_err(storage)? {
                None => Ok(None),
                Some((k, v)) => {
                    Ok(Some(Batch::decode(v.value()).map_err(|e| corrupt(k.value(), e))?.checkpoint))
                }
            }
        })
    }

    /// Writes a consistent copy of the log to `dest` (a new file); returns the batches copied.
    pub fn backup(&self, dest: &Path) -> Result<u64, LogError> {
        self.read(|txn| crate::backup::backup_txn(txn, dest).map_err(storage))
    }

    /// Verifies the whole log (see [`verify::verify_txn`]).
    pub fn verify(&self, against: Option<&str>) -> Result<verify::Report, LogError> {
        self.verify_witnessed(against, None)
    }

    /// Verifies the whole log, and with a witness policy what its witnesses cosigned (see
    /// [`verify::verify_txn_with`]).
    pub fn verify_witnessed(
        &self,
        against: Option<&str>,
        policy: Option<&crate::witness::WitnessPolicy>,
    ) -> Result<verify::Report, LogError> {
        let public = self.shared.key.public();
        self.read(|txn| Ok(verify::verify_txn_with(txn, &public, against, policy)))
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.close();
    }
}
