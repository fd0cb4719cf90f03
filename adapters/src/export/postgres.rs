//! The PostgreSQL destination (`docs/fleet.md`): the log's entries in `faramesh_entries`,
//! idempotent on `(log_id, seq)`, with each host's signed checkpoints (`faramesh_checkpoints`)
//! and public key (`faramesh_hosts`). The same tables serve `faramesh fleet` and
//! `faramesh verify-export postgres`.

use serde_json::Value;
/// A connection to the fleet database.
pub use tokio_postgres::Client;

/// The tables, created (if missing) by the daemon when it connects and by `faramesh fleet
/// init-db`.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS faramesh_hosts (
    log_id      text PRIMARY KEY,
    host        text NOT NULL,
    public_key  text NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS faramesh_entries (
    log_id      text NOT NULL,
    seq         bigint NOT NULL,
    ts          timestamptz,
    kind        text NOT NULL,
    entry_hash  text NOT NULL,
    action_id   text,
    agent_id    text,
    tool        text,
    operation   text,
    effect      text,
    reason_code text,
    rule_id     text,
    approval_id text,
    traceparent text,
    record      text NOT NULL,
    PRIMARY KEY (log_id, seq)
);
CREATE INDEX IF NOT EXISTS faramesh_entries_ts ON faramesh_entries (ts);
CREATE INDEX IF NOT EXISTS faramesh_entries_action ON faramesh_entries (action_id);
CREATE INDEX IF NOT EXISTS faramesh_entries_approval ON faramesh_entries (approval_id);
CREATE TABLE IF NOT EXISTS faramesh_checkpoints (
    log_id      text NOT NULL,
    size        bigint NOT NULL,
    checkpoint  text NOT NULL,
    PRIMARY KEY (log_id, size)
);
CREATE TABLE IF NOT EXISTS faramesh_approval_decisions (
    id           bigserial PRIMARY KEY,
    log_id       text NOT NULL,
    approval_id  text NOT NULL,
    statement    text NOT NULL,
    signature    text NOT NULL,
    submitted_at timestamptz NOT NULL DEFAULT now(),
    outcome      text,
    outcome_at   timestamptz
);
CREATE INDEX IF NOT EXISTS faramesh_approval_decisions_to ON faramesh_approval_decisions (log_id, approval_id);
CREATE TABLE IF NOT EXISTS faramesh_policy_bundles (
    serial       bigint PRIMARY KEY,
    labels       text[] NOT NULL,
    expires_at   timestamptz NOT NULL,
    publisher    text NOT NULL,
    digest       text NOT NULL,
    bundle       text NOT NULL,
    signature    text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS faramesh_fleet_counters (
    key         text PRIMARY KEY,
    used        bigint NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS faramesh_host_policy (
    log_id      text PRIMARY KEY,
    host        text NOT NULL,
    labels      text[] NOT NULL,
    serial      bigint,
    digest      text,
    expires_at  timestamptz,
    fetched_at  timestamptz,
    refusal     text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
";

/// The columns of a `faramesh_entries` row that are read from its record (all but `log_id`,
/// `seq` and `record`): what the daemon writes, and what `faramesh verify-export postgres`
/// checks every row's columns against. They are there for SQL and indexes; `faramesh fleet`
/// reads the record itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Columns {
    /// `ts`, in milliseconds since the epoch.
    pub ts_ms: Option<i64>,
    /// `kind`.
    pub kind: String,
    /// `entry_hash`.
    pub entry_hash: String,
    /// `action_id`: a decision's `id`, another entry's `action_id`.
    pub action_id: Option<String>,
    /// `agent_id`.
    pub agent_id: Option<String>,
    /// `tool`.
    pub tool: Option<String>,
    /// `operation`.
    pub operation: Option<String>,
    /// `effect`.
    pub effect: Option<String>,
    /// `reason_code`.
    pub reason_code: Option<String>,
    /// `rule_id`.
    pub rule_id: Option<String>,
    /// `approval_id`.
    pub approval_id: Option<String>,
    /// `traceparent`.
    pub traceparent: Option<String>,
}

impl Columns {
    /// The columns `record` makes (a record that is not JSON makes empty ones).
    pub fn of(record: &str) -> Columns {
        let v: Value = serde_json::from_str(record).unwrap_or(Value::Null);
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let kind = s("kind").unwrap_or_default();
        let action_id = if kind == "decision" { s("id") } else { s("action_id") };
        Columns {
            ts_ms: s("ts")
                .and_then(|t| crate::log::entry::parse_rfc3339(&t))
                .and_then(|ms| i64::try_from(ms).ok()),
            entry_hash: s("entry_hash").unwrap_or_default(),
            action_id,
            agent_id: s("agent_id"),
            tool: s("tool"),
            operation: s("operation"),
            effect: s("effect"),
            reason_code: s("reason_code"),
            rule_id: s("rule_id"),
            approval_id: s("approval_id"),
            traceparent: s("traceparent"),
            kind,
        }
    }

    /// Each column of `stored` that is not what the record says (`self`), as
    /// "`effect` is `PERMIT` where the record says `DENY`".
    pub fn differences(&self, stored: &Columns) -> Vec<String> {
        fn show<T: std::fmt::Display>(v: Option<&T>) -> String {
            v.map_or_else(|| "NULL".to_owned(), |v| format!("`{v}`"))
        }
        let mut out = Vec::new();
        let mut check = |name: &str, record: String, row: String| {
            if record != row {
                out.push(format!("`{name}` is {row} where the record says {record}"));
            }
        };
        check("ts", show(self.ts_ms.as_ref()), show(stored.ts_ms.as_ref()));
        check("kind", show(Some(&self.kind)), show(Some(&stored.kind)));
        check("entry_hash", show(Some(&self.entry_hash)), show(Some(&stored.entry_hash)));
        for (name, record, row) in [
            ("action_id", &self.action_id, &stored.action_id),
            ("agent_id", &self.agent_id, &stored.agent_id),
            ("tool", &self.tool, &stored.tool),
            ("operation", &self.operation, &stored.operation),
            ("effect", &self.effect, &stored.effect),
            ("reason_code", &self.reason_code, &stored.reason_code),
            ("rule_id", &self.rule_id, &stored.rule_id),
            ("approval_id", &self.approval_id, &stored.approval_id),
            ("traceparent", &self.traceparent, &stored.traceparent),
        ] {
            check(name, show(record.as_ref()), show(row.as_ref()));
        }
        out
    }
}

/// TLS for PostgreSQL (`sslmode=require` in the URL): the web PKI roots and, when set,
/// `PGSSLROOTCERT` (a PEM file of the server's CA).
/// Why PostgreSQL refused or could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The connection string does not parse.
    #[error("the PostgreSQL URL: {0}")]
    Url(#[source] tokio_postgres::Error),
    /// The TLS settings (`PGSSLROOTCERT`) cannot be used.
    #[error("{0}")]
    Tls(#[source] crate::tls::TlsError),
    /// The server could not be reached or refused the session.
    #[error("connect: {0}")]
    Connect(#[source] tokio_postgres::Error),
    /// An entry's `seq` does not fit the column.
    #[error("entry {0} is out of range")]
    OutOfRange(u64),
    /// A stored record is not JSON.
    #[error(
        "a record in faramesh_entries is not JSON ({message}): `faramesh verify-export postgres` on each host names it"
    )]
    NotJson {
        /// The server's message.
        message: String,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A statement failed.
    #[error("{0}")]
    Query(#[from] tokio_postgres::Error),
    /// A fleet counter holds a count no host wrote.
    #[error("fleet counter `{0}` holds a count below zero")]
    Counter(String),
    /// The server did not answer in time.
    #[error("no answer within {} s", .0.as_secs())]
    TimedOut(std::time::Duration),
}

pub(crate) fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, PgError> {
    let ca = std::env::var_os("PGSSLROOTCERT")
        .filter(|p| !p.is_empty())
        .map(|p| crate::tls::PemFile::new("PGSSLROOTCERT", p));
    let config = crate::tls::client_config(ca.as_ref(), None).map_err(PgError::Tls)?;
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Whether `url` is a PostgreSQL connection string this daemon can use (the error says why not).
pub fn check_url(url: &str) -> Result<(), tokio_postgres::Error> {
    url.parse::<tokio_postgres::Config>().map(|_| ())
}

/// Connects to `url` (`postgres://user:password@host:port/db?sslmode=require`).
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, PgError> {
    let config: tokio_postgres::Config = url.parse().map_err(PgError::Url)?;
    let (client, connection) = config.connect(tls()?).await.map_err(PgError::Connect)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// `url` with its password replaced by `***` (for `status` and logs).
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Writes `records` (`(seq, record)`) of log `log_id` and the host's latest checkpoint in one
/// transaction; rows already there are left as they are.
pub async fn write_batch(
    client: &mut tokio_postgres::Client,
    log_id: &str,
    host: &str,
    public_key: &str,
    checkpoint: Option<(u64, String)>,
    records: &[(u64, std::sync::Arc<str>)],
) -> Result<(), PgError> {
    let err = PgError::Query;
    let txn = client.transaction().await.map_err(err)?;
    txn.execute(
        "INSERT INTO faramesh_hosts (log_id, host, public_key) VALUES ($1, $2, $3)
         ON CONFLICT (log_id) DO UPDATE SET host = EXCLUDED.host, public_key = EXCLUDED.public_key, last_seen = now()",
        &[&log_id, &host, &public_key],
    )
    .await
    .map_err(err)?;
    let insert = txn
        .prepare(
            "INSERT INTO faramesh_entries (log_id, seq, ts, kind, entry_hash, action_id, agent_id, tool, operation,
                 effect, reason_code, rule_id, approval_id, traceparent, record)
             VALUES ($1, $2, $3::text::timestamptz, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (log_id, seq) DO NOTHING",
        )
        .await
        .map_err(err)?;
    for (seq, record) in records {
        let record: &str = record;
        let c = Columns::of(record);
        let ts = c.ts_ms.map(|ms| crate::log::entry::rfc3339(u64::try_from(ms).unwrap_or(0)));
        let seq = i64::try_from(*seq).map_err(|_| PgError::OutOfRange(*seq))?;
        txn.execute(
            &insert,
            &[
                &log_id,
                &seq,
                &ts,
                &c.kind,
                &c.entry_hash,
                &c.action_id,
                &c.agent_id,
                &c.tool,
                &c.operation,
                &c.effect,
                &c.reason_code,
                &c.rule_id,
                &c.approval_id,
                &c.traceparent,
                &record,
            ],
        )
        .await
        .map_err(err)?;
    }
    if let Some((size, text)) = checkpoint {
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        txn.execute(
            "INSERT INTO faramesh_checkpoints (log_id, size, checkpoint) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&log_id, &size, &text],
        )
        .await
        .map_err(err)?;
    }
    txn.commit().await.map_err(err)
}

/// A row of `faramesh_entries`: its record and the columns stored beside it.
#[derive(Debug, Clone)]
pub struct StoredRow {
    /// `seq`.
    pub seq: u64,
    /// `record`.
    pub record: String,
    /// The other columns, as stored.
    pub columns: Columns,
}

/// Every stored row of log `log_id`'s entries `first..=through` (`faramesh verify-export postgres`).
pub async fn rows(
    client: &tokio_postgres::Client,
    log_id: &str,
    first: u64,
    through: u64,
) -> Result<Vec<StoredRow>, PgError> {
    let (first, through) =
        (i64::try_from(first).unwrap_or(i64::MAX), i64::try_from(through).unwrap_or(i64::MAX));
    let rows = client
        .query(
            "SELECT seq, record, floor(extract(epoch FROM ts) * 1000)::bigint, kind, entry_hash, action_id, agent_id,
                    tool, operation, effect, reason_code, rule_id, approval_id, traceparent
             FROM faramesh_entries WHERE log_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
            &[&log_id, &first, &through],
        )
        .await
        .map_err(PgError::Query)?;
    Ok(rows
        .iter()
        .map(|r| StoredRow {
            seq: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
            record: r.get(1),
            columns: Columns {
                ts_ms: r.get(2),
                kind: r.get(3),
                entry_hash: r.get(4),
                action_id: r.get(5),
                agent_id: r.get(6),
                tool: r.get(7),
                operation: r.get(8),
                effect: r.get(9),
                reason_code: r.get(10),
                rule_id: r.get(11),
                approval_id: r.get(12),
                traceparent: r.get(13),
            },
        })
        .collect())
}

/// Log `log_id`'s row of `faramesh_hosts`: `(host, public_key)`.
pub async fn host_row(
    client: &tokio_postgres::Client,
    log_id: &str,
) -> Result<Option<(String, String)>, PgError> {
    let row = client
        .query_opt("SELECT host, public_key FROM faramesh_hosts WHERE log_id = $1", &[&log_id])
        .await
        .map_err(PgError::Query)?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Decisions across hosts, newest first (`faramesh fleet list|pending|get`). `pending`: the
/// DEFERs that created an approval no host has recorded an outcome for yet (a call resumed
/// while its approval still waits is not listed twice). Every filter, the order and the
/// answer are read from the records themselves, never from the columns beside them (which
/// `faramesh verify-export postgres` checks): an edited column neither hides a decision nor
/// changes what is shown. The host is its log's `faramesh_hosts` row.
pub async fn decisions(client: &tokio_postgres::Client, filter: &FleetFilter) -> Result<Vec<Value>, PgError> {
    // `\u0000` in a record (a NUL an agent sent, kept escaped in the JSON text) is not text
    // PostgreSQL's jsonb can hold: it is read as U+FFFD, so one record cannot stop every query.
    const J: &str = r"(replace(e.record, '\u0000', '\ufffd')::jsonb)";
    let mut sql = format!(
        "SELECT h.host, e.log_id, e.seq, e.record FROM faramesh_entries e JOIN faramesh_hosts h USING (log_id)
         WHERE {J}->>'kind' = 'decision'"
    );
    let mut params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = Vec::new();
    let mut add = |sql: &mut String, clause: &str, value: String| {
        params.push(Box::new(value));
        sql.push_str(&clause.replace('?', &format!("${}", params.len())));
    };
    if let Some(h) = &filter.host {
        add(&mut sql, " AND h.host = ?", h.clone());
    }
    if let Some(a) = &filter.agent_id {
        add(&mut sql, &format!(" AND {J}->>'agent_id' = ?"), a.clone());
    }
    if let Some(t) = &filter.tool {
        add(&mut sql, &format!(" AND {J}->>'tool' = ?"), t.clone());
    }
    if let Some(eff) = &filter.effect {
        add(&mut sql, &format!(" AND {J}->>'effect' = ?"), eff.to_ascii_uppercase());
    }
    if let Some(id) = &filter.action_id {
        // A prefix, compared as text (no LIKE: `_` and `%` in it are not patterns).
        add(&mut sql, &format!(" AND starts_with({J}->>'id', ?)"), id.to_ascii_lowercase());
    }
    if let Some(id) = &filter.approval_id {
        add(&mut sql, &format!(" AND starts_with({J}->>'approval_id', ?)"), id.to_ascii_lowercase());
    }
    if filter.pending {
        const O: &str = r"(replace(o.record, '\u0000', '\ufffd')::jsonb)";
        const F: &str = r"(replace(f.record, '\u0000', '\ufffd')::jsonb)";
        sql.push_str(&format!(
            " AND {J}->>'effect' = 'DEFER' AND NOT EXISTS (SELECT 1 FROM faramesh_entries o WHERE o.log_id = e.log_id
              AND {O}->>'kind' = 'approval' AND {O}->>'approval_id' = {J}->>'approval_id')
              AND NOT EXISTS (SELECT 1 FROM faramesh_entries f WHERE f.log_id = e.log_id AND f.seq < e.seq
              AND {F}->>'kind' = 'decision' AND {F}->>'approval_id' = {J}->>'approval_id')"
        ));
    }
    sql.push_str(&format!(" ORDER BY {J}->>'ts' DESC, e.seq DESC LIMIT {}", filter.limit.clamp(1, 10_000)));
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        params.iter().map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
    let rows = client.query(&sql, &refs).await.map_err(|e| match e.as_db_error() {
        Some(db) if db.code() == &tokio_postgres::error::SqlState::INVALID_TEXT_REPRESENTATION => {
            PgError::NotJson { message: db.message().to_owned(), source: e }
        }
        _ => PgError::Query(e),
    })?;
    Ok(rows
        .iter()
        .map(|r| {
            let mut v: Value = serde_json::from_str(&r.get::<_, String>(3)).unwrap_or(Value::Null);
            v["host"] = Value::String(r.get(0));
            v["log_id"] = Value::String(r.get(1));
            v
        })
        .collect())
}

/// Puts a signed decision for host `log_id`'s approval in the fleet queue and announces it
/// (`NOTIFY faramesh_decisions`): the row's id.
pub async fn submit_decision(
    client: &mut tokio_postgres::Client,
    log_id: &str,
    approval_id: &str,
    statement: &str,
    signature: &str,
) -> Result<i64, PgError> {
    let tx = client.transaction().await?;
    let row = tx
        .query_one(
            "INSERT INTO faramesh_approval_decisions (log_id, approval_id, statement, signature)
             VALUES ($1, $2, $3, $4) RETURNING id",
            &[&log_id, &approval_id, &statement, &signature],
        )
        .await?;
    tx.execute("SELECT pg_notify($1, $2)", &[&super::CHANNEL, &log_id]).await?;
    tx.commit().await?;
    Ok(row.get(0))
}

/// What the host noted on a queued decision, once it read it (`applied: …`, `refused: …`).
pub async fn decision_outcome(client: &tokio_postgres::Client, row: i64) -> Result<Option<String>, PgError> {
    let r =
        client.query_opt("SELECT outcome FROM faramesh_approval_decisions WHERE id = $1", &[&row]).await?;
    Ok(r.and_then(|r| r.get::<_, Option<String>>(0)))
}

/// The newest bundle serial in the database (0: none).
pub async fn newest_bundle_serial(client: &tokio_postgres::Client) -> Result<u64, PgError> {
    let row = client.query_one("SELECT coalesce(max(serial), 0) FROM faramesh_policy_bundles", &[]).await?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// Writes a signed bundle and announces it (`NOTIFY faramesh_policy`), in one transaction.
pub async fn publish_bundle(
    client: &mut tokio_postgres::Client,
    bundle: &faramesh_daemon::service::bundle::Bundle,
    text: &str,
    digest: &str,
    signature: &str,
) -> Result<(), PgError> {
    let serial = i64::try_from(bundle.serial).map_err(|_| PgError::OutOfRange(bundle.serial))?;
    let expires = crate::log::entry::rfc3339(bundle.expires_ms);
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO faramesh_policy_bundles (serial, labels, expires_at, publisher, digest, bundle, signature)
         VALUES ($1, $2, $3::text::timestamptz, $4, $5, $6, $7)",
        &[&serial, &bundle.labels, &expires, &bundle.publisher, &digest, &text, &signature],
    )
    .await?;
    tx.execute("SELECT pg_notify($1, '')", &[&super::POLICY_CHANNEL]).await?;
    tx.commit().await?;
    Ok(())
}

/// Every host: its `faramesh_hosts` row and what it reported about its policy bundle.
pub async fn hosts(client: &tokio_postgres::Client) -> Result<Vec<Value>, PgError> {
    let rows = client
        .query(
            "SELECT coalesce(h.log_id, p.log_id), coalesce(h.host, p.host), to_char(h.last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                    p.labels, p.serial, p.digest,
                    to_char(p.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                    to_char(p.fetched_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), p.refusal
             FROM faramesh_hosts h FULL OUTER JOIN faramesh_host_policy p USING (log_id)
             ORDER BY 2, 1",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "log_id": r.get::<_, Option<String>>(0),
                "host": r.get::<_, Option<String>>(1),
                "last_seen": r.get::<_, Option<String>>(2),
                "labels": r.get::<_, Option<Vec<String>>>(3).unwrap_or_default(),
                "serial": r.get::<_, Option<i64>>(4),
                "digest": r.get::<_, Option<String>>(5),
                "expires_at": r.get::<_, Option<String>>(6),
                "fetched_at": r.get::<_, Option<String>>(7),
                "refusal": r.get::<_, Option<String>>(8),
            })
        })
        .collect())
}

/// What `faramesh fleet list` filters on.
#[derive(Debug, Clone, Default)]
pub struct FleetFilter {
    /// One host's decisions.
    pub host: Option<String>,
    /// One agent's.
    pub agent_id: Option<String>,
    /// One tool's.
    pub tool: Option<String>,
    /// PERMIT, DENY or DEFER.
    pub effect: Option<String>,
    /// One action (its id or a prefix).
    pub action_id: Option<String>,
    /// One approval (its id or a prefix).
    pub approval_id: Option<String>,
    /// Only DEFERs still waiting.
    pub pending: bool,
    /// At most this many.
    pub limit: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redacted("postgres://fm:s3cret@db:5432/fleet"), "postgres://fm:***@db:5432/fleet");
        assert_eq!(redacted("postgres://fm@db/fleet"), "postgres://fm@db/fleet");
        assert_eq!(redacted("host=db user=fm"), "host=db user=fm");
    }
}
