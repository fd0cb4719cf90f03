//! Decisions leaving the host (`docs/fleet.md`): each export destination (an OpenTelemetry
//! collector over OTLP/HTTP) has a cursor in the log's state, `export/<name>`, the last `seq` it
//! acknowledged. Its sender task reads the committed entries after the cursor, ships them in
//! batches, and moves the cursor only after the destination answered 2xx: a receiver that is
//! down, a SIGKILL or a restart loses nothing (a batch sent but not acknowledged is sent again;
//! every record carries the log id and `seq`, so a duplicate is harmless). A destination marked
//! required holds retention: no prune removes an entry it has not acknowledged.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::log::{Log, entry};

/// Entries per batch sent.
pub const BATCH: usize = 512;
/// The longest wait between retries of a destination that fails.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How often an advancing cursor is written to its row (a crash sends at most this much again).
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// How long a sender that was idle waits after a commit for more (one batch, not one request
/// per commit).
const LINGER: Duration = Duration::from_millis(100);

/// Where OTLP logs go, from the standard variables or `serve --otlp-endpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Otlp {
    /// The logs URL (`…/v1/logs`).
    pub endpoint: String,
    /// Extra request headers (authentication), from `OTEL_EXPORTER_OTLP_[LOGS_]HEADERS`.
    pub headers: Vec<(String, String)>,
    /// Resource attributes (`OTEL_RESOURCE_ATTRIBUTES`, `service.name`).
    pub resource: Vec<(String, String)>,
    /// A private CA to trust besides the web PKI (`OTEL_EXPORTER_OTLP_[LOGS_]CERTIFICATE`).
    pub ca: Option<crate::tls::PemFile>,
    /// A client certificate and its key for mutual TLS
    /// (`OTEL_EXPORTER_OTLP_[LOGS_]CLIENT_CERTIFICATE`, `…_CLIENT_KEY`).
    pub identity: Option<(crate::tls::PemFile, crate::tls::PemFile)>,
}

impl Otlp {
    /// The OTLP destination the environment (and `--otlp-endpoint`, which wins) configure, if
    /// any: `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` as is, else `OTEL_EXPORTER_OTLP_ENDPOINT` with
    /// `/v1/logs` appended; headers from `OTEL_EXPORTER_OTLP_LOGS_HEADERS` or
    /// `OTEL_EXPORTER_OTLP_HEADERS`; `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`.
    pub fn from_env(
        flag: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Otlp>, String> {
        let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let endpoint =
            match (flag, var("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"), var("OTEL_EXPORTER_OTLP_ENDPOINT")) {
                (Some(f), _, _) => f.to_owned(),
                (None, Some(logs), _) => logs,
                (None, None, Some(base)) => format!("{}/v1/logs", base.trim_end_matches('/')),
                (None, None, None) => return Ok(None),
            };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!("the OTLP endpoint `{endpoint}` must start with http:// or https://"));
        }
        let protocol = var("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
        if let Some(p) = protocol.filter(|p| p != "http/protobuf") {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL `{p}` is not supported: Faramesh sends OTLP logs as http/protobuf"
            ));
        }
        let headers = pairs(
            &var("OTEL_EXPORTER_OTLP_LOGS_HEADERS")
                .or_else(|| var("OTEL_EXPORTER_OTLP_HEADERS"))
                .unwrap_or_default(),
            "OTEL_EXPORTER_OTLP_HEADERS",
        )?;
        let mut resource =
            pairs(&var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default(), "OTEL_RESOURCE_ATTRIBUTES")?;
        let service = var("OTEL_SERVICE_NAME")
            .or_else(|| resource.iter().find(|(k, _)| k == "service.name").map(|(_, v)| v.clone()))
            .unwrap_or_else(|| "faramesh".into());
        resource.retain(|(k, _)| k != "service.name");
        resource.insert(0, ("service.name".into(), service));
        // The logs-specific variable wins over the general one, file by file.
        let file = |name: &str| {
            let logs = format!("OTEL_EXPORTER_OTLP_LOGS_{name}");
            let general = format!("OTEL_EXPORTER_OTLP_{name}");
            var(&logs)
                .map(|p| crate::tls::PemFile::new(&logs, p))
                .or_else(|| var(&general).map(|p| crate::tls::PemFile::new(&general, p)))
        };
        let ca = file("CERTIFICATE");
        let identity = match (file("CLIENT_CERTIFICATE"), file("CLIENT_KEY")) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(f), None) | (None, Some(f)) => {
                return Err(format!(
                    "{} is set without its pair: mutual TLS needs both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY",
                    f.setting
                ));
            }
        };
        let o = Otlp { endpoint, headers, resource, ca, identity };
        // The files are read now, so a wrong one stops the start rather than every batch.
        o.client()?;
        Ok(Some(o))
    }

    /// The HTTP client for this destination: the web PKI roots, the private CA and the client
    /// certificate when configured.
    pub fn client(&self) -> Result<super::notify::Client, String> {
        let identity = self.identity.as_ref().map(|(c, k)| (c, k));
        Ok(super::notify::Client::with_config(crate::tls::client_config(self.ca.as_ref(), identity)?))
    }
}

