//! Verification: recompute the chain from entry 1, check every stored checkpoint's signature and
//! head, and optionally a checkpoint saved earlier (so cutting entries off the end is caught).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{ReadTransaction, ReadableTable};
use serde::{Deserialize, Serialize};

use super::entry::{self, GENESIS};
use super::keys::{CheckpointError, PublicKey};
use super::merkle::{self, Frontier};
use super::prune::{MARK, Mark};
use super::store::pruned_range;
use super::tables::{BATCHES, Batch, BatchError, META, STATE};
use super::witness::WitnessPolicy;

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
    /// The first entry in the log (1 unless it was pruned).
    #[serde(default = "one")]
    pub first_seq: u64,
    /// Entries removed by prunes (`first_seq - 1`).
    #[serde(default)]
    pub pruned_entries: u64,
    /// When the newest prune was recorded (its entry's `ts`).
    #[serde(default)]
    pub pruned_at: Option<String>,
    /// The Merkle root recomputed over every entry (base64, as in checkpoints), when the log's
    /// tree could be recomputed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// With a witness policy: the newest checkpoint a quorum cosigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witnessed: Option<Witnessed>,
}

/// The newest checkpoint cosigned by a witness policy's quorum, found in the log (its
/// `witness_cosigned` entries) or given, and checked against the recomputed tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Witnessed {
    /// Its size: every entry up to it was witnessed.
    pub size: u64,
    /// The witnesses whose cosignatures on it verified.
    pub witnesses: Vec<String>,
    /// Entries after it (not witnessed yet).
    pub unwitnessed: u64,
}

fn one() -> u64 {
    1
}

impl Report {
    fn bad(mut self, seq: u64, problem: String) -> Report {
        self.ok = false;
        self.first_bad_seq = Some(seq);
        self.problem = Some(problem);
        self
    }
}

/// Why a log file could not be read offline.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OfflineError {
    /// A running daemon holds the file (redb's lock): ask the daemon, or read a copy.
    #[error("`{}` is in use by a running daemon", .0.display())]
    InUse(PathBuf),
    /// The file cannot be opened (missing, unreadable, not a redb file).
    #[error("cannot open `{}`: {source}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The storage engine's error.
        #[source]
        source: Arc<redb::DatabaseError>,
    },
    /// The storage engine could not read the file's contents.
    #[error("cannot read `{}`: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The storage engine's error.
        #[source]
        source: Arc<redb::Error>,
    },
    /// The storage engine gave up on the file (it panicked reading it).
    #[error("`{}` is corrupt (the storage engine could not read it)", .0.display())]
    Unreadable(PathBuf),
    /// A batch in the file does not decode.
    #[error("the batch stored under entry {seq} is corrupt: {source}")]
    Batch {
        /// The batch's key.
        seq: u64,
        /// What is wrong.
        #[source]
        source: BatchError,
    },
    /// Writing the export failed.
    #[error("cannot write the export: {0}")]
    Write(#[source] Arc<std::io::Error>),
}

/// The error for a log file that cannot be opened read-only.
pub fn open_error(path: &Path, e: redb::DatabaseError) -> OfflineError {
    if matches!(e, redb::DatabaseError::DatabaseAlreadyOpen) {
        OfflineError::InUse(path.to_owned())
    } else {
        OfflineError::Open { path: path.to_owned(), source: Arc::new(e) }
    }
}

