//! The sender task of a destination: ships what follows the cursor in batches, retrying with
//! backoff, and moves the cursor once the destination acknowledged.

use crate::service::backoff::Backoff;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::{Destination, hold_retention, host_name};
use crate::log::{Log, entry};
use crate::service::outbound::Batch;

/// Entries per batch sent.
pub const BATCH: usize = 512;
/// The longest wait between retries of a destination that fails.
/// Retries of a destination: 1 s, then twice as long after each failure in a row, up to 30 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
/// The longest one batch may take before it counts as failed (the exporters give up sooner).
const SHIP_LIMIT: Duration = Duration::from_secs(60);
/// How often an advancing cursor is written to its row (a crash sends at most this much again).
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// How long a sender that was idle waits after a commit for more (one batch, not one request
/// per commit).
const LINGER: Duration = Duration::from_millis(100);

impl Destination {
    /// Ships `records` (`(seq, record)`, in order); `Ok` once the destination acknowledged them.
    async fn ship(&self, log: &Log, records: Vec<(u64, Arc<str>)>) -> Result<(), String> {
        let checkpoint = if self.exporter.wants_checkpoint() {
            log.latest_checkpoint().ok().flatten().and_then(|c| {
                let size = c.lines().nth(1)?.trim().parse::<u64>().ok()?;
                Some((size, c))
            })
        } else {
            None
        };
        let batch = Batch {
            log_id: log.origin().trim_start_matches("faramesh/").to_owned(),
            host: host_name(),
            log_key: log.key().public().to_text(),
            checkpoint,
            records,
        };
        match tokio::time::timeout(SHIP_LIMIT, self.exporter.ship(batch)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} s", SHIP_LIMIT.as_secs())),
        }
    }

    /// The sender: ships what follows the cursor until `stop`, retrying with backoff. Entries
    /// committed while it keeps up come from the log's stream of commits (`tail`); after an
    /// outage, a restart or a rewind it reads them back from the log.
    pub async fn run(
        self: Arc<Self>,
        log: Arc<Log>,
        all: Arc<Vec<Arc<Destination>>>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut committed = log.subscribe();
        let mut tail = std::collections::VecDeque::new();
        let mut failures: u32 = 0;
        self.acked.store(self.saved_cursor(&log), Ordering::SeqCst);
        let mut saved = (self.cursor(&log), std::time::Instant::now());
        hold_retention(&log, &all);
        loop {
            if stop.is_cancelled() {
                self.save(&log, &mut saved, true).await;
                return;
            }
            drain(&mut committed, &mut tail);
            let cursor = self.cursor(&log);
            let head = log.head().0;
            if cursor >= head {
                self.save(&log, &mut saved, true).await;
                tokio::select! {
                    () = stop.cancelled() => {}
                    got = committed.recv() => {
                        match got {
                            Ok(c) => keep(&mut tail, c),
                            Err(_) => tail.clear(),
                        }
                        // A few more commits make one batch rather than a request each.
                        gather(&mut committed, &mut tail, &stop).await;
                    }
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                continue;
            }
            while tail.front().is_some_and(|(seq, _)| *seq <= cursor) {
                tail.pop_front();
            }
            let batch = if tail.front().is_some_and(|(seq, _)| *seq == cursor + 1) {
                tail.iter().take(BATCH).cloned().collect()
            } else {
                let from = cursor + 1;
                let log = Arc::clone(&log);
                let read = background(move || {
                    log.numbered_from(from, BATCH)
                        .map(|b| b.into_iter().map(|(seq, r)| (seq, Arc::<str>::from(r))).collect::<Vec<_>>())
                })
                .await;
                match read.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
                    Ok(b) if !b.is_empty() => b,
                    Ok(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    Err(e) => {
                        self.failed(&format!("cannot read the log: {e}"));
                        tokio::time::sleep(BACKOFF.delay(failures.max(1))).await;
                        continue;
                    }
                }
            };
            let last = batch.last().map_or(cursor, |(s, _)| *s);
            let n = batch.len() as u64;
            match self.ship(&log, batch).await {
                Ok(()) => {
                    // Only forward: a rewind meanwhile wins.
                    let _ = self.acked.compare_exchange(cursor, last, Ordering::SeqCst, Ordering::SeqCst);
                    self.save(&log, &mut saved, false).await;
                    self.shipped.fetch_add(n, Ordering::Relaxed);
                    self.last_ok_ms.store(entry::now_ms(), Ordering::Relaxed);
                    if let Ok(mut e) = self.last_error.lock() {
                        *e = None;
                    }
                    failures = 0;
                    hold_retention(&log, &all);
                    if n < (BATCH / 4) as u64 {
                        // Caught up: let the next commits gather into one batch.
                        gather(&mut committed, &mut tail, &stop).await;
                    }
                }
                Err(why) => {
                    self.failed(&why);
                    failures = failures.saturating_add(1);
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(BACKOFF.delay(failures)) => {}
                    }
                }
            }
        }
    }

    /// Writes the cursor to its row when it moved and `now` (idle, stopping) or [`SAVE_EVERY`]
    /// has passed since the last write.
    async fn save(&self, log: &Arc<Log>, saved: &mut (u64, std::time::Instant), now: bool) {
        let cursor = self.cursor(log);
        if cursor == saved.0 || !(now || saved.1.elapsed() >= SAVE_EVERY) {
            return;
        }
        let row = json!({"acked_seq": cursor, "ts": entry::rfc3339(entry::now_ms())}).to_string();
        let (key, l) = (self.cursor_key(), Arc::clone(log));
        match tokio::task::spawn_blocking(move || l.state_put_lazy(&key, row.as_bytes())).await {
            Ok(Ok(())) => *saved = (cursor, std::time::Instant::now()),
            Ok(Err(e)) => self.failed(&format!("cannot save the cursor: {e}")),
            Err(e) => self.failed(&format!("cannot save the cursor: {e}")),
        }
    }

    fn failed(&self, why: &str) {
        tracing::warn!(destination = %self.name, error = %why, "export batch not acknowledged");
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(why.to_owned());
        }
    }
}

