//! Witnesses (`docs/operations.md#witnesses`): a background task, never on the decision path,
//! that submits the log's newest checkpoint to each witness with a consistency proof (C2SP
//! `tlog-witness`, `POST <url>/add-checkpoint`) every interval and at shutdown, verifies the
//! cosignatures that come back (C2SP `tlog-cosignature`) and records them in the log as a
//! `witness_cosigned` entry. A witness that answers 409 with a size above the log's (the log
//! was truncated or rolled back) or 422 (the log is not consistent with what it saw: a fork) is
//! an alarm: a `witness_alarm` entry, the status row, `status`, `/metrics`, the dashboard and
//! every notification channel.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::outbound::WitnessPost;
use super::{Service, state_row, to_json};
use crate::log::keys::base64_encode;
use crate::log::witness::{Witness, WitnessPolicy, with_cosignatures};
use crate::log::{COSIGNED, Checkpoint, StateWrites, dpr, entry};

/// What the daemon is told about its witnesses (`serve --witnesses FILE`).
#[derive(Debug, Clone)]
pub struct Config {
    /// The witnesses (those with a URL are submitted to).
    pub policy: WitnessPolicy,
    /// How often the newest checkpoint is submitted.
    pub interval: Duration,
}

/// The default interval between submissions.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// How long one submission may take.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The prefix of each witness's status row.
pub const STATUS_PREFIX: &str = "witness/status/";

/// A witness's status row (`witness/status/<name>`), shown by `status`.
///
/// JSON: `{"name", "url", "size", "root", "last_ok", "last_error", "alarm"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The witness's name in the policy file.
    pub name: String,
    /// Its submission prefix.
    pub url: String,
    /// The largest size it cosigned (0: none yet).
    pub size: u64,
    /// The root it cosigned at that size (base64).
    pub root: Option<String>,
    /// When it last cosigned.
    pub last_ok: Option<String>,
    /// The last failure that was not an alarm (unreachable, refused, a bad answer).
    pub last_error: Option<String>,
    /// The standing alarm: `{status, witness_size, size, message, ts, seq}`; cleared when the
    /// witness cosigns again.
    pub alarm: Option<Value>,
}

/// What one submission came to.
enum Outcome {
    /// A verified cosignature line and its time.
    Cosigned(String, u64),
    /// 409: the witness last cosigned this size.
    Conflict(u64),
    /// 422: the witness refuses the checkpoint as inconsistent with what it saw.
    Fork(String),
    /// Anything else (unreachable, 4xx, 5xx, a bad answer).
    Error(String),
}

impl Service {
    /// Submits checkpoints to the witnesses every `config.interval` until `shutdown`, then once
    /// more (the checkpoint that records the stop).
    pub async fn run_witnesses(
        &self,
        config: Config,
        client: &dyn WitnessPost,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut recorded = 0u64;
        loop {
            recorded = self.witness_round(&config.policy, client, recorded).await;
            tokio::select! {
                () = tokio::time::sleep(config.interval) => {}
                () = shutdown.cancelled() => {
                    self.witness_round(&config.policy, client, recorded).await;
                    return;
                }
            }
        }
    }

    /// Every witness's status row.
    pub fn witness_status(&self) -> Vec<Status> {
        self.state
            .log
            .state_scan(STATUS_PREFIX)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect()
    }

