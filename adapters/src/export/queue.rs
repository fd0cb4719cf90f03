//! The fleet queue in PostgreSQL (`docs/fleet.md#approving-from-anywhere`): rows of
//! `faramesh_approval_decisions`, each a signed statement for one host's approval, announced on
//! the `faramesh_decisions` channel (`NOTIFY`, the payload the host's log id). This adapter only
//! reads rows and notes outcomes on them; whether a row counts is the core's check of its
//! signature.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use faramesh_daemon::service::outbound::{
    BundleSource, DecisionQueue, FetchedBundle, FleetCounter, HostPolicy, Sending, SignedDecision,
};
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

use super::postgres::{self, PgError};

/// The channel hosts listen on; the payload is the log id a decision is for.
pub const CHANNEL: &str = "faramesh_decisions";

/// How long one statement may take before the connection is dropped and made again.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The most rows one read returns.
const MAX_ROWS: i64 = 500;
/// The most rows one read returns for one approval.
const PER_APPROVAL: i64 = 20;
/// Statements and signatures are read up to one character past what the core accepts.
const STATEMENT_CUT: i32 = 4097;
const SIGNATURE_CUT: i32 = 16 * 1024 + 1;

/// Reads the queue of one host's signed decisions.
#[derive(Debug)]
pub struct PostgresQueue {
    url: String,
    conn: tokio::sync::Mutex<Option<Listening>>,
}

#[derive(Debug)]
struct Listening {
    client: tokio_postgres::Client,
    /// Set by a notification for this host's log.
    wake: Arc<Notify>,
    /// Cleared when the connection ends.
    alive: Arc<AtomicBool>,
}

impl PostgresQueue {
    /// Reads the queue in the database at `url` (checked with [`postgres::check_url`]).
    pub fn new(url: &str) -> PostgresQueue {
        PostgresQueue { url: url.to_owned(), conn: tokio::sync::Mutex::new(None) }
    }

    /// The listening connection, made (tables created, `LISTEN` issued) when there is none.
    async fn connected<'a>(
        &self,
        conn: &'a mut Option<Listening>,
        log_id: &str,
    ) -> Result<&'a Listening, PgError> {
        listening(&self.url, conn, CHANNEL, Some(log_id)).await
    }
}

/// `conn`, or a new connection (tables created) that `LISTEN`s on `channel` and wakes its waiter
/// on each notification (with `payload`, only on those carrying it).
async fn listening<'a>(
    url: &str,
    conn: &'a mut Option<Listening>,
    channel: &'static str,
    payload: Option<&str>,
) -> Result<&'a Listening, PgError> {
    if conn.as_ref().is_some_and(|l| !l.alive.load(Ordering::SeqCst)) {
        *conn = None;
    }
    if let Some(l) = conn {
        return Ok(l);
    }
    let config: tokio_postgres::Config = url.parse().map_err(PgError::Url)?;
    let (client, mut connection) = config.connect(postgres::tls()?).await.map_err(PgError::Connect)?;
    let wake = Arc::new(Notify::new());
    let alive = Arc::new(AtomicBool::new(true));
    {
        let (wake, alive, payload) = (Arc::clone(&wake), Arc::clone(&alive), payload.map(str::to_owned));
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if payload.as_deref().is_none_or(|p| n.payload() == p) {
                            wake.notify_one();
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, channel, "a listening connection to PostgreSQL ended");
                        break;
                    }
                    None => break,
                }
            }
            alive.store(false, Ordering::SeqCst);
            // Whoever waits reads again (and reconnects).
            wake.notify_one();
        });
    }
    client.batch_execute(postgres::SCHEMA).await?;
    client.batch_execute(&format!("LISTEN {channel}")).await?;
    Ok(conn.insert(Listening { client, wake, alive }))
}

/// The channel `faramesh policy publish` announces a new bundle on.
pub const POLICY_CHANNEL: &str = "faramesh_policy";

/// Reads signed policy bundles from the fleet database and reports what this host runs.
#[derive(Debug)]
pub struct PostgresBundles {
    url: String,
    conn: tokio::sync::Mutex<Option<Listening>>,
}

impl PostgresBundles {
    /// Reads bundles in the database at `url`.
    pub fn new(url: &str) -> PostgresBundles {
        PostgresBundles { url: url.to_owned(), conn: tokio::sync::Mutex::new(None) }
    }
}

