//! The redb store and its group-commit writer.
//!
//! One thread owns every write transaction. Appenders send entries through a bounded queue and
//! wait; the writer commits whatever is queued in one durable transaction (fsync), signs a
//! checkpoint in the same transaction, and only then answers each appender. A failed commit
//! fails that batch only; the database is reopened and the chain continues without a gap.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};
use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::entry::{self, GENESIS};
use super::ids::{ActionIds, Scheme};
use super::index::{self, Indexed, Keys, Pending};
use super::keys::{Checkpoint, LogKey};
use super::tables::{
    ACTION_EVENTS, BATCHES, Batch, BatchError, FORMAT, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_ENTRY_BYTES,
    META, POSTINGS, READS_FORMATS, STATE, TERMS,
};
use super::{Corruption, LogError, verify};

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
    /// redb's page cache (default [`super::DEFAULT_CACHE_BYTES`], 16 MiB).
    pub cache_bytes: usize,
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
            cache_bytes: super::DEFAULT_CACHE_BYTES,
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
    /// Index rows of committed entries not yet written to the index tables.
    pending: Mutex<Pending>,
    last_ts_ms: Mutex<u64>,
    committed: broadcast::Sender<Arc<str>>,
    /// When the log was opened (the origin of `busy_since_us`).
    opened: std::time::Instant,
    /// Microseconds after `opened` (plus one) at which the writer took the batch it is working
    /// on; 0 while it waits for work. The systemd watchdog reads it.
    busy_since_us: std::sync::atomic::AtomicU64,
}

/// The decision log: append (group-committed, durable), read, verify.
pub struct Log {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    options: LogOptions,
    /// A prune is being recorded or carried out.
    pruning: std::sync::atomic::AtomicBool,
}

/// Where a prune cuts the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Entries recorded before this time (ms since the epoch).
    Before(u64),
    /// All but the newest this many entries.
    KeepLast(u64),
    /// Entries before this seq (a plan's `first_kept_seq`, so what runs is what was shown).
    BeforeSeq(u64),
}

/// What a prune would remove: whole batches only, so the first kept entry is the first of its
/// batch (never later than the cut asked for).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PrunePlan {
    /// The first entry in the log now.
    pub first_seq: u64,
    /// The first entry that stays.
    pub first_kept_seq: u64,
    /// Entries that go (`first_kept_seq - first_seq`).
    pub entries: u64,
    /// The log's size now.
    pub size: u64,
    /// Every entry up to this one was exported or archived (0: none).
    pub exported_through: u64,
}

/// What a prune did, or (a dry run) would do: the reply of `log.prune` and of
/// `faramesh log prune --json`.
///
/// JSON: `{"dry_run": false, "plan": {…}, "entry_seq": 1000003, "batches": 10253, "compacted": true}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PruneOutcome {
    /// Only planned: nothing was recorded or removed.
    pub dry_run: bool,
    /// The plan carried out.
    pub plan: PrunePlan,
    /// The seq of the `prune` entry that records the cut (none when nothing was pruned).
    pub entry_seq: Option<u64>,
    /// Batches removed.
    pub batches: u64,
    /// Whether the file was compacted.
    pub compacted: bool,
}

