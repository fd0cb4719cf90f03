//! The kill switch (`docs/operations.md#the-kill-switch`): from the moment an approver engages
//! it, every call (of one agent, or of all) is DENY `KILL_SWITCH`, the pending approvals it
//! covers are denied, and grants give nothing until it is lifted (they are not revoked: a grant
//! still live then applies again). Engaging and lifting are signed `kill_switch` entries, with
//! a state row (`kill/all`, `kill/agent/<id>`) that a restart reads back. A file works too: while
//! the kill file (`serve --kill-file`, `/run/faramesh/kill` by default) exists, every call is
//! DENY, for operators whose only access is a file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::approvals::Status;
use super::{Identity, Service, ServiceError, state_row, to_json};
use crate::log::dpr::{self, Caller};
use crate::log::{StateWrites, entry};

/// The kill file `faramesh serve` watches unless told another.
pub const DEFAULT_FILE: &str = "/run/faramesh/kill";

/// One engaged kill switch (a state row).
///
/// JSON: `{"agent_id": "…"|null, "reason": "…"|null, "by": {caller}|null, "since": "…"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kill {
    /// The agent it stops; `None`: every agent.
    pub agent_id: Option<String>,
    /// Why, as the person said.
    pub reason: Option<String>,
    /// Who engaged it (`None`: the kill file).
    pub by: Option<Caller>,
    /// When (RFC 3339).
    pub since: String,
}

impl Kill {
    /// The decision's reason.
    pub(super) fn reason_text(&self) -> String {
        let whom = match &self.agent_id {
            Some(a) => format!("for agent `{a}`"),
            None => "for every agent".to_owned(),
        };
        let by = match &self.by {
            Some(Caller::Peer(p)) => format!(" by uid {}", p.uid),
            Some(Caller::Token(t)) => format!(" by token `{}`", t.token),
            None => String::new(),
        };
        let why = self.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
        format!(
            "the kill switch is engaged {whom} since {}{by}{why}; an approver lifts it with `faramesh kill --lift`",
            self.since
        )
    }
}

fn row_key(agent_id: Option<&str>) -> String {
    match agent_id {
        Some(a) => format!("kill/agent/{a}"),
        None => "kill/all".to_owned(),
    }
}

/// The engaged kill switches, in memory (loaded from the state rows at start), and the file.
#[derive(Debug, Default)]
pub struct KillSwitch {
    /// Whether any switch is engaged (the one read on every call while none is).
    any: AtomicBool,
    /// By agent id; `None`: all.
    engaged: RwLock<HashMap<Option<String>, Kill>>,
    /// The kill file, if one is watched.
    file: Option<PathBuf>,
}

impl KillSwitch {
    /// The switches the log's state rows hold, and the kill file to watch.
    pub fn load(log: &crate::log::Log, file: Option<PathBuf>) -> Result<KillSwitch, crate::log::LogError> {
        let mut engaged = HashMap::new();
        for (_, v) in log.state_scan("kill/")? {
            if let Ok(k) = serde_json::from_slice::<Kill>(&v) {
                engaged.insert(k.agent_id.clone(), k);
            }
        }
        Ok(KillSwitch { any: AtomicBool::new(!engaged.is_empty()), engaged: RwLock::new(engaged), file })
    }

