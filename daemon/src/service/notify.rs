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

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use hmac::{KeyInit, Mac};

use super::*;
use std::collections::HashMap;

use crate::policy::{Channel, ChannelKind};

/// The first retry waits this long; each later one twice as long, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

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
/// entry creates it) and given ids when the commit runs.
pub fn writes(notes: Vec<Note>, fill_action: bool) -> Option<StateWrites> {
    if notes.is_empty() {
        return None;
    }
    Some(Box::new(move |seq, id| {
        notes
            .into_iter()
            .enumerate()
            .map(|(i, mut n)| {
                n.id = format!("msg_{seq}_{i}");
                if fill_action && let (Some(id), Value::Object(m)) = (id, &mut n.data) {
                    m.insert("action_id".into(), json!(id));
                    if let Some(Value::String(link)) = m.get_mut("link") {
                        link.push_str(id);
                    }
                }
                (format!("outbox/{}", n.id), serde_json::to_vec(&n).ok())
            })
            .collect()
    }))
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
    pub async fn run_outbox(&self, shutdown: tokio_util::sync::CancellationToken) {
        let mut attempts: HashMap<String, (u32, std::time::Instant)> = HashMap::new();
        let mut reminded: HashMap<String, (u64, bool)> = HashMap::new();
        let client = Client::new();
        loop {
            let periodic = self.remind(&mut reminded).await;
            let mut next = self.outbox_pass(&client, &mut attempts).await;
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
            match self.commit(body, writes(notes, false)).await {
                Ok(_) => self.queued_notes(queued),
                Err(e) => tracing::warn!(error = %e.message, "cannot queue a reminder"),
            }
        }
        true
    }

    /// One pass over the outbox: posts every due row; answers how long until the next is due.
    async fn outbox_pass(
        &self,
        client: &Client,
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
            let result = match channel {
                Some(channel) => client.deliver(channel, &note, self.clock.now_ms()).await,
                None => Err(format!("channel `{}` is no longer in the policy", note.channel)),
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
                        let fields = json!({"id": note.id, "channel": note.channel, "event": note.event, "status": "failed", "attempts": tries, "error": why});
                        self.finish_note(key, &fields).await;
                        attempts.remove(key);
                        done += 1;
                    } else {
                        let backoff = FIRST_BACKOFF.saturating_mul(1 << (tries - 1).min(16)).min(MAX_BACKOFF);
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

/// Posts notifications (and OTLP batches) over HTTP or HTTPS (rustls with the Mozilla roots,
/// see [`crate::tls`]).
pub struct Client {
    tls: tokio_rustls::TlsConnector,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// A client trusting the web PKI roots.
    pub fn new() -> Client {
        let config = crate::tls::client_config(None, None).unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
        Client::with_config(config)
    }

    /// A client with its own TLS configuration (a private CA, a client certificate).
    pub fn with_config(config: rustls::ClientConfig) -> Client {
        Client { tls: tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)) }
    }

    /// Posts `note` to `channel` in its format; `Err` with why it was not delivered.
    pub async fn deliver(&self, channel: &Channel, note: &Note, now_ms: u64) -> Result<(), String> {
        if let Some(email) = &channel.email {
            return tokio::time::timeout(DELIVERY_TIMEOUT * 3, send_email(email, note))
                .await
                .map_err(|_| format!("no answer within {} s", DELIVERY_TIMEOUT.as_secs() * 3))?;
        }
        let url = channel.url.as_ref().ok_or("the channel has no URL")?.read()?;
        let (body, headers) = match channel.kind {
            ChannelKind::Webhook => {
                let secret = channel.secret.as_ref().ok_or("the webhook has no secret")?.read()?;
                let body = webhook_body(note).to_string();
                let timestamp = now_ms / 1000;
                let signature = sign(&secret, &note.id, timestamp, &body)?;
                let headers = vec![
                    ("webhook-id", note.id.clone()),
                    ("webhook-timestamp", timestamp.to_string()),
                    ("webhook-signature", signature),
                ];
                (body, headers)
            }
            ChannelKind::Slack | ChannelKind::Email => (slack_body(note).to_string(), Vec::new()),
        };
        tokio::time::timeout(DELIVERY_TIMEOUT, self.post(&url, body, headers))
            .await
            .map_err(|_| format!("no answer within {} s", DELIVERY_TIMEOUT.as_secs()))?
    }

    async fn post(&self, url: &str, body: String, headers: Vec<(&str, String)>) -> Result<(), String> {
        self.post_bytes(url, "application/json", bytes::Bytes::from(body), headers).await
    }

    /// POSTs `body` as `content_type`; `Ok` on a 2xx answer.
    pub async fn post_bytes(
        &self,
        url: &str,
        content_type: &str,
        body: bytes::Bytes,
        headers: Vec<(&str, String)>,
    ) -> Result<(), String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("the URL must be http:// or https://".into()),
        };
        let host = uri.host().ok_or("the URL has no host")?.to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut req = hyper::Request::post(path)
            .header(hyper::header::HOST, uri.authority().map_or(host.as_str(), |a| a.as_str()))
            .header(hyper::header::CONTENT_TYPE, content_type)
            .header(hyper::header::USER_AGENT, crate::log::dpr::RUNTIME_VERSION);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req.body(http_body_util::Full::new(body)).map_err(|e| e.to_string())?;
        let status = if https {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| format!("bad host: {e}"))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
            send(hyper_util::rt::TokioIo::new(tls), req).await?
        } else {
            send(hyper_util::rt::TokioIo::new(tcp), req).await?
        };
        if status.is_success() { Ok(()) } else { Err(format!("the receiver answered {status}")) }
    }
}