/// `k=v,k2=v2` (values percent-decoded), as the OpenTelemetry variables write them.
fn pairs(text: &str, what: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("{what}: `{item}` is not `key=value`"));
        };
        out.push((k.trim().to_owned(), percent_decode(v.trim())));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a destination is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// OTLP/HTTP logs, protobuf.
    Otlp(Otlp),
    /// PostgreSQL tables (`postgres://…`).
    Postgres(String),
}

/// A configured destination (`serve`'s flags and the OpenTelemetry variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Its name (`otlp`).
    pub name: String,
    /// Where it goes.
    pub kind: Kind,
    /// Retention waits for it.
    pub required: bool,
}

/// One export destination and what its sender has seen.
#[derive(Debug)]
pub struct Destination {
    /// `otlp`: names its cursor row (`export/otlp`).
    pub name: String,
    /// Where it goes.
    pub kind: Kind,
    /// Retention waits for it.
    pub required: bool,
    last_error: Mutex<Option<String>>,
    last_ok_ms: AtomicU64,
    errors: AtomicU64,
    shipped: AtomicU64,
    /// The PostgreSQL connection, kept between batches (dropped after an error).
    pg: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    /// The cursor in memory (`u64::MAX` until read from its row): saved to the row at most
    /// every [`SAVE_EVERY`], when the sender goes idle, and when it stops.
    acked: AtomicU64,
}

impl Destination {
    /// A destination named `name`.
    pub fn new(name: &str, kind: Kind, required: bool) -> Destination {
        Destination {
            name: name.to_owned(),
            kind,
            required,
            last_error: Mutex::new(None),
            last_ok_ms: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            shipped: AtomicU64::new(0),
            pg: tokio::sync::Mutex::new(None),
            acked: AtomicU64::new(u64::MAX),
        }
    }

    fn cursor_key(&self) -> String {
        format!("export/{}", self.name)
    }

    /// The last `seq` the destination acknowledged (0: none).
    pub fn cursor(&self, log: &Log) -> u64 {
        match self.acked.load(Ordering::SeqCst) {
            u64::MAX => self.saved_cursor(log),
            n => n,
        }
    }