impl BundleSource for PostgresBundles {
    fn target(&self) -> String {
        postgres::redacted(&self.url)
    }

    fn newest<'a>(&'a self, after: u64, labels: &'a [String]) -> Sending<'a, Option<FetchedBundle>> {
        Box::pin(async move {
            let mut conn = self.conn.lock().await;
            let read = timed(async {
                let l = listening(&self.url, &mut conn, POLICY_CHANNEL, None).await?;
                let after = i64::try_from(after).unwrap_or(i64::MAX);
                let labels = labels.to_vec();
                let row = l
                    .client
                    .query_opt(
                        "SELECT left(bundle, 4200000), left(signature, 16385) FROM faramesh_policy_bundles
                         WHERE serial > $1 AND (cardinality(labels) = 0 OR labels && $2)
                         ORDER BY serial DESC LIMIT 1",
                        &[&after, &labels],
                    )
                    .await?;
                Ok(row.map(|r| FetchedBundle { text: r.get(0), signature: r.get(1) }))
            })
            .await;
            if read.is_err() {
                *conn = None;
            }
            read.map_err(Into::into)
        })
    }

    fn report<'a>(&'a self, h: &'a HostPolicy) -> Sending<'a> {
        Box::pin(async move {
            let mut conn = self.conn.lock().await;
            let Some(l) = conn.as_ref() else { return Ok(()) };
            let serial = h.serial.and_then(|s| i64::try_from(s).ok());
            let done = timed(async {
                l.client
                    .execute(
                        "INSERT INTO faramesh_host_policy (log_id, host, labels, serial, digest, expires_at, fetched_at, refusal, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6::text::timestamptz, $7::text::timestamptz, $8, now())
                         ON CONFLICT (log_id) DO UPDATE SET host = $2, labels = $3, serial = $4, digest = $5,
                           expires_at = $6::text::timestamptz, fetched_at = $7::text::timestamptz, refusal = $8, updated_at = now()",
                        &[&h.log_id, &h.host, &h.labels, &serial, &h.digest, &h.expires_at, &h.fetched_at, &h.refusal],
                    )
                    .await
                    .map_err(PgError::from)
            })
            .await;
            if done.is_err() {
                *conn = None;
            }
            done.map(|_| ()).map_err(Into::into)
        })
    }

    fn wait<'a>(&'a self, at_most: Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let wake = {
                let mut conn = self.conn.lock().await;
                match timed(listening(&self.url, &mut conn, POLICY_CHANNEL, None)).await {
                    Ok(l) => Some(Arc::clone(&l.wake)),
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot listen for policy bundles (polling)");
                        *conn = None;
                        None
                    }
                }
            };
            match wake {
                Some(w) => {
                    let _ = tokio::time::timeout(at_most, w.notified()).await;
                }
                None => tokio::time::sleep(at_most).await,
            }
        })
    }
}

async fn timed<T>(f: impl Future<Output = Result<T, PgError>>) -> Result<T, PgError> {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(PgError::TimedOut(TIMEOUT)),
    }
}

impl DecisionQueue for PostgresQueue {
    fn target(&self) -> String {
        postgres::redacted(&self.url)
    }

