//! Actions: their status, lookups by id or prefix, timelines, listings, lifecycle transitions.

use faramesh_proto::{Call, Effect, ReasonCode, canonical_json};
use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use super::approvals::Approval;
use super::govern::join_writes;
use super::{
    ErrorKind, GovernReply, Identity, ListQuery, Service, ServiceError, Transition, UNINDEXED_SCAN,
    approvals, authz, claims,
};
use crate::log::dpr::{self, Caller, DecisionRecord};
use crate::log::index::Term;
use crate::log::{StateWrites, entry};

/// Where an action stands.
///
/// JSON (v1 names): `allowed | denied | pending_approval | approved | executing | succeeded |
/// failed`. The socket's `action.get` keeps its names `permitted` and `deferred` for the first
/// and third ([`ActionStatus::socket_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionStatus {
    /// PERMIT by a rule.
    Allowed,
    /// DENY, or a deferred call whose approval was denied or expired.
    Denied,
    /// DEFER, waiting for a person.
    PendingApproval,
    /// A person approved it (or it is the PERMIT `APPROVAL_GRANTED` of a resumed call).
    Approved,
    /// Started.
    Executing,
    /// Ran and succeeded.
    Succeeded,
    /// Ran and failed.
    Failed,
}

impl ActionStatus {
    /// Every v1 name, for error messages.
    pub const ALL_NAMES: [&'static str; 7] =
        ["allowed", "denied", "pending_approval", "approved", "executing", "succeeded", "failed"];

    /// The v1 name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Allowed => "allowed",
            ActionStatus::Denied => "denied",
            ActionStatus::PendingApproval => "pending_approval",
            ActionStatus::Approved => "approved",
            ActionStatus::Executing => "executing",
            ActionStatus::Succeeded => "succeeded",
            ActionStatus::Failed => "failed",
        }
    }

    /// The socket's name (`permitted`, `deferred`, otherwise the v1 name).
    pub fn socket_name(self) -> &'static str {
        match self {
            ActionStatus::Allowed => "permitted",
            ActionStatus::PendingApproval => "deferred",
            other => other.as_str(),
        }
    }

    /// Reads a v1 or socket name.
    pub fn parse(name: &str) -> Option<ActionStatus> {
        Some(match name {
            "allowed" | "permitted" => ActionStatus::Allowed,
            "denied" => ActionStatus::Denied,
            "pending_approval" | "deferred" => ActionStatus::PendingApproval,
            "approved" => ActionStatus::Approved,
            "executing" => ActionStatus::Executing,
            "succeeded" => ActionStatus::Succeeded,
            "failed" => ActionStatus::Failed,
            _ => return None,
        })
    }
}

impl Serialize for ActionStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// An action as read from the log: its DPR and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionView {
    /// The DPR as stored.
    pub record: DecisionRecord,
    /// Its state now.
    pub status: ActionStatus,
}

impl ActionView {
    /// The action id.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// The DPR with its status under `status` (the socket's names: [`ActionStatus::socket_name`]).
    pub fn socket_json(&self) -> Value {
        let mut rec = self.record.to_json();
        if let Value::Object(m) = &mut rec {
            m.insert("status".into(), json!(self.status.socket_name()));
        }
        rec
    }
}

pub(super) fn record_value(record: &str) -> Value {
    serde_json::from_str(record).unwrap_or(Value::Null)
}

/// A stored decision, or an internal error: an entry the log found under an action id is
/// always a decision.
fn decision(record: &str) -> Result<DecisionRecord, ServiceError> {
    DecisionRecord::parse(record)
        .ok_or_else(|| ServiceError::internal("the entry under this action id is not a decision"))
}

