//! The approval operations: list, approve or deny (by approval id or action id), wait, expire.

use faramesh_proto::Effect;
use serde_json::json;

use crate::log::dpr;

use super::approvals::Approval;
use super::{
    ActionView, ErrorKind, Identity, Service, ServiceError, approvals, authz, claims, govern, grants, notify,
};

impl Service {
    /// Marks a claimed pending approval whose time is up as expired (recorded).
    pub(super) async fn expire_claimed(&self, a: Approval) -> Result<Approval, ServiceError> {
        if a.status != approvals::Status::Pending || self.clock.now_ms() <= a.expires_ms {
            return Ok(a);
        }
        let mut expired = a;
        expired.status = approvals::Status::Expired;
        let body = approvals::transition_entry(&expired, None);
        let notes = self.approval_notes(&expired);
        let queued = notes.len();
        let writes = govern::join_writes(
            Some(approvals::state_write(&expired, false)?),
            notify::writes(notes, false)?,
        );
        self.commit(body, writes).await?;
        self.queued_notes(queued);
        Ok(expired)
    }

    /// Claims an approval, applies a due expiry, runs `f` (which may commit), releases it with
    /// what `f` returns. All of it runs in a task of its own ([`claims::detached`]): a caller
    /// that goes away leaves no claim behind and no commit unapplied to memory.
    pub(super) async fn with_approval<T, F, Fut>(&self, id: &str, f: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(Service, Approval) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = (Option<Approval>, T)> + Send + 'static,
    {
        let svc = self.clone();
        let id = id.to_owned();
        claims::detached(async move {
            let book = &svc.state.approvals;
            let Some((claim, claimed)) = book.claim(&id).await else {
                return Err(ServiceError::not_found(format!("no approval `{id}`")));
            };
            let before = claimed.clone();
            // On an error the claim is dropped: the approval is freed unchanged.
            let current = svc.expire_claimed(claimed).await?;
            let expired = (current != before).then(|| current.clone());
            let (updated, out) = f(svc.clone(), current).await;
            book.release(claim, updated.or(expired));
            Ok(out)
        })
        .await
    }

    /// Resolves an approval id or unique 8+ prefix.
    /// Takes what a person copied from `pending`, `list` or the dashboard: an approval id, the
    /// deferred action's id, or a unique prefix (8+ characters) of either.
    pub fn resolve_approval(&self, id: &str) -> Result<String, ServiceError> {
        let by_action = || -> Result<Option<String>, ServiceError> {
            let rec = match self.find_action_record(id) {
                Ok(rec) => rec,
                Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            match &rec.approval_id {
                Some(a) if rec.effect == Effect::Defer => Ok(Some(a.clone())),
                _ => Err(ServiceError::conflict(format!(
                    "action `{}` is {}: it awaits no approval",
                    rec.id,
                    self.action_status(&rec).socket_name()
                ))),
            }
        };
        match self.state.approvals.resolve(id) {
            Ok(full) if full == id => Ok(full),
            // A prefix: unique only if it names no other deferred action.
            Ok(full) => match by_action() {
                Ok(Some(other)) if other != full => Err(ServiceError::conflict(format!(
                    "id prefix `{id}` is ambiguous: approval {full} and the action awaiting approval {other}"
                ))),
                _ => Ok(full),
            },
            Err(Some(many)) => Err(ServiceError::conflict(format!(
                "approval id prefix `{id}` is ambiguous: {}",
                many.join(", ")
            ))),
            Err(None) => by_action()?
                .ok_or_else(|| ServiceError::not_found(format!("no approval or deferred action `{id}`"))),
        }
    }

    /// Expires every pending approval whose time is up.
    pub(super) async fn expire_due(&self) -> Result<(), ServiceError> {
        let now = self.clock.now_ms();
        let due: Vec<String> = self
            .state
            .approvals
            .all()
            .into_iter()
            .filter(|a| a.status == approvals::Status::Pending && now > a.expires_ms)
            .map(|a| a.approval_id)
            .collect();
        for id in due {
            self.with_approval(&id, |_, _| async { (None, ()) }).await?;
        }
        Ok(())
    }

    /// Pending approvals (or all), oldest first: those `who` may see (everything for those who
    /// read everything, else the caller's own deferred calls).
    pub async fn approval_list(&self, all: bool, who: &Identity) -> Result<Vec<Approval>, ServiceError> {
        self.expire_due().await?;
        let book = &self.state.approvals;
        let everything = self.reads_everything(who);
        let mut list: Vec<Approval> = if all { book.everything() } else { book.all() }
            .into_iter()
            .filter(|a| all || a.status == approvals::Status::Pending)
            .filter(|a| everything || authz::made_the_call(a, who))
            .map(|a| a.shown(authz::made_the_call(&a, who)))
            .collect();
        list.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(list)
    }

    /// Approves or denies a pending approval.
    pub async fn approval_decide(
        &self,
        id: &str,
        approve: bool,
        reason: Option<String>,
        who: &Identity,
    ) -> Result<Approval, ServiceError> {
        self.decide_approval(id, approve, reason, None, None, who).await
    }

    /// Approves or denies a pending approval; `edit` (with the edited params as the log keeps
    /// them) approves the edited call instead, or refuses it when the policy denies that call.
    pub(super) async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        reason: Option<String>,
        edit: Option<(approvals::Edit, serde_json::Value)>,
        signed: Option<serde_json::Value>,
        who: &Identity,
    ) -> Result<Approval, ServiceError> {
        if !self.may_approve(who) {
            return Err(ServiceError::not_authorized(match who {
                Identity::Token(t) => format!("not authorized: token `{}` is not an approver token", t.name),
                other => format!(
                    "not authorized: {} is not an approver (root, the daemon's uid {}, or `approvals.approvers`)",
                    other.describe(),
                    self.state.own_uid
                ),
            }));
        }
        let id = self.resolve_approval(id)?;
        let who = who.clone();
        self.with_approval(&id.clone(), move |svc: Service, current: Approval| async move {
            let refusal = crate::permit::distinct(
                current.requested_by.as_ref(),
                who.caller().as_ref(),
                svc.same_uid_ok(),
            )
            .err()
            .map(|why| format!("not authorized: {why}"));
            if let Some(why) = refusal {
                return (None, Err(ServiceError::not_authorized(why)));
            }
            if current.status != approvals::Status::Pending {
                return (
                    None,
                    Err(ServiceError::conflict(format!(
                        "approval `{id}` is already {}",
                        current.status.as_str()
                    ))),
                );
            }
            let mut next = current;
            // A rule that asks for several approvers counts distinct signed approvals; the call
            // runs on the last. A denial by any one approver denies.
            if approve && next.approvals_required > 1 {
                let n = next.approvals_required;
                let Some(sig) = signed.as_ref() else {
                    return (
                        None,
                        Err(ServiceError::not_authorized(format!(
                            "not authorized: this call needs {n} approvers who each sign with a key the policy \
                             lists (`faramesh approve ID --sign`); an unsigned approval does not count ({})",
                            next.progress()
                        ))),
                    );
                };
                if edit.is_some() {
                    return (
                        None,
                        Err(ServiceError::conflict("an approval that needs several signed approvers is not edited")),
                    );
                }
                let name = sig["approver"].as_str().unwrap_or_default().to_owned();
                // Only keys the policy in force lists count: a signature by a key removed since
                // (or listed under another name now) is dropped, and one key counts once.
                let listed: Vec<String> =
                    svc.state.policy.load().policy.approvals.keys.iter().map(|k| k.text.clone()).collect();
                next.signatures.retain(|s| s["key"].as_str().is_some_and(|k| listed.iter().any(|l| l == k)));
                if let Some(earlier) = next.signatures.iter().find(|s| s["key"] == sig["key"]) {
                    return (
                        None,
                        Err(ServiceError::conflict(format!(
                            "this key has already signed approval `{id}` (as `{}`): it needs another approver ({})",
                            earlier["approver"].as_str().unwrap_or("?"),
                            next.progress()
                        ))),
                    );
                }
                if next.signers().contains(&name.as_str()) {
                    return (
                        None,
                        Err(ServiceError::conflict(format!(
                            "`{name}` has already signed approval `{id}`: it needs another approver ({})",
                            next.progress()
                        ))),
                    );
                }
                next.signatures.push(sig.clone());
                if (next.signatures.len() as u64) < u64::from(n) {
                    let body = dpr::event_entry(
                        "approval_signed",
                        json!({
                            "approval_id": next.approval_id,
                            "action_id": next.action_id,
                            "agent_id": next.agent_id,
                            "request_hash": next.request_hash,
                            "approver": name,
                            "signatures": next.signatures.len(),
                            "approvals_required": n,
                            "by": who.caller(),
                            "signed": sig,
                        }),
                    );
                    let writes = match approvals::state_write(&next, false) {
                        Ok(w) => Some(w),
                        Err(e) => return (None, Err(e)),
                    };
                    return match svc.commit(body, writes).await {
                        Ok(_) => (Some(next.clone()), Ok(next)),
                        Err(e) => (None, Err(e)),
                    };
                }
            }
            next.status = if approve { approvals::Status::Approved } else { approvals::Status::Denied };
            next.decided_by = who.caller();
            next.reason = reason;
            let mut logged_edit = None;
            if let Some((edit, logged_params)) = edit {
                if edit.effect == Effect::Deny {
                    // The policy refuses the edited call: so is the approval.
                    next.status = approvals::Status::Denied;
                    next.reason = Some(format!(
                        "the edited call is denied by the policy{}: {}",
                        edit.rule_id.as_ref().map(|r| format!(" (rule `{r}`)")).unwrap_or_default(),
                        edit.reason
                    ));
                }
                let mut shown = serde_json::to_value(&edit).unwrap_or(serde_json::Value::Null);
                if let serde_json::Value::Object(m) = &mut shown {
                    m.insert("params".into(), logged_params);
                    m.remove("redacted_params");
                }
                logged_edit = Some(shown);
                next.edit = Some(edit);
            }
            let mut body = approvals::transition_entry(&next, who.caller().as_ref());
            if let Some(shown) = logged_edit {
                body.insert("edit".into(), shown);
            }
            // A signed decision keeps its statement and signature in the log.
            if let Some(signed) = signed {
                body.insert("signed".into(), signed);
            }
            if next.approvals_required > 1 && next.status == approvals::Status::Approved {
                body.insert("signatures".into(), json!(next.signatures));
            }
            let notes = svc.approval_notes(&next);
            let queued = notes.len();
            let writes = match (approvals::state_write(&next, false), notify::writes(notes, false)) {
                (Ok(approval), Ok(notes)) => govern::join_writes(Some(approval), notes),
                (Err(e), _) | (_, Err(e)) => return (None, Err(e)),
            };
            match svc.commit(body, writes).await {
                Ok(_) => {
                    svc.queued_notes(queued);
                    (Some(next.clone()), Ok(next))
                }
                Err(e) => (None, Err(e)),
            }
        })
        .await?
    }

    /// Approves or denies the pending approval of a deferred action, by the action's id (the v1
    /// API and the dashboard). `approval_token`, when given, must be that approval's id.
    pub async fn approve_action(
        &self,
        action_id: &str,
        answer: grants::ApprovalAnswer,
        approval_token: Option<&str>,
        who: &Identity,
    ) -> Result<ActionView, ServiceError> {
        // A signed statement carries its approver's authority: whoever may read the action may
        // hand it in.
        if answer.signed.is_none() && !self.may_approve(who) {
            return Err(ServiceError::not_authorized(format!(
                "not authorized: {} may not approve or deny",
                who.describe()
            )));
        }
        let view = self.find_action(action_id, who)?;
        let approval_id = match &view.record.approval_id {
            Some(a) if view.record.effect == Effect::Defer => a.clone(),
            _ => {
                return Err(ServiceError::conflict(format!(
                    "action `{}` is {}: it awaits no approval",
                    view.id(),
                    view.status.as_str()
                )));
            }
        };
        if approval_token.is_some_and(|t| t != approval_id) {
            return Err(ServiceError::invalid("token", "`token` does not match this action's approval"));
        }
        self.answer_approval(&approval_id, answer, who).await?;
        self.find_action(view.id(), who)
    }

    /// Waits until the approval is decided or expires, or `timeout` passes: `(approval,
    /// timed_out)`. Only for those who may see it listed ([`Service::may_see_approval`]: those
    /// who read everything, and the caller that made the deferred call); to anyone else it is
    /// absent, as an unknown id is.
    pub async fn approval_wait(
        &self,
        id: &str,
        timeout: std::time::Duration,
        who: &Identity,
    ) -> Result<(Approval, bool), ServiceError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let hidden = || ServiceError::not_found(format!("no approval `{id}`"));
        let everything = self.reads_everything(who);
        let id = match self.resolve_approval(id) {
            Ok(full) => full,
            Err(e) if everything => return Err(e),
            // Ambiguous prefixes and actions that await nothing say nothing to others.
            Err(_) => return Err(hidden()),
        };
        if !everything && !self.state.approvals.get(&id).is_some_and(|a| self.may_see_approval(who, &a)) {
            return Err(hidden());
        }
        loop {
            let notified = self.state.approvals.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let Some(mut current) = self.state.approvals.get(&id) else {
                return Err(ServiceError::not_found(format!("no approval `{id}`")));
            };
            if current.status == approvals::Status::Pending && self.clock.now_ms() > current.expires_ms {
                // Due: claim it so the expiry is recorded once.
                current = self.with_approval(&id, |_, a: Approval| async move { (None, a) }).await?;
            }
            let clear = authz::made_the_call(&current, who);
            if current.status != approvals::Status::Pending {
                return Ok((current.shown(clear), false));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok((current.shown(clear), true));
            }
            let until_expiry = current.expires_ms.saturating_sub(self.clock.now_ms()) + 5;
            let wake = deadline.min(now + std::time::Duration::from_millis(until_expiry));
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}
