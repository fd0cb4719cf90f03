//! Verification: recompute the chain from entry 1, check every stored checkpoint's signature and
//! head, and optionally a checkpoint saved earlier (so cutting entries off the end is caught).

use std::collections::BTreeMap;
use std::path::Path;

use redb::{ReadTransaction, ReadableTable};
use serde::{Deserialize, Serialize};

use super::entry::{self, GENESIS};
use super::keys::PublicKey;
use super::tables::{CHECKPOINTS, ENTRIES, META};

/// The outcome of a verification.
///
/// JSON: `{"ok": false, "size": 120, "checkpoints": 57, "head_hash": "…",
/// "first_bad_seq": 42, "problem": "entry 42: entry_hash does not match the entry's contents"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Whether everything checked out.
    pub ok: bool,
    /// Entries read.
    pub size: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// Hash of the last good entry.
    pub head_hash: String,
    /// The first sequence number found bad.
    pub first_bad_seq: Option<u64>,
    /// What is wrong with it.
    pub problem: Option<String>,
}

impl Report {
    fn bad(mut self, seq: u64, problem: String) -> Report {
        self.ok = false;
        self.first_bad_seq = Some(seq);
        self.problem = Some(problem);
        self
    }
}

/// A readable message for a log file that cannot be opened read-only.
pub fn open_error(path: &Path, e: &redb::DatabaseError) -> String {
    // redb reports the lock as `DatabaseAlreadyOpen` or, from the file lock, as a storage error.
    if matches!(e, redb::DatabaseError::DatabaseAlreadyOpen) || e.to_string().contains("already open") {
        format!(
            "`{}` is in use by a running daemon: stop it (`faramesh stop`), ask it (`faramesh status`), or work on a copy",
            path.display()
        )
    } else {
        format!("cannot open `{}`: {e}", path.display())
    }
}

/// Verifies a log file on disk (a copy is fine) with only the public key.
pub fn verify_file(path: &Path, public: &PublicKey, against: Option<&str>) -> Report {
    let failed = |problem: String| Report {
        ok: false,
        size: 0,
        checkpoints: 0,
        head_hash: entry::hex(&GENESIS),
        first_bad_seq: None,
        problem: Some(problem),
    };
    offline::with_db(path, |txn| Ok(verify_txn(txn, public, against))).unwrap_or_else(failed)
}

/// Verifies the log visible in `txn`.
pub fn verify_txn(txn: &ReadTransaction, public: &PublicKey, against: Option<&str>) -> Report {
    let report = Report {
        ok: true,
        size: 0,
        checkpoints: 0,
        head_hash: entry::hex(&GENESIS),
        first_bad_seq: None,
        problem: None,
    };
    match verify_inner(txn, public, against, report.clone()) {
        Ok(r) => r,
        Err(problem) => Report { ok: false, problem: Some(problem), ..report },
    }
}