/// Why verification stopped before reading the entries.
#[derive(Debug, thiserror::Error)]
enum VerifyError {
    #[error("the log cannot be read: {0}")]
    Storage(#[from] redb::Error),
    #[error("the log has no id (not a faramesh log?)")]
    NoLogId,
    #[error("the given checkpoint: {0}")]
    Given(#[source] CheckpointError),
    #[error("the given checkpoint is for log `{given}`, not `{origin}`")]
    OtherLog { given: String, origin: String },
}

fn read_err(e: impl Into<redb::Error>) -> VerifyError {
    VerifyError::Storage(e.into())
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
        first_seq: 1,
        pruned_entries: 0,
        pruned_at: None,
        root: None,
        witnessed: None,
    };
    offline::verify(path, public, against).unwrap_or_else(|e| failed(e.to_string()))
}

/// Verifies the log visible in `txn`.
pub fn verify_txn(txn: &ReadTransaction, public: &PublicKey, against: Option<&str>) -> Report {
    verify_txn_with(txn, public, against, None)
}

/// [`verify_txn`], and with a witness policy: the newest checkpoint its quorum cosigned (in the
/// log's `witness_cosigned` entries, or `against`) must match the recomputed root at its size,
/// and one must exist.
pub fn verify_txn_with(
    txn: &ReadTransaction,
    public: &PublicKey,
    against: Option<&str>,
    policy: Option<&WitnessPolicy>,
) -> Report {
    let report = Report {
        ok: true,
        size: 0,
        checkpoints: 0,
        head_hash: entry::hex(&GENESIS),
        first_bad_seq: None,
        problem: None,
        first_seq: 1,
        pruned_entries: 0,
        pruned_at: None,
        root: None,
        witnessed: None,
    };
    match verify_inner(txn, public, against, policy, report.clone()) {
        Ok(r) => r,
        Err(problem) => Report { ok: false, problem: Some(problem.to_string()), ..report },
    }
}

fn verify_inner(
    txn: &ReadTransaction,
    public: &PublicKey,
    against: Option<&str>,
    policy: Option<&WitnessPolicy>,
    mut report: Report,
) -> Result<Report, VerifyError> {
    let meta = txn.open_table(META).map_err(read_err)?;
    let log_id =
        meta.get("log_id").map_err(read_err)?.map(|v| v.value().to_owned()).ok_or(VerifyError::NoLogId)?;
    let origin = format!("faramesh/{log_id}");
    let given = match against {
        None => None,
        Some(note) => {
            let cp = public.verify_checkpoint(note).map_err(VerifyError::Given)?;
            if cp.origin != origin {
                return Err(VerifyError::OtherLog { given: cp.origin, origin });
            }
            Some(cp)
        }
    };

    let batches = txn.open_table(BATCHES).map_err(read_err)?;
    // A pruned log starts after entry 1: from the first kept entry, whose link back is
    // checked against the anchor the newest prune recorded (below and at the end).
    let mark: Option<Mark> = match txn.open_table(STATE) {
        Ok(state) => state.get(MARK).map_err(read_err)?.and_then(|v| serde_json::from_slice(v.value()).ok()),
        Err(_) => None,
    };
    let start = match batches.first().map_err(read_err)? {
        None => None,
        Some((k, v)) => match Batch::decode(v.value()) {
            Ok(batch) => batch.records.first().map(|r| {
                let first = (k.value() + 1).saturating_sub(batch.records.len() as u64);
                (first, entry::open(r).map(|o| o.prev_hash).unwrap_or(GENESIS))
            }),
            Err(why) => return Ok(report.bad(1, format!("the batch stored under {}: {why}", k.value()))),
        },
    };
    let mut prev = GENESIS;
    let mut expected = 1u64;
    // The Merkle tree recomputed along the chain: from the empty tree, or, for a pruned log,
    // from the compact range its prune recorded (`None` while it cannot be known).
    let recorded_range = pruned_range(mark.as_ref());
    let mut tree = Some(Frontier::default());
    if let Some((first, anchor)) = start
        && first > 1
    {
        expected = first;
        prev = anchor;
        report.first_seq = first;
        report.pruned_entries = first - 1;
        tree = recorded_range.clone().filter(|r| r.size() == first - 1);
    }
    // Once a checkpoint over the tree has been read, an older-format one may not follow.
    let mut tree_checkpoints = false;
    // The first checkpoint over the tree whose root could not be recomputed.
    let mut unrecomputed: Option<u64> = None;
    // With a witness policy: the root at every checkpoint over the tree, and the cosigned
    // checkpoints the log recorded.
    let mut roots: Vec<(u64, [u8; 32])> = Vec::new();
    let mut cosigned: Vec<(u64, String)> = Vec::new();
    // The newest `prune` entry read: (its seq, first_kept_seq, anchor_hash, ts, pruned_range).
    let mut newest_prune: Option<(u64, u64, String, String, Vec<String>)> = None;
    let mut rows = batches.iter().map_err(read_err)?;
    // Records of the batches read so far and not yet checked, with the key and checkpoint of
    // the batch each ends (on its last record); one record of look-ahead tells a swapped entry
    // from a missing one.
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut queued_records = 0usize;
    loop {
        while queued_records < 2 {
            let Some(row) = rows.next() else { break };
            let (k, v) = match row {
                Ok(kv) => kv,
                Err(e) => return Ok(report.bad(expected, format!("entry {expected} cannot be read: {e}"))),
            };
            let key = k.value();
            let batch = match Batch::decode(v.value()) {
                Ok(b) => b,
                Err(why) => return Ok(report.bad(expected, format!("the batch stored under {key}: {why}"))),
            };
            queued_records += batch.records.len();
            queue.extend(batch.records.into_iter().map(|record| Pending::Record(record, key)));
            queue.push_back(Pending::End(key, batch.checkpoint));
        }
        let Some(item) = queue.pop_front() else { break };
        match item {
            Pending::Record(record, key) => {
                queued_records -= 1;
                let seq = expected;
                let opened = match entry::open(&record) {
                    Ok(o) => o,
                    Err(why) => return Ok(report.bad(seq, format!("entry {seq}: {why}"))),
                };
                if opened.seq != seq {
                    let next_is_it = queue.iter().find_map(|p| match p {
                        Pending::Record(r, _) => Some(entry::open(r).is_ok_and(|o| o.seq == seq)),
                        _ => None,
                    });
                    let problem = if opened.seq > seq && next_is_it != Some(true) {
                        format!("entry {seq} is missing (the next stored entry is {})", opened.seq)
                    } else {
                        format!("entry {seq} holds the entry with seq {} (moved or swapped)", opened.seq)
                    };
                    return Ok(report.bad(seq, problem));
                }
                if let Some(m) = &mark
                    && m.first_kept_seq == seq
                    && entry::hex(&opened.prev_hash) != m.anchor_hash
                {
                    return Ok(report.bad(
                        seq,
                        format!(
                            "entry {seq} does not link to the anchor the prune at entry {} recorded",
                            m.seq
                        ),
                    ));
                }
                if policy.is_some()
                    && opened.value.get("kind").and_then(serde_json::Value::as_str)
                        == Some("witness_cosigned")
                    && let Some(note) = opened.value.get("checkpoint").and_then(serde_json::Value::as_str)
                {
                    cosigned.push((seq, note.to_owned()));
                }
                if opened.value.get("kind").and_then(serde_json::Value::as_str) == Some("prune") {
                    let field = |k: &str| opened.value.get(k).cloned().unwrap_or_default();
                    newest_prune = Some((
                        seq,
                        field("first_kept_seq").as_u64().unwrap_or(0),
                        field("anchor_hash").as_str().unwrap_or_default().to_owned(),
                        field("ts").as_str().unwrap_or_default().to_owned(),
                        serde_json::from_value(field("pruned_range")).unwrap_or_default(),
                    ));
                }
                if opened.prev_hash != prev {
                    return Ok(
                        report.bad(seq, format!("entry {seq}: prev_hash does not link to entry {}", seq - 1))
                    );
                }
                if seq > key {
                    return Ok(
                        report.bad(seq, format!("entry {seq} is stored in the batch of entries up to {key}"))
                    );
                }
                prev = opened.entry_hash;
                if let Some(r) = recorded_range.as_ref().filter(|r| r.size() == seq - 1)
                    && tree.as_ref() != Some(r)
                {
                    // Entries before the cut are still here (a prune not finished): the range the
                    // prune recorded must be theirs.
                    if tree.is_some() {
                        return Ok(report.bad(
                            seq,
                            format!(
                                "the tree range the prune recorded does not match entries 1 to {}",
                                seq - 1
                            ),
                        ));
                    }
                    tree = Some(r.clone());
                }
                if let Some(t) = tree.as_mut() {
                    t.push(merkle::leaf_hash(&prev), |_, _, _| {});
                }
                if let Some(cp) = &given
                    && cp.size == seq
                    && !matches_at(cp, &prev, tree.as_ref())
                {
                    return Ok(report
                        .bad(seq, format!("entry {seq} does not match the given checkpoint (size {seq})")));
                }
                expected += 1;
                report.size = seq;
                report.head_hash = entry::hex(&prev);
            }
            Pending::End(key, note) => {
                let size = expected - 1;
                if key > size {
                    return Ok(report.bad(
                        expected,
                        format!("entry {expected} is missing: the signed checkpoint at size {key} covers {key} entries"),
                    ));
                }
                let at = key.max(1);
                let cp = match public.verify_checkpoint(&note) {
                    Ok(cp) => cp,
                    Err(why) => return Ok(report.bad(at, format!("checkpoint at size {key}: {why}"))),
                };
                if cp.size != key || cp.origin != origin {
                    return Ok(report.bad(at, format!("checkpoint at size {key} names another log or size")));
                }
                if cp.legacy && tree_checkpoints {
                    return Ok(report.bad(
                        at,
                        format!("checkpoint at size {key} is in the older format, after checkpoints over the Merkle tree"),
                    ));
                }
                tree_checkpoints |= !cp.legacy;
                if policy.is_some() && !cp.legacy {
                    roots.push((key, cp.root));
                }
                if cp.legacy && cp.root != prev {
                    return Ok(report
                        .bad(at, format!("entry {key} does not match the signed checkpoint at size {key}")));
                }
                if !cp.legacy {
                    match tree.as_ref() {
                        Some(t) if t.root() != cp.root => {
                            return Ok(report.bad(
                                at,
                                format!("entry {key} does not match the signed checkpoint at size {key}"),
                            ));
                        }
                        Some(_) => {}
                        // Entries a prune is removing: their tree is checked at the cut.
                        None if mark.as_ref().is_some_and(|m| key < m.first_kept_seq) => {}
                        // Reported at the end, unless what the prunes recorded explains it first.
                        None => {
                            unrecomputed.get_or_insert(at);
                        }
                    }
                }
                report.checkpoints += 1;
            }
        }
    }
    // Entries missing at the start must be covered by the newest recorded prune, and the
    // prune mark must be that entry's.
    let kept_from = report.first_seq;
    match (&newest_prune, &mark) {
        (Some((seq, first_kept, anchor, ts, range)), Some(m)) => {
            if m.seq != *seq
                || m.first_kept_seq != *first_kept
                || &m.anchor_hash != anchor
                || &m.pruned_range != range
            {
                return Ok(report
                    .bad(*seq, format!("the prune mark does not match the prune recorded at entry {seq}")));
            }
            if kept_from > *first_kept {
                return Ok(report.bad(
                    *first_kept,
                    format!(
                        "entries {first_kept} to {} are missing: the prune at entry {seq} kept entries from {first_kept} on",
                        kept_from - 1
                    ),
                ));
            }
            if kept_from > 1 {
                report.pruned_at = Some(ts.clone());
            }
        }
        (Some((seq, ..)), None) => {
            return Ok(report.bad(*seq, format!("the prune recorded at entry {seq} has no prune mark")));
        }
        (None, _) if kept_from > 1 => {
            return Ok(report
                .bad(1, format!("entries 1 to {} are missing and no prune was recorded", kept_from - 1)));
        }
        (None, _) => {}
    }
    if let Some(at) = unrecomputed {
        return Ok(report.bad(
            at,
            format!(
                "the Merkle root at size {at} cannot be recomputed: the prune did not record the tree of the entries it removed"
            ),
        ));
    }
    report.root = tree.as_ref().map(|t| crate::keys::base64_encode(&t.root()));
    if let Some(policy) = policy {
        let given = against.map(|note| (report.size + 1, note.to_owned()));
        match witnessed(policy, public, &origin, &roots, cosigned.into_iter().chain(given), report.size) {
            Ok(w) => report.witnessed = Some(w),
            Err((at, problem)) => return Ok(report.bad(at, problem)),
        }
    }
    if let Some(cp) = &given
        && cp.size > report.size
    {
        let missing = report.size + 1;
        return Ok(report.bad(
            missing,
            format!(
                "entry {missing} is missing: the given checkpoint (size {}) covers {} entries",
                cp.size, cp.size
            ),
        ));
    }
    Ok(report)
}

/// The newest checkpoint the policy's quorum cosigned among `notes` (each with the seq of the
/// entry that recorded it), checked against the roots the log's own checkpoints were verified
/// to have. `Err((seq, problem))` when a cosigned root differs (the log was rewritten below a
/// size a witness saw) or no checkpoint is cosigned by the quorum.
fn witnessed(
    policy: &WitnessPolicy,
    public: &PublicKey,
    origin: &str,
    roots: &[(u64, [u8; 32])],
    notes: impl Iterator<Item = (u64, String)>,
    size: u64,
) -> Result<Witnessed, (u64, String)> {
    let mut best: Option<Witnessed> = None;
    for (seq, note) in notes {
        let Ok((cp, cosigs)) = policy.check(&note, public) else { continue };
        if cp.origin != origin {
            continue;
        }
        let names: Vec<String> = cosigs.iter().map(|c| c.name.clone()).collect();
        match roots.binary_search_by_key(&cp.size, |(s, _)| *s) {
            Ok(i) if roots[i].1 == cp.root => {}
            Ok(_) => {
                return Err((
                    cp.size.max(1),
                    format!(
                        "the checkpoint at size {} cosigned by {} (recorded at entry {seq}) does not match the log's Merkle root at that size: the log was rewritten after they saw it",
                        cp.size,
                        names.join(", ")
                    ),
                ));
            }
            Err(_) if cp.size > size => {
                return Err((
                    size + 1,
                    format!(
                        "entry {} is missing: the checkpoint cosigned by {} covers {} entries",
                        size + 1,
                        names.join(", "),
                        cp.size
                    ),
                ));
            }
            // A size the log signed no checkpoint at (or whose entries were pruned): its root
            // cannot be compared here.
            Err(_) => continue,
        }
        if best.as_ref().is_none_or(|b| b.size < cp.size) {
            best = Some(Witnessed { size: cp.size, witnesses: names, unwitnessed: size - cp.size });
        }
    }
    best.ok_or_else(|| {
        (
            1,
            format!(
                "no checkpoint of this log is cosigned by the policy's quorum `{}`: none of its {} entries is witnessed",
                policy.quorum_name(),
                size
            ),
        )
    })
}

/// Whether the given checkpoint `cp` (of the size just reached) holds what was recomputed: the
/// Merkle root, or for an older-format one the last entry's hash.
fn matches_at(cp: &crate::Checkpoint, head: &[u8; 32], tree: Option<&Frontier>) -> bool {
    if cp.legacy { cp.root == *head } else { tree.is_some_and(|t| t.root() == cp.root) }
}

/// A unit of verification work: a record (with the key of its batch), or the end of a batch
/// (its key and checkpoint).
enum Pending {
    Record(Vec<u8>, u64),
    End(u64, String),
}

/// Reads a log file without the daemon: the latest checkpoint, or an export.
pub mod offline {
    use std::path::Path;

