//! Export destinations (`docs/fleet.md`): OTLP/HTTP logs and PostgreSQL tables. The core's
//! sender decides what to ship and moves the cursor once a batch is acknowledged; these only
//! write a batch in their protocol. [`compare`] and [`postgres`]'s readers serve
//! `faramesh verify-export` and `faramesh fleet`.

mod compare;
mod otlp;
mod otlp_env;
pub mod postgres;
mod queue;

use std::sync::Arc;
use std::time::Duration;

use faramesh_daemon::service::fleet::background;
use faramesh_daemon::service::outbound::{Batch, Export, Exporter, Sending};

pub use compare::{Comparison, NotOtlp, compare, otlp_file_records};
pub use otlp::otlp_body;
pub use otlp_env::{Otlp, OtlpSettingError};
pub use queue::{CHANNEL, POLICY_CHANNEL, PostgresBundles, PostgresCounter, PostgresQueue};

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a batch was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The destination did not answer in time.
    #[error("no answer within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    /// The TLS settings cannot be used (a file that went bad since the start).
    #[error(transparent)]
    Tls(Arc<crate::tls::TlsError>),
    /// The encoding thread is gone.
    #[error(transparent)]
    Thread(#[from] faramesh_daemon::service::fleet::ThreadGone),
    /// The collector refused or could not be reached.
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    /// PostgreSQL refused or could not be reached.
    #[error(transparent)]
    Postgres(#[from] postgres::PgError),
}

/// Ships to an OpenTelemetry collector: OTLP/HTTP, protobuf.
#[derive(Debug)]
pub struct OtlpExporter {
    otlp: Otlp,
    client: Result<crate::http::Client, Arc<crate::tls::TlsError>>,
}

impl OtlpExporter {
    /// Ships to `otlp`; its TLS files are read now (checked already by [`Otlp::from_env`]).
    pub fn new(otlp: Otlp) -> OtlpExporter {
        let client = otlp.client().map_err(Arc::new);
        OtlpExporter { otlp, client }
    }
}

impl Exporter for OtlpExporter {
    fn kind(&self) -> &'static str {
        "otlp"
    }

    fn target(&self) -> String {
        self.otlp.endpoint.clone()
    }

    fn ship(&self, batch: Batch) -> Sending<'_> {
        Box::pin(async move {
            let o = self.otlp.clone();
            // Encoding runs on the exporters' own low-priority thread: decisions go first.
            let body = background(move || otlp_body(&o, &batch.log_id, &batch.host, &batch.records))
                .await
                .map_err(ShipError::from)?;
            let client = self.client.as_ref().map_err(|e| ShipError::Tls(Arc::clone(e)))?;
            let headers: Vec<(&str, String)> =
                self.otlp.headers.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            tokio::time::timeout(
                REQUEST_TIMEOUT,
                client.post_ok(&self.otlp.endpoint, "application/x-protobuf", body.into(), headers),
            )
            .await
            .map_err(|_| ShipError::Timeout)?
            .map_err(ShipError::from)?;
            Ok(())
        })
    }
}

/// Ships to PostgreSQL (`postgres://…`), keeping its connection between batches.
#[derive(Debug)]
pub struct PostgresExporter {
    url: String,
    conn: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
}

impl PostgresExporter {
    /// Ships to `url` (checked with [`postgres::check_url`]).
    pub fn new(url: &str) -> PostgresExporter {
        PostgresExporter { url: url.to_owned(), conn: tokio::sync::Mutex::new(None) }
    }
}

impl Exporter for PostgresExporter {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn target(&self) -> String {
        postgres::redacted(&self.url)
    }

    fn wants_checkpoint(&self) -> bool {
        true
    }

    fn ship(&self, batch: Batch) -> Sending<'_> {
        Box::pin(async move {
            let mut conn = self.conn.lock().await;
            let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let client = match conn.as_mut() {
                    Some(client) => client,
                    None => {
                        let client = postgres::connect(&self.url).await?;
                        client.batch_execute(postgres::SCHEMA).await?;
                        conn.insert(client)
                    }
                };
                postgres::write_batch(
                    client,
                    &batch.log_id,
                    &batch.host,
                    &batch.log_key,
                    batch.checkpoint,
                    &batch.records,
                )
                .await
            })
            .await
            .map_or(Err(ShipError::Timeout), |written| written.map_err(ShipError::from));
            if result.is_err() {
                // A connection that failed (or was left mid-transaction) is not used again.
                *conn = None;
            }
            Ok(result?)
        })
    }
}

/// An export destination for the core: `name` (its cursor row), whether retention waits for
/// it, and its exporter.
pub fn export(name: &str, required: bool, exporter: impl Exporter + 'static) -> Export {
    Export { name: name.to_owned(), required, exporter: Arc::new(exporter) }
}