    /// One round: the newest checkpoint to every witness with a URL. Returns the seq of the
    /// `witness_cosigned` entry it recorded (or `recorded` unchanged): a log whose newest entry
    /// is that record has nothing new to submit.
    async fn witness_round(&self, policy: &WitnessPolicy, client: &dyn WitnessPost, recorded: u64) -> u64 {
        let log = &self.state.log;
        let Ok(Some(note)) = log.latest_checkpoint() else { return recorded };
        let Ok(cp) = Checkpoint::parse_note(&note) else { return recorded };
        if cp.legacy || cp.size == 0 || cp.size == recorded {
            return recorded;
        }
        let body = note.split_once("\n\n").map(|(b, _)| format!("{b}\n")).unwrap_or_default();
        let mut cosigned: Vec<(Status, String, u64)> = Vec::new();
        for w in policy.witnesses.iter() {
            let Some(url) = &w.url else { continue };
            let key = format!("{STATUS_PREFIX}{}", w.name);
            let mut status: Status = log
                .state_get(&key)
                .ok()
                .flatten()
                .and_then(|v| serde_json::from_slice(&v).ok())
                .unwrap_or_default();
            status.name.clone_from(&w.name);
            status.url.clone_from(url);
            if status.size >= cp.size && status.root.as_deref() == Some(base64_encode(&cp.root).as_str()) {
                continue;
            }
            let mut outcome =
                self.submit_checkpoint(client, w, url, status.size.min(cp.size), &cp, &note, &body).await;
            // The witness holds another size than we remembered (its state, or ours, is older):
            // once more from the size it names, when that is ours to prove from.
            if let Outcome::Conflict(theirs) = outcome
                && theirs <= cp.size
            {
                outcome = self.submit_checkpoint(client, w, url, theirs, &cp, &note, &body).await;
            }
            match outcome {
                Outcome::Cosigned(line, ts) => cosigned.push((status, line, ts)),
                Outcome::Conflict(theirs) if theirs > cp.size => {
                    let message = format!(
                        "witness {} has cosigned a log of {theirs} entries; this log has {}: it was truncated or rolled back",
                        w.name, cp.size
                    );
                    self.witness_alarm(status, 409, Some(theirs), cp.size, message).await;
                }
                Outcome::Conflict(theirs) => {
                    status.last_error =
                        Some(format!("the witness holds size {theirs} and refused a proof from it"));
                    self.witness_note(&key, &status);
                }
                Outcome::Fork(why) => {
                    let message = format!(
                        "witness {} refuses the checkpoint at size {} as inconsistent with what it cosigned before ({why}): the log was rewritten",
                        w.name, cp.size
                    );
                    self.witness_alarm(status, 422, None, cp.size, message).await;
                }
                Outcome::Error(why) => {
                    tracing::warn!(witness = %w.name, error = %why, "witness submission failed");
                    status.last_error = Some(why);
                    self.witness_note(&key, &status);
                }
            }
        }
        if cosigned.is_empty() {
            return recorded;
        }
        let lines: Vec<String> = cosigned.iter().map(|(_, l, _)| l.clone()).collect();
        let merged = with_cosignatures(&note, &lines);
        let root = base64_encode(&cp.root);
        let now = entry::rfc3339(self.clock.now_ms());
        let fields = json!({
            "checkpoint": merged,
            "size": cp.size,
            "root": root,
            "witnesses": cosigned.iter().map(|(s, _, ts)| json!({"name": s.name, "timestamp": ts})).collect::<Vec<_>>(),
        });
        let mut rows: Vec<(String, Option<Vec<u8>>)> = vec![(COSIGNED.to_owned(), Some(merged.into_bytes()))];
        for (mut s, _, _) in cosigned {
            s.size = cp.size;
            s.root = Some(root.clone());
            s.last_ok = Some(now.clone());
            s.last_error = None;
            s.alarm = None;
            self.state.metrics.witness(&json!(s));
            match state_row(format!("{STATUS_PREFIX}{}", s.name), &s) {
                Ok(row) => rows.push(row),
                Err(e) => {
                    tracing::warn!(error = %e.message, "cannot record the witnesses' cosignatures");
                    return recorded;
                }
            }
        }
        let writes: StateWrites = Box::new(move |_, _| rows);
        match self.commit(dpr::event_entry("witness_cosigned", fields), Some(writes)).await {
            Ok(appended) => appended.seq,
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot record the witnesses' cosignatures");
                recorded
            }
        }
    }

    /// POSTs the checkpoint with a consistency proof from `old` to `url`/add-checkpoint.
    #[allow(clippy::too_many_arguments, reason = "one submission's parts")]
    async fn submit_checkpoint(
        &self,
        client: &dyn WitnessPost,
        w: &Witness,
        url: &str,
        old: u64,
        cp: &Checkpoint,
        note: &str,
        body: &str,
    ) -> Outcome {
        let proof = match self.state.log.consistency_proof(old, cp.size) {
            Ok(p) => p,
            Err(e) => return Outcome::Error(format!("no consistency proof from size {old}: {e}")),
        };
        let mut request = format!("old {old}\n");
        for h in &proof {
            request.push_str(&base64_encode(h));
            request.push('\n');
        }
        request.push('\n');
        request.push_str(note);
        let target = format!("{}/add-checkpoint", url.trim_end_matches('/'));
        let answer = tokio::time::timeout(SUBMIT_TIMEOUT, client.post(&target, request)).await;
        let (status, text) = match answer {
            Err(_) => {
                return Outcome::Error(format!(
                    "no answer from {target} within {} s",
                    SUBMIT_TIMEOUT.as_secs()
                ));
            }
            Ok(Err(e)) => return Outcome::Error(format!("{target}: {e}")),
            Ok(Ok(r)) => r,
        };
        match status {
            200 => match w.key.verify_lines(body, &text) {
                Ok(Some(c)) => Outcome::Cosigned(c.line, c.timestamp),
                Ok(None) => Outcome::Error(format!("the answer holds no cosignature by {}", w.key.name)),
                Err(e) => Outcome::Error(format!("the cosignature by {} does not verify: {e}", w.key.name)),
            },
            409 => match text.trim().parse::<u64>() {
                Ok(size) => Outcome::Conflict(size),
                Err(_) => Outcome::Error("409 without a size".into()),
            },
            422 => Outcome::Fork(format!("422: {}", text.trim().chars().take(200).collect::<String>())),
            other => Outcome::Error(format!(
                "{target} answered {other}: {}",
                text.trim().chars().take(200).collect::<String>()
            )),
        }
    }

    /// Writes a status row that no entry needs (a failure that is not an alarm).
    fn witness_note(&self, key: &str, status: &Status) {
        self.state.metrics.witness(&json!(status));
        if let Ok(v) = serde_json::to_vec(status)
            && let Err(e) = self.state.log.state_put_lazy(key, &v)
        {
            tracing::warn!(error = %e, "cannot write a witness's status");
        }
    }

    /// Records an alarm: a `witness_alarm` entry with the status row, and a notification on
    /// every channel.
    async fn witness_alarm(
        &self,
        mut status: Status,
        code: u16,
        witness_size: Option<u64>,
        size: u64,
        message: String,
    ) {
        // The same refusal again (every round, until someone acts): the standing alarm says it.
        if let Some(a) = &status.alarm
            && a["status"] == json!(code)
            && a["witness_size"] == json!(witness_size)
        {
            self.state.metrics.witness(&json!(status));
            return;
        }
        tracing::error!(witness = %status.name, status = code, "{message}");
        let ts = entry::rfc3339(self.clock.now_ms());
        let fields = json!({
            "witness": status.name,
            "url": status.url,
            "status": code,
            "witness_size": witness_size,
            "size": size,
            "message": message,
        });
        let channels: Vec<String> =
            self.state.policy.load().policy.notifications.channels.keys().cloned().collect();
        let notes = super::notify::rows(
            &channels,
            "witness.alarm",
            json!({"witness": status.name, "status": code, "witness_size": witness_size, "size": size, "reason": message}),
            self.clock.now_ms(),
        );
        let queued = notes.len();
        let key = format!("{STATUS_PREFIX}{}", status.name);
        let alarm =
            json!({"status": code, "witness_size": witness_size, "size": size, "message": message, "ts": ts});
        status.alarm = Some(alarm.clone());
        self.state.metrics.witness(&json!(status));
        let (notify, row) = match (super::notify::writes(notes, false), to_json(&format!("`{key}`"), &status))
        {
            (Ok(notify), Ok(row)) => (notify, row),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e.message, "cannot record a witness alarm");
                return;
            }
        };
        let writes: StateWrites = Box::new(move |seq, id| {
            let mut row = row;
            if let Some(Value::Object(a)) = row.get_mut("alarm") {
                a.insert("seq".into(), json!(seq));
            }
            let mut rows = vec![(key, Some(row.to_string().into_bytes()))];
            if let Some(n) = notify {
                rows.extend(n(seq, id));
            }
            rows
        });
        match self.commit(dpr::event_entry("witness_alarm", fields), Some(writes)).await {
            Ok(_) => self.queued_notes(queued),
            Err(e) => tracing::error!(error = %e.message, "cannot record a witness alarm"),
        }
    }
}