    /// The cursor as its row holds it (what a restart starts from).
    fn saved_cursor(&self, log: &Log) -> u64 {
        log.state_get(&self.cursor_key())
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice::<Value>(&v).ok())
            .and_then(|v| v["acked_seq"].as_u64())
            .unwrap_or(0)
    }

    /// Where it sends, without secrets (headers are not shown).
    pub fn target(&self) -> String {
        match &self.kind {
            Kind::Otlp(o) => o.endpoint.clone(),
            Kind::Postgres(url) => super::fleet_pg::redacted(url),
        }
    }

    /// The destination's line in `status`: cursor, lag in entries and seconds, last error.
    pub fn status(&self, log: &Log) -> Value {
        let cursor = self.cursor(log);
        let head = log.head().0;
        let oldest = (cursor < head)
            .then(|| log.get(cursor.max(log.first_seq().unwrap_or(1).saturating_sub(1)) + 1).ok().flatten())
            .flatten()
            .and_then(|r| serde_json::from_str::<Value>(&r).ok())
            .and_then(|v| v["ts"].as_str().and_then(entry::parse_rfc3339));
        let lag_seconds = oldest.map_or(0, |ts| entry::now_ms().saturating_sub(ts) / 1000);
        let last_ok = self.last_ok_ms.load(Ordering::Relaxed);
        json!({
            "name": self.name,
            "kind": match self.kind { Kind::Otlp(_) => "otlp", Kind::Postgres(_) => "postgres" },
            "target": self.target(),
            "required": self.required,
            "cursor": cursor,
            "head": head,
            "lag_entries": head.saturating_sub(cursor),
            "lag_seconds": lag_seconds,
            "shipped": self.shipped.load(Ordering::Relaxed),
            "errors": self.errors.load(Ordering::Relaxed),
            "last_ok": (last_ok > 0).then(|| entry::rfc3339(last_ok)),
            "last_error": self.last_error.lock().ok().and_then(|e| e.clone()),
        })
    }

    /// Ships `records` (`(seq, record)`, in order); `Ok` once the destination acknowledged them.
    async fn ship(
        &self,
        client: &Result<super::notify::Client, String>,
        log: &Log,
        records: &[(u64, Arc<str>)],
    ) -> Result<(), String> {
        match &self.kind {
            Kind::Otlp(o) => {
                let log_id = log.origin().trim_start_matches("faramesh/").to_owned();
                let (o2, records) = (o.clone(), records.to_vec());
                let body =
                    background(move || super::fleet_otlp::otlp_body(&o2, &log_id, &host_name(), &records))
                        .await?;
                let client = client.as_ref().map_err(Clone::clone)?;
                let headers: Vec<(&str, String)> =
                    o.headers.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                tokio::time::timeout(
                    REQUEST_TIMEOUT,
                    client.post_bytes(&o.endpoint, "application/x-protobuf", body.into(), headers),
                )
                .await
                .map_err(|_| format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))?
            }
            Kind::Postgres(url) => {
                let mut conn = self.pg.lock().await;
                let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
                    if conn.is_none() {
                        let client = super::fleet_pg::connect(url).await?;
                        client.batch_execute(super::fleet_pg::SCHEMA).await.map_err(|e| e.to_string())?;
                        *conn = Some(client);
                    }
                    let client = conn.as_mut().ok_or("not connected")?;
                    let log_id = log.origin().trim_start_matches("faramesh/");
                    let host = host_name();
                    let checkpoint = log.latest_checkpoint().ok().flatten().and_then(|c| {
                        let size = c.lines().nth(1)?.trim().parse::<u64>().ok()?;
                        Some((size, c))
                    });
                    let key = log.key().public().to_text();
                    super::fleet_pg::write_batch(client, log_id, &host, &key, checkpoint, records).await
                })
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())));
                if result.is_err() {
                    *conn = None;
                }
                result
            }
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
        // Checked at start (`Otlp::from_env`); a file that went bad since fails each batch.
        let client = match &self.kind {
            Kind::Otlp(o) => o.client(),
            Kind::Postgres(_) => Ok(super::notify::Client::new()),
        };
        let mut committed = log.subscribe();
        let mut tail = std::collections::VecDeque::new();
        let mut backoff = Duration::from_secs(1);
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
                match read.and_then(|r| r.map_err(|e| e.to_string())) {
                    Ok(b) if !b.is_empty() => b,
                    Ok(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    Err(e) => {
                        self.failed(&format!("cannot read the log: {e}"));
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                }
            };
            let last = batch.last().map_or(cursor, |(s, _)| *s);
            match self.ship(&client, &log, &batch).await {
                Ok(()) => {
                    // Only forward: a rewind meanwhile wins.
                    let _ = self.acked.compare_exchange(cursor, last, Ordering::SeqCst, Ordering::SeqCst);
                    self.save(&log, &mut saved, false).await;
                    self.shipped.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.last_ok_ms.store(entry::now_ms(), Ordering::Relaxed);
                    if let Ok(mut e) = self.last_error.lock() {
                        *e = None;
                    }
                    backoff = Duration::from_secs(1);
                    hold_retention(&log, &all);
                    if batch.len() < BATCH / 4 {
                        // Caught up: let the next commits gather into one batch.
                        gather(&mut committed, &mut tail, &stop).await;
                    }
                }
                Err(why) => {
                    self.failed(&why);
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
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

/// Runs `f` (reading back and encoding batches) on the exporters' own thread, in the idle
/// scheduling class ([`lower_priority`]): under full load the decisions go first and the
/// export catches up after.
async fn background<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
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
    worker
        .lock()
        .map_err(|_| "the export thread is gone".to_owned())?
        .send(job)
        .map_err(|_| "the export thread is gone".to_owned())?;
    rx.await.map_err(|_| "the export thread is gone".to_owned())
}

/// Puts this thread in the idle scheduling class (`SCHED_IDLE`): it runs on CPU time the
/// decisions leave, so under full load they go first and the export catches up in the gaps
/// (the fsyncs leave some even then). Where that is refused, nice 10. Best effort.
#[allow(unsafe_code)]
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is this thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
        return;
    }
    // SAFETY: gettid and setpriority take no pointers; they change only this thread's niceness.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "the export thread keeps its priority");
    }
}

