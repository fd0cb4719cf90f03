//! `faramesh-adapters`: what the daemon sends out, behind the traits its core drives
//! (`faramesh_daemon::service::outbound`). Notifications go to webhooks, Slack and email
//! ([`notify`]); the log's entries to OTLP collectors and PostgreSQL ([`export`]); checkpoints
//! to C2SP witnesses ([`witness`]). Each adapter speaks its protocol and nothing else: what to
//! send, when, how often to retry and what to record is the core's.

pub(crate) use faramesh_log as log;
pub(crate) use faramesh_net::tls;
pub(crate) use faramesh_policy as policy;

pub mod export;
pub mod http;
pub mod notify;
pub mod witness;

use std::sync::Arc;

use faramesh_daemon::service::outbound::Outbound;

/// The adapters `faramesh serve` runs with: notifications over HTTP(S) and SMTP, witnesses over
/// HTTP(S), both trusting the web PKI roots.
pub fn outbound() -> Outbound {
    Outbound { notifier: Arc::new(notify::Channels::new()), witness: Arc::new(witness::Witnesses::new()) }
}