async fn send<T>(
    io: T,
    req: hyper::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<hyper::StatusCode, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| causes(&e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(|e| causes(&e))?;
    Ok(resp.status())
}

/// An error with its causes (`connection error: received fatal alert: CertificateRequired`).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Sends `note` as a plain-text email (its id as the Message-ID, for deduplication).
async fn send_email(email: &crate::policy::Email, note: &Note) -> Result<(), String> {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let (subject, text) = email_text(note);
    let mut message = lettre::Message::builder()
        .from(email.from.parse().map_err(|e| format!("`from`: {e}"))?)
        .subject(subject)
        .message_id(Some(format!("<{}@faramesh>", note.id)))
        .header(lettre::message::header::ContentType::TEXT_PLAIN);
    for to in &email.to {
        message = message.to(to.parse().map_err(|e| format!("`to` `{to}`: {e}"))?);
    }
    let message = message.body(text).map_err(|e| e.to_string())?;
    let builder = match email.tls {
        crate::policy::EmailTls::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&email.host)
        }
        crate::policy::EmailTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&email.host),
        crate::policy::EmailTls::None => {
            Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&email.host))
        }
    };
    let mut builder = builder.map_err(|e| e.to_string())?.port(email.port).timeout(Some(DELIVERY_TIMEOUT));
    if let (Some(user), Some(password)) = (&email.username, &email.password) {
        builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            user.read()?,
            password.read()?,
        ));
    }
    builder.build().send(message).await.map(|_| ()).map_err(|e| e.to_string())
}

/// Text from a call (the agent's own, or holding parts of it) on one line: a line break (any of
/// `\n`, `\r`, U+0085, U+2028, U+2029) becomes `⏎`, a tab a space, any other control, invisible
/// or direction-changing character `�`; at most `max` characters (then `…`). Such text can then
/// not start a line of its own, nor reorder or hide what is around it.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| match c {
            '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => '⏎',
            '\t' => ' ',
            c if c.is_control() || invisible(c) => '�',
            c => c,
        })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// Zero-width, direction-override and tag characters: text a person does not see.
fn invisible(c: char) -> bool {
    matches!(u32::from(c),
        0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x2069 | 0xFEFF | 0xE0000..=0xE007F)
}

/// The longest piece of a call's text a notification shows (a summary is 200 already).
const FIELD_MAX: usize = 200;
/// The longest reason shown.
const REASON_MAX: usize = 500;