    /// The switch that stops `agent_id`'s calls, if one does.
    pub fn stopping(&self, agent_id: &str) -> Option<Kill> {
        if self.any.load(Ordering::Acquire) {
            // A lock that cannot be read stops everything: fail closed.
            let Ok(engaged) = self.engaged.read() else {
                return Some(Kill {
                    agent_id: None,
                    reason: Some("the kill switch's state cannot be read".into()),
                    by: None,
                    since: String::new(),
                });
            };
            if let Some(k) = engaged.get(&None).or_else(|| engaged.get(&Some(agent_id.to_owned()))) {
                return Some(k.clone());
            }
        }
        let file = self.file.as_ref()?;
        let meta = std::fs::symlink_metadata(file).ok()?;
        let since = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| entry::rfc3339(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
            .unwrap_or_default();
        Some(Kill {
            agent_id: None,
            reason: Some(format!("the kill file `{}` is present", file.display())),
            by: None,
            since,
        })
    }

    fn set(&self, kill: Option<Kill>, agent_id: Option<String>) {
        if let Ok(mut engaged) = self.engaged.write() {
            match kill {
                Some(k) => {
                    engaged.insert(agent_id, k);
                }
                None => {
                    engaged.remove(&agent_id);
                }
            }
            self.any.store(!engaged.is_empty(), Ordering::Release);
        }
    }

    /// What `status` says: the switches engaged, the kill file and whether it is present.
    pub fn status(&self) -> Value {
        let mut engaged: Vec<Kill> =
            self.engaged.read().map(|e| e.values().cloned().collect()).unwrap_or_default();
        engaged.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        let file_present = self.file.as_ref().is_some_and(|f| std::fs::symlink_metadata(f).is_ok());
        json!({
            "engaged": !engaged.is_empty() || file_present,
            "switches": engaged,
            "file": self.file.as_ref().map(|f| f.display().to_string()),
            "file_present": file_present,
        })
    }
}

impl Service {
    /// `kill.engage`: stops every call of `agent_id` (all agents when `None`) from now on, and
    /// denies the pending approvals it covers (root, the daemon's uid, approvers).
    pub async fn kill_engage(
        &self,
        agent_id: Option<String>,
        reason: Option<String>,
        who: &Identity,
    ) -> Result<Value, ServiceError> {
        self.may_engage_kill(who)?;
        if let Some(a) = &agent_id
            && !faramesh_proto::is_identifier(a)
        {
            return Err(ServiceError::invalid("agent_id", format!("`agent_id` `{a}` is not a name")));
        }
        let kill = Kill {
            agent_id: agent_id.clone(),
            reason,
            by: who.caller(),
            since: entry::rfc3339(self.clock.now_ms()),
        };
        let fields =
            json!({"state": "engaged", "agent_id": kill.agent_id, "reason": kill.reason, "by": kill.by});
        let row = state_row(row_key(agent_id.as_deref()), &kill)?;
        // In force at once, before the entry commits: no call slips through meanwhile. If the
        // entry cannot be committed, the switch is as it was and the engager is told.
        let previous = self.state.kill.engaged.read().ok().and_then(|e| e.get(&agent_id).cloned());
        self.state.kill.set(Some(kill), agent_id.clone());
        if let Err(e) = self.record_kill("kill.engaged", &fields, row).await {
            self.state.kill.set(previous, agent_id.clone());
            return Err(e);
        }
        tracing::warn!(agent = agent_id.as_deref().unwrap_or("*"), "kill switch engaged");
        // The calls waiting for a person are denied: nobody is to start them now.
        let mut denied = Vec::new();
        for a in self.state.approvals.all() {
            let covered = agent_id.as_ref().is_none_or(|id| *id == a.agent_id);
            if a.status == Status::Pending && covered {
                let why = Some("the kill switch was engaged".to_owned());
                match self.approval_decide(&a.approval_id, false, why, who).await {
                    Ok(_) => denied.push(a.approval_id.clone()),
                    Err(e) => {
                        tracing::warn!(approval = %a.approval_id, error = %e.message, "a pending approval was not denied")
                    }
                }
            }
        }
        Ok(json!({"engaged": true, "agent_id": agent_id, "denied_approvals": denied}))
    }

    /// `kill.lift`: lifts the switch engaged for `agent_id` (for all when `None`).
    pub async fn kill_lift(&self, agent_id: Option<String>, who: &Identity) -> Result<Value, ServiceError> {
        self.may_engage_kill(who)?;
        let was = self.state.kill.engaged.read().ok().and_then(|e| e.get(&agent_id).cloned());
        if was.is_none() {
            return Err(ServiceError::not_found(match &agent_id {
                Some(a) => format!("no kill switch is engaged for agent `{a}`"),
                None => "the kill switch for every agent is not engaged".to_owned(),
            }));
        }
        let fields = json!({"state": "lifted", "agent_id": agent_id, "by": who.caller()});
        // Lifted only once the entry is committed.
        self.record_kill("kill.lifted", &fields, (row_key(agent_id.as_deref()), None)).await?;
        self.state.kill.set(None, agent_id.clone());
        tracing::warn!(agent = agent_id.as_deref().unwrap_or("*"), "kill switch lifted");
        let file_present = self.state.kill.status()["file_present"] == true;
        Ok(json!({"lifted": true, "agent_id": agent_id, "kill_file_present": file_present}))
    }

