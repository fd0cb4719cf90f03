//! Pending approvals: created by a DEFER, decided by an approver, used once by the agent's
//! resumed call. Every transition is a log entry written together with the approval's state row
//! (`approval/<id>`), so approvals survive a restart.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::log::dpr::Caller;
use crate::log::{Log, LogError, StateWrites, dpr};
use crate::policy::{Approvals, Approver};
use crate::service::claims::{Claim, Claims};
use crate::service::{Peer, ServiceError};

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for a person.
    Pending,
    /// Granted; the agent may resume once.
    Approved,
    /// Refused.
    Denied,
    /// Nobody decided in time.
    Expired,
    /// Granted and consumed by the resumed call.
    Used,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Used => "used",
        }
    }
}

/// One approval.
///
/// JSON: `{"approval_id", "action_id", "status", "agent_id", "tool", "operation",
/// "request_hash", "rule_id", "reason_code", "created_at", "expires_at", "requested_by",
/// "decided_by", "reason", "edit"}` (`edit` only for an approval with edits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// The approval's id (32 hex characters, unguessable).
    pub approval_id: String,
    /// The DEFER decision's action id.
    pub action_id: String,
    /// Where it stands.
    pub status: Status,
    /// The calling agent.
    pub agent_id: String,
    /// The tool.
    pub tool: String,
    /// The operation.
    pub operation: String,
    /// The deferred call's `request_hash`: a resume must match it exactly.
    pub request_hash: String,
    /// The deciding rule.
    pub rule_id: Option<String>,
    /// Why the call was deferred (`POLICY_DEFER`, `RISK_UPGRADE` or `BUDGET_EXCEEDED`).
    pub reason_code: faramesh_proto::ReasonCode,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
    /// Milliseconds since the epoch of `expires_at`.
    pub expires_ms: u64,
    /// The connection that made the deferred call.
    pub requested_by: Option<Caller>,
    /// Who approved or denied it.
    pub decided_by: Option<Caller>,
    /// The approver's reason.
    pub reason: Option<String>,
    /// The arguments the approver changed the call to, when approved (or refused) with edits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit: Option<Edit>,
    /// How many distinct approvers must sign before the call runs (`approvals_required` on the
    /// deciding rule; 1 when absent).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub approvals_required: u32,
    /// The signed approvals counted so far, each `{statement, signature, approver, key,
    /// handed_in_by}` (only while more than one is required).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<Value>,
}

fn one() -> u32 {
    1
}

#[allow(clippy::trivially_copy_pass_by_ref, reason = "serde's skip_serializing_if passes a reference")]
fn is_one(n: &u32) -> bool {
    *n == 1
}

/// An approval with edits: the call the approver changed it to and how the policy decided that
/// call. The agent resumes with `params`; a resume with the original arguments is refused.
///
/// JSON: `{"params", "redacted_params", "request_hash", "by", "effect", "reason_code", "rule_id",
/// "reason"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edit {
    /// The edited arguments, in full: shown only to the caller that made the call (it runs
    /// them), and kept only while the approval may still be used.
    pub params: Value,
    /// The edited arguments as the log keeps them (secret-looking values redacted): what
    /// everyone else is shown, and all that is kept once the approval has ended.
    #[serde(default)]
    pub redacted_params: Value,
    /// The edited call's `request_hash`: the resumed call must match it.
    pub request_hash: String,
    /// Who edited.
    pub by: Option<Caller>,
    /// The policy's decision on the edited call (a DENY refuses the approval).
    pub effect: faramesh_proto::Effect,
    /// Its reason code.
    pub reason_code: faramesh_proto::ReasonCode,
    /// Its deciding rule.
    pub rule_id: Option<String>,
    /// Its reason.
    pub reason: String,
}

impl Approval {
    /// Where it stands, for people: `approved`, `denied`, `expired`, or `pending (1 of 2)`.
    pub fn progress(&self) -> String {
        if self.status == Status::Pending && self.approvals_required > 1 {
            format!("pending ({} of {})", self.signatures.len(), self.approvals_required)
        } else {
            self.status.as_str().to_owned()
        }
    }