    fn fetch<'a>(
        &'a self,
        log_id: &'a str,
        approvals: &'a [String],
        skip: &'a [i64],
    ) -> Sending<'a, Vec<SignedDecision>> {
        Box::pin(async move {
            let mut conn = self.conn.lock().await;
            let read = timed(async {
                let l = self.connected(&mut conn, log_id).await?;
                let approvals = approvals.to_vec();
                let skip = skip.to_vec();
                // At most PER_APPROVAL rows for each approval, oldest first; the texts cut past
                // what a statement or signature may be (the core refuses those).
                let rows = l
                    .client
                    .query(
                        "SELECT id, approval_id, left(statement, $4), left(signature, $5) FROM (
                           SELECT id, approval_id, statement, signature,
                                  row_number() OVER (PARTITION BY approval_id ORDER BY id) AS n
                           FROM faramesh_approval_decisions
                           WHERE log_id = $1 AND approval_id = ANY($2) AND outcome IS NULL AND NOT (id = ANY($3))
                         ) t WHERE n <= $6 ORDER BY id LIMIT $7",
                        &[&log_id, &approvals, &skip, &STATEMENT_CUT, &SIGNATURE_CUT, &PER_APPROVAL, &MAX_ROWS],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| SignedDecision {
                        row: r.get(0),
                        approval_id: r.get(1),
                        statement: r.get(2),
                        signature: r.get(3),
                    })
                    .collect())
            })
            .await;
            if read.is_err() {
                *conn = None;
            }
            read.map_err(Into::into)
        })
    }

    fn report<'a>(&'a self, log_id: &'a str, row: i64, outcome: &'a str) -> Sending<'a> {
        Box::pin(async move {
            let mut conn = self.conn.lock().await;
            // No control characters (PostgreSQL refuses NUL in text), at most 500 characters.
            let outcome: String =
                outcome.chars().map(|c| if c.is_control() { ' ' } else { c }).take(500).collect();
            let done = timed(async {
                let l = self.connected(&mut conn, log_id).await?;
                l.client
                    .execute(
                        "UPDATE faramesh_approval_decisions SET outcome = $1, outcome_at = now() WHERE id = $2",
                        &[&outcome, &row],
                    )
                    .await
                    .map_err(PgError::from)
            })
            .await;
            if done.is_err() {
                *conn = None;
            }
            done.map(|_| ()).map_err(Into::into)
        })
    }

    fn wait<'a>(
        &'a self,
        log_id: &'a str,
        at_most: Duration,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let wake = {
                let mut conn = self.conn.lock().await;
                match timed(self.connected(&mut conn, log_id)).await {
                    Ok(l) => Some(Arc::clone(&l.wake)),
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot listen on the fleet queue (polling)");
                        *conn = None;
                        None
                    }
                }
            };
            match wake {
                Some(w) => {
                    let _ = tokio::time::timeout(at_most, w.notified()).await;
                }
                None => tokio::time::sleep(at_most).await,
            }
        })
    }
}

/// Counters shared by the fleet (`scope: fleet` rate limits and budgets), one row per agent,
/// limit and window in `faramesh_fleet_counters`, taken from in a transaction that locks the row.
#[derive(Debug)]
pub struct PostgresCounter {
    url: String,
    conn: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
}

impl PostgresCounter {
    /// Counts in the database at `url`.
    pub fn new(url: &str) -> PostgresCounter {
        PostgresCounter { url: url.to_owned(), conn: tokio::sync::Mutex::new(None) }
    }
}

impl FleetCounter for PostgresCounter {
    fn target(&self) -> String {
        postgres::redacted(&self.url)
    }

    fn take<'a>(&'a self, key: &'a str, limit: u64, want: u64, expires_ms: u64) -> Sending<'a, u64> {
        Box::pin(async move {
            let mut conn = self.conn.lock().await;
            let taken = timed(async {
                let client = match conn.as_mut() {
                    Some(c) if !c.is_closed() => c,
                    _ => {
                        let c = postgres::connect(&self.url).await?;
                        c.batch_execute(postgres::SCHEMA).await?;
                        conn.insert(c)
                    }
                };
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let want = i64::try_from(want).unwrap_or(i64::MAX);
                let expires = crate::log::entry::rfc3339(expires_ms);
                let tx = client.transaction().await?;
                tx.execute(
                    "INSERT INTO faramesh_fleet_counters (key, used, expires_at) VALUES ($1, 0, $2::text::timestamptz)
                     ON CONFLICT (key) DO NOTHING",
                    &[&key, &expires],
                )
                .await?;
                let used: i64 =
                    tx.query_one("SELECT used FROM faramesh_fleet_counters WHERE key = $1 FOR UPDATE", &[&key]).await?.get(0);
                // A count below zero was not written by a host: the counter cannot be trusted, and
                // the limit follows `on_unavailable`.
                if used < 0 {
                    return Err(PgError::Counter(key.to_owned()));
                }
                let granted = want.min(limit.saturating_sub(used).max(0));
                if granted > 0 {
                    tx.execute("UPDATE faramesh_fleet_counters SET used = used + $2 WHERE key = $1", &[&key, &granted])
                        .await?;
                }
                tx.commit().await?;
                Ok(u64::try_from(granted).unwrap_or(0))
            })
            .await;
            if taken.is_err() {
                *conn = None;
            }
            taken.map_err(Into::into)
        })
    }
}
