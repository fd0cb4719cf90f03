//! Read-only questions: explain a decision, verify the log, read entries, the newest checkpoint.

use std::sync::Arc;

use faramesh_proto::Call;
use serde_json::{Value, json};

use super::actions::record_value;
use super::authz::Reader;
use super::{Identity, Service, ServiceError, to_json};
use crate::log::entry;
use crate::policy;

/// A live stream of the committed entries one caller may see (`log.subscribe`, the HTTP event
/// stream): the doors relay what it yields and decide nothing.
pub struct Subscription {
    rx: tokio::sync::broadcast::Receiver<(u64, Arc<str>)>,
    reader: Reader,
}

/// What a [`Subscription`] yields.
pub enum Seen {
    /// A committed entry (its JSON record) the caller may see.
    Entry(Arc<str>),
    /// This many entries went by while the reader was too slow.
    Lagged(u64),
}

impl Subscription {
    /// The next visible entry, or a note of missed ones; `None` once the log is closed.
    pub async fn next(&mut self) -> Option<Seen> {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match self.rx.recv().await {
                Ok((_, record)) => {
                    // Entries are parsed only to check them for a caller that does not read everything.
                    if self.reader.sees_entry(&record) {
                        return Some(Seen::Entry(self.reader.shown(record.to_string()).into()));
                    }
                }
                Err(RecvError::Lagged(n)) => return Some(Seen::Lagged(n)),
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// What `policy.explain` explains.
#[derive(Debug, Clone, PartialEq)]
pub enum ExplainTarget {
    /// A recorded action, by id or prefix.
    Action(String),
    /// A hypothetical call.
    Call(Box<Call>),
}

impl Service {
    /// Explains a recorded action (under the current policy) or a hypothetical call.
    pub fn explain(&self, target: ExplainTarget, who: &Identity) -> Result<Value, ServiceError> {
        self.may_explain(who)?;
        let loaded = self.state.policy.load_full();
        let (call, recorded) = match target {
            ExplainTarget::Action(id) => {
                let view = self.find_action(&id, who)?;
                (view.record.call(), Some(view.record.to_json()))
            }
            ExplainTarget::Call(call) => (*call, None),
        };
        let explanation = policy::explain(&loaded.policy, &call);
        let mut v = serde_json::to_value(&explanation)
            .map_err(|e| ServiceError::internal(e.to_string()).caused_by(e))?;
        if let Value::Object(m) = &mut v {
            m.insert("call".into(), to_json("the call", &call)?);
            m.insert("recorded".into(), recorded.unwrap_or(Value::Null));
            m.insert("policy_path".into(), json!(self.state.policy_path.display().to_string()));
        }
        Ok(v)
    }

    /// Verifies the whole log (off the async runtime).
    pub async fn verify(&self, against: Option<String>) -> Result<crate::log::Report, ServiceError> {
        self.verify_witnessed(against, None).await
    }

    /// Verifies the whole log and, with a witness policy (C2SP `tlog-policy` text), the newest
    /// checkpoint its quorum cosigned.
    pub async fn verify_witnessed(
        &self,
        against: Option<String>,
        policy: Option<String>,
    ) -> Result<crate::log::Report, ServiceError> {
        let policy = policy
            .map(|text| crate::log::witness::WitnessPolicy::parse(&text))
            .transpose()
            .map_err(|e| ServiceError::invalid("witness_policy", format!("the witness policy: {e}")))?;
        let log = Arc::clone(&self.state.log);
        tokio::task::spawn_blocking(move || log.verify_witnessed(against.as_deref(), policy.as_ref()))
            .await
            .map_err(|e| ServiceError::internal(e.to_string()).caused_by(e))?
            .map_err(ServiceError::from)
    }

    /// A `tlog-proof` receipt for one entry, by seq or action id, if `who` may read it:
    /// `{receipt, seq, size, witnessed}`.
    pub fn proof(&self, seq: Option<u64>, id: Option<String>, who: &Identity) -> Result<Value, ServiceError> {
        let seq = match (seq, id) {
            (Some(seq), _) => seq,
            (None, Some(id)) => {
                let rec = self.find_action(&id, who)?.record;
                self.state
                    .log
                    .seq_of_id(&rec.id)
                    .ok_or_else(|| ServiceError::not_found(format!("no action `{id}`")))?
            }
            (None, None) => return Err(ServiceError::missing("seq")),
        };
        let (receipt, witnessed) = self.state.log.receipt(seq)?;
        if !self.reader(who).sees_entry(&String::from_utf8_lossy(&receipt.record)) {
            return Err(ServiceError::not_found(format!("no entry {seq}")));
        }
        let size = crate::log::Checkpoint::parse_note(&receipt.checkpoint).map_or(0, |cp| cp.size);
        Ok(json!({"receipt": receipt.to_text(), "seq": seq, "size": size, "witnessed": witnessed}))
    }

    /// The log in order from `from_seq` (or the first entry at or after `since`): of `limit`
    /// entries read, those `who` may see.
    pub fn entries(
        &self,
        from_seq: Option<u64>,
        since: Option<String>,
        limit: usize,
        who: &Identity,
    ) -> Result<(Vec<Value>, u64), ServiceError> {
        let from_seq = match (from_seq, since) {
            (Some(n), _) => n,
            (None, Some(since)) => {
                let ms = entry::parse_rfc3339(&since).ok_or_else(|| {
                    ServiceError::invalid("since", format!("`since` `{since}` is not RFC 3339"))
                })?;
                self.state.log.first_seq_at_or_after(ms)?
            }
            (None, None) => 1,
        };
        let records = self.state.log.entries_from(from_seq, limit)?;
        // After a prune the first record may come after `from_seq`: continue after the last.
        let next_seq = records
            .last()
            .and_then(|r| record_value(r).get("seq").and_then(Value::as_u64))
            .map_or(from_seq, |s| s + 1);
        let reader = self.reader(who);
        let visible = records
            .iter()
            .filter(|r| reader.sees_entry(r))
            .map(|r| record_value(&reader.shown(r.to_string())))
            .collect();
        Ok((visible, next_seq))
    }

    /// Every entry committed from now on that `who` may see.
    pub fn subscribe(&self, who: &Identity) -> Subscription {
        Subscription { rx: self.state.log.subscribe(), reader: self.reader(who) }
    }

    /// The latest signed checkpoint, head and public key.
    pub fn checkpoint(&self) -> Result<Value, ServiceError> {
        let cp = self.state.log.latest_checkpoint()?;
        let (size, head) = self.state.log.head();
        Ok(json!({
            "checkpoint": cp,
            "size": size,
            "head_hash": entry::hex(&head),
            "root": crate::log::keys::base64_encode(&self.state.log.tree_head().1),
            "pubkey": self.state.log.key().public().to_text(),
            "cosigned": self.state.log.state_get(crate::log::COSIGNED)?.map(|v| String::from_utf8_lossy(&v).into_owned()),
        }))
    }
}
