//! Retention the daemon applies itself: `serve --retention AGE [--retention-archive DIR]`, or
//! the policy's `retention: {max_age, archive_dir}` (the flags win; the policy's setting follows
//! hot reloads). Entries older than AGE are archived to DIR (when given) and pruned, on a timer.
//! Without an archive directory only entries a `faramesh export` already wrote out are pruned:
//! the daemon never discards what exists nowhere else.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::log::prune::StateRetention;
use crate::log::{Cut, Log, LogError, LogOptions};

/// The log's options for the daemon's state: a prune also removes the lifecycle rows of the
/// actions it pruned and their approvals once decided (pending approvals stay).
pub fn log_options() -> LogOptions {
    LogOptions { state_retention: Some(state_retention()), ..LogOptions::default() }
}

/// Opens a daemon's log for writing outside the daemon (the offline tools): with the daemon's
/// options, so a prune it resumes on open removes the same state rows the daemon would.
pub fn open_log(path: &std::path::Path, key: crate::log::LogKey) -> Result<Log, LogError> {
    Log::open(path, key, log_options())
}

/// Which state rows outlive a prune: all but `action/ID` rows of pruned actions and the decided
/// `approval/ID` rows about them.
pub fn state_retention() -> StateRetention {
    Arc::new(|key: &str, value: &[u8], pruned: &dyn Fn(&str) -> bool| {
        if let Some(id) = key.strip_prefix("action/") {
            return !pruned(id);
        }
        if key.starts_with("approval/") {
            // A row that does not decode is kept: nothing is removed on a guess.
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(value) else {
                return true;
            };
            let pending = v.get("status").and_then(serde_json::Value::as_str) == Some("pending");
            let about = v.get("action_id").and_then(serde_json::Value::as_str).unwrap_or_default();
            return pending || !pruned(about);
        }
        true
    })
}

/// The retention setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Entries older than this are pruned.
    pub max_age: Duration,
    /// Where entries are archived (JSON lines, one file per prune) before they go.
    pub archive_dir: Option<PathBuf>,
}

impl Retention {
    /// How often the daemon looks: a quarter of the age, between 1 second and 1 hour.
    pub fn interval(&self) -> Duration {
        (self.max_age / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600))
    }
}

/// Parses `90d`, `12h`, `30m`, `45s` (the policy's durations).
pub fn parse_age(text: &str) -> Option<Duration> {
    crate::policy::parse_duration(text).map(Duration::from_secs)
}

impl From<&crate::policy::Retention> for Retention {
    fn from(r: &crate::policy::Retention) -> Retention {
        Retention {
            max_age: Duration::from_secs(r.max_age_seconds),
            archive_dir: r.archive_dir.as_deref().map(PathBuf::from),
        }
    }
}

