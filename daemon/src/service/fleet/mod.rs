//! Decisions leaving the host (`docs/fleet.md`): each export destination (an OpenTelemetry
//! collector over OTLP/HTTP) has a cursor in the log's state, `export/<name>`, the last `seq` it
//! acknowledged. Its sender task reads the committed entries after the cursor, ships them in
//! batches, and moves the cursor only after the destination answered 2xx: a receiver that is
//! down, a SIGKILL or a restart loses nothing (a batch sent but not acknowledged is sent again;
//! every record carries the log id and `seq`, so a duplicate is harmless). A destination marked
//! required holds retention: no prune removes an entry it has not acknowledged.

pub mod queue;
mod send;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

pub use send::{BATCH, ThreadGone, background};

use super::outbound::{Export, Exporter};
use crate::log::{Log, entry};

/// One export destination and what its sender has seen.
#[derive(Debug)]
pub struct Destination {
    /// `otlp`: names its cursor row (`export/otlp`).
    pub name: String,
    /// What ships to it.
    pub exporter: Arc<dyn Exporter>,
    /// Retention waits for it.
    pub required: bool,
    last_error: Mutex<Option<String>>,
    last_ok_ms: AtomicU64,
    errors: AtomicU64,
    shipped: AtomicU64,
    /// The cursor in memory (`u64::MAX` until read from its row): saved to the row at most
    /// every [`SAVE_EVERY`], when the sender goes idle, and when it stops.
    acked: AtomicU64,
}

impl Destination {
    /// The destination `export` configures.
    pub fn new(export: &Export) -> Destination {
        Destination {
            name: export.name.clone(),
            exporter: Arc::clone(&export.exporter),
            required: export.required,
            last_error: Mutex::new(None),
            last_ok_ms: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            shipped: AtomicU64::new(0),
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
        self.exporter.target()
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
            "kind": self.exporter.kind(),
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
