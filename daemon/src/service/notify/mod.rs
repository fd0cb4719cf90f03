//! Notifications that reach people, from an outbox that loses nothing (`docs/notifications.md`).
//!
//! A decision that should be announced (a DEFER, a DENY at or above `deny_min_risk`, an approval
//! decided or expired) writes one `outbox/<id>` state row per channel **in the same commit** as
//! its log entry. The sender task delivers each row at least once: due rows are posted (a
//! Standard Webhooks signed JSON POST, or a Slack Block Kit message), retried with exponential
//! backoff, and removed with a `notification` entry saying `delivered` or, after
//! its channel's `attempts` (8 unless the policy says otherwise), `failed`. A SIGKILL between the commit and the delivery, a receiver that is
//! down, or a restart loses nothing: the rows are still there. Each delivery carries the row's id
//! (`webhook-id`), so receivers can drop duplicates.

use crate::service::backoff::Backoff;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use faramesh_proto::{Call, Decision, Effect};
use serde_json::{Value, json};

use super::approvals::{self, Approval};
use super::outbound::{Failure, Notifier};
use super::{Service, ServiceError, to_json};
use crate::log::{StateWrites, dpr, entry};
use crate::policy;

/// The first retry waits 1 s; each later one twice as long, up to 5 minutes.
const BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
/// The longest one delivery may take before it counts as failed (the adapters give up sooner).
const DELIVERY_LIMIT: Duration = Duration::from_secs(60);

/// A queued notification (the `outbox/<id>` row).
///
/// JSON: `{"id", "channel", "event", "created_ms", "data": {…}}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Note {
    /// Stable across retries and restarts (`webhook-id`).
    pub id: String,
    /// The channel's name in the policy.
    pub channel: String,
    /// `approval.requested`, `approval.decided`, `decision.denied`.
    pub event: String,
    /// When it was queued (ms since the epoch).
    pub created_ms: u64,
    /// What it says.
    pub data: Value,
}

/// Outbox counters (metrics and `status`).
#[derive(Debug, Default)]
pub struct OutboxStats {
    /// Queued since start.
    pub queued: AtomicU64,
    /// Delivered since start.
    pub delivered: AtomicU64,
    /// Given up since start.
    pub failed: AtomicU64,
    /// Rows waiting now.
    pub waiting: AtomicU64,
    /// Age of the oldest waiting row (ms), at the sender's last pass.
    pub oldest_ms: AtomicU64,
    /// The last delivery error.
    pub last_error: std::sync::Mutex<Option<String>>,
}

/// The channels a DEFER by `rule_id` is announced on: the rule's `notify:`, else `on_defer`.
pub fn defer_channels(policy: &policy::Policy, rule_id: Option<&str>) -> Vec<String> {
    let rule = rule_id.and_then(|id| {
        policy
            .rules
            .rules
            .iter()
            .chain(policy.agents.values().flat_map(|p| p.rules.rules.iter()))
            .find(|r| r.id == id)
    });
    match rule {
        Some(r) if !r.notify.is_empty() => r.notify.clone(),
        _ => policy.notifications.on_defer.clone(),
    }
}

/// A one-line summary of a call's arguments: the command, URL, path or amount when it has one.
pub fn summary(params: &Value) -> String {
    for key in ["cmd", "command", "url", "path", "file_path", "amount", "query", "to"] {
        if let Some(v) = params.get(key) {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            return format!("{key}: {}", text.chars().take(200).collect::<String>());
        }
    }
    let text = params.to_string();
    if text == "{}" { String::new() } else { text.chars().take(200).collect() }
}

/// The state rows queueing `event` on each of `channels` (ids from the entry's seq, so the same
/// commit always names the same notifications).
pub fn rows(channels: &[String], event: &str, data: Value, now: u64) -> Vec<Note> {
    channels
        .iter()
        .map(|c| Note {
            id: String::new(),
            channel: c.clone(),
            event: event.to_owned(),
            created_ms: now,
            data: data.clone(),
        })
        .collect()
}

/// State writes for `notes`, filled with the entry's action id (`data.action_id`, when the
/// entry creates it) and given ids when the commit runs. A note that cannot be written as JSON
/// is an error before anything is committed.
pub fn writes(notes: Vec<Note>, fill_action: bool) -> Result<Option<StateWrites>, ServiceError> {
    if notes.is_empty() {
        return Ok(None);
    }
    let notes = notes
        .iter()
        .map(|n| to_json(&format!("the `{}` notification", n.event), n))
        .collect::<Result<Vec<Value>, ServiceError>>()?;
    Ok(Some(Box::new(move |seq, id| {
        notes
            .into_iter()
            .enumerate()
            .map(|(i, mut n)| {
                let note_id = format!("msg_{seq}_{i}");
                n["id"] = Value::String(note_id.clone());
                if fill_action && let (Some(id), Value::Object(m)) = (id, &mut n["data"]) {
                    m.insert("action_id".into(), json!(id));
                    if let Some(Value::String(link)) = m.get_mut("link") {
                        link.push_str(id);
                    }
                }
                (format!("outbox/{note_id}"), Some(n.to_string().into_bytes()))
            })
            .collect()
    })))
}