/// An email's subject and body for `note`. The body is the daemon's own lines first (what
/// happened, the approve and deny commands with the approval id, the link, the ids, risk and
/// expiry), then the call's text (agent, tool, arguments, reason) in a quoted block, each of
/// its lines starting with `> `: nothing the agent wrote can stand as a line of its own.
pub fn email_text(note: &Note) -> (String, String) {
    let d = &note.data;
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let call = format!(
        "{} -> {}/{}",
        one_line(&s("agent_id"), 64),
        one_line(&s("tool"), 64),
        one_line(&s("operation"), 64)
    );
    let (subject, head) = match note.event.as_str() {
        "approval.requested" => {
            (format!("[Faramesh] Approval needed: {call}"), "Approval needed.".to_owned())
        }
        "approval.decided" => {
            let status = one_line(&s("status"), 20);
            (format!("[Faramesh] Approval {status}: {call}"), format!("Approval {status}."))
        }
        "approval.reminder" => (
            format!("[Faramesh] Still waiting for approval: {call}"),
            "Still waiting for approval.".to_owned(),
        ),
        "approval.escalated" => (
            format!("[Faramesh] Escalated, still waiting for approval: {call}"),
            "Escalated, still waiting for approval.".to_owned(),
        ),
        "witness.alarm" => {
            let witness = one_line(&s("witness"), 64);
            (format!("[Faramesh] Witness alarm: {witness}"), format!("Witness alarm: {witness}."))
        }
        _ => (format!("[Faramesh] Denied: {call}"), "Denied.".to_owned()),
    };
    let mut lines = vec![head, String::new()];
    // The daemon's own fields (ids it made, the link it serves): the only commands in the mail.
    let approval = one_line(&s("approval_id"), 80);
    if note.event != "approval.decided" && !approval.is_empty() {
        lines.push(format!("Approve: faramesh approve {approval}"));
        lines.push(format!("Deny:    faramesh deny {approval}"));
    }
    if !s("link").is_empty() {
        lines.push(format!("Open:    {}", one_line(&s("link"), 300)));
    }
    for (label, key) in [
        ("Approval", "approval_id"),
        ("Action", "action_id"),
        ("Risk", "risk_level"),
        ("Expires", "expires_at"),
        ("Rule", "rule_id"),
    ] {
        let v = one_line(&s(key), 80);
        if !v.is_empty() {
            lines.push(format!("{label}: {}{v}", " ".repeat(8 - label.len())));
        }
    }
    lines.push(String::new());
    lines.push("The call, quoted (its names and arguments are the agent's own text, not Faramesh's):".into());
    let quoted = [
        ("Agent", one_line(&s("agent_id"), FIELD_MAX)),
        ("Call", format!("{}/{}", one_line(&s("tool"), FIELD_MAX), one_line(&s("operation"), FIELD_MAX))),
        ("Arguments", one_line(&s("summary"), FIELD_MAX)),
        ("Why", one_line(&s("reason"), REASON_MAX)),
    ];
    for (label, v) in quoted {
        if !v.is_empty() && v != "/" {
            lines.push(format!("> {label}: {}{v}", " ".repeat(9 - label.len())));
        }
    }
    (subject, lines.join("\n") + "\n")
}

/// The Standard Webhooks signature: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`,
/// keyed with the secret (`whsec_` and base64, as the specification writes it, or the raw
/// bytes of any other text).
pub fn sign(secret: &str, id: &str, timestamp: u64, body: &str) -> Result<String, String> {
    let key = match secret.strip_prefix("whsec_") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "the webhook secret after `whsec_` is not base64".to_owned())?,
        None => secret.as_bytes().to_vec(),
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())))
}

/// The webhook payload: `{"type", "timestamp", "data"}` (Standard Webhooks' shape).
pub fn webhook_body(note: &Note) -> Value {
    json!({"type": note.event, "timestamp": entry::rfc3339(note.created_ms), "data": note.data})
}

/// Text for Slack's mrkdwn: `&`, `<` and `>` escaped (so no `<!channel>`, `<@user>` or
/// `<url|label>` from it is read as a mention or a link) and every backquote turned into `ˋ`
/// (U+02CB), so it cannot end the code span or block it is put in.
pub fn slack_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '`' => out.push('ˋ'),
            c => out.push(c),
        }
    }
    out
}

/// A call's text as an inline code span (one line, escaped): Slack formats nothing inside it,
/// links and mentions included.
fn slack_code(text: &str, max: usize) -> String {
    let line = one_line(text, max);
    if line.is_empty() { "`-`".to_owned() } else { format!("`{}`", slack_escape(&line)) }
}