fn verify_inner(
    txn: &ReadTransaction,
    public: &PublicKey,
    against: Option<&str>,
    mut report: Report,
) -> Result<Report, String> {
    let meta = txn.open_table(META).map_err(|e| format!("no log metadata: {e}"))?;
    let log_id =
        meta.get("log_id").map_err(|e| e.to_string())?.map(|v| v.value().to_owned()).ok_or("no log id")?;
    let origin = format!("faramesh/{log_id}");

    // Signed heads: size → head hash, from the stored checkpoints and the external one.
    let mut signed: BTreeMap<u64, ([u8; 32], String)> = BTreeMap::new();
    let checkpoints = txn.open_table(CHECKPOINTS).map_err(|e| e.to_string())?;
    for item in checkpoints.iter().map_err(|e| e.to_string())? {
        let (k, v) = item.map_err(|e| format!("cannot read checkpoints: {e}"))?;
        let size = k.value();
        let cp = match public.verify_checkpoint(v.value()) {
            Ok(cp) => cp,
            Err(why) => return Ok(report.bad(size.max(1), format!("checkpoint at size {size}: {why}"))),
        };
        if cp.size != size || cp.origin != origin {
            return Ok(
                report.bad(size.max(1), format!("checkpoint at size {size} names another log or size"))
            );
        }
        report.checkpoints += 1;
        signed.insert(size, (cp.head_hash, format!("the signed checkpoint at size {size}")));
    }
    if let Some(note) = against {
        let cp = public.verify_checkpoint(note).map_err(|why| format!("the given checkpoint: {why}"))?;
        if cp.origin != origin {
            return Err(format!("the given checkpoint is for log `{}`, not `{origin}`", cp.origin));
        }
        if let Some((hash, _)) = signed.get(&cp.size)
            && *hash != cp.head_hash
        {
            return Ok(report.bad(
                cp.size.max(1),
                format!("the given checkpoint disagrees with the stored one at size {}", cp.size),
            ));
        }
        signed.insert(cp.size, (cp.head_hash, format!("the given checkpoint (size {})", cp.size)));
    }

    let entries = txn.open_table(ENTRIES).map_err(|e| e.to_string())?;
    let mut prev = GENESIS;
    for (expected, item) in (1u64..).zip(entries.iter().map_err(|e| e.to_string())?) {
        let (k, v) = match item {
            Ok(kv) => kv,
            Err(e) => return Ok(report.bad(expected, format!("entry {expected} cannot be read: {e}"))),
        };
        let seq = k.value();
        if seq != expected {
            return Ok(
                report.bad(expected, format!("entry {expected} is missing (the next stored entry is {seq})"))
            );
        }
        let opened = match entry::open(v.value()) {
            Ok(o) => o,
            Err(why) => return Ok(report.bad(seq, format!("entry {seq}: {why}"))),
        };
        if opened.seq != seq {
            return Ok(report.bad(
                seq,
                format!("entry {seq} holds the entry with seq {} (moved or swapped)", opened.seq),
            ));
        }
        if opened.prev_hash != prev {
            return Ok(report.bad(seq, format!("entry {seq}: prev_hash does not link to entry {}", seq - 1)));
        }
        prev = opened.entry_hash;
        if let Some((hash, what)) = signed.get(&seq)
            && *hash != prev
        {
            return Ok(report.bad(seq, format!("entry {seq} does not match {what}")));
        }
        report.size = seq;
        report.head_hash = entry::hex(&prev);
    }
    let size = report.size;
    if let Some((&max_signed, (_, what))) = signed.iter().next_back() {
        if max_signed > size {
            return Ok(report.bad(
                size + 1,
                format!("entry {} is missing: {what} covers {max_signed} entries", size + 1),
            ));
        }
        if max_signed < size {
            return Ok(report.bad(
                max_signed + 1,
                format!("entry {} is not covered by any signed checkpoint", max_signed + 1),
            ));
        }
    } else if size > 0 {
        return Ok(report.bad(1, "entry 1 is not covered by any signed checkpoint".to_owned()));
    }
    Ok(report)
}

/// Reads a log file without the daemon: the latest checkpoint, or an export.
pub mod offline {
    use std::path::Path;

    use redb::{ReadOnlyDatabase, ReadableDatabase, ReadableTable};
    use serde_json::Value;

    use super::super::entry;
    use super::super::tables::{CHECKPOINTS, ENTRIES};

    /// Runs `f` on a read transaction of the file. A corrupted file must never read as valid:
    /// if the storage engine panics on it, that is reported as an error.
    pub(super) fn with_db<T>(
        path: &Path,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, String>,
    ) -> Result<T, String> {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let db = ReadOnlyDatabase::open(path).map_err(|e| super::open_error(path, &e))?;
            let txn = db.begin_read().map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            f(&txn)
        }));
        result.unwrap_or_else(|_| {
            Err(format!("`{}` is corrupt (the storage engine could not read it)", path.display()))
        })
    }

    /// The latest signed checkpoint in the file.
    pub fn latest_checkpoint(path: &Path) -> Result<Option<String>, String> {
        with_db(path, |txn| {
            let t = txn.open_table(CHECKPOINTS).map_err(|e| e.to_string())?;
            Ok(t.last().map_err(|e| e.to_string())?.map(|(_, v)| v.value().to_owned()))
        })
    }

    /// Writes every record with `ts >= since_ms` as JSON lines; returns how many.
    pub fn export(path: &Path, out: &mut dyn std::io::Write, since_ms: u64) -> Result<u64, String> {
        with_db(path, |txn| {
            let t = txn.open_table(ENTRIES).map_err(|e| e.to_string())?;
            let mut n = 0;
            for item in t.iter().map_err(|e| e.to_string())? {
                let (_, v) = item.map_err(|e| e.to_string())?;
                let record = String::from_utf8_lossy(v.value());
                let keep = serde_json::from_str::<Value>(&record)
                    .ok()
                    .and_then(|v| v.get("ts").and_then(Value::as_str).and_then(entry::parse_rfc3339))
                    .is_none_or(|ts| ts >= since_ms);
                if keep {
                    writeln!(out, "{record}").map_err(|e| e.to_string())?;
                    n += 1;
                }
            }
            Ok(n)
        })
    }
}