/// Keeps, through any prune, every entry a required destination has not acknowledged.
pub fn hold_retention(log: &Log, all: &[Arc<Destination>]) {
    let lowest = all.iter().filter(|d| d.required).map(|d| d.cursor(log) + 1).min();
    log.set_prune_hold(lowest);
}

/// This host's name (read once): the `host` of its `faramesh_hosts` row and OTLP's
/// `host.name`, and `status`'s `host`.
pub fn host_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
    })
    .clone()
}

/// How a destination's copy compares with the host's log (`faramesh verify-export`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Comparison {
    /// The range checked (`first..=through`).
    pub first: u64,
    /// The last entry checked.
    pub through: u64,
    /// Entries of the range present and equal to the host's.
    pub present: u64,
    /// Extra copies of entries (harmless: at least once).
    pub duplicates: u64,
    /// Ranges of the host's entries the copy lacks, `[from, to]`.
    pub missing: Vec<(u64, u64)>,
    /// Entries whose copy is not what the chain commits to, with why.
    pub altered: Vec<(u64, String)>,
    /// What is wrong beside the entries (PostgreSQL's host row).
    pub problems: Vec<String>,
}

impl Comparison {
    /// Nothing missing, nothing altered, nothing else wrong.
    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.altered.is_empty() && self.problems.is_empty()
    }

    /// The first entry to send again (the lowest missing or altered one; the last entry
    /// checked when only the host row is wrong: any batch writes it again).
    pub fn resend_from(&self) -> Option<u64> {
        let entries = self.missing.iter().map(|m| m.0).chain(self.altered.iter().map(|a| a.0)).min();
        entries.or_else(|| (!self.problems.is_empty() && self.through >= self.first).then_some(self.through))
    }
}

/// Compares a destination's copy (`(seq, record)`, any order, duplicates allowed) with the
/// host's entries `first..=through` (`host`: seq → the `entry_hash` the host's chain holds). A
/// copy is altered when its record is not canonical, its `entry_hash` is not the hash of its
/// contents, its `prev_hash` does not link to the previous entry, or its hash is not the
/// host's; duplicates must all be intact. An entry in `flagged` is altered for the reason
/// given there (PostgreSQL: a column that is not what its record says).
pub fn compare(
    copies: &[(u64, String)],
    flagged: &std::collections::BTreeMap<u64, String>,
    host: &std::collections::BTreeMap<u64, String>,
    first: u64,
    through: u64,
) -> Comparison {
    use std::collections::BTreeMap;
    let mut cmp = Comparison { first, through, ..Comparison::default() };
    let mut seen: BTreeMap<u64, Result<entry::Opened, String>> = BTreeMap::new();
    let mut altered: BTreeMap<u64, String> = BTreeMap::new();
    for (seq, record) in copies {
        if *seq < first || *seq > through {
            continue;
        }
        let opened = entry::open(record.as_bytes()).map_err(|e| e.to_string()).and_then(|o| {
            if o.seq == *seq { Ok(o) } else { Err(format!("the record holds entry {}", o.seq)) }
        });
        match seen.get(seq) {
            None => {
                seen.insert(*seq, opened);
            }
            Some(prev) => {
                cmp.duplicates += 1;
                let same = matches!((prev, &opened), (Ok(a), Ok(b)) if a.entry_hash == b.entry_hash);
                if !same {
                    let why = opened.err().unwrap_or_else(|| "two different copies".into());
                    altered.entry(*seq).or_insert(why);
                }
            }
        }
    }
    let mut gap: Option<(u64, u64)> = None;
    for seq in first..=through {
        let Some(copy) = seen.get(&seq) else {
            if host.contains_key(&seq) || seq > host.keys().next_back().copied().unwrap_or(0) {
                gap = Some(gap.map_or((seq, seq), |(a, _)| (a, seq)));
            }
            continue;
        };
        if let Some(g) = gap.take() {
            cmp.missing.push(g);
        }
        match copy {
            Err(why) => {
                altered.entry(seq).or_insert_with(|| why.clone());
            }
            Ok(o) => {
                let hash = entry::hex(&o.entry_hash);
                if host.get(&seq).is_some_and(|h| *h != hash) {
                    altered.entry(seq).or_insert_with(|| "differs from the host's entry".into());
                } else if let Some(Ok(prev)) = seen.get(&(seq.wrapping_sub(1))).filter(|_| seq > first)
                    && prev.entry_hash != o.prev_hash
                {
                    altered.entry(seq).or_insert_with(|| "does not link to the entry before it".into());
                } else if let Some(why) = flagged.get(&seq) {
                    altered.entry(seq).or_insert_with(|| why.clone());
                } else if !altered.contains_key(&seq) {
                    cmp.present += 1;
                }
            }
        }
    }
    if let Some(g) = gap {
        cmp.missing.push(g);
    }
    cmp.altered = altered.into_iter().collect();
    cmp
}