impl Service {
    /// Where an action stands: its lifecycle row, else its decision (and, for a DEFER, its
    /// approval).
    pub fn action_status(&self, rec: &DecisionRecord) -> ActionStatus {
        if let Some(s) = self
            .state
            .log
            .state_get(&format!("action/{}", rec.id))
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice::<Value>(&v).ok())
            .and_then(|v| v.get("status").and_then(Value::as_str).and_then(ActionStatus::parse))
        {
            return s;
        }
        match (rec.effect, rec.reason_code) {
            (Effect::Permit, ReasonCode::ApprovalGranted) => ActionStatus::Approved,
            (Effect::Permit, _) => ActionStatus::Allowed,
            (Effect::Defer, _) => {
                let approval = rec.approval_id.as_deref().and_then(|a| self.state.approvals.get(a));
                match approval.map(|a| a.status) {
                    Some(approvals::Status::Approved | approvals::Status::Used) => ActionStatus::Approved,
                    Some(approvals::Status::Denied | approvals::Status::Expired) => ActionStatus::Denied,
                    _ => ActionStatus::PendingApproval,
                }
            }
            (Effect::Deny, _) => ActionStatus::Denied,
        }
    }

    /// The view of an action `govern` just decided, before any transition: its status from the
    /// decision, its record as the DPR holds it (built by `dpr::decision_entry`, redacted),
    /// without reading the log back.
    pub fn decided_view(&self, call: &Call, reply: &GovernReply, who: &Identity) -> ActionView {
        let d = &reply.decision;
        let status = match (d.effect, d.reason_code) {
            (Effect::Permit, ReasonCode::ApprovalGranted) => ActionStatus::Approved,
            (Effect::Permit, _) => ActionStatus::Allowed,
            (Effect::Defer, _) => ActionStatus::PendingApproval,
            (Effect::Deny, _) => ActionStatus::Denied,
        };
        // The record as the DPR was written (the same function built it), with the id and time
        // the log gave it (the log stamps entries from the system clock, not the service's).
        let mut record = DecisionRecord::new(
            &self.stored_call(call, d),
            d,
            who.caller(),
            reply.approval_id.as_deref(),
            self.state.log.redact_keys(),
        );
        record.id = reply.action_id.clone().unwrap_or_default();
        record.ts = entry::rfc3339(entry::now_ms());
        if !self.reads_everything(who) {
            record.shadow = None;
        }
        ActionView { record, status }
    }

    /// Resolves an action id or a unique prefix of 8+ characters to its DPR, if `who` may read it.
    /// A tokenless caller names it by its full id only ([`Service::names_actions_in_full`]).
    pub fn find_action(&self, id: &str, who: &Identity) -> Result<ActionView, ServiceError> {
        let rec = if self.names_actions_in_full(who) {
            match self.state.log.get_by_id(id)? {
                Some(record) => decision(&record)?,
                None => {
                    return Err(ServiceError::not_found(format!(
                        "no action `{id}` (a caller without a token names an action by its full id, as its \
                         submission answered)"
                    )));
                }
            }
        } else {
            self.find_record(id)?
        };
        if !self.may_read(who, rec.caller.as_ref(), &rec.agent_id) {
            // Not the caller's action: indistinguishable from an unknown one.
            return Err(ServiceError::not_found(format!("no action `{id}`")));
        }
        let mut rec = rec;
        if !self.reads_everything(who) {
            // Which rules are being tried in shadow mode is the operators' to know.
            rec.shadow = None;
        }
        let status = self.action_status(&rec);
        Ok(ActionView { record: rec, status })
    }

    /// An action's DPR by action id or prefix, or by the id (or prefix) of its approval.
    pub(super) fn find_record(&self, id: &str) -> Result<DecisionRecord, ServiceError> {
        match self.find_action_record(id) {
            Err(e) if e.kind == ErrorKind::NotFound => {
                let Ok(approval) = self.state.approvals.resolve(id) else { return Err(e) };
                let action = self.state.approvals.get(&approval).map(|a| a.action_id).unwrap_or_default();
                match self.state.log.get_by_id(&action)? {
                    Some(record) => decision(&record),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    /// An action's DPR by action id or a unique prefix of one.
    pub(super) fn find_action_record(&self, id: &str) -> Result<DecisionRecord, ServiceError> {
        if let Some(record) = self.state.log.get_by_id(id)? {
            return decision(&record);
        }
        if id.len() < 8 {
            return Err(ServiceError::not_found(format!(
                "no action `{id}` (prefixes need 8 or more characters)"
            )));
        }
        let matches = self.state.log.ids_with_prefix(&id.to_ascii_lowercase(), 10)?;
        match matches.as_slice() {
            [] => Err(ServiceError::not_found(format!("no action `{id}`"))),
            [one] => match self.state.log.get_by_id(one)? {
                Some(r) => decision(&r),
                None => Err(ServiceError::not_found(format!("no action `{id}`"))),
            },
            many => Err(ServiceError::conflict(format!(
                "action id prefix `{id}` is ambiguous: {}",
                many.join(", ")
            ))),
        }
    }

    /// An action's decision and every later entry about it.
    pub fn action_events(&self, id: &str, who: &Identity) -> Result<(ActionView, Vec<Value>), ServiceError> {
        let view = self.find_action(id, who)?;
        let action_id = view.id().to_owned();
        let approval_id = view.record.approval_id.clone();
        let seq = view.record.seq;
        let mut events = vec![view.record.to_json()];
        for record in self.state.log.events_about(seq)? {
            let v = record_value(&record);
            let about_action = v.get("action_id").and_then(Value::as_str) == Some(action_id.as_str());
            let about_approval = v.get("kind").and_then(Value::as_str) == Some("approval")
                && approval_id.is_some()
                && v.get("approval_id").and_then(Value::as_str) == approval_id.as_deref();
            if about_action || about_approval {
                events.push(v);
            }
        }
        Ok((view, events))
    }

    /// Decisions, newest first, filtered. A filter by agent, tool or effect (and a status of
    /// `pending_approval`) is answered from the log's index, through the whole log; time bounds
    /// and the cursor narrow the range of entries read. A listing with none of those (only a
    /// text search, a status, or nothing) reads the newest [`UNINDEXED_SCAN`] entries at most.
    pub fn action_list(&self, q: &ListQuery, who: &Identity) -> Result<Vec<ActionView>, ServiceError> {
        let log = &self.state.log;
        let (size, _) = log.head();
        let mut lo = log.first_seq()?;
        let mut hi = size;
        if let Some(since) = q.since_ms {
            lo = lo.max(log.first_seq_at_or_after(since)?);
        }
        if let Some(until) = q.until_ms {
            hi = hi.min(log.first_seq_at_or_after(until)?.saturating_sub(1));
        }
        if let Some(cursor) = &q.cursor {
            let seq = log.seq_of_id(cursor).ok_or_else(|| {
                ServiceError::invalid(
                    "cursor",
                    format!("`cursor` `{cursor}` is not an action id of this log"),
                )
            })?;
            hi = hi.min(seq.saturating_sub(1));
        }
        // The most selective indexed filter drives the scan; the others are checked per record.
        let term = if let Some(a) = &q.agent_id {
            Some(Term::Agent(a.clone()))
        } else if let Some(t) = &q.tool {
            Some(Term::Tool(t.clone()))
        } else if let Some(e) = q.effect {
            Some(Term::Effect(e.as_str().to_owned()))
        } else if q.status == Some(ActionStatus::PendingApproval) {
            Some(Term::Effect("DEFER".into()))
        } else {
            None
        };
        if term.is_none() {
            lo = lo.max(hi.saturating_sub(UNINDEXED_SCAN as u64 - 1));
        }
        let reader = self.reader(who);
        let everything = reader.sees_everything();
        let keep = |r: &DecisionRecord| {
            q.tool.as_deref().is_none_or(|t| r.tool == t)
                && q.effect.is_none_or(|e| r.effect == e)
                && q.agent_id.as_deref().is_none_or(|a| r.agent_id == a)
                && reader.sees(r.caller.as_ref(), Some(&r.agent_id))
        };
        // A search reads the record as this caller is shown it (no shadow-mode rule for agents).
        let matches_text = |record: &str| {
            q.text.as_deref().is_none_or(|t| reader.shown(record.to_owned()).to_lowercase().contains(t))
        };
        let mut out = Vec::new();
        let mut skipped = 0;
        log.scan_newest(term.as_ref().map(Term::key).as_deref(), lo, hi, |_, record| {
            if !matches_text(record) {
                return true;
            }
            if let Some(mut v) = DecisionRecord::parse(record).filter(|r| keep(r)) {
                if !everything {
                    v.shadow = None;
                }
                let status = self.action_status(&v);
                if q.status.is_none_or(|s| s == status) {
                    if skipped < q.offset {
                        skipped += 1;
                    } else {
                        out.push(ActionView { record: v, status });
                    }
                }
            }
            out.len() < q.limit
        })?;
        Ok(out)
    }

    /// `action.start` / `action.result`: `allowed|approved → executing → succeeded|failed`.
    /// Starting an approved deferred action uses its approval.
    pub async fn action_transition(
        &self,
        id: &str,
        transition: Transition,
        who: &Identity,
    ) -> Result<ActionView, ServiceError> {
        let view = self.find_action(id, who)?;
        let allowed = match who {
            Identity::Peer(p) => {
                view.record.caller.as_ref().and_then(Caller::uid) == Some(p.uid) || self.may_approve(who)
            }
            // find_action checked that the token (or tokenless caller) may read it
            Identity::Token(_) | Identity::Anonymous => true,
            Identity::Unknown => false,
        };
        if !allowed {
            return Err(ServiceError::not_authorized(
                "not authorized: only the agent's uid or an approver may report on this action",
            ));
        }
        let action_id = view.id().to_owned();
        // Claimed (others wait) and carried out in a task of its own: a caller that goes away
        // leaves neither a claim nor a half-applied transition behind.
        let (svc, who) = (self.clone(), who.clone());
        claims::detached(async move {
            let _claim = svc.action_claims.claim(&action_id).await;
            svc.transition_claimed(&action_id, &view, transition, &who).await
        })
        .await
    }

    pub(super) async fn transition_claimed(
        &self,
        action_id: &str,
        view: &ActionView,
        transition: Transition,
        who: &Identity,
    ) -> Result<ActionView, ServiceError> {
        // Nothing starts while the kill switch stops this agent, approved or not.
        if matches!(transition, Transition::Start)
            && let Some(kill) = self.state.kill.stopping(&view.record.agent_id)
        {
            return Err(ServiceError::conflict(format!(
                "action `{action_id}` cannot start: {}",
                kill.reason_text()
            )));
        }
        // Re-read under the claim: another transition may have just committed.
        let current = self.action_status(&view.record);
        let is_deferred = view.record.effect == Effect::Defer;
        let next = match (&transition, current) {
            (Transition::Start, ActionStatus::Allowed | ActionStatus::Approved) => ActionStatus::Executing,
            (Transition::Result { success: true, .. }, ActionStatus::Executing) => ActionStatus::Succeeded,
            (Transition::Result { success: false, .. }, ActionStatus::Executing) => ActionStatus::Failed,
            (Transition::Start, other) => {
                return Err(ServiceError::conflict(format!(
                    "action `{action_id}` is {}: only a permitted or approved action can start",
                    other.socket_name()
                )));
            }
            (Transition::Result { .. }, other) => {
                return Err(ServiceError::conflict(format!(
                    "action `{action_id}` is {}: only an executing action can report a result",
                    other.socket_name()
                )));
            }
        };
        let mut fields = json!({"action_id": action_id, "status": next.as_str(), "agent_id": view.record.agent_id, "by": who.caller()});
        if let (Value::Object(m), Transition::Result { error, result, .. }) = (&mut fields, &transition) {
            if let Some(e) = error {
                m.insert("error".into(), json!(e.chars().take(1024).collect::<String>()));
            }
            if let Some(r) = result {
                let text = canonical_json(r)
                    .map_err(|e| ServiceError::invalid("result", format!("`result`: {e}")))?;
                m.insert("result_hash".into(), json!(faramesh_proto::canonical::sha256_hex(text.as_bytes())));
                m.insert("result_size".into(), json!(text.len()));
                // The summary kept in the log has what any detector finds redacted, as params are.
                let key = self.state.log.key().redaction_key();
                let token = |d: crate::policy::detect::Detector, v: &str| {
                    crate::log::entry::redaction_token(&key, d.name(), v)
                };
                let redacted =
                    crate::policy::detect::redact(r, crate::policy::detect::DetectSet::all(), &token);
                let text = canonical_json(&redacted)
                    .map_err(|e| ServiceError::invalid("result", format!("`result`: {e}")))?;
                let mut cut = text.len().min(1024);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                m.insert("result_summary".into(), json!(&text[..cut]));
            }
        }
        let key = format!("action/{action_id}");
        let value = json!({"status": next.as_str()}).to_string().into_bytes();
        let action_row: StateWrites = Box::new(move |_, _| vec![(key, Some(value))]);
        if matches!(transition, Transition::Start) && is_deferred {
            // The v1 flow: a deferred action, once approved, is started in place; that uses the
            // approval (once), like a resumed call would.
            let approval_id = view.record.approval_id.clone().unwrap_or_default();
            if let Value::Object(m) = &mut fields {
                m.insert("approval_id".into(), json!(approval_id));
            }
            let body = dpr::event_entry("action", fields);
            let (record, action_id) = (view.record.clone(), action_id.to_owned());
            let who = who.clone();
            return self
                .with_approval(&approval_id, move |svc: Service, a: Approval| async move {
                    // Using an approval is a PERMIT: only the caller that made the call, and only
                    // an approval someone else gave.
                    if !authz::made_the_call(&a, &who) {
                        return (
                            None,
                            Err(ServiceError::not_authorized(format!(
                                "not authorized: action `{action_id}` was deferred for another caller; only the \
                                 caller that made it may start it"
                            ))),
                        );
                    }
                    if a.status == approvals::Status::Approved
                        && let Err(why) = crate::permit::distinct(
                            a.requested_by.as_ref(),
                            a.decided_by.as_ref(),
                            svc.same_uid_ok(),
                        )
                    {
                        return (
                            None,
                            Err(ServiceError::not_authorized(format!("not authorized: {why}"))),
                        );
                    }
                    if a.status != approvals::Status::Approved || svc.clock.now_ms() > a.expires_ms {
                        let why = if a.status == approvals::Status::Used {
                            "already used"
                        } else {
                            a.status.as_str()
                        };
                        return (
                            None,
                            Err(ServiceError::conflict(format!(
                                "action `{action_id}`: its approval is {why}"
                            ))),
                        );
                    }
                    // Approved with edits: only the edited call may run, by resuming with it.
                    if a.edit.is_some() {
                        return (
                            None,
                            Err(ServiceError::conflict(format!(
                                "action `{action_id}` was approved with edited arguments: it cannot start as \
                                 proposed; resume with the approval's `edit.params` (govern with `approval_id`)"
                            ))),
                        );
                    }
                    let mut used = a;
                    used.status = approvals::Status::Used;
                    let approval_row = match approvals::state_write(&used, false) {
                        Ok(w) => w,
                        Err(e) => return (None, Err(e)),
                    };
                    let writes = join_writes(Some(action_row), Some(approval_row));
                    match svc.commit(body, writes).await {
                        Ok(_) => (Some(used), Ok(ActionView { record, status: next })),
                        Err(e) => (None, Err(e)),
                    }
                })
                .await?;
        }
        let body = dpr::event_entry("action", fields);
        self.commit(body, Some(action_row))
            .await
            .map_err(|e| ServiceError::internal(format!("cannot record the transition: {}", e.message)))?;
        Ok(ActionView { record: view.record.clone(), status: next })
    }
}
