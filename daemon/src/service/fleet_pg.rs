//! The PostgreSQL destination (`docs/fleet.md`): the log's entries in `faramesh_entries`,
//! idempotent on `(log_id, seq)`, with each host's signed checkpoints (`faramesh_checkpoints`)
//! and public key (`faramesh_hosts`). The same tables serve `faramesh fleet` and
//! `faramesh verify-export postgres`.

use serde_json::Value;

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
";

/// TLS for PostgreSQL (`sslmode=require` in the URL): the web PKI roots and, when set,
/// `PGSSLROOTCERT` (a PEM file of the server's CA).
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let ca = std::env::var_os("PGSSLROOTCERT")
        .filter(|p| !p.is_empty())
        .map(|p| crate::tls::PemFile::new("PGSSLROOTCERT", p));
    let config = crate::tls::client_config(ca.as_ref(), None)?;
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Whether `url` is a PostgreSQL connection string this daemon can use (the error says why not).
pub fn check_url(url: &str) -> Result<(), String> {
    url.parse::<tokio_postgres::Config>().map(|_| ()).map_err(|e| e.to_string())
}

/// Connects to `url` (`postgres://user:password@host:port/db?sslmode=require`).
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| format!("the PostgreSQL URL: {e}"))?;
    let (client, connection) = config.connect(tls()?).await.map_err(|e| format!("connect: {e}"))?;
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
) -> Result<(), String> {
    let err = |e: tokio_postgres::Error| e.to_string();
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
        let v: Value = serde_json::from_str(record).unwrap_or(Value::Null);
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let kind = s("kind").unwrap_or_default();
        let action_id = if kind == "decision" { s("id") } else { s("action_id") };
        let seq = i64::try_from(*seq).map_err(|_| format!("entry {seq} is out of range"))?;
        txn.execute(
            &insert,
            &[
                &log_id,
                &seq,
                &s("ts"),
                &kind,
                &s("entry_hash").unwrap_or_default(),
                &action_id,
                &s("agent_id"),
                &s("tool"),
                &s("operation"),
                &s("effect"),
                &s("reason_code"),
                &s("rule_id"),
                &s("approval_id"),
                &s("traceparent"),
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

/// Every stored copy of log `log_id`'s entries `first..=through` (`faramesh verify-export postgres`).
pub async fn records(
    client: &tokio_postgres::Client,
    log_id: &str,
    first: u64,
    through: u64,
) -> Result<Vec<(u64, String)>, String> {
    let (first, through) =
        (i64::try_from(first).unwrap_or(i64::MAX), i64::try_from(through).unwrap_or(i64::MAX));
    let rows = client
        .query(
            "SELECT seq, record FROM faramesh_entries WHERE log_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
            &[&log_id, &first, &through],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows.iter().map(|r| (u64::try_from(r.get::<_, i64>(0)).unwrap_or(0), r.get::<_, String>(1))).collect())
}

/// Decisions across hosts, newest first (`faramesh fleet list|pending|get`). `pending`: DEFERs
/// whose approval no host has recorded an outcome for yet.
pub async fn decisions(client: &tokio_postgres::Client, filter: &FleetFilter) -> Result<Vec<Value>, String> {
    let mut sql = String::from(
        "SELECT h.host, e.log_id, e.seq, e.record FROM faramesh_entries e JOIN faramesh_hosts h USING (log_id)
         WHERE e.kind = 'decision'",
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
        add(&mut sql, " AND e.agent_id = ?", a.clone());
    }
    if let Some(t) = &filter.tool {
        add(&mut sql, " AND e.tool = ?", t.clone());
    }
    if let Some(eff) = &filter.effect {
        add(&mut sql, " AND e.effect = ?", eff.to_ascii_uppercase());
    }
    if let Some(id) = &filter.action_id {
        add(&mut sql, " AND (e.action_id = ? OR e.action_id LIKE ", id.clone());
        add(&mut sql, "?)", format!("{id}%"));
    }
    if filter.pending {
        sql.push_str(
            " AND e.effect = 'DEFER' AND NOT EXISTS (SELECT 1 FROM faramesh_entries o WHERE o.log_id = e.log_id
              AND o.kind = 'approval' AND o.approval_id = e.approval_id)",
        );
    }
    sql.push_str(&format!(" ORDER BY e.ts DESC, e.seq DESC LIMIT {}", filter.limit.clamp(1, 10_000)));
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        params.iter().map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
    let rows = client.query(&sql, &refs).await.map_err(|e| e.to_string())?;
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