    /// The approvers who signed so far.
    pub fn signers(&self) -> Vec<&str> {
        self.signatures.iter().filter_map(|s| s["approver"].as_str()).collect()
    }

    /// The approval as `who` may see it: the edited arguments in full only for the caller that
    /// made the call (`clear`), redacted for everyone else.
    pub fn shown(&self, clear: bool) -> Approval {
        let mut a = self.clone();
        if !clear && let Some(e) = a.edit.as_mut() {
            e.params = e.redacted_params.clone();
        }
        a
    }
}

/// The state key of an approval.
pub fn state_key(approval_id: &str) -> String {
    format!("approval/{approval_id}")
}

/// The live approvals (pending, or approved and not yet used) in memory, every approval in the
/// log's state table. An approval that ends (denied, expired, used) leaves memory and is read
/// from the state table when asked for, so memory holds only what may still change.
///
/// The lock is a plain mutex held only for map operations, never across a log commit: a
/// transition [`claims`](Book::claim) the approval (others wanting it wait), appends its entry
/// with no lock held, then [`releases`](Book::release) it with the new state. The claim is a
/// guard: dropped on any path, it frees the approval.
#[derive(Debug)]
pub struct Book {
    log: std::sync::Arc<Log>,
    inner: std::sync::Mutex<Inner>,
    claims: Arc<Claims>,
    /// Woken on every transition (for `approval.wait` and claimers).
    pub changed: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, Approval>,
}

impl Status {
    /// Whether the approval can still change (it stays in memory).
    pub fn is_live(self) -> bool {
        matches!(self, Status::Pending | Status::Approved)
    }
}

impl Book {
    /// Loads the live approvals stored with the log.
    pub fn load(log: std::sync::Arc<Log>) -> Result<Book, LogError> {
        let mut by_id = HashMap::new();
        for (_, value) in log.state_scan("approval/")? {
            if let Ok(a) = serde_json::from_slice::<Approval>(&value)
                && a.status.is_live()
            {
                by_id.insert(a.approval_id.clone(), a);
            }
        }
        Ok(Book {
            log,
            inner: std::sync::Mutex::new(Inner { by_id }),
            claims: Arc::default(),
            changed: Notify::new(),
        })
    }

    /// An approval that ended, from the state table.
    fn stored(&self, id: &str) -> Option<Approval> {
        let bytes = self.log.state_get(&state_key(id)).ok().flatten()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Every approval, live or ended (the state table; a live one as it stands in memory).
    pub fn everything(&self) -> Vec<Approval> {
        let live = self.all();
        let mut out: Vec<Approval> = self
            .log
            .state_scan("approval/")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice::<Approval>(&v).ok())
            .filter(|a| !live.iter().any(|l| l.approval_id == a.approval_id))
            .collect();
        out.extend(live);
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another task panicked mid-update of a map; the map itself
        // is still consistent (every update is a single insert or remove).
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The approval, as it stands now.
    pub fn get(&self, id: &str) -> Option<Approval> {
        let live = self.lock().by_id.get(id).cloned();
        live.or_else(|| self.stored(id))
    }

    /// The live approvals (pending, or approved and unused).
    pub fn all(&self) -> Vec<Approval> {
        self.lock().by_id.values().cloned().collect()
    }

    /// Adds a new approval (after its DEFER entry is committed).
    pub fn insert(&self, a: Approval) {
        self.lock().by_id.insert(a.approval_id.clone(), a);
        self.changed.notify_waiters();
    }

    /// Resolves an id or a unique prefix of 8+ characters: `Err(None)` when unknown,
    /// `Err(Some(ids))` when ambiguous.
    pub fn resolve(&self, id: &str) -> Result<String, Option<Vec<String>>> {
        if self.get(id).is_some() {
            return Ok(id.to_owned());
        }
        if id.len() < 8 {
            return Err(None);
        }
        let mut matches: Vec<String> = self
            .log
            .state_scan(&state_key(id))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, _)| k.strip_prefix("approval/").map(str::to_owned))
            .collect();
        let inner = self.lock();
        for k in inner.by_id.keys().filter(|k| k.starts_with(id)) {
            if !matches.contains(k) {
                matches.push(k.clone());
            }
        }
        match matches.len() {
            0 => Err(None),
            1 => Ok(matches.remove(0)),
            _ => {
                matches.sort();
                Err(Some(matches))
            }
        }
    }

    /// Takes the approval for a transition, waiting while another transition holds it.
    /// `None` if there is no such approval. End it with [`Book::release`] (dropping the claim
    /// frees the approval unchanged).
    pub async fn claim(&self, id: &str) -> Option<(Claim, Approval)> {
        let claim = self.claims.claim(id).await;
        // Under the claim nothing changes the approval: read it as it stands.
        let current = self.lock().by_id.get(id).cloned();
        // An approval that ended is still claimable (a transition on it is refused by its
        // status), read from the state table.
        let current = current.or_else(|| self.stored(id))?;
        Some((claim, current))
    }

    /// Ends a claim, storing `updated` if the transition was committed.
    pub fn release(&self, claim: Claim, updated: Option<Approval>) {
        {
            let mut inner = self.lock();
            let id = claim.id();
            match updated {
                Some(a) if a.status.is_live() => {
                    inner.by_id.insert(id.to_owned(), a);
                }
                // Ended: its state row (committed with the transition) is the record.
                Some(_) => {
                    inner.by_id.remove(id);
                }
                None => {}
            }
        }
        drop(claim);
        self.changed.notify_waiters();
    }
}