/// The records an OpenTelemetry Collector's file exporter wrote (OTLP/JSON, one export request
/// per line) for the log `log_id`: `(seq, record)` from each log record's `faramesh.seq` and body.
pub fn otlp_file_records(text: &str, log_id: &str) -> Result<Vec<(u64, String)>, String> {
    let mut out = Vec::new();
    let attr = |attrs: &Value, key: &str| -> Option<Value> {
        attrs.as_array()?.iter().find(|a| a["key"] == key).map(|a| a["value"].clone())
    };
    let int = |v: &Value| {
        v["intValue"].as_str().and_then(|s| s.parse::<u64>().ok()).or_else(|| v["intValue"].as_u64())
    };
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let req: Value = serde_json::from_str(line).map_err(|e| format!("line {}: not JSON: {e}", n + 1))?;
        for rl in req["resourceLogs"].as_array().into_iter().flatten() {
            let id = attr(&rl["resource"]["attributes"], "faramesh.log_id");
            if id.as_ref().and_then(|v| v["stringValue"].as_str()) != Some(log_id) {
                continue;
            }
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    let Some(seq) = attr(&r["attributes"], "faramesh.seq").as_ref().and_then(int) else {
                        continue;
                    };
                    let body = r["body"]["stringValue"].as_str().unwrap_or_default().to_owned();
                    out.push((seq, body));
                }
            }
        }
    }
    Ok(out)
}