/// Why one round of retention did nothing or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The log refused (not exported, a prune running, storage).
    #[error(transparent)]
    Log(#[from] LogError),
    /// The archive could not be written.
    #[error("cannot write the archive `{}`: {source}", .path.display())]
    Archive {
        /// The archive file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

/// One round: archive (if configured) and prune the entries older than the age at `now_ms`.
/// Returns the entries pruned.
pub async fn apply(log: &Arc<Log>, r: &Retention, now_ms: u64) -> Result<u64, RetentionError> {
    let cutoff = now_ms.saturating_sub(u64::try_from(r.max_age.as_millis()).unwrap_or(u64::MAX));
    let plan = log.plan_prune(Cut::Before(cutoff))?;
    if plan.entries == 0 {
        return Ok(0);
    }
    if let Some(dir) = &r.archive_dir
        && plan.exported_through + 1 < plan.first_kept_seq
    {
        let path = dir.join(format!("faramesh-log-{}-{}.jsonl", plan.first_seq, plan.first_kept_seq - 1));
        let (log2, path2) = (Arc::clone(log), path.clone());
        let (first, kept) = (plan.first_seq, plan.first_kept_seq);
        tokio::task::spawn_blocking(move || archive(&log2, &path2, first, kept))
            .await
            .map_err(|e| RetentionError::Archive { path: path.clone(), source: std::io::Error::other(e) })?
            .map_err(|source| RetentionError::Archive { path: path.clone(), source })?;
        log.mark_exported(first, kept - 1)?;
        tracing::info!(archive = %path.display(), entries = kept - first, "archived entries before pruning");
    }
    let done = log.prune(Cut::BeforeSeq(plan.first_kept_seq), false, json!({"retention": true})).await?;
    tracing::info!(
        entries = done.plan.entries,
        first_kept_seq = done.plan.first_kept_seq,
        entry_seq = done.entry_seq.unwrap_or_default(),
        "retention pruned the log"
    );
    Ok(done.plan.entries)
}

/// Writes entries `first..kept` to a new private file, synced.
fn archive(log: &Log, path: &std::path::Path, first: u64, kept: u64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = std::io::BufWriter::new(crate::log::create_private(path)?);
    let written = log.export_range(&mut out, first, kept).map_err(std::io::Error::other)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    if written != kept - first {
        return Err(std::io::Error::other(format!(
            "{written} of entries {first} to {} were written",
            kept - 1
        )));
    }
    Ok(())
}

/// Applies retention now and then every [`Retention::interval`]: `flag` when given, else the
/// current policy's setting (looked for again every minute while there is none). The age is
/// counted back from `clock`'s time.
pub fn spawn(
    state: Arc<super::state::State>,
    clock: Arc<dyn super::Clock>,
    flag: Option<Retention>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let log = Arc::clone(&state.log);
        let mut warned = false;
        loop {
            let current =
                flag.clone().or_else(|| state.policy.load().policy.retention.as_ref().map(Retention::from));
            let Some(r) = current else {
                tokio::time::sleep(Duration::from_secs(60)).await;
                continue;
            };
            match apply(&log, &r, clock.now_ms()).await {
                Ok(_) => warned = false,
                Err(RetentionError::Log(LogError::NotExported { last_pruned, exported_through })) => {
                    if !warned {
                        tracing::warn!(
                            last_pruned,
                            exported_through,
                            "retention: old entries were never exported; set --retention-archive or run `faramesh export`"
                        );
                        warned = true;
                    }
                }
                Err(RetentionError::Log(LogError::PruneRunning)) => {}
                Err(e) => {
                    tracing::error!(error = %e, "retention failed; the log is unchanged past the last prune")
                }
            }
            tokio::time::sleep(r.interval()).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prune_removes_the_rows_of_pruned_actions_and_keeps_pending_approvals() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::log::LogKey::from_seed(&[7u8; 32]);
        let log = Log::open(&dir.path().join("log.redb"), key, log_options()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let decision = |n: u64, status: &'static str| {
            let body = json!({"kind": "decision", "n": n, "agent_id": "a", "tool": "t", "operation": "o",
                "effect": "DEFER"});
            let writes: crate::log::StateWrites = Box::new(move |_, id| {
                let id = id.unwrap_or_default().to_owned();
                let approval = json!({"status": status, "action_id": id});
                vec![
                    (format!("action/{id}"), Some(b"{}".to_vec())),
                    (format!("approval/apr-{n}"), Some(serde_json::to_vec(&approval).unwrap())),
                    (format!("other/{n}"), Some(b"1".to_vec())),
                ]
            });
            let body = body.as_object().unwrap().clone();
            rt.block_on(log.append_with_state(body, Some(writes))).unwrap().id.unwrap()
        };
        let old_decided = decision(1, "approved");
        let old_pending = decision(2, "pending");
        let kept = decision(3, "approved");
        rt.block_on(log.prune(Cut::BeforeSeq(3), true, json!("test"))).unwrap();
        let has = |k: &str| log.state_get(k).unwrap().is_some();
        assert!(!has(&format!("action/{old_decided}")) && !has("approval/apr-1"), "pruned and decided");
        assert!(has("approval/apr-2"), "a pending approval outlives the prune");
        assert!(!has(&format!("action/{old_pending}")));
        assert!(has(&format!("action/{kept}")) && has("approval/apr-3"));
        assert!(has("other/1") && has("other/2"), "rows the core does not own are kept");
    }

    #[test]
    fn ages_parse() {
        assert_eq!(parse_age("90d"), Some(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_age("12h"), Some(Duration::from_secs(43_200)));
        assert_eq!(parse_age("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_age("45s"), Some(Duration::from_secs(45)));
        for bad in ["", "d", "0d", "-1d", "10", "10w", "1.5h"] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
        let r = Retention { max_age: Duration::from_secs(90 * 86_400), archive_dir: None };
        assert_eq!(r.interval(), Duration::from_secs(3600));
        let r = Retention { max_age: Duration::from_secs(2), archive_dir: None };
        assert_eq!(r.interval(), Duration::from_secs(1));
    }

    #[test]
    fn the_policy_can_set_retention_and_bad_settings_name_the_field() {
        let rules = "rules:\n  - match: { tool: http }\n    allow: true\n";
        let p = crate::policy::compile(
            "p.yaml",
            &format!("retention:\n  max_age: 30d\n  archive_dir: /var/lib/faramesh/archive\n{rules}"),
        )
        .map_err(|e| e.to_string());
        let r = p.as_ref().map(|p| p.retention.as_ref().map(Retention::from));
        assert_eq!(
            r,
            Ok(Some(Retention {
                max_age: Duration::from_secs(30 * 86_400),
                archive_dir: Some(PathBuf::from("/var/lib/faramesh/archive"))
            }))
        );
        let without = crate::policy::compile("p.yaml", rules).map_err(|e| e.to_string());
        assert!(without.is_ok_and(|p| p.retention.is_none()));
        for (text, says) in [
            ("retention:\n  archive_dir: /a\n", "needs `max_age`"),
            ("retention:\n  max_age: soon\n", "`max_age` `soon` must look like `90d`"),
            ("retention:\n  max_age: 1d\n  archive_dir: rel/dir\n", "must be an absolute path"),
            ("retention:\n  max_age: 1d\n  keep: 3\n", "unknown"),
        ] {
            let e = crate::policy::compile("p.yaml", &format!("{text}{rules}"))
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert!(e.as_ref().is_err_and(|m| m.contains(says) && m.starts_with("p.yaml:")), "{text}: {e:?}");
        }
    }
}