/// Clears the pruning flag when dropped.
struct PruneGuard<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for PruneGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
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
    /// [`ZeroFilledFile`]: super::ZeroFilledFile
    pub fn open(path: &Path, key: LogKey, options: LogOptions) -> Result<Log, LogError> {
        let path: PathBuf = path.to_owned();
        let cache = options.cache_bytes;
        Log::open_with(Box::new(move || super::open_db_with_cache(&path, cache)), key, options)
    }

    /// Opens the log through `opener` (tests pass a fault-injecting storage backend).
    pub fn open_with(opener: Opener, key: LogKey, options: LogOptions) -> Result<Log, LogError> {
        let db = opener().map_err(|e| LogError::Open(Arc::new(e)))?;
        let (log_id, scheme) = init_tables(&db)?;
        let ids = ActionIds::new(&log_id, scheme);
        index::catch_up(&db, &ids)?;
        let (head, last_ts) = read_tail(&db)?;
        let (committed, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(Arc::new(db))),
            key,
            origin: format!("faramesh/{log_id}"),
            ids,
            head: Mutex::new(head),
            pending: Mutex::new(Pending::default()),
            last_ts_ms: Mutex::new(last_ts),
            committed,
            opened: std::time::Instant::now(),
            busy_since_us: std::sync::atomic::AtomicU64::new(0),
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

    /// The signing key.
    pub fn key(&self) -> &LogKey {
        &self.shared.key
    }

    /// `(size, head hash)` as of the last commit.
    pub fn head(&self) -> (u64, [u8; 32]) {
        self.shared.head.lock().map_or((0, GENESIS), |h| *h)
    }

    /// A stream of committed records, in order.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
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

    /// The newest recorded prune, if any.
    pub fn prune_mark(&self) -> Result<Option<super::prune::Mark>, LogError> {
        Ok(self.state_get(super::prune::MARK)?.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// How far the log was exported or archived (every entry up to the seq returned; 0: none).
    pub fn exported_through(&self) -> Result<u64, LogError> {
        let row: Option<super::prune::Exported> =
            self.state_get(super::prune::EXPORTED)?.and_then(|v| serde_json::from_slice(&v).ok());
        Ok(row.map_or(0, |r| r.through_seq))
    }

    /// Records that entries `from_seq..=through_seq` were exported or archived. Only a range
    /// that joins what was recorded before (or starts at the log's first entry) moves the mark:
    /// the mark means every entry up to it. Returns the mark after.
    pub fn mark_exported(&self, from_seq: u64, through_seq: u64) -> Result<u64, LogError> {
        let current = self.exported_through()?;
        let first = self.first_seq()?;
        let through = through_seq.min(self.head().0);
        if from_seq > current.max(first.saturating_sub(1)) + 1 || through <= current {
            return Ok(current);
        }
        let db = self.shared.db.read().ok().and_then(|g| g.clone()).ok_or(LogError::Reopening)?;
        let txn = db.begin_write().map_err(storage)?;
        {
            let row = super::prune::Exported { through_seq: through, ts: entry::rfc3339(entry::now_ms()) };
            let bytes = serde_json::to_vec(&row).unwrap_or_default();
            txn.open_table(STATE)
                .map_err(storage)?
                .insert(super::prune::EXPORTED, bytes.as_slice())
                .map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok(through)
    }

    /// What pruning at `cut` would remove.
    pub fn plan_prune(&self, cut: Cut) -> Result<PrunePlan, LogError> {
        let (size, _) = self.head();
        let first_seq = self.first_seq()?;
        let wanted = match cut {
            Cut::Before(ms) => self.first_seq_at_or_after(ms)?,
            Cut::KeepLast(n) => (size + 1).saturating_sub(n),
            Cut::BeforeSeq(seq) => seq.min(size + 1),
        }
        .max(first_seq);
        // Whole batches: the batch holding `wanted` stays.
        let first_kept_seq = if wanted > size {
            size + 1
        } else {
            self.read(|txn| {
                let t = txn.open_table(BATCHES).map_err(storage)?;
                let Some(item) = t.range(wanted..).map_err(storage)?.next() else { return Ok(size + 1) };
                let (k, v) = item.map_err(storage)?;
                let plain = Batch::plain(v.value()).map_err(|e| corrupt(k.value(), e))?;
                Ok(self::first_seq(k.value(), Batch::count(&plain).map_err(|e| corrupt(k.value(), e))?))
            })?
        }
        .max(first_seq);
        Ok(PrunePlan {
            first_seq,
            first_kept_seq,
            entries: first_kept_seq - first_seq,
            size,
            exported_through: self.exported_through()?,
        })
    }

    /// What pruning at `cut` would do, as a dry run's outcome.
    pub fn dry_run_prune(&self, cut: Cut) -> Result<PruneOutcome, LogError> {
        Ok(PruneOutcome {
            dry_run: true,
            plan: self.plan_prune(cut)?,
            entry_seq: None,
            batches: 0,
            compacted: false,
        })
    }

    /// Prunes the log at `cut`: refuses (unless `force`) when entries that would go were never
    /// exported or archived; records the cut as a `prune` entry (`by` names who asked), then
    /// removes the batches while appends go on, and compacts the file.
    pub async fn prune(&self, cut: Cut, force: bool, by: Value) -> Result<PruneOutcome, LogError> {
        if self.pruning.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(LogError::PruneRunning);
        }
        let _guard = PruneGuard(&self.pruning);
        let plan = self.plan_prune(cut)?;
        if plan.entries == 0 {
            return Ok(PruneOutcome { dry_run: false, plan, entry_seq: None, batches: 0, compacted: false });
        }
        if !force && plan.exported_through + 1 < plan.first_kept_seq {
            return Err(LogError::NotExported {
                last_pruned: plan.first_kept_seq - 1,
                exported_through: plan.exported_through,
            });
        }
        // The anchor is the hash of the last entry that goes: the `prev_hash` the first kept
        // entry holds (or will hold, when the cut is at the head).
        let last_pruned = plan.first_kept_seq - 1;
        let anchor = match self.get(last_pruned)? {
            Some(record) => entry::open(record.as_bytes()).map_err(|e| corrupt(last_pruned, e))?.entry_hash,
            None => return Err(corrupt(last_pruned, Corruption::Empty)),
        };
        let anchor_hex = entry::hex(&anchor);
        let body = super::dpr::event_entry(
            "prune",
            serde_json::json!({
                "first_kept_seq": plan.first_kept_seq,
                "anchor_hash": anchor_hex,
                "pruned_from_seq": plan.first_seq,
                "pruned_entries": plan.entries,
                "exported_through": plan.exported_through,
                "forced": force && plan.exported_through + 1 < plan.first_kept_seq,
                "by": by,
            }),
        );
        let first_kept_seq = plan.first_kept_seq;
        let writes: StateWrites = Box::new(move |seq, _| {
            let mark = super::prune::Mark { first_kept_seq, anchor_hash: anchor_hex, seq };
            vec![(super::prune::MARK.to_owned(), serde_json::to_vec(&mark).ok())]
        });
        let recorded = self.append_with_state(body, Some(writes)).await?;
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(Msg::Prune(PruneJob { first_kept: first_kept_seq, reply: Some(reply) }))
            .await
            .map_err(|_| LogError::Closed)?;
        let stats = rx.await.map_err(|_| LogError::Closed)??;
        Ok(PruneOutcome {
            dry_run: false,
            plan,
            entry_seq: Some(recorded.seq),
            batches: stats.batches,
            compacted: stats.compacted,
        })
    }

    /// Stops accepting appends, lets the writer commit what is queued, and waits for it.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    fn read<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T, LogError>) -> Result<T, LogError> {
        let db = self.shared.db.read().ok().and_then(|g| g.clone()).ok_or(LogError::Reopening)?;
        let txn = db.begin_read().map_err(storage)?;
        f(&txn)
    }

    /// The record with sequence number `seq`.
    pub fn get(&self, seq: u64) -> Result<Option<String>, LogError> {
        self.read(|txn| {
            let t = txn.open_table(BATCHES).map_err(storage)?;
            record_of(&t, seq)
        })
    }

    /// The decision whose action id is `id`.
    pub fn get_by_id(&self, id: &str) -> Result<Option<String>, LogError> {
        let Some(seq) = self.shared.ids.seq_of(id) else { return Ok(None) };
        let record = self.get(seq)?;
        // The id is a permutation of the sequence number; check the entry really is that decision.
        Ok(record.filter(|r| r.contains(&format!("\"id\":\"{id}\""))))
    }

    /// The seq an action id stands for (whether or not that entry exists).
    pub fn seq_of_id(&self, id: &str) -> Option<u64> {
        self.shared.ids.seq_of(id)
    }

    /// The action id of the decision stored as entry `seq`.
    pub fn action_id(&self, seq: u64) -> String {
        self.shared.ids.id_of(seq)
    }

    /// Action ids starting with `prefix` (at most `limit`), newest first, for unique-prefix
    /// lookups. Ids are computed from sequence numbers, so this reads nothing from disk (see
    /// `ids.rs` for what each id scheme costs).
    pub fn ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<String>, LogError> {
        let (size, _) = self.head();
        let first = self.first_seq()?;
        Ok(self
            .shared
            .ids
            .with_prefix(prefix, first, size, limit)
            .into_iter()
            .map(|s| self.shared.ids.id_of(s))
            .collect())
    }

    /// The first entry still in the log: 1, or the first kept after a prune.
    pub fn first_seq(&self) -> Result<u64, LogError> {
        self.read(|txn| {
            let t = txn.open_table(BATCHES).map_err(storage)?;
            let Some((k, v)) = t.first().map_err(storage)? else { return Ok(1) };
            let plain = Batch::plain(v.value()).map_err(|e| corrupt(k.value(), e))?;
            let n = Batch::count(&plain).map_err(|e| corrupt(k.value(), e))?;
            Ok(first_seq(k.value(), n))
        })
    }

    /// Entries in `lo..=hi`, newest first: those with `term` (from the index) or all of them,
    /// calling `f(seq, record)` until it returns `false`.
    pub fn scan_newest(
        &self,
        term: Option<&str>,
        lo: u64,
        hi: u64,
        mut f: impl FnMut(u64, &str) -> bool,
    ) -> Result<(), LogError> {
        let Some(term) = term else {
            return self.read(|txn| {
                let t = txn.open_table(BATCHES).map_err(storage)?;
                for item in t.range(lo..).map_err(storage)?.rev() {
                    let (k, v) = item.map_err(storage)?;
                    let batch = Batch::decode(v.value()).map_err(|e| corrupt(k.value(), e))?;
                    let first = first_seq(k.value(), batch.records.len());
                    for (i, record) in batch.records.iter().enumerate().rev() {
                        let seq = first + i as u64;
                        if seq < lo {
                            return Ok(());
                        }
                        if seq <= hi && !f(seq, &String::from_utf8_lossy(record)) {
                            return Ok(());
                        }
                    }
                }
                Ok(())
            });
        };
        // The pending rows first (taken before the read transaction begins: rows flushed after
        // this are in the tables that transaction sees, and `indexed_through` tells which).
        let pending = self.shared.pending.lock().map(|p| p.seqs_with(term, lo, hi)).unwrap_or_default();
        self.read(|txn| {
            let through = index::indexed_through(txn)?;
            let batches = txn.open_table(BATCHES).map_err(storage)?;
            let mut reader = BatchReader::default();
            for seq in pending.into_iter().filter(|&s| s > through) {
                match reader.record(&batches, seq)? {
                    Some(r) if !f(seq, &r) => return Ok(()),
                    _ => {}
                }
            }
            index::table_seqs(txn, term, lo, hi.min(through), |seq| {
                Ok(match reader.record(&batches, seq)? {
                    Some(r) => f(seq, &r),
                    None => true,
                })
            })
        })
    }

    /// Records of the events about the decision stored as entry `seq` (action lifecycle and
    /// approval events), oldest first, from the index.
    pub fn events_about(&self, seq: u64) -> Result<Vec<String>, LogError> {
        let pending = self.shared.pending.lock().map(|p| p.events_of(seq)).unwrap_or_default();
        self.read(|txn| {
            let through = index::indexed_through(txn)?;
            let batches = txn.open_table(BATCHES).map_err(storage)?;
            let mut reader = BatchReader::default();
            let mut out = Vec::new();
            let seqs = index::table_events(txn, seq)?
                .into_iter()
                .chain(pending.into_iter().filter(|&s| s > through));
            for event in seqs {
                if let Some(r) = reader.record(&batches, event)? {
                    out.push(r);
                }
            }
            Ok(out)
        })
    }

    /// Records from `from_seq` on, at most `limit`.
    pub fn entries_from(&self, from_seq: u64, limit: usize) -> Result<Vec<String>, LogError> {
        Ok(self.numbered_from(from_seq, limit)?.into_iter().map(|(_, r)| r).collect())
    }

    /// Records from `from_seq` on (after a prune, from the first kept), at most `limit`, with
    /// their seqs.
    pub fn numbered_from(&self, from_seq: u64, limit: usize) -> Result<Vec<(u64, String)>, LogError> {
        self.read(|txn| {
            let t = txn.open_table(BATCHES).map_err(storage)?;
            let mut out = Vec::new();
            for item in t.range(from_seq..).map_err(storage)? {
                let (k, v) = item.map_err(storage)?;
                let batch = Batch::decode(v.value()).map_err(|e| corrupt(k.value(), e))?;
                let first = first_seq(k.value(), batch.records.len());
                for (seq, record) in (first..).zip(batch.records) {
                    if out.len() >= limit {
                        return Ok(out);
                    }
                    if seq >= from_seq {
                        out.push((seq, String::from_utf8_lossy(&record).into_owned()));
                    }
                }
            }
            Ok(out)
        })
    }

    /// The first sequence number whose `ts` is at or after `ms` (size + 1 when none is).
    pub fn first_seq_at_or_after(&self, ms: u64) -> Result<u64, LogError> {
        self.read(|txn| {
            let t = txn.open_table(BATCHES).map_err(storage)?;
            let size = t.last().map_err(storage)?.map_or(0, |(k, _)| k.value());
            let (mut lo, mut hi) = (1u64, size + 1);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let ts = record_of(&t, mid)?.and_then(|r| record_ts(&r)).unwrap_or(0);
                if ts < ms {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            Ok(lo)
        })
    }

    /// Writes every record with `ts >= since_ms` as JSON lines; returns how many.
    pub fn export(&self, out: &mut dyn std::io::Write, since_ms: u64) -> Result<u64, LogError> {
        self.export_range(out, self.first_seq_at_or_after(since_ms)?, u64::MAX)
    }

    /// Writes the records with `from_seq <= seq < to_seq` as JSON lines (an export, an archive
    /// before a prune); returns how many.
    pub fn export_range(
        &self,
        out: &mut dyn std::io::Write,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<u64, LogError> {
        let mut n = 0u64;
        let mut next = from_seq;
        while next < to_seq {
            let chunk = self.numbered_from(next, 1024)?;
            let Some(&(last, _)) = chunk.last() else { break };
            for (_, record) in chunk.iter().take_while(|(seq, _)| *seq < to_seq) {
                writeln!(out, "{record}")
                    .map_err(|e| LogError::io("write", Path::new("(export output)"), e))?;
                n += 1;
            }
            next = last + 1;
        }
        Ok(n)
    }

    /// A state row.
    pub fn state_get(&self, key: &str) -> Result<Option<Vec<u8>>, LogError> {
        self.read(|txn| {
            let t = txn.open_table(STATE).map_err(storage)?;
            Ok(t.get(key).map_err(storage)?.map(|v| v.value().to_vec()))
        })
    }

    /// State rows whose key starts with `prefix`.
    pub fn state_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, LogError> {
        self.read(|txn| {
            let t = txn.open_table(STATE).map_err(storage)?;
            let mut out = Vec::new();
            for item in t.range(prefix..).map_err(storage)? {
                let (k, v) = item.map_err(storage)?;
                if !k.value().starts_with(prefix) {
                    break;
                }
                out.push((k.value().to_owned(), v.value().to_vec()));
            }
            Ok(out)
        })
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
        self.read(|txn| super::backup::backup_txn(txn, dest).map_err(storage))
    }

    /// Verifies the whole log (see [`verify::verify_txn`]).
    pub fn verify(&self, against: Option<&str>) -> Result<verify::Report, LogError> {
        let public = self.shared.key.public();
        self.read(|txn| Ok(verify::verify_txn(txn, &public, against)))
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.close();
    }
}

/// Creates the tables and the log id on first open, and upgrades a format-2 log to format 3
/// (new tables; its batches stay as they are); returns the log id and its action id scheme.
fn init_tables(db: &Database) -> Result<(String, Scheme), LogError> {
    let txn = db.begin_write().map_err(storage)?;
    let log_id;
    let scheme;
    {
        txn.open_table(BATCHES).map_err(storage)?;
        txn.open_table(STATE).map_err(storage)?;
        txn.open_table(TERMS).map_err(storage)?;
        txn.open_table(POSTINGS).map_err(storage)?;
        txn.open_table(ACTION_EVENTS).map_err(storage)?;
        let mut meta = txn.open_table(META).map_err(storage)?;
        let existing = meta.get("log_id").map_err(storage)?.map(|v| v.value().to_owned());
        let format = meta.get("format").map_err(storage)?.map(|v| v.value().to_owned());
        let ids = meta.get("ids").map_err(storage)?.map(|v| v.value().to_owned());
        (log_id, scheme) = match existing {
            Some(id) => {
                if !format.as_deref().is_some_and(|f| READS_FORMATS.contains(&f)) {
                    return Err(LogError::Format { found: format.unwrap_or_else(|| "(none)".into()) });
                }
                let Some(scheme) = Scheme::from_meta(ids.as_deref()) else {
                    return Err(LogError::Format {
                        found: format!("{} (action ids {})", FORMAT, ids.unwrap_or_default()),
                    });
                };
                if format.as_deref() != Some(FORMAT) {
                    meta.insert("format", FORMAT).map_err(storage)?;
                }
                (id, scheme)
            }
            None => {
                let id = super::random_hex(16)
                    .map_err(|e| LogError::io("read", Path::new(super::RANDOM_SOURCE), e))?;
                meta.insert("log_id", id.as_str()).map_err(storage)?;
                meta.insert("format", FORMAT).map_err(storage)?;
                meta.insert("ids", Scheme::Prefixed.as_str()).map_err(storage)?;
                (id, Scheme::Prefixed)
            }
        };
    }
    txn.commit().map_err(storage)?;
    Ok((log_id, scheme))
}

/// Reads records by seq, keeping the last batch it decompressed (index hits cluster).
#[derive(Default)]
struct BatchReader {
    /// `(first seq, last seq, plain batch)`.
    cached: Option<(u64, u64, Vec<u8>)>,
}

impl BatchReader {
    fn record(
        &mut self,
        t: &impl ReadableTable<u64, &'static [u8]>,
        seq: u64,
    ) -> Result<Option<String>, LogError> {
        if !self.cached.as_ref().is_some_and(|(first, last, _)| (*first..=*last).contains(&seq)) {
            let Some(item) = t.range(seq..).map_err(storage)?.next() else { return Ok(None) };
            let (k, v) = item.map_err(storage)?;
            let plain = Batch::plain(v.value()).map_err(|e| corrupt(k.value(), e))?.into_owned();
            let n = Batch::count(&plain).map_err(|e| corrupt(k.value(), e))?;
            self.cached = Some((first_seq(k.value(), n), k.value(), plain));
        }
        let Some((first, last, plain)) = &self.cached else { return Ok(None) };
        if seq < *first {
            return Ok(None);
        }
        let index = usize::try_from(seq - first)
            .map_err(|_| corrupt(*last, BatchError::NoRecord { index: usize::MAX, count: 0 }))?;
        let record = Batch::record_at(plain, index).map_err(|e| corrupt(*last, e))?;
        Ok(Some(String::from_utf8_lossy(record).into_owned()))
    }
}

/// The `ts` of a record, in milliseconds.
fn record_ts(record: &str) -> Option<u64> {
    // `ts` is a fixed-width string; find it without parsing the whole record.
    let at = record.find("\"ts\":\"")? + 6;
    entry::parse_rfc3339(record.get(at..at + 24)?)
}

/// The seq of the first record of the batch stored under `last` with `n` records.
fn first_seq(last: u64, n: usize) -> u64 {
    (last + 1).saturating_sub(n as u64)
}

fn corrupt(seq: u64, why: impl Into<Corruption>) -> LogError {
    LogError::Corrupt { seq, source: why.into() }
}

/// The record `seq` from the batches table.
fn record_of(t: &impl ReadableTable<u64, &'static [u8]>, seq: u64) -> Result<Option<String>, LogError> {
    BatchReader::default().record(t, seq)
}

/// `(size, hash of the last entry)` and the last entry's `ts` (0 for an empty log), from one
/// read of the last batch.
fn read_tail(db: &Database) -> Result<((u64, [u8; 32]), u64), LogError> {
    let txn = db.begin_read().map_err(storage)?;
    let t = txn.open_table(BATCHES).map_err(storage)?;
    let Some((k, v)) = t.last().map_err(storage)? else { return Ok(((0, GENESIS), 0)) };
    let seq = k.value();
    let batch = Batch::decode(v.value()).map_err(|e| corrupt(seq, e))?;
    let Some(record) = batch.records.last() else { return Err(corrupt(seq, Corruption::Empty)) };
    let opened = entry::open(record).map_err(|e| corrupt(seq, e))?;
    if opened.seq != seq {
        return Err(corrupt(seq, Corruption::Misfiled(opened.seq)));
    }
    let ts = record_ts(&String::from_utf8_lossy(record)).unwrap_or(0);
    Ok(((seq, opened.entry_hash), ts))
}

/// What the writer is asked to do.
enum Msg {
    Append(Job),
    Prune(PruneJob),
}

/// Remove the batches before `first_kept` (already recorded by a `prune` entry), then compact.
struct PruneJob {
    first_kept: u64,
    reply: Option<oneshot::Sender<Result<PruneStats, LogError>>>,
}

/// What a prune removed and reclaimed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneStats {
    /// Batches (commits) removed.
    pub batches: u64,
    /// Entries removed.
    pub entries: u64,
    /// Whether the file was compacted afterwards.
    pub compacted: bool,
}

/// The writer thread's state between messages.
struct Writer<'a> {
    shared: &'a Shared,
    opener: &'a Opener,
    observer: Option<&'a CommitObserver>,
    /// A test hook for the systemd watchdog: while this file exists, the writer stalls on the
    /// batch it took (as if the disk hung). Unset in production.
    stall: Option<PathBuf>,
}

impl Writer<'_> {
    fn busy(&self, on: bool) {
        let v = if on {
            u64::try_from(self.shared.opened.elapsed().as_micros()).unwrap_or(u64::MAX).saturating_add(1)
        } else {
            0
        };
        self.shared.busy_since_us.store(v, std::sync::atomic::Ordering::Relaxed);
    }

    /// Commits `first` and whatever appends queue up behind it; a prune request that arrives
    /// meanwhile is returned for later.
    fn append_round(&mut self, first: Job, rx: &mut mpsc::Receiver<Msg>) -> Option<PruneJob> {
        self.busy(true);
        while self.stall.as_deref().is_some_and(Path::exists) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let db = match current_db(self.shared, self.opener) {
            Ok(db) => db,
            Err(e) => {
                let _ = first.reply.send(Err(e));
                self.busy(false);
                return None;
            }
        };
        let mut deferred = None;
        // Each entry is sealed as it arrives, so the hashing overlaps waiting for the others.
        let mut batch = Sealer::new(self.shared);
        batch.add(first);
        // Whatever is queued now joins the batch; nothing waits for more. (Waiting up to 400 µs
        // for the appenders of the last batch to come back, as earlier versions did, made
        // larger commits but left the CPUs idle during each fsync: 30,249 against 45,211
        // decisions/s with 32 socket clients, docs/performance.md.) Entries that arrive during
        // this commit's fsync form the next batch.
        while batch.prepared.len() < MAX_BATCH_RECORDS && batch.bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(Msg::Append(job)) => batch.add(job),
                Ok(Msg::Prune(p)) => {
                    if deferred.is_some() {
                        refuse_prune(p);
                    } else {
                        deferred = Some(p);
                    }
                }
                Err(_) => break,
            }
        }
        let records = batch.prepared.len();
        let started = std::time::Instant::now();
        let ok = batch.commit(&db).is_ok();
        if let Some(observe) = self.observer {
            observe(records, started.elapsed(), ok);
        }
        if !ok {
            // The handle is poisoned after an I/O error: drop it; the next batch reopens.
            drop(db);
            poison(self.shared);
        }
        self.busy(false);
        deferred
    }

    /// Removes the batches before `first_kept` a chunk per transaction, committing the appends
    /// that arrive between chunks, then removes their index rows and compacts the file.
    fn prune(&mut self, first_kept: u64, rx: &mut mpsc::Receiver<Msg>) -> Result<PruneStats, LogError> {
        let mut stats = PruneStats::default();
        loop {
            self.busy(true);
            let db = current_db(self.shared, self.opener)?;
            let chunk = super::prune::delete_batches(&db, first_kept, PRUNE_CHUNK_ENTRIES);
            self.busy(false);
            let (batches, entries) = match chunk {
                Ok(removed) => removed,
                Err(e) => {
                    drop(db);
                    poison(self.shared);
                    return Err(e);
                }
            };
            stats.batches += batches;
            stats.entries += entries;
            // Serve the appends that queued up while the chunk was deleted.
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    Msg::Append(job) => {
                        if let Some(p) = self.append_round(job, rx) {
                            refuse_prune(p);
                        }
                    }
                    Msg::Prune(p) => refuse_prune(p),
                }
            }
            if batches == 0 {
                break;
            }
        }
        self.busy(true);
        let db = current_db(self.shared, self.opener)?;
        let cleaned = super::prune::delete_index_and_state(&db, first_kept, &self.shared.ids);
        drop(db);
        self.busy(false);
        cleaned?;
        stats.compacted = compact(self.shared)?;
        Ok(stats)
    }
}

