//! Retention: removing whole old batches after a `prune` entry recorded the cut.
//!
//! A prune is recorded before anything is removed: a `prune` entry (chained and signed like
//! every entry) names the first kept entry and the hash chained before it (the anchor), and the
//! state row [`MARK`] says the same for readers. Then the writer removes the batches before the
//! cut a chunk per transaction (appends are served between chunks), the index rows and state
//! rows of removed actions, and compacts the file. A prune cut short (a crash) resumes on open.
//! `verify` accepts a log that starts after entry 1 only when a recorded prune covers the gap
//! and the first kept entry links to its anchor (see `verify.rs`).

use redb::{Database, ReadableTable};
use serde::{Deserialize, Serialize};

use super::LogError;
use super::ids::ActionIds;
use super::tables::{ACTION_EVENTS, BATCHES, Batch, POSTINGS, STATE, TERMS};

/// The state row recording the newest prune.
pub const MARK: &str = "log/prune";

/// The state row recording how far the log was exported or archived.
pub const EXPORTED: &str = "log/exported";

/// What [`MARK`] holds (the fields of the newest `prune` entry that verification needs).
///
/// JSON: `{"first_kept_seq": 900001, "anchor_hash": "…", "seq": 1000003}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The first entry kept.
    pub first_kept_seq: u64,
    /// The `entry_hash` of the entry before it (the `prev_hash` the first kept entry holds).
    pub anchor_hash: String,
    /// The seq of the `prune` entry.
    pub seq: u64,
    /// The compact range of the removed entries `1 … first_kept_seq - 1` in the Merkle tree:
    /// the roots of its perfect subtrees, largest first, base64 (what every later root and
    /// proof needs of them). Absent for a prune made before the log kept a tree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned_range: Vec<String>,
}

impl Mark {
    /// The row's bytes, built from its numbers and strings: nothing can fail to serialize, so
    /// the row is never written empty or as nothing (which would delete it).
    pub fn to_row(&self) -> Vec<u8> {
        let mut m = serde_json::Map::new();
        m.insert("first_kept_seq".into(), self.first_kept_seq.into());
        m.insert("anchor_hash".into(), self.anchor_hash.clone().into());
        m.insert("seq".into(), self.seq.into());
        if !self.pruned_range.is_empty() {
            m.insert("pruned_range".into(), self.pruned_range.clone().into());
        }
        serde_json::Value::Object(m).to_string().into_bytes()
    }
}

/// What [`EXPORTED`] holds: every entry up to `through_seq` was written out by an export or
/// an archive at `ts`.
///
/// JSON: `{"through_seq": 900000, "ts": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exported {
    /// The last entry exported (every one before it was too).
    pub through_seq: u64,
    /// When.
    pub ts: String,
}

impl Exported {
    /// The row's bytes (as [`Mark::to_row`]: cannot fail).
    pub fn to_row(&self) -> Vec<u8> {
        let mut m = serde_json::Map::new();
        m.insert("through_seq".into(), self.through_seq.into());
        m.insert("ts".into(), self.ts.clone().into());
        serde_json::Value::Object(m).to_string().into_bytes()
    }
}

fn storage(e: impl Into<redb::Error>) -> LogError {
    LogError::storage(e)
}

/// Removes batches that end before `first_kept`, at most about `max_entries` entries' worth,
/// in one transaction; returns `(batches, entries)` removed (zero when none are left).
pub fn delete_batches(db: &Database, first_kept: u64, max_entries: u64) -> Result<(u64, u64), LogError> {
    let txn = db.begin_write().map_err(storage)?;
    let removed = {
        let mut t = txn.open_table(BATCHES).map_err(storage)?;
        let mut keys = Vec::new();
        let mut first = None;
        for item in t.range(..first_kept).map_err(storage)? {
            let (k, v) = item.map_err(storage)?;
            let key = k.value();
            let start = match first {
                Some(s) => s,
                None => {
                    let plain = Batch::plain(v.value())
                        .map_err(|e| LogError::Corrupt { seq: key, source: e.into() })?;
                    let n =
                        Batch::count(&plain).map_err(|e| LogError::Corrupt { seq: key, source: e.into() })?;
                    let s = (key + 1).saturating_sub(n as u64);
                    first = Some(s);
                    s
                }
            };
            keys.push(key);
            if key + 1 - start >= max_entries {
                break;
            }
        }
        for key in &keys {
            t.remove(key).map_err(storage)?;
        }
        let entries = match (first, keys.last()) {
            (Some(s), Some(&last)) => last + 1 - s,
            _ => 0,
        };
        (keys.len() as u64, entries)
    };
    if removed.0 == 0 {
        txn.abort().map_err(storage)?;
    } else {
        txn.commit().map_err(storage)?;
    }
    Ok(removed)
}

/// Which state rows outlive a prune. The log stores state rows as keys and bytes and does not
/// know what they mean; its owner does. Called with a row's key and value and a test telling
/// whether an action's entries were pruned; `true` keeps the row. Without one, every state row
/// is kept.
pub type StateRetention = std::sync::Arc<dyn Fn(&str, &[u8], &dyn Fn(&str) -> bool) -> bool + Send + Sync>;

/// Removes the index rows of entries before `first_kept`, and the state rows `keep` says belong
/// to what was pruned.
pub fn delete_index_and_state(
    db: &Database,
    first_kept: u64,
    ids: &ActionIds,
    keep: Option<&StateRetention>,
) -> Result<(), LogError> {
    let txn = db.begin_write().map_err(storage)?;
    {
        let terms = txn.open_table(TERMS).map_err(storage)?;
        let mut postings = txn.open_table(POSTINGS).map_err(storage)?;
        for item in terms.iter().map_err(storage)? {
            let (_, number) = item.map_err(storage)?;
            let base = u128::from(number.value()) << 64;
            postings.retain_in(base..base | u128::from(first_kept), |_, ()| false).map_err(storage)?;
        }
        let mut events = txn.open_table(ACTION_EVENTS).map_err(storage)?;
        events.retain_in(..u128::from(first_kept) << 64, |_, ()| false).map_err(storage)?;
        if let Some(keep) = keep {
            let mut state = txn.open_table(STATE).map_err(storage)?;
            let pruned = |id: &str| ids.seq_of(id).is_some_and(|s| s < first_kept);
            state.retain(|key, value| keep(key, value, &pruned)).map_err(storage)?;
        }
    }
    txn.commit().map_err(storage)
}

#[cfg(test)]
mod tests {
    use super::{Exported, Mark};

    #[test]
    fn rows_read_back_as_what_was_written() {
        for pruned_range in [vec![], vec!["AAAA".to_owned(), "BBBB".to_owned()]] {
            let mark = Mark { first_kept_seq: 901, anchor_hash: "ab".repeat(32), seq: 1003, pruned_range };
            let back: Mark = serde_json::from_slice(&mark.to_row()).unwrap();
            assert_eq!(back, mark);
        }
        let row = Exported { through_seq: 7, ts: "2026-12-06T18:00:00.000Z".into() };
        let back: Exported = serde_json::from_slice(&row.to_row()).unwrap();
        assert_eq!((back.through_seq, back.ts), (7, row.ts.clone()));
    }
}