impl Service {
    /// The notifications a decision about `call` queues (none when the policy names no channel).
    pub(super) fn decision_notes(
        &self,
        call: &Call,
        decision: &Decision,
        approval: Option<&Approval>,
    ) -> Vec<Note> {
        let loaded = self.state.policy.load();
        let policy = &loaded.policy;
        if policy.notifications.channels.is_empty() {
            return Vec::new();
        }
        let link = self.state.http.as_ref().map(|h| format!("{}/#action=", h.url));
        let mut data = json!({
            "agent_id": call.agent_id,
            "tool": call.tool,
            "operation": call.operation,
            "summary": summary(&crate::log::entry::redact(&call.params, self.state.log.redact_keys())),
            "effect": decision.effect,
            "reason_code": decision.reason_code,
            "reason": decision.reason,
            "rule_id": decision.rule_id,
            "risk_level": decision.risk_level,
            "link": link,
        });
        match (decision.effect, approval) {
            (Effect::Defer, Some(a)) => {
                if let Value::Object(m) = &mut data {
                    m.insert("approval_id".into(), json!(a.approval_id));
                    m.insert("expires_at".into(), json!(a.expires_at));
                }
                rows(
                    &defer_channels(policy, decision.rule_id.as_deref()),
                    "approval.requested",
                    data,
                    self.clock.now_ms(),
                )
            }
            (Effect::Deny, _) if decision.risk_level >= policy.notifications.deny_min_risk => {
                rows(&policy.notifications.on_deny, "decision.denied", data, self.clock.now_ms())
            }
            _ => Vec::new(),
        }
    }

    /// The follow-up of an approval that was decided or expired, on the channels its request went to.
    pub(super) fn approval_notes(&self, a: &Approval) -> Vec<Note> {
        let loaded = self.state.policy.load();
        let policy = &loaded.policy;
        if policy.notifications.channels.is_empty() {
            return Vec::new();
        }
        let link = self.state.http.as_ref().map(|h| format!("{}/#action={}", h.url, a.action_id));
        let data = json!({
            "action_id": a.action_id,
            "approval_id": a.approval_id,
            "agent_id": a.agent_id,
            "tool": a.tool,
            "operation": a.operation,
            "status": a.status.as_str(),
            "decided_by": a.decided_by,
            "reason": a.reason,
            "link": link,
        });
        rows(&defer_channels(policy, a.rule_id.as_deref()), "approval.decided", data, self.clock.now_ms())
    }

    /// Counts `n` notifications a commit just queued, and wakes the sender.
    pub(super) fn queued_notes(&self, n: usize) {
        if n > 0 {
            self.state.outbox.queued.fetch_add(n as u64, Ordering::Relaxed);
            for _ in 0..n {
                self.state.metrics.notification("queued");
            }
            self.state.outbox_wake.notify_one();
        }
    }

    /// Delivers the outbox until the service shuts down (`shutdown` resolves).
    pub async fn run_outbox(&self, notifier: &dyn Notifier, shutdown: tokio_util::sync::CancellationToken) {
        let mut attempts: HashMap<String, (u32, std::time::Instant)> = HashMap::new();
        let mut reminded: HashMap<String, (u64, bool)> = HashMap::new();
        loop {
            let periodic = self.remind(&mut reminded).await;
            let mut next = self.outbox_pass(notifier, &mut attempts).await;
            if periodic {
                next = next.min(Duration::from_secs(5));
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.state.outbox_wake.notified() => {}
                () = tokio::time::sleep(next) => {}
            }
        }
    }

    /// Queues reminders of pending approvals every `remind_every`, and one escalation to
    /// `escalate_to` once an approval has waited `escalate_after`; each queued with a
    /// `notification_queued` entry. Answers whether either is configured.
    pub(super) async fn remind(&self, seen: &mut HashMap<String, (u64, bool)>) -> bool {
        let loaded = self.state.policy.load_full();
        let n = &loaded.policy.notifications;
        if n.remind_every_seconds.is_none() && n.escalate_after_seconds.is_none() {
            return false;
        }
        let now = self.clock.now_ms();
        let pending: Vec<Approval> = self
            .state
            .approvals
            .all()
            .into_iter()
            .filter(|a| a.status == approvals::Status::Pending)
            .collect();
        seen.retain(|id, _| pending.iter().any(|a| &a.approval_id == id));
        for a in pending {
            let created = entry::parse_rfc3339(&a.created_at).unwrap_or(now);
            let age = now.saturating_sub(created) / 1000;
            let due = n.remind_every_seconds.map_or(0, |every| age / every);
            // First seen (also after a restart): reminders count from now on.
            let (sent, escalated) = *seen.entry(a.approval_id.clone()).or_insert((due, false));
            let mut notes = Vec::new();
            let base = self.approval_notes(&a).into_iter().next().map(|n| n.data).unwrap_or(Value::Null);
            if due > sent {
                let channels = defer_channels(&loaded.policy, a.rule_id.as_deref());
                notes.extend(rows(&channels, "approval.reminder", base.clone(), now));
            }
            let escalate = n.escalate_after_seconds.is_some_and(|after| age >= after) && !escalated;
            if escalate {
                notes.extend(rows(&n.escalate_to, "approval.escalated", base, now));
            }
            seen.insert(a.approval_id.clone(), (due.max(sent), escalated || escalate));
            if notes.is_empty() {
                continue;
            }
            let queued = notes.len();
            let events: Vec<String> = notes.iter().map(|n| n.event.clone()).collect();
            let body = dpr::event_entry(
                "notification_queued",
                json!({"approval_id": a.approval_id, "action_id": a.action_id, "events": events}),
            );
            let committed = match writes(notes, false) {
                Ok(rows) => self.commit(body, rows).await,
                Err(e) => Err(e),
            };
            match committed {
                Ok(_) => self.queued_notes(queued),
                Err(e) => tracing::warn!(error = %e.message, "cannot queue a reminder"),
            }
        }
        true
    }

