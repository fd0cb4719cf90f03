//! The fleet queue (`docs/fleet.md#approving-from-anywhere`): signed decisions that approvers
//! made on other machines wait in the fleet database; this host reads those addressed to its
//! pending approvals and applies each through the same checks as a statement handed in over
//! the socket ([`Service::answer_signed`]). The database only carries statements: a row
//! without a valid signature by a key the policy in force lists approves nothing, and its
//! refusal is recorded.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::super::approvals::Status;
use super::super::identity::{Role, TokenIdentity};
use super::super::outbound::{DecisionQueue, SignedDecision};
use super::super::signing::Statement;
use super::super::{Identity, Service};
use crate::log::entry;

/// How often the queue is read when the database announces nothing (and while it is down).
pub const POLL: Duration = Duration::from_secs(5);

/// The most rows a run leaves out of its reads (after which it reads them all again).
const MAX_SKIPPED: usize = 100_000;

/// How statements from the fleet database are recorded as handed in (`by`, `handed_in_by`).
pub const SUBMITTER: &str = "fleet:postgres";

/// What the queue's reader has seen, for `status`.
#[derive(Debug, Default)]
pub struct QueueStatus {
    inner: Mutex<Option<Value>>,
}

impl QueueStatus {
    fn update(&self, f: impl FnOnce(&mut serde_json::Map<String, Value>)) {
        let mut g = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let v = g.get_or_insert_with(|| json!({"applied": 0, "refused": 0}));
        if let Value::Object(m) = v {
            f(m);
        }
    }

    /// `status`'s `fleet_queue` (null when the daemon reads no queue).
    pub fn shown(&self) -> Value {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone().unwrap_or(Value::Null)
    }
}

fn bump(m: &mut serde_json::Map<String, Value>, key: &str) {
    let n = m.get(key).and_then(Value::as_u64).unwrap_or(0);
    m.insert(key.into(), json!(n + 1));
}

impl Service {
    /// Reads the fleet queue until `stop`: every pending approval's rows, as the database
    /// announces them and at least every [`POLL`].
    pub async fn run_decision_queue(&self, queue: &dyn DecisionQueue, stop: CancellationToken) {
        let log_id = self.host_log_id();
        let status = &self.state.fleet_queue;
        status.update(|m| {
            m.insert("target".into(), json!(queue.target()));
        });
        // Rows already applied or refused in this run (pruned to what the last read returned).
        let mut seen: HashSet<i64> = HashSet::new();
        loop {
            let now = self.clock.now_ms();
            let pending: Vec<String> = self
                .state
                .approvals
                .all()
                .into_iter()
                .filter(|a| a.status == Status::Pending && a.expires_ms > now)
                .map(|a| a.approval_id)
                .collect();
            if !pending.is_empty() {
                // Rows this run could not note an outcome on are left out of the next reads.
                if seen.len() > MAX_SKIPPED {
                    seen.clear();
                }
                let skip: Vec<i64> = seen.iter().copied().collect();
                let read = tokio::select! {
                    () = stop.cancelled() => return,
                    r = queue.fetch(&log_id, &pending, &skip) => r,
                };
                match read {
                    Ok(rows) => {
                        status.update(|m| {
                            m.insert("last_ok".into(), json!(entry::rfc3339(entry::now_ms())));
                            m.insert("last_error".into(), Value::Null);
                        });
                        for row in rows {
                            if seen.contains(&row.row) {
                                continue;
                            }
                            let outcome = self.apply_queued(&row).await;
                            if let Err(e) = queue.report(&log_id, row.row, &outcome).await {
                                // Not read again in this run: its outcome is in the log already.
                                seen.insert(row.row);
                                tracing::warn!(error = %e, row = row.row, "cannot note the outcome on a row of the fleet queue");
                                status.update(|m| {
                                    m.insert(
                                        "last_error".into(),
                                        json!(format!("cannot note an outcome: {e}")),
                                    );
                                });
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the fleet queue (retrying)");
                        status.update(|m| {
                            m.insert("last_error".into(), json!(e.to_string()));
                        });
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = queue.wait(&log_id, POLL) => {}
            }
        }
    }

    /// Applies one row of the queue: `applied: approved`, `applied: 1 of 2`, or `refused: why`.
    async fn apply_queued(&self, row: &SignedDecision) -> String {
        let submitter = Identity::Token(TokenIdentity {
            name: SUBMITTER.to_owned(),
            role: Role::Agent,
            agents: None,
            for_peer: None,
        });
        // The statement says what is decided; a statement that does not parse is refused (and
        // recorded) by the same checks.
        let approve = Statement::parse(&row.statement).is_ok_and(|s| s.approve);
        let r = self
            .answer_signed(
                &row.approval_id,
                approve,
                &row.statement,
                &super::super::signing::Proof::Ssh(row.signature.clone()),
                &submitter,
            )
            .await;
        let status = &self.state.fleet_queue;
        match r {
            Ok(a) => {
                status.update(|m| bump(m, "applied"));
                tracing::info!(approval = %a.approval_id, status = a.status.as_str(), "a signed decision from the fleet queue was applied");
                format!("applied: {}", a.progress())
            }
            Err(e) => {
                status.update(|m| bump(m, "refused"));
                tracing::warn!(approval = %row.approval_id, error = %e.message, "a row of the fleet queue was refused");
                format!("refused: {}", e.message)
            }
        }
    }
}