impl super::Service {
    /// `export.rewind`: sends a destination everything after `to_seq` again (the daemon's user
    /// and root only), recorded as an `export_rewind` entry.
    pub async fn export_rewind(
        &self,
        name: &str,
        to_seq: u64,
        who: &super::Identity,
    ) -> Result<Value, super::ServiceError> {
        self.may_manage_log(who)?;
        let d = self
            .state
            .destinations
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| super::ServiceError::not_found(format!("no export destination `{name}`")))?;
        let was = d.cursor(&self.state.log);
        let to = to_seq.min(was);
        let row = json!({"acked_seq": to, "ts": entry::rfc3339(self.clock.now_ms()), "rewound_from": was})
            .to_string();
        // Recorded: who sent which destination back from where to where, with the cursor's row
        // in the same commit.
        let body = crate::log::dpr::event_entry(
            "export_rewind",
            json!({"destination": name, "from_seq": was, "to_seq": to, "by": who.caller()}),
        );
        let key = d.cursor_key();
        self.commit(body, Some(Box::new(move |_, _| vec![(key, Some(row.into_bytes()))]))).await?;
        if d.acked.load(Ordering::SeqCst) != u64::MAX {
            d.acked.store(to, Ordering::SeqCst);
        }
        hold_retention(&self.state.log, &self.state.destinations);
        tracing::info!(destination = %name, from = was, to, "export cursor rewound");
        Ok(json!({"name": name, "cursor": to, "was": was}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn the_standard_variables_configure_otlp() {
        assert_eq!(Otlp::from_env(None, &env(&[])).unwrap(), None);
        let o = Otlp::from_env(
            None,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc, x-tenant=7"),
                ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.name=gate"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(o.endpoint, "http://collector:4318/v1/logs");
        assert_eq!(
            o.headers,
            vec![("authorization".into(), "Bearer abc".into()), ("x-tenant".into(), "7".into())]
        );
        assert_eq!(o.resource[0], ("service.name".to_owned(), "gate".to_owned()));
        let logs = Otlp::from_env(
            None,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
                ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "https://b/logs"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(logs.endpoint, "https://b/logs");
        let flag = Otlp::from_env(Some("http://c:4318/v1/logs"), &env(&[("OTEL_SERVICE_NAME", "edge")]))
            .unwrap()
            .unwrap();
        assert_eq!((flag.endpoint.as_str(), flag.resource[0].1.as_str()), ("http://c:4318/v1/logs", "edge"));
        let grpc = Otlp::from_env(
            None,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]),
        );
        assert!(grpc.unwrap_err().contains("http/protobuf"));
        let bad = Otlp::from_env(
            None,
            &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"), ("OTEL_EXPORTER_OTLP_HEADERS", "nokey")]),
        );
        assert!(bad.unwrap_err().contains("`nokey` is not `key=value`"));
    }

    #[test]
    fn tls_files_come_from_the_standard_variables_and_are_read_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["collector.test".into()]).unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.cert.pem()).unwrap();
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_path, ca.cert.pem()).unwrap();
        std::fs::write(&key_path, ca.signing_key.serialize_pem()).unwrap();
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        let vars = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), "https://collector.test:4318".to_owned()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE".to_owned(), "/nowhere/general.pem".to_owned()),
            ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE".to_owned(), path(&ca_path)),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE".to_owned(), path(&cert_path)),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY".to_owned(), path(&key_path)),
        ];
        let env = |vars: Vec<(String, String)>| {
            move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        let o = Otlp::from_env(None, &env(vars.clone())).unwrap().unwrap();
        // The logs variable wins over the general one.
        assert_eq!(o.ca, Some(crate::tls::PemFile::new("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", &ca_path)));
        let (cert, key) = o.identity.clone().unwrap();
        assert_eq!((cert.path, key.setting.as_str()), (cert_path.clone(), "OTEL_EXPORTER_OTLP_CLIENT_KEY"));

        // A CA file that is not there stops the start, naming the variable.
        let mut gone = vars.clone();
        gone.retain(|(k, _)| k != "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE");
        let e = Otlp::from_env(None, &env(gone)).unwrap_err();
        assert!(e.starts_with("OTEL_EXPORTER_OTLP_CERTIFICATE `/nowhere/general.pem`"), "{e}");
        // A client certificate without its key.
        let mut half = vars.clone();
        half.retain(|(k, _)| k != "OTEL_EXPORTER_OTLP_CLIENT_KEY");
        let e = Otlp::from_env(None, &env(half)).unwrap_err();
        assert!(e.contains("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE is set without its pair"), "{e}");
    }

    #[test]
    fn a_copy_is_compared_entry_by_entry_with_the_chain() {
        use std::collections::BTreeMap;
        let mut prev = entry::GENESIS;
        let mut records = Vec::new();
        let mut host = std::collections::BTreeMap::new();
        for seq in 1..=10u64 {
            let mut body = serde_json::Map::new();
            body.insert("seq".into(), json!(seq));
            body.insert("kind".into(), json!("daemon_start"));
            let sealed = entry::seal(&prev, body).unwrap();
            prev = sealed.entry_hash;
            host.insert(seq, entry::hex(&sealed.entry_hash));
            records.push((seq, sealed.record));
        }
        let mut copy = records.clone();
        copy.push(records[3].clone()); // a duplicate: harmless
        let c = compare(&copy, &BTreeMap::new(), &host, 1, 10);
        assert!(c.ok(), "{c:?}");
        assert_eq!((c.present, c.duplicates), (10, 1));
        // Two gone, one edited.
        let mut copy: Vec<_> = records.iter().filter(|(s, _)| *s != 4 && *s != 5).cloned().collect();
        copy[6].1 = copy[6].1.replace("daemon_start", "daemon_stop");
        let c = compare(&copy, &BTreeMap::new(), &host, 1, 10);
        assert_eq!(c.missing, vec![(4, 5)]);
        assert_eq!(c.altered.iter().map(|a| a.0).collect::<Vec<_>>(), vec![9]);
        assert!(c.altered[0].1.contains("entry_hash does not match"), "{:?}", c.altered);
        assert_eq!(c.resend_from(), Some(4));
        // The tail not there yet.
        let c = compare(&records[..8], &BTreeMap::new(), &host, 1, 10);
        assert_eq!(c.missing, vec![(9, 10)]);
    }
}