/// The most committed entries a sender keeps in memory ahead of its cursor; beyond that it
/// reads them back from the log.
const TAIL: usize = 4 * BATCH;

type Committed = (u64, Arc<str>);

/// Waits up to [`LINGER`] for a batch's worth of commits, taking them from the stream every
/// 10 ms (the stream holds the last 1,024 only; a sender that missed some reads them back).
async fn gather(
    rx: &mut tokio::sync::broadcast::Receiver<Committed>,
    tail: &mut std::collections::VecDeque<Committed>,
    stop: &tokio_util::sync::CancellationToken,
) {
    let until = tokio::time::Instant::now() + LINGER;
    while tokio::time::Instant::now() < until && tail.len() < BATCH && !stop.is_cancelled() {
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        drain(rx, tail);
    }
}

/// Moves what the log committed since the last look into `tail`.
fn drain(
    rx: &mut tokio::sync::broadcast::Receiver<Committed>,
    tail: &mut std::collections::VecDeque<Committed>,
) {
    loop {
        match rx.try_recv() {
            Ok(c) => keep(tail, c),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => tail.clear(),
            Err(_) => return,
        }
    }
}

/// Adds one committed entry to `tail`, which holds consecutive entries only: a gap (entries
/// that went by unseen) empties it, and those entries are read back from the log.
fn keep(tail: &mut std::collections::VecDeque<Committed>, c: Committed) {
    if tail.back().is_some_and(|(seq, _)| *seq + 1 != c.0) {
        tail.clear();
    }
    tail.push_back(c);
    if tail.len() > TAIL {
        tail.pop_front();
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The exporters' thread could not be started or has stopped.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the export thread is gone")]
pub struct ThreadGone;

/// Runs `f` (reading back and encoding batches) on the exporters' own thread, in the idle
/// scheduling class ([`lower_priority`]): under full load the decisions go first and the
/// export catches up after.
pub async fn background<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ThreadGone> {
    static WORKER: std::sync::OnceLock<Mutex<std::sync::mpsc::Sender<Job>>> = std::sync::OnceLock::new();
    let worker = WORKER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new().name("faramesh-export".into()).spawn(move || {
            lower_priority();
            while let Ok(job) = rx.recv() {
                job();
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the export thread");
        }
        Mutex::new(tx)
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    worker.lock().map_err(|_| ThreadGone)?.send(job).map_err(|_| ThreadGone)?;
    rx.await.map_err(|_| ThreadGone)
}

/// Puts this thread in the idle scheduling class (`SCHED_IDLE`): it runs on CPU time the
/// decisions leave, so under full load they go first and the export catches up in the gaps
/// (the fsyncs leave some even then). Where that is refused, nice 10. Best effort.
///
/// Neither nix nor rustix wraps `sched_setscheduler`, hence the two system calls below.
#[allow(unsafe_code)]
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: the only pointer passed is `&param`, a fully initialized `sched_param` on this
    // stack frame that outlives the call; the kernel reads it and keeps nothing. Pid 0 names the
    // calling thread (Linux schedules threads, not processes), so only this exporter thread,
    // which holds no locks here and runs nothing but export jobs, changes class. A refusal is
    // the return value, handled below; no memory or descriptor is touched.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
        return;
    }
    // SAFETY: `gettid` takes nothing and cannot fail; `setpriority` takes integers only (no
    // pointers) and, given this thread's id with `PRIO_PROCESS`, changes only this thread's
    // niceness. Its failure is the return value, reported below.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "the export thread keeps its priority");
    }
}
