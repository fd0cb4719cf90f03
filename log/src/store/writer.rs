//! The group-commit writer thread: one thread owns every append transaction. Appenders send
//! entries through a bounded queue and wait; the writer commits whatever is queued in one
//! durable transaction (fsync) with a signed checkpoint, then answers each appender. Prunes are
//! carried out between commits, a chunk per transaction.

use super::*;

/// What the writer is asked to do.
pub(super) enum Msg {
    Append(Job),
    Prune(PruneJob),
}

/// Remove the batches before `first_kept` (already recorded by a `prune` entry), then compact.
pub(super) struct PruneJob {
    pub(super) first_kept: u64,
    pub(super) reply: Option<oneshot::Sender<Result<PruneStats, LogError>>>,
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
pub(super) struct Writer<'a> {
    shared: &'a Shared,
    opener: &'a Opener,
    observer: Option<&'a CommitObserver>,
}

impl Shared {
    /// Marks the writer busy from now (`on`) or waiting for work.
    fn set_busy(&self, on: bool) {
        let v = if on {
            u64::try_from(self.opened.elapsed().as_micros()).unwrap_or(u64::MAX).saturating_add(1)
        } else {
            0
        };
        self.busy_since_us.store(v, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Writer<'_> {
    fn busy(&self, on: bool) {
        self.shared.set_busy(on);
    }

    /// Commits `first` and whatever appends queue up behind it; a prune request that arrives
    /// meanwhile is returned for later.
    fn append_round(&mut self, first: Job, rx: &mut mpsc::Receiver<Msg>) -> Option<PruneJob> {
        self.busy(true);
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
            let chunk = crate::prune::delete_batches(&db, first_kept, PRUNE_CHUNK_ENTRIES);
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
        let cleaned = crate::prune::delete_index_and_state(
            &db,
            first_kept,
            &self.shared.ids,
            self.shared.state_retention.as_ref(),
        );
        drop(db);
        self.busy(false);
        cleaned?;
        stats.compacted = compact(self.shared)?;
        Ok(stats)
    }
}

/// Entries removed per prune transaction: small enough that appends wait at most a few
/// milliseconds between chunks.
pub(super) const PRUNE_CHUNK_ENTRIES: u64 = 20_000;

pub(super) fn refuse_prune(p: PruneJob) {
    if let Some(reply) = p.reply {
        let _ = reply.send(Err(LogError::PruneRunning));
    }
}

/// Compacts the database file so the space of removed batches returns to the file system.
/// Readers wait for the length of it (they block on the handle's lock); appends queue.
pub(super) fn compact(shared: &Shared) -> Result<bool, LogError> {
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

pub(super) fn writer_loop(
    shared: &Shared,
    opener: &Opener,
    mut rx: mpsc::Receiver<Msg>,
    observer: Option<&CommitObserver>,
) {
    let mut writer = Writer { shared, opener, observer };
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
pub(super) fn current_db(shared: &Shared, opener: &Opener) -> Result<Arc<Database>, LogError> {
    if let Some(db) = shared.db.read().ok().and_then(|g| g.clone()) {
        return Ok(db);
    }
    let db = opener().map_err(storage)?;
    let frontier = super::tree::catch_up(&db)?;
    let (head, last_ts) = read_tail(&db)?;
    let db = Arc::new(db);
    if let Ok(mut h) = shared.head.lock() {
        *h = head;
    }
    if let Ok(mut t) = shared.tree.lock() {
        *t = frontier;
    }
    if let Ok(mut t) = shared.last_ts_ms.lock() {
        *t = (*t).max(last_ts);
    }
    if let Ok(mut slot) = shared.db.write() {
        *slot = Some(Arc::clone(&db));
    }
    Ok(db)
}

pub(super) fn poison(shared: &Shared) {
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

pub(super) struct Prepared {
    seq: u64,
    id: Option<String>,
    indexed: Option<Indexed>,
    state: Vec<(String, Option<Vec<u8>>)>,
    sealed: entry::Sealed,
    reply: oneshot::Sender<Result<Appended, LogError>>,
}

/// The batch being collected: entries sealed in order after the committed head, all with the
/// batch's one timestamp.
pub(super) struct Sealer<'a> {
    shared: &'a Shared,
    seq: u64,
    prev: [u8; 32],
    /// The Merkle tree's frontier with this batch's entries.
    tree: crate::merkle::Frontier,
    /// Tree nodes (at heights 8, 16, …) this batch completes: `(tree table key, hash)`.
    nodes: Vec<(u64, [u8; 32])>,
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
        let tree = shared.tree.lock().map(|t| t.clone()).unwrap_or_default();
        Sealer {
            shared,
            seq,
            prev,
            tree,
            nodes: Vec::new(),
            ts_ms,
            ts: entry::rfc3339(ts_ms),
            prepared: Vec::new(),
            bytes: 0,
        }
    }

    fn add(&mut self, job: Job) {
        self.seq += 1;
        let seq = self.seq;
        let id = job.assign_id.then(|| self.shared.ids.id_of(seq));
        let sealed = entry::seal_prepared(&self.prev, &job.body, seq, &self.ts, id.as_deref());
        self.prev = sealed.entry_hash;
        let nodes = &mut self.nodes;
        self.tree.push(crate::merkle::leaf_hash(&sealed.entry_hash), |h, i, hash| {
            nodes.push((crate::tables::tree_key(h / crate::merkle::TILE_HEIGHT, i), *hash));
        });
        self.bytes += sealed.record.len();
        let state = job.state.map(|f| f(seq, id.as_deref())).unwrap_or_default();
        let indexed = job.keys.row(seq, &self.shared.ids);
        self.prepared.push(Prepared { seq, id, indexed, state, sealed, reply: job.reply });
    }

    /// Signs the checkpoint, commits, and answers every appender. `Err(())` when the
    /// transaction failed (every appender got the error) and the database must be reopened.
    fn commit(self, db: &Database) -> Result<(), ()> {
        let Sealer { shared, seq, prev, tree, nodes, ts_ms, prepared, .. } = self;
        let checkpoint =
            Checkpoint { origin: shared.origin.clone(), size: seq, root: tree.root(), legacy: false };
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
        let written = write_batch(db, &prepared, &note, &nodes, flush.as_deref().map(|rows| (rows, seq)));
        // Done with the file before anyone hears back: an appender that got its answer never
        // sees the writer still busy with its commit.
        shared.set_busy(false);
        match written {
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
                if let Ok(mut t) = shared.tree.lock() {
                    *t = tree;
                }
                if let Ok(mut t) = shared.last_ts_ms.lock() {
                    *t = ts_ms;
                }
                for p in prepared {
                    let record: Arc<str> = Arc::from(p.sealed.record.as_str());
                    let _ = shared.committed.send((p.seq, Arc::clone(&record)));
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
pub(super) fn write_batch(
    db: &Database,
    prepared: &[Prepared],
    note: &str,
    nodes: &[(u64, [u8; 32])],
    index_rows: Option<(&[Indexed], u64)>,
) -> Result<(), LogError> {
    let size = prepared.last().map_or(0, |p| p.seq);
    let plain = Batch::encode(prepared.iter().map(|p| p.sealed.record.as_bytes()), note);
    let value = Batch::compress(&plain).map_err(|e| corrupt(size, e))?;
    let txn = db.begin_write().map_err(storage)?;
    {
        txn.open_table(BATCHES).map_err(storage)?.insert(size, value.as_slice()).map_err(storage)?;
        if !nodes.is_empty() {
            let mut tree = txn.open_table(crate::tables::TREE).map_err(storage)?;
            for (key, hash) in nodes {
                tree.insert(key, hash.as_slice()).map_err(storage)?;
            }
        }
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