    use std::sync::Arc;

    use super::{OfflineError, PublicKey, Report};
    use redb::{ReadOnlyDatabase, ReadableDatabase, ReadableTable};
    use serde_json::Value;

    use crate::entry;
    use crate::tables::{BATCHES, Batch};

    /// Runs `f` on a read transaction of the file. A corrupted file must never read as valid:
    /// if the storage engine panics on it, that is reported as an error.
    pub(super) fn with_db<T>(
        path: &Path,
        f: impl FnOnce(&redb::ReadTransaction, &dyn Fn(redb::Error) -> OfflineError) -> Result<T, OfflineError>,
    ) -> Result<T, OfflineError> {
        let read = |e: redb::Error| OfflineError::Read { path: path.to_owned(), source: Arc::new(e) };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let db = ReadOnlyDatabase::open(path).map_err(|e| super::open_error(path, e))?;
            let txn = db.begin_read().map_err(|e| read(e.into()))?;
            f(&txn, &read)
        }));
        result.unwrap_or_else(|_| Err(OfflineError::Unreadable(path.to_owned())))
    }

    /// What an export wrote.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Written {
        /// Records written.
        pub count: u64,
        /// The seq of the first.
        pub first_seq: Option<u64>,
        /// The seq of the last.
        pub last_seq: u64,
    }

    /// A `tlog-proof` receipt for entry `seq`, and whether its checkpoint is cosigned.
    pub fn receipt(
        path: &Path,
        seq: u64,
    ) -> Result<Result<(crate::witness::Receipt, bool), crate::LogError>, OfflineError> {
        with_db(path, |txn, _| Ok(crate::store::receipt_txn(txn, seq)))
    }

    /// The log's action id scheme (`meta.ids`).
    pub fn id_scheme(path: &Path) -> Result<crate::ids::Scheme, OfflineError> {
        with_db(path, |txn, read| {
            let meta = txn.open_table(crate::tables::META).map_err(|e| read(e.into()))?;
            let ids = meta.get("ids").map_err(|e| read(e.into()))?.map(|v| v.value().to_owned());
            Ok(crate::ids::Scheme::from_meta(ids.as_deref()).unwrap_or(crate::ids::Scheme::Prefixed))
        })
    }

    /// The log's origin line (`faramesh/<log id>`), the name of its verifier key.
    pub fn origin(path: &Path) -> Result<Option<String>, OfflineError> {
        with_db(path, |txn, read| {
            let meta = txn.open_table(crate::tables::META).map_err(|e| read(e.into()))?;
            let id = meta.get("log_id").map_err(|e| read(e.into()))?.map(|v| v.value().to_owned());
            Ok(id.map(|id| format!("faramesh/{id}")))
        })
    }

    /// Verifies a log file; `Err` when it cannot be read at all (in use, missing).
    pub fn verify(path: &Path, public: &PublicKey, against: Option<&str>) -> Result<Report, OfflineError> {
        with_db(path, |txn, _| Ok(super::verify_txn(txn, public, against)))
    }

    /// [`verify`] with a witness policy (see [`super::verify_txn_with`]).
    pub fn verify_witnessed(
        path: &Path,
        public: &PublicKey,
        against: Option<&str>,
        policy: Option<&super::WitnessPolicy>,
    ) -> Result<Report, OfflineError> {
        with_db(path, |txn, _| Ok(super::verify_txn_with(txn, public, against, policy)))
    }

    /// Writes a consistent copy of the file to `dest` (see [`crate::backup`]).
    pub fn backup(path: &Path, dest: &Path) -> Result<u64, OfflineError> {
        with_db(path, |txn, read| crate::backup::backup_txn(txn, dest).map_err(read))
    }

    /// The latest signed checkpoint in the file.
    pub fn latest_checkpoint(path: &Path) -> Result<Option<String>, OfflineError> {
        with_db(path, |txn, read| {
            let t = txn.open_table(BATCHES).map_err(|e| read(e.into()))?;
            match t.last().map_err(|e| read(e.into()))? {
                None => Ok(None),
                Some((k, v)) => Batch::decode(v.value())
                    .map(|b| Some(b.checkpoint))
                    .map_err(|source| OfflineError::Batch { seq: k.value(), source }),
            }
        })
    }

    /// Writes every record with `ts >= since_ms` as JSON lines; returns how many, and the seqs
    /// of the first and last written.
    pub fn export(path: &Path, out: &mut dyn std::io::Write, since_ms: u64) -> Result<Written, OfflineError> {
        with_db(path, |txn, read| {
            let t = txn.open_table(BATCHES).map_err(|e| read(e.into()))?;
            let mut written = Written::default();
            for item in t.iter().map_err(|e| read(e.into()))? {
                let (k, v) = item.map_err(|e| read(e.into()))?;
                let batch = Batch::decode(v.value())
                    .map_err(|source| OfflineError::Batch { seq: k.value(), source })?;
                let first = (k.value() + 1).saturating_sub(batch.records.len() as u64);
                for (seq, record) in (first..).zip(&batch.records) {
                    let record = String::from_utf8_lossy(record);
                    let keep = serde_json::from_str::<Value>(&record)
                        .ok()
                        .and_then(|v| v.get("ts").and_then(Value::as_str).and_then(entry::parse_rfc3339))
                        .is_none_or(|ts| ts >= since_ms);
                    if keep {
                        writeln!(out, "{record}").map_err(|e| OfflineError::Write(Arc::new(e)))?;
                        written.count += 1;
                        written.first_seq.get_or_insert(seq);
                        written.last_seq = seq;
                    }
                }
            }
            Ok(written)
        })
    }
}