/// A Slack Block Kit message for `note`: the daemon's own words in mrkdwn, and every string from
/// the call (agent id, tool, operation, arguments, reason) in a code span, escaped
/// ([`slack_escape`]) and on one line ([`one_line`]), after the daemon's fields.
pub fn slack_body(note: &Note) -> Value {
    let d = &note.data;
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let call = format!(
        "{} → {}",
        slack_code(&s("agent_id"), 64),
        slack_code(&format!("{}/{}", s("tool"), s("operation")), 129)
    );
    let title = match note.event.as_str() {
        "approval.requested" => format!(":raised_hand: Approval needed: {call}"),
        "approval.decided" => {
            format!(":white_check_mark: Approval {}: {call}", slack_escape(&one_line(&s("status"), 20)))
        }
        "approval.reminder" => format!(":hourglass: Still waiting for approval: {call}"),
        "approval.escalated" => format!(":rotating_light: Escalated, still waiting for approval: {call}"),
        "witness.alarm" => format!(":rotating_light: Witness alarm: {}", s("reason")),
        _ => format!(":no_entry: Denied: {call}"),
    };
    let mut lines = vec![title.clone()];
    // The daemon's fields first, then the call's text, each in a code span.
    for (label, key) in [("Risk", "risk_level"), ("Expires", "expires_at"), ("Rule", "rule_id")] {
        let v = s(key);
        if !v.is_empty() {
            lines.push(format!("*{label}:* {}", slack_code(&v, 80)));
        }
    }
    for (label, key, max) in [("Call", "summary", FIELD_MAX), ("Why", "reason", REASON_MAX)] {
        let v = s(key);
        if !v.is_empty() {
            lines.push(format!("*{label}:* {}", slack_code(&v, max)));
        }
    }
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": lines.join("\n")}})];
    let link = s("link");
    if !link.is_empty() {
        blocks.push(json!({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open in Faramesh"}, "url": link}
        ]}));
    }
    json!({"text": title, "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own example.
    #[test]
    fn signatures_follow_standard_webhooks() {
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(sign("whsec_!!", "a", 1, "b").is_err());
    }

    /// A DEFER notice whose agent-controlled fields hold `agent`, `summary` and `reason`.
    fn hostile(agent: &str, summary: &str, reason: &str) -> Note {
        Note {
            id: "m".into(),
            channel: "c".into(),
            event: "approval.requested".into(),
            created_ms: 0,
            data: json!({"agent_id": agent, "tool": "shell", "operation": "exec", "summary": summary,
                         "reason": reason, "rule_id": "shell", "risk_level": "high",
                         "approval_id": "apr_real", "action_id": "act_1", "link": "http://127.0.0.1:1/#action=act_1"}),
        }
    }

    fn slack_text(note: &Note) -> String {
        slack_body(note)["blocks"][0]["text"]["text"].as_str().unwrap().to_owned()
    }

    /// The text between backquotes of a Slack mrkdwn line (the code spans) and outside them.
    fn code_spans(line: &str) -> (Vec<&str>, String) {
        let parts: Vec<&str> = line.split('`').collect();
        let inside = parts.iter().skip(1).step_by(2).copied().collect();
        let outside = parts.iter().step_by(2).copied().collect::<Vec<_>>().join("");
        (inside, outside)
    }

    /// Regression: agent text went into Slack mrkdwn as it was, so `<!channel>` notified everyone.
    #[test]
    fn slack_channel_mention_in_agent_text_is_escaped() {
        let note = hostile("<!channel> bot", "cmd: <!here> <@U024BE7LH> & more", "<!everyone>");
        let body = slack_body(&note);
        for text in [slack_text(&note), body["text"].as_str().unwrap().to_owned()] {
            assert!(!text.contains('<') && !text.contains('>'), "{text}");
            assert!(text.contains("&lt;!channel&gt; bot"), "{text}");
        }
        assert!(slack_text(&note).contains("cmd: &lt;!here&gt; &lt;@U024BE7LH&gt; &amp; more"));
    }

    /// Regression: `<https://evil.example|Open in Faramesh>` in agent text was a link in the
    /// message; agent text is now escaped and inside code spans (Slack links nothing there).
    #[test]
    fn slack_link_in_agent_text_is_not_a_link() {
        let note =
            hostile("bot", "url: <https://evil.example/approve|Open in Faramesh> https://evil.example/x", "");
        let text = slack_text(&note);
        assert!(!text.contains("<https"), "{text}");
        for line in text.lines() {
            let (_, outside) = code_spans(line);
            assert!(!outside.contains("evil.example"), "outside a code span: {line}");
        }
        // The only link is the daemon's own button.
        let body = slack_body(&note);
        assert_eq!(body["blocks"][1]["elements"][0]["url"], "http://127.0.0.1:1/#action=act_1");
    }

    /// Regression: a backquote in agent text ended the code span around it, and what followed
    /// was formatted (and linked) again.
    #[test]
    fn slack_backquote_cannot_leave_the_code_span() {
        let note = hostile("a`*b*`<!channel>", "cmd: ls ``` *Risk:* low ```", "");
        let text = slack_text(&note);
        for line in text.lines() {
            let (inside, outside) = code_spans(line);
            assert!(!outside.contains("Risk:* low") && !outside.contains("*b*"), "{line}");
            assert!(inside.iter().all(|c| !c.contains('`')));
        }
        assert!(text.contains("`aˋ*b*ˋ&lt;!channel&gt;`"), "{text}");
    }

    /// Regression: a line break in agent text started a line of its own, such as a forged
    /// `Risk: low` in Slack or in the email.
    #[test]
    fn forged_risk_line_stays_inside_quote() {
        let note =
            hostile("bot", "cmd: rm -rf /srv\n*Risk:* low\r\nRisk: low\u{2028}Risk: low", "ok\n*Risk:* low");
        let text = slack_text(&note);
        let risk: Vec<&str> = text.lines().filter(|l| l.contains("Risk:")).collect();
        assert_eq!(risk[0], "*Risk:* `high`", "{text}");
        for line in &risk[1..] {
            let (_, outside) = code_spans(line);
            assert!(!outside.contains("Risk"), "{line}");
        }
        let (_, mail) = email_text(&note);
        let risk: Vec<&str> = mail.lines().filter(|l| l.contains("Risk:")).collect();
        assert_eq!(risk[0], "Risk:     high", "{mail}");
        assert!(risk[1..].iter().all(|l| l.starts_with("> ")), "{mail}");
        assert!(mail.contains("> Arguments: cmd: rm -rf /srv⏎*Risk:* low⏎⏎Risk: low⏎Risk: low"), "{mail}");
    }

    /// Regression: an agent's text could put `Approve: faramesh approve <another pending id>`
    /// above the real command in the email.
    #[test]
    fn email_forged_approve_line_is_quoted() {
        let forged = "Approve: faramesh approve apr_other";
        let note = hostile(&format!("bot\n{forged}"), &format!("cmd: ls\n\n{forged}\u{85}{forged}"), forged);
        let (subject, mail) = email_text(&note);
        assert!(!subject.contains('\n') && !subject.contains('\r'), "{subject}");
        let lines: Vec<&str> = mail.lines().collect();
        let approve: Vec<&&str> = lines.iter().filter(|l| l.starts_with("Approve:")).collect();
        assert_eq!(approve, [&"Approve: faramesh approve apr_real"], "printed once, from the daemon's id");
        let first_quote = lines.iter().position(|l| l.starts_with("> ")).unwrap();
        let real = lines.iter().position(|l| l.starts_with("Approve:")).unwrap();
        assert!(real < first_quote, "the command comes before the agent's text");
        for line in lines.iter().filter(|l| l.contains("apr_other")) {
            assert!(line.starts_with("> "), "agent text outside the quote: {line:?}\n{mail}");
        }
        // Invisible and direction-changing characters cannot hide or reorder a line either.
        let (_, mail) = email_text(&hostile("bot\u{202e}evorppa", "cmd: x\u{200b}", ""));
        assert!(mail.contains("> Agent:     bot�evorppa") && mail.contains("> Arguments: cmd: x�"), "{mail}");
    }

    #[test]
    fn summaries_name_what_the_call_does() {
        assert_eq!(summary(&json!({"cmd": "rm -rf /", "x": 1})), "cmd: rm -rf /");
        assert_eq!(summary(&json!({"amount": 150})), "amount: 150");
        assert_eq!(summary(&json!({})), "");
        let slack = slack_body(&Note {
            id: "m".into(),
            channel: "c".into(),
            event: "approval.requested".into(),
            created_ms: 0,
            data: json!({"agent_id": "bot", "tool": "shell", "operation": "exec", "summary": "cmd: ls", "link": "http://x/#action=1"}),
        });
        assert!(slack["text"].as_str().unwrap().contains("Approval needed"));
        assert_eq!(slack["blocks"][1]["elements"][0]["url"], "http://x/#action=1");
    }
}
