//! The fleet queue in PostgreSQL (`docs/fleet.md#approving-from-anywhere`): rows of
//! `faramesh_approval_decisions`, each a signed statement for one host's approval, announced on
//! the `faramesh_decisions` channel (`NOTIFY`, the payload the host's log id). This adapter only
//! reads rows and notes outcomes on them; whether a row counts is the core's check of its
//! signature.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use faramesh_daemon::service::outbound::{DecisionQueue, Sending, SignedDecision};
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

use super::postgres::{self, PgError};

/// The channel hosts listen on; the payload is the log id a decision is for.
pub const CHANNEL: &str = "faramesh_decisions";

/// How long one statement may take before the connection is dropped and made again.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The most rows one read returns.
const MAX_ROWS: i64 = 500;

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
        if conn.as_ref().is_some_and(|l| !l.alive.load(Ordering::SeqCst)) {
            *conn = None;
        }
        if let Some(l) = conn {
            return Ok(l);
        }
        let config: tokio_postgres::Config = self.url.parse().map_err(PgError::Url)?;
        let (client, mut connection) = config.connect(postgres::tls()?).await.map_err(PgError::Connect)?;
        let wake = Arc::new(Notify::new());
        let alive = Arc::new(AtomicBool::new(true));
        {
            let (wake, alive, log_id) = (Arc::clone(&wake), Arc::clone(&alive), log_id.to_owned());
            tokio::spawn(async move {
                loop {
                    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        Some(Ok(AsyncMessage::Notification(n))) => {
                            if n.payload() == log_id {
                                wake.notify_one();
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "the fleet queue's connection ended");
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
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        Ok(conn.insert(Listening { client, wake, alive }))
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
        after: i64,
    ) -> Sending<'a, Vec<SignedDecision>> {
        Box::pin(async move {
            let mut conn = self.conn.lock().await;
            let read = timed(async {
                let l = self.connected(&mut conn, log_id).await?;
                let approvals = approvals.to_vec();
                let rows = l
                    .client
                    .query(
                        "SELECT id, approval_id, statement, signature FROM faramesh_approval_decisions
                         WHERE log_id = $1 AND approval_id = ANY($2) AND outcome IS NULL AND id > $3
                         ORDER BY id LIMIT $4",
                        &[&log_id, &approvals, &after, &MAX_ROWS],
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

    fn report<'a>(&'a self, row: i64, outcome: &'a str) -> Sending<'a> {
        Box::pin(async move {
            let mut conn = self.conn.lock().await;
            let Some(l) = conn.as_ref() else { return Ok(()) };
            let outcome: String = outcome.chars().take(500).collect();
            let done = timed(async {
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