    /// One pass over the outbox: posts every due row; answers how long until the next is due.
    async fn outbox_pass(
        &self,
        notifier: &dyn Notifier,
        attempts: &mut HashMap<String, (u32, std::time::Instant)>,
    ) -> Duration {
        let stats = &self.state.outbox;
        let rows = match self.state.log.state_scan("outbox/") {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox");
                return Duration::from_secs(5);
            }
        };
        let now_ms = self.clock.now_ms();
        let oldest = rows
            .iter()
            .filter_map(|(_, v)| serde_json::from_slice::<Note>(v).ok())
            .map(|n| now_ms.saturating_sub(n.created_ms))
            .max()
            .unwrap_or(0);
        stats.oldest_ms.store(oldest, Ordering::Relaxed);
        let mut done = 0usize;
        let mut wait = Duration::from_secs(30);
        let live: std::collections::HashSet<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        attempts.retain(|k, _| live.contains(k.as_str()));
        for (key, value) in &rows {
            let Ok(note) = serde_json::from_slice::<Note>(value) else {
                // Unreadable: dropped with a record of it (it could never be delivered).
                self.finish_note(
                    key,
                    &json!({"id": key, "status": "failed", "error": "unreadable outbox row"}),
                )
                .await;
                done += 1;
                continue;
            };
            let now = self.clock.monotonic();
            if let Some((_, due)) = attempts.get(key)
                && *due > now
            {
                wait = wait.min(*due - now);
                continue;
            }
            let tries = attempts.get(key).map_or(0, |(n, _)| *n) + 1;
            let policy = self.state.policy.load();
            let channel = policy.policy.notifications.channels.get(&note.channel);
            // A channel a reload removed keeps the default tries: the next reload may bring it back.
            let limit = channel.map_or(crate::policy::DEFAULT_CHANNEL_ATTEMPTS, |c| c.attempts);
            let result: Result<(), Failure> = match channel {
                Some(channel) => {
                    match tokio::time::timeout(
                        DELIVERY_LIMIT,
                        notifier.deliver(channel, &note, self.clock.now_ms()),
                    )
                    .await
                    {
                        Ok(delivered) => delivered,
                        Err(_) => Err(format!("no answer within {} s", DELIVERY_LIMIT.as_secs()).into()),
                    }
                }
                None => Err(format!("channel `{}` is no longer in the policy", note.channel).into()),
            };
            match result {
                Ok(()) => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    self.state.metrics.notification("delivered");
                    let fields = json!({"id": note.id, "channel": note.channel, "event": note.event, "status": "delivered", "attempts": tries});
                    self.finish_note(key, &fields).await;
                    attempts.remove(key);
                    done += 1;
                }
                Err(why) => {
                    tracing::warn!(id = %note.id, channel = %note.channel, attempt = tries, error = %why, "notification not delivered");
                    if let Ok(mut e) = stats.last_error.lock() {
                        *e = Some(format!("{}: {why}", note.channel));
                    }
                    if tries >= limit {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        self.state.metrics.notification("failed");
                        let fields = json!({"id": note.id, "channel": note.channel, "event": note.event, "status": "failed", "attempts": tries, "error": why.to_string()});
                        self.finish_note(key, &fields).await;
                        attempts.remove(key);
                        done += 1;
                    } else {
                        let backoff = BACKOFF.delay(tries);
                        attempts.insert(key.clone(), (tries, now + backoff));
                        wait = wait.min(backoff);
                    }
                }
            }
        }
        let waiting = rows.len().saturating_sub(done) as u64;
        stats.waiting.store(waiting, Ordering::Relaxed);
        self.state.metrics.outbox(waiting, if waiting == 0 { 0 } else { oldest });
        wait
    }

    /// Removes a row with the `notification` entry that says how it ended.
    async fn finish_note(&self, key: &str, fields: &Value) {
        let key = key.to_owned();
        let remove: StateWrites = Box::new(move |_, _| vec![(key, None)]);
        if let Err(e) = self.commit(dpr::event_entry("notification", fields.clone()), Some(remove)).await {
            tracing::warn!(error = %e.message, "cannot record a notification's outcome");
        }
    }
}