    /// Commits a `kill_switch` entry with its state row and the notifications it queues.
    async fn record_kill(
        &self,
        event: &str,
        fields: &Value,
        row: (String, Option<Vec<u8>>),
    ) -> Result<(), ServiceError> {
        let notes = self.kill_notes(event, fields);
        let queued = notes.len();
        let outbox = super::notify::writes(notes, false)?;
        let writes: StateWrites = Box::new(move |seq, id| {
            let mut rows = vec![row];
            if let Some(n) = outbox {
                rows.extend(n(seq, id));
            }
            rows
        });
        self.commit(dpr::event_entry("kill_switch", to_json("the kill switch", fields)?), Some(writes))
            .await?;
        self.queued_notes(queued);
        Ok(())
    }

    fn may_engage_kill(&self, who: &Identity) -> Result<(), ServiceError> {
        if self.may_approve(who) {
            Ok(())
        } else {
            Err(ServiceError::not_authorized(format!(
                "not authorized: {} may not engage or lift the kill switch (root, the daemon's uid or an approver may)",
                who.describe()
            )))
        }
    }

    /// The notifications a kill switch change queues: on every channel the policy names.
    fn kill_notes(&self, event: &str, fields: &Value) -> Vec<super::notify::Note> {
        let loaded = self.state.policy.load();
        let channels: Vec<String> = loaded.policy.notifications.channels.keys().cloned().collect();
        super::notify::rows(&channels, event, fields.clone(), self.clock.now_ms())
    }

    /// The DENY of a call a kill switch stops, if one does.
    pub(super) fn killed(
        &self,
        call: &faramesh_proto::Call,
        decision: &faramesh_proto::Decision,
    ) -> Option<faramesh_proto::Decision> {
        let kill = self.state.kill.stopping(&call.agent_id)?;
        let base = faramesh_proto::Decision { rule_id: None, rule_ref: None, ..decision.clone() };
        Some(super::govern::deny_with(
            base,
            faramesh_proto::ReasonCode::KillSwitch,
            kill.reason_text(),
            Some("kill_switch".into()),
            None,
        ))
    }
}

#[cfg(test)]
mod tests {
    use faramesh_proto::{Effect, ReasonCode};
    use serde_json::json;

    use super::super::tests::service;
    use crate::log::dpr::PeerCred;
    use crate::service::{CallRequest, ErrorKind, Identity, Peer};

    const POLICY: &str = "version: 1\nrules:\n  - match: { tool: http }\n    allow: true\n";

    fn peer(uid: u32) -> Identity {
        Identity::Peer(Peer::new(PeerCred { uid, gid: uid, pid: 1 }))
    }

    fn call(agent: &str) -> CallRequest {
        CallRequest::from_value(&json!({"agent_id": agent, "tool": "http", "operation": "get"})).unwrap()
    }

    /// Only those who may approve engage or lift the kill switch; an agent's uid may not.
    #[tokio::test]
    async fn only_approvers_engage_or_lift_the_kill_switch() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path(), POLICY);
        let e = s.kill_engage(None, None, &peer(1000)).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotAuthorized, "{}", e.message);
        assert_eq!(
            s.govern(call("bot"), &peer(1000)).await.unwrap().decision.reason_code,
            ReasonCode::PolicyPermit
        );
        s.kill_engage(None, Some("stop".into()), &peer(0)).await.unwrap();
        let d = s.govern(call("bot"), &peer(1000)).await.unwrap().decision;
        assert_eq!((d.effect, d.reason_code), (Effect::Deny, ReasonCode::KillSwitch));
        assert_eq!(s.kill_lift(None, &peer(1000)).await.unwrap_err().kind, ErrorKind::NotAuthorized);
        s.kill_lift(None, &peer(0)).await.unwrap();
        assert_eq!(
            s.govern(call("bot"), &peer(1000)).await.unwrap().decision.reason_code,
            ReasonCode::PolicyPermit
        );
    }

    /// The kill file stops every call while it exists, whatever the state rows say.
    #[tokio::test]
    async fn the_kill_file_stops_every_call() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path(), POLICY);
        std::fs::write(dir.path().join("kill"), "").unwrap();
        let d = s.govern(call("bot"), &peer(1000)).await.unwrap().decision;
        assert_eq!(d.reason_code, ReasonCode::KillSwitch);
        assert!(d.reason.contains("kill file"), "{}", d.reason);
        std::fs::remove_file(dir.path().join("kill")).unwrap();
        assert_eq!(
            s.govern(call("bot"), &peer(1000)).await.unwrap().decision.reason_code,
            ReasonCode::PolicyPermit
        );
    }
}