/// The state write for `approval`, as a closure for [`Log::append_with_state`]; `fill_action`
/// sets the action id from the entry being written (for the DEFER decision itself). An approval
/// that cannot be written as JSON is an error before anything is committed.
pub fn state_write(approval: &Approval, fill_action: bool) -> Result<StateWrites, ServiceError> {
    let key = state_key(&approval.approval_id);
    // An approval that can no longer be used keeps its edited arguments only as the log does.
    let kept = approval.shown(approval.status.is_live());
    let mut value = crate::service::to_json(&format!("`{key}`"), &kept)?;
    Ok(Box::new(move |_seq, id| {
        if fill_action && let (Some(id), Value::Object(m)) = (id, &mut value) {
            m.insert("action_id".into(), Value::String(id.to_owned()));
        }
        vec![(key, Some(value.to_string().into_bytes()))]
    }))
}

/// The log entry for a transition.
pub fn transition_entry(a: &Approval, by: Option<&Caller>) -> serde_json::Map<String, serde_json::Value> {
    dpr::event_entry(
        "approval",
        json!({
            "approval_id": a.approval_id,
            "action_id": a.action_id,
            "status": a.status.as_str(),
            "agent_id": a.agent_id,
            "request_hash": a.request_hash,
            "by": by,
            "reason": a.reason,
        }),
    )
}

/// Whether a socket peer may approve or deny: root, the daemon's own uid, or a listed approver.
/// Groups are the connection's own (read when it was accepted), never re-read by pid.
pub fn may_approve(peer: &Peer, own_uid: u32, approvals: &Approvals) -> bool {
    if peer.uid == 0 || peer.uid == own_uid {
        return true;
    }
    is_listed(peer, &approvals.approvers)
}

/// Whether a socket peer is one of `list` (`uid:N`, `gid:N`, `user:NAME`, `group:NAME`).
pub fn is_listed(peer: &Peer, list: &[Approver]) -> bool {
    list.iter().any(|a| match a {
        Approver::Uid(uid) => *uid == peer.uid,
        Approver::Gid(gid) => peer.in_group(*gid),
        Approver::User(name) => {
            nix::unistd::User::from_name(name).ok().flatten().is_some_and(|u| u.uid.as_raw() == peer.uid)
        }
        Approver::Group(name) => {
            nix::unistd::Group::from_name(name).ok().flatten().is_some_and(|g| peer.in_group(g.gid.as_raw()))
        }
    })
}