/// Entries removed per prune transaction: small enough that appends wait at most a few
/// milliseconds between chunks.
const PRUNE_CHUNK_ENTRIES: u64 = 20_000;

fn refuse_prune(p: PruneJob) {
    if let Some(reply) = p.reply {
        let _ = reply.send(Err(LogError::PruneRunning));
    }
}

/// Compacts the database file so the space of removed batches returns to the file system.
/// Readers wait for the length of it (they block on the handle's lock); appends queue.
fn compact(shared: &Shared) -> Result<bool, LogError> {
    let Ok(mut slot) = shared.db.write() else { return Ok(false) };
    let Some(mut handle) = slot.take() else { return Ok(false) };
    // Readers that took a handle before the lock finish their read; none can start.
    let mut tries = 0;
    let owned = loop {
        match Arc::try_unwrap(handle) {
            Ok(inner) => break Some(inner),
            Err(still_shared) if tries >= 10_000 => {
                // A read that never ended: skip compaction this time (the space is reused).
                *slot = Some(still_shared);
                break None;
            }
            Err(still_shared) => {
                tries += 1;
                handle = still_shared;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    };
    let Some(mut inner) = owned else { return Ok(false) };
    let result = inner.compact();
    *slot = Some(Arc::new(inner));
    result.map_err(LogError::storage)
}

fn writer_loop(
    shared: &Shared,
    opener: &Opener,
    mut rx: mpsc::Receiver<Msg>,
    observer: Option<&CommitObserver>,
) {
    let mut writer = Writer {
        shared,
        opener,
        observer,
        stall: std::env::var_os("FARAMESH_TEST_STALL_WRITER").map(PathBuf::from),
    };
    while let Some(msg) = rx.blocking_recv() {
        let mut next = match msg {
            Msg::Append(job) => writer.append_round(job, &mut rx),
            Msg::Prune(p) => Some(p),
        };
        while let Some(p) = next.take() {
            let result = writer.prune(p.first_kept, &mut rx);
            if let Err(e) = &result {
                tracing::error!(error = %e, "the prune stopped; it resumes when the daemon next starts");
            }
            if let Some(reply) = p.reply {
                let _ = reply.send(result);
            }
        }
    }
}

/// The open database, reopening it (and re-reading the head) when a failure dropped it.
fn current_db(shared: &Shared, opener: &Opener) -> Result<Arc<Database>, LogError> {
    if let Some(db) = shared.db.read().ok().and_then(|g| g.clone()) {
        return Ok(db);
    }
    let db = opener().map_err(storage)?;
    let (head, last_ts) = read_tail(&db)?;
    let db = Arc::new(db);
    if let Ok(mut h) = shared.head.lock() {
        *h = head;
    }
    if let Ok(mut t) = shared.last_ts_ms.lock() {
        *t = (*t).max(last_ts);
    }
    if let Ok(mut slot) = shared.db.write() {
        *slot = Some(Arc::clone(&db));
    }
    Ok(db)
}

fn poison(shared: &Shared) {
    let taken = shared.db.write().ok().and_then(|mut slot| slot.take());
    if let Some(mut db) = taken {
        // Readers hold clones only for the length of one read; wait for them to finish so the
        // file's lock is released before it is reopened.
        for _ in 0..5_000 {
            match Arc::try_unwrap(db) {
                Ok(inner) => {
                    drop(inner);
                    return;
                }
                Err(still_shared) => {
                    db = still_shared;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

struct Prepared {
    seq: u64,
    id: Option<String>,
    indexed: Option<Indexed>,
    state: Vec<(String, Option<Vec<u8>>)>,
    sealed: entry::Sealed,
    reply: oneshot::Sender<Result<Appended, LogError>>,
}

/// The batch being collected: entries sealed in order after the committed head, all with the
/// batch's one timestamp.
struct Sealer<'a> {
    shared: &'a Shared,
    seq: u64,
    prev: [u8; 32],
    ts_ms: u64,
    ts: String,
    prepared: Vec<Prepared>,
    /// Bytes of the records sealed so far.
    bytes: usize,
}

impl<'a> Sealer<'a> {
    fn new(shared: &'a Shared) -> Sealer<'a> {
        let (seq, prev) = shared.head.lock().map_or((0, GENESIS), |h| *h);
        // Never before the previous batch's: `ts` is monotonic in `seq`.
        let ts_ms = shared.last_ts_ms.lock().map_or(0, |t| *t).max(entry::now_ms());
        Sealer { shared, seq, prev, ts_ms, ts: entry::rfc3339(ts_ms), prepared: Vec::new(), bytes: 0 }
    }

    fn add(&mut self, job: Job) {
        self.seq += 1;
        let seq = self.seq;
        let id = job.assign_id.then(|| self.shared.ids.id_of(seq));
        let sealed = entry::seal_prepared(&self.prev, &job.body, seq, &self.ts, id.as_deref());
        self.prev = sealed.entry_hash;
        self.bytes += sealed.record.len();
        let state = job.state.map(|f| f(seq, id.as_deref())).unwrap_or_default();
        let indexed = job.keys.row(seq, &self.shared.ids);
        self.prepared.push(Prepared { seq, id, indexed, state, sealed, reply: job.reply });
    }

    /// Signs the checkpoint, commits, and answers every appender. `Err(())` when the
    /// transaction failed (every appender got the error) and the database must be reopened.
    fn commit(self, db: &Database) -> Result<(), ()> {
        let Sealer { shared, seq, prev, ts_ms, prepared, .. } = self;
        let checkpoint = Checkpoint { origin: shared.origin.clone(), size: seq, head_hash: prev };
        let note = shared.key.sign_checkpoint(&checkpoint);
        // The index rows go to the tables with the commit that brings the pending ones to
        // FLUSH_ROWS; until then they are kept in memory.
        let new_rows = prepared.iter().filter(|p| p.indexed.is_some()).count();
        let flush = shared.pending.lock().ok().and_then(|p| {
            (p.rows.len() + new_rows >= index::FLUSH_ROWS).then(|| {
                p.rows
                    .iter()
                    .cloned()
                    .chain(prepared.iter().filter_map(|p| p.indexed.clone()))
                    .collect::<Vec<_>>()
            })
        });
        match write_batch(db, &prepared, &note, flush.as_deref().map(|rows| (rows, seq))) {
            Ok(()) => {
                if let Ok(mut p) = shared.pending.lock() {
                    if flush.is_some() {
                        p.rows.clear();
                    } else {
                        p.rows.extend(prepared.iter().filter_map(|p| p.indexed.clone()));
                    }
                }
                if let Ok(mut h) = shared.head.lock() {
                    *h = (seq, prev);
                }
                if let Ok(mut t) = shared.last_ts_ms.lock() {
                    *t = ts_ms;
                }
                for p in prepared {
                    let record: Arc<str> = Arc::from(p.sealed.record.as_str());
                    let _ = shared.committed.send(Arc::clone(&record));
                    let _ = p.reply.send(Ok(Appended {
                        seq: p.seq,
                        entry_hash: p.sealed.entry_hash,
                        id: p.id,
                        record,
                    }));
                }
                Ok(())
            }
            Err(e) => {
                for p in prepared {
                    let _ = p.reply.send(Err(e.clone()));
                }
                Err(())
            }
        }
    }
}

/// One transaction: the batch row (records and checkpoint) and any state rows. Touching as few
/// tables and pages as possible is what keeps a durable commit cheap.
fn write_batch(
    db: &Database,
    prepared: &[Prepared],
    note: &str,
    index_rows: Option<(&[Indexed], u64)>,
) -> Result<(), LogError> {
    let size = prepared.last().map_or(0, |p| p.seq);
    let plain = Batch::encode(prepared.iter().map(|p| p.sealed.record.as_bytes()), note);
    let value = Batch::compress(&plain).map_err(|e| corrupt(size, e))?;
    let txn = db.begin_write().map_err(storage)?;
    {
        txn.open_table(BATCHES).map_err(storage)?.insert(size, value.as_slice()).map_err(storage)?;
        if let Some((rows, through)) = index_rows {
            index::write_rows(&txn, rows, through)?;
        }
        if prepared.iter().any(|p| !p.state.is_empty()) {
            let mut state = txn.open_table(STATE).map_err(storage)?;
            for (key, value) in prepared.iter().flat_map(|p| &p.state) {
                match value {
                    Some(v) => state.insert(key.as_str(), v.as_slice()).map_err(storage)?,
                    None => state.remove(key.as_str()).map_err(storage)?,
                };
            }
        }
    }
    txn.commit().map_err(storage)
}
