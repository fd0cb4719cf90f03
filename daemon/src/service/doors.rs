//! What the doors (the socket, HTTP and the dashboard) read from the core besides requests:
//! limits, connection and error counts, readiness, metrics, tiles and the overview. The doors
//! get these through [`Service`] and never see the state, the log or the policy themselves.

use std::sync::Arc;

use serde_json::{Value, json};

use super::metrics::{ConnectionGuard, Transport};
use super::state::Limits;
use super::{Identity, Service, ServiceError, approvals};

impl Service {
    /// The daemon's limits (frame sizes, timeouts, connections).
    pub fn limits(&self) -> &Limits {
        &self.state.limits
    }

    /// Counts an open connection until the guard drops.
    pub fn connection(&self, transport: Transport) -> ConnectionGuard<'_> {
        self.state.metrics.connection(transport)
    }

    /// Counts an error answered to a client (`internal`: the daemon's fault).
    pub fn count_error(&self, internal: bool) {
        self.state.counts.error(internal);
    }

    /// `GET /ready`: whether the log accepts writes, and the policy's hash.
    pub fn readiness(&self) -> (bool, String) {
        (self.state.metrics.log_writable(), self.state.policy.load().policy.hash.clone())
    }

    /// `GET /metrics`: the OpenMetrics text.
    pub fn metrics_text(&self) -> String {
        let state = &self.state;
        let pending = state.approvals.all().iter().filter(|a| a.status == approvals::Status::Pending).count();
        for d in state.destinations.iter() {
            state.metrics.export(&d.status(&state.log));
        }
        state.metrics.render(pending, state.log.queue_depth())
    }

    /// A `tlog-tiles` hash tile (`None`: no such tile).
    pub async fn tile(&self, level: u32, index: u64, width: u64) -> Result<Option<Vec<u8>>, ServiceError> {
        let log = Arc::clone(&self.state.log);
        let hashes = tokio::task::spawn_blocking(move || log.tile(level, index, width))
            .await
            .map_err(|e| ServiceError::internal(e.to_string()))?;
        Ok(hashes.ok())
    }

    /// `GET /v1/overview`: the policy (path, hash, loaded at, last reload error), decision
    /// counts, and the log's latest signed checkpoint, verified with the log's public key.
    pub fn overview(&self, who: &Identity) -> Result<Value, ServiceError> {
        self.may_read_overview(who)?;
        let state = &self.state;
        let cp = self.checkpoint()?;
        let note = cp.get("checkpoint").and_then(Value::as_str).unwrap_or_default();
        let pubkey = cp.get("pubkey").and_then(Value::as_str).unwrap_or_default();
        let verified = crate::log::PublicKey::from_text(pubkey)
            .ok()
            .and_then(|k| k.verify_checkpoint(note).ok())
            .map(|c| c.size);
        let status = state.status();
        Ok(json!({
            "version": status.get("version"),
            "notice": status.get("notice"),
            "demo": status.get("demo"),
            "anonymous_agents": state.http.as_ref().is_some_and(|h| h.anonymous_agents),
            "policy": state.policy_status(),
            "counts": status.get("counts"),
            "notifications": status.get("notifications"),
            "witnesses": status.get("witnesses"),
            "kill": status.get("kill"),
            "log": {
                "size": cp.get("size"),
                "head_hash": cp.get("head_hash"),
                "checkpoint_verified": verified.is_some(),
                "checkpoint_size": verified,
            },
        }))
    }
}
