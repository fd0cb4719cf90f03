//! The decision log against a real redb file: reads, tamper detection, injected storage faults
//! and SIGKILL crashes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use faramesh_log::tables::{BATCHES, Batch};
use faramesh_log::{Log, LogError, LogKey, LogOptions, entry, verify_file};
use redb::backends::FileBackend;
use redb::{Builder, Database, ReadableDatabase, ReadableTable, StorageBackend};
use serde_json::{Map, Value, json};

fn body(i: u64, agent: &str) -> Map<String, Value> {
    json!({
        "kind": "decision",
        "n": i,
        "agent_id": agent,
        "tool": "shell",
        "operation": "exec",
        "effect": if i.is_multiple_of(3) { "DEFER" } else { "DENY" },
        "approval_id": if i.is_multiple_of(3) { Value::String(format!("apr-{i}")) } else { Value::Null },
        "params": {"cmd": "ls", "password": "hunter2"},
    })
    .as_object()
    .unwrap()
    .clone()
}

fn new_log(dir: &Path) -> (Log, LogKey) {
    let key = LogKey::load_or_create(&dir.join("log.key")).unwrap();
    let log = Log::open(&dir.join("log.redb"), key.clone(), LogOptions::default()).unwrap();
    (log, key)
}

/// A log of `n` decisions written by one appender, closed; returns its key and last checkpoint.
fn written_log(dir: &Path, n: u64) -> (LogKey, String) {
    let (log, key) = new_log(dir);
    for i in 1..=n {
        log.append_blocking(body(i, "bot")).unwrap();
    }
    let cp = log.latest_checkpoint().unwrap().unwrap();
    log.close();
    (key, cp)
}

/// Every stored record as `(seq, bytes)`, the seq computed from its batch's key.
fn all_records(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let db = redb::ReadOnlyDatabase::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(BATCHES).unwrap();
    let mut out = Vec::new();
    for row in t.iter().unwrap() {
        let (k, v) = row.unwrap();
        let batch = Batch::decode(v.value()).unwrap();
        let first = k.value() + 1 - batch.records.len() as u64;
        out.extend((first..).zip(batch.records));
    }
    out
}

#[test]
fn appends_are_chained_indexed_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = new_log(dir.path());
    let log = Arc::new(log);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..25u64)
                    .map(|i| log.append_blocking(body(t * 100 + i, &format!("agent-{t}"))).unwrap().seq)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let by_seq_20 = log.action_id(20);
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>(), "sequence numbers are gapless and unique");
    assert_eq!(log.head().0, 100);

    let rec: Value = serde_json::from_str(&log.get_by_id(&by_seq_20).unwrap().unwrap()).unwrap();
    assert_eq!(rec["seq"], 20);
    assert_eq!(rec["id"], by_seq_20.as_str());
    assert_eq!(rec["params"]["password"], "hunter2", "the store keeps what it is given; DPRs redact first");
    assert_eq!(log.ids_with_prefix(&by_seq_20[..8], 10).unwrap(), vec![by_seq_20.clone()]);
    assert_eq!(log.get_by_id("0000000000000000").unwrap(), None);
    assert_eq!(log.entries_from(1, 1000).unwrap().len(), 100);
    let later = entry::now_ms() + 3_600_000;
    assert_eq!(log.first_seq_at_or_after(later).unwrap(), 101);
    assert_eq!(log.first_seq_at_or_after(0).unwrap(), 1);
    let mut out = Vec::new();
    assert_eq!(log.export(&mut out, 0).unwrap(), 100);
    let mut none = Vec::new();
    assert_eq!(log.export(&mut none, later).unwrap(), 0);
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 100);
    let report = log.verify(None).unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.size, 100);
    assert!(report.checkpoints >= 1);
}

#[test]
fn state_rows_commit_with_their_entry_and_see_its_seq_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = new_log(dir.path());
    let write = |status: &'static str| -> faramesh_log::StateWrites {
        Box::new(move |seq, id| {
            let v = json!({"status": status, "seq": seq, "action_id": id});
            vec![("approval/apr-3".to_owned(), Some(serde_json::to_vec(&v).unwrap()))]
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let appended = rt.block_on(log.append_with_state(body(3, "bot"), Some(write("pending")))).unwrap();
    let row = |key: &str| -> Value { serde_json::from_slice(&log.state_get(key).unwrap().unwrap()).unwrap() };
    assert_eq!(log.state_scan("approval/").unwrap().len(), 1);
    let pending = row("approval/apr-3");
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["seq"], appended.seq);
    assert_eq!(pending["action_id"], appended.id.unwrap().as_str());
    let approval = json!({"kind": "approval", "approval_id": "apr-3", "status": "approved"});
    rt.block_on(log.append_with_state(approval.as_object().unwrap().clone(), Some(write("approved"))))
        .unwrap();
    assert_eq!(row("approval/apr-3")["status"], "approved");
}

#[test]
fn entries_that_cannot_be_canonical_are_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = new_log(dir.path());
    let mut bad = Map::new();
    bad.insert("x".into(), Value::Number(serde_json::Number::from_string_unchecked("1e999".into())));
    assert!(matches!(log.append_blocking(bad), Err(LogError::Invalid(_))));
    let mut huge = body(0, "bot");
    huge.insert("params".into(), json!({"blob": "x".repeat(17 << 20)}));
    match log.append_blocking(huge) {
        Err(LogError::TooLarge { size, limit }) => assert!(size > limit && size > 17 << 20, "{size} {limit}"),
        other => panic!("a 17 MiB entry must be refused: {other:?}"),
    }
    assert_eq!(log.append_blocking(body(1, "bot")).unwrap().seq, 1);
}

/// Rewrites the file's batches (key = last seq of the batch) through `f`.
fn tamper(path: &Path, f: impl FnOnce(&mut BTreeMap<u64, Batch>)) {
    let db = Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(BATCHES).unwrap();
        let mut batches: BTreeMap<u64, Batch> = t
            .iter()
            .unwrap()
            .map(|r| r.unwrap())
            .map(|(k, v)| (k.value(), Batch::decode(v.value()).unwrap()))
            .collect();
        f(&mut batches);
        t.retain(|_, _| false).unwrap();
        for (k, batch) in batches {
            t.insert(k, batch.to_bytes().as_slice()).unwrap();
        }
    }
    txn.commit().unwrap();
}

/// The only record of a one-record batch (a log written by one appender has only those).
fn only(batches: &mut BTreeMap<u64, Batch>, seq: u64) -> &mut Vec<u8> {
    let batch = batches.get_mut(&seq).unwrap();
    assert_eq!(batch.records.len(), 1);
    &mut batch.records[0]
}

fn copy_of(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(dir.join("log.redb"), &to).unwrap();
    to
}

#[test]
fn tampering_is_detected_at_the_right_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let (key, saved_cp) = written_log(dir.path(), 30);
    let public = key.public();
    let original = dir.path().join("log.redb");
    assert!(verify_file(&original, &public, None).ok);
    assert!(verify_file(&original, &public, Some(&saved_cp)).ok);

    // Editing one field.
    let edited = copy_of(dir.path(), "edited.redb");
    tamper(&edited, |b| {
        let rec = only(b, 7);
        let text = String::from_utf8(rec.clone()).unwrap();
        assert!(text.contains("\"effect\":\"DENY\""));
        *rec = text.replace("\"effect\":\"DENY\"", "\"effect\":\"PERMIT\"").into_bytes();
    });
    let r = verify_file(&edited, &public, None);
    assert_eq!((r.ok, r.first_bad_seq), (false, Some(7)), "{r:?}");
    assert_eq!(r.problem.as_deref(), Some("entry 7: entry_hash does not match the entry's contents"));

    // Deleting an entry.
    let deleted = copy_of(dir.path(), "deleted.redb");
    tamper(&deleted, |b| {
        b.remove(&12).unwrap();
    });
    let r = verify_file(&deleted, &public, None);
    assert_eq!(r.first_bad_seq, Some(12), "{r:?}");
    assert_eq!(r.problem.as_deref(), Some("entry 12 is missing (the next stored entry is 13)"));

    // Swapping two entries.
    let swapped = copy_of(dir.path(), "swapped.redb");
    tamper(&swapped, |b| {
        let a = only(b, 15).clone();
        let c = std::mem::replace(only(b, 16), a);
        *only(b, 15) = c;
    });
    let r = verify_file(&swapped, &public, None);
    assert_eq!(r.first_bad_seq, Some(15), "{r:?}");
    assert_eq!(r.problem.as_deref(), Some("entry 15 holds the entry with seq 16 (moved or swapped)"));

    // Rewriting the chain after an edit (no key needed for blake3) is caught by the signatures.
    let forged = copy_of(dir.path(), "forged.redb");
    tamper(&forged, |b| {
        let mut prev = entry::open(only(b, 19)).unwrap().entry_hash;
        for seq in 20..=30u64 {
            let rec = entry::open(only(b, seq)).unwrap();
            let mut body = rec.value.clone();
            if seq == 20 {
                body.insert("effect".into(), json!("PERMIT"));
            }
            let sealed = entry::seal(&prev, body).unwrap();
            prev = sealed.entry_hash;
            *only(b, seq) = sealed.record.into_bytes();
        }
    });
    let r = verify_file(&forged, &public, None);
    assert_eq!(r.first_bad_seq, Some(20), "{r:?}");
    assert_eq!(r.problem.as_deref(), Some("entry 20 does not match the signed checkpoint at size 20"));

    // Truncating the tail together with its checkpoints: only a saved checkpoint can tell.
    let truncated = copy_of(dir.path(), "truncated.redb");
    tamper(&truncated, |b| {
        for seq in 26..=30u64 {
            b.remove(&seq).unwrap();
        }
    });
    assert!(verify_file(&truncated, &public, None).ok, "without a saved checkpoint a clean cut looks whole");
    let r = verify_file(&truncated, &public, Some(&saved_cp));
    assert_eq!(r.first_bad_seq, Some(26), "{r:?}");
    assert_eq!(
        r.problem.as_deref(),
        Some("entry 26 is missing: the given checkpoint (size 30) covers 30 entries")
    );

    // Truncating entries but leaving their checkpoints is caught without help.
    let cut = copy_of(dir.path(), "cut.redb");
    tamper(&cut, |b| b.get_mut(&30).unwrap().records.clear());
    let r = verify_file(&cut, &public, None);
    assert_eq!(r.first_bad_seq, Some(30), "{r:?}");
    assert_eq!(
        r.problem.as_deref(),
        Some("entry 30 is missing: the signed checkpoint at size 30 covers 30 entries")
    );

    // A checkpoint moved to another batch names another size.
    let moved = copy_of(dir.path(), "moved.redb");
    tamper(&moved, |b| {
        let note = b[&9].checkpoint.clone();
        b.get_mut(&10).unwrap().checkpoint = note;
    });
    let r = verify_file(&moved, &public, None);
    assert_eq!(r.first_bad_seq, Some(10), "{r:?}");
    assert_eq!(r.problem.as_deref(), Some("checkpoint at size 10 names another log or size"));

    // A different key does not verify.
    let stranger = LogKey::from_seed(&[1u8; 32]).public();
    assert!(!verify_file(&original, &stranger, None).ok);
}

#[test]
fn flipped_bytes_never_verify_changed_data() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = written_log(dir.path(), 40);
    let public = key.public();
    let original = dir.path().join("log.redb");
    let bytes = std::fs::read(&original).unwrap();
    let want = all_records(&original);
    let flipped_path = dir.path().join("flipped.redb");
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let (mut n_detected, mut n_harmless) = (0, 0);
    for _ in 0..400 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let offset = (rng % bytes.len() as u64) as usize;
        let mut copy = bytes.clone();
        copy[offset] ^= 1 << (rng >> 61);
        std::fs::write(&flipped_path, &copy).unwrap();
        let report = verify_file(&flipped_path, &public, None);
        if report.ok {
            // Verification may pass only when the flip did not change any entry.
            let got = std::panic::catch_unwind(|| all_records(&flipped_path)).ok();
            if got.as_ref() != Some(&want) {
                let got = got.unwrap_or_default();
                let diff: Vec<(u64, String)> = got
                    .iter()
                    .zip(&want)
                    .filter(|(a, b)| a != b)
                    .map(|(a, _)| (a.0, String::from_utf8_lossy(&a.1).into_owned()))
                    .collect();
                panic!("flip at {offset} changed data yet verified: {report:?}; changed {diff:?}");
            }
            n_harmless += 1;
        } else {
            n_detected += 1;
        }
    }
    assert_eq!(n_detected + n_harmless, 400);
    assert!(n_detected > 0, "no flip was detected at all");
}

/// A file backend whose writes and syncs fail while `fail` is set (a full or broken disk), and
/// whose syncs hang while `hang` is set (a disk that stopped answering).
#[derive(Debug)]
struct FaultyBackend {
    inner: FileBackend,
    fail: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
}

impl FaultyBackend {
    fn check(&self) -> std::io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "injected: no space left on device"))
        } else {
            Ok(())
        }
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        while self.hang.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        self.check()?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.check()?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.inner.close()
    }
}

/// The systemd watchdog stops pinging while a commit hangs: it reads `writer_busy_for`.
#[test]
fn a_commit_that_hangs_shows_as_a_busy_writer_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let hang = Arc::new(AtomicBool::new(false));
    let opener_hang = Arc::clone(&hang);
    let opener = Box::new(move || {
        let file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        Builder::new().create_with_backend(FaultyBackend {
            inner: FileBackend::new(file)?,
            fail: Arc::new(AtomicBool::new(false)),
            hang: Arc::clone(&opener_hang),
        })
    });
    let log = Arc::new(Log::open_with(opener, LogKey::from_seed(&[4u8; 32]), LogOptions::default()).unwrap());
    assert_eq!(log.append_blocking(body(1, "bot")).unwrap().seq, 1);
    assert_eq!(log.writer_busy_for(), None, "an idle writer is not busy");
    hang.store(true, Ordering::SeqCst);
    // Taken before the append is sent: the writer's busy time can only start after it.
    let waited = std::time::Instant::now();
    let appending = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.append_blocking(body(2, "bot")))
    };
    // Wait (bounded) until the writer is on the hung commit, then see its busy time grow.
    let mut first = None;
    for _ in 0..1000 {
        first = log.writer_busy_for();
        if first.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let first = first.expect("the writer is on the hung commit");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let busy = log.writer_busy_for().expect("the writer is still on the hung commit");
    assert!(busy >= first + std::time::Duration::from_millis(200), "{first:?} then {busy:?}");
    assert!(busy <= waited.elapsed(), "busy {busy:?} is longer than the append has existed");
    hang.store(false, Ordering::SeqCst);
    assert_eq!(appending.join().unwrap().unwrap().seq, 2);
    let mut idle = false;
    for _ in 0..200 {
        if log.writer_busy_for().is_none() {
            idle = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(idle, "the writer still counts as busy after the commit ended");
}

#[test]
fn storage_faults_fail_their_batch_only_and_the_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let fail = Arc::new(AtomicBool::new(false));
    let opener_fail = Arc::clone(&fail);
    let opener_path = path.clone();
    let opener = Box::new(move || {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&opener_path)?;
        Builder::new().create_with_backend(FaultyBackend {
            inner: FileBackend::new(file)?,
            fail: Arc::clone(&opener_fail),
            hang: Arc::new(AtomicBool::new(false)),
        })
    });
    let key = LogKey::from_seed(&[3u8; 32]);
    let log = Arc::new(Log::open_with(opener, key.clone(), LogOptions::default()).unwrap());
    for i in 1..=10 {
        assert_eq!(log.append_blocking(body(i, "bot")).unwrap().seq, i);
    }

    fail.store(true, Ordering::SeqCst);
    let failing: Vec<_> = (0..6)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || log.append_blocking(body(100 + t, "bot")))
        })
        .collect();
    for h in failing {
        let err = h.join().unwrap().unwrap_err();
        assert!(matches!(err, LogError::Storage(_)), "{err}");
    }
    // Reads fail closed too while the disk is broken, or see only committed data.
    fail.store(false, Ordering::SeqCst);

    for i in 11..=20 {
        assert_eq!(log.append_blocking(body(i, "bot")).unwrap().seq, i, "no gap after the failed batch");
    }
    let report = log.verify(None).unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.size, 20);
    log.close();
    drop(log);
    assert!(verify_file(&path, &key.public(), None).ok);
}

const CHILD_ENV: &str = "FARAMESH_CRASH_CHILD_DIR";

/// Not a test on its own: the writer process that `sigkill_never_loses_acknowledged_entries` kills.
#[test]
#[ignore = "a helper process the SIGKILL test starts and kills, not a test on its own"]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let (log, _) = new_log(Path::new(&dir));
    let log = Arc::new(log);
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (log, out) = (Arc::clone(&log), Arc::clone(&out));
            std::thread::spawn(move || {
                for i in 0.. {
                    let appended = log.append_blocking(body(t * 1_000_000 + i, &format!("w{t}"))).unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK\t{}\t{}", appended.seq, appended.record).unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn sigkill_never_loses_acknowledged_entries() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..20 {
        let mut child = std::process::Command::new(&exe)
            .args(["crash_child_writer", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.push(line);
            }
            lines
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(std::time::Duration::from_millis(150 + rng % 250));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for line in reader.join().unwrap() {
            let mut parts = line.splitn(3, '\t');
            if let (Some("ACK"), Some(seq), Some(record)) = (parts.next(), parts.next(), parts.next()) {
                let previous = acked.insert(seq.parse().unwrap(), record.to_owned());
                assert!(previous.is_none(), "round {round}: seq {seq} acknowledged twice");
            }
        }
        let (log, key) = new_log(dir.path());
        for (seq, record) in &acked {
            let stored = log.get(*seq).unwrap();
            assert_eq!(
                stored.as_deref(),
                Some(record.as_str()),
                "round {round}: acknowledged entry {seq} lost or changed"
            );
        }
        let report = log.verify(None).unwrap();
        assert!(report.ok, "round {round}: {report:?}");
        log.close();
        drop(log);
        assert!(verify_file(&dir.path().join("log.redb"), &key.public(), None).ok);
    }
    assert!(acked.len() > 200, "only {} appends were acknowledged across 20 runs", acked.len());
}

#[test]
fn the_log_file_keeps_redbs_lock_and_has_its_growth_written_out() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let (log, key) = new_log(dir.path());
    for i in 1..=50 {
        log.append_blocking(body(i, "bot")).unwrap();
    }
    let path = dir.path().join("log.redb");
    // A second opener is refused while the log is open: the wrapper keeps redb's file lock.
    let second = faramesh_log::open_db(&path);
    assert!(second.is_err(), "a second open of a live log must fail");
    // The space past redb's writes is allocated (written with zeros), not left as a hole.
    let meta = std::fs::metadata(&path).unwrap();
    let allocated = meta.blocks() * 512;
    assert!(
        allocated >= meta.len().min(faramesh_log::ZERO_AHEAD),
        "allocated {allocated} of {} bytes",
        meta.len()
    );
    log.close();
    drop(log);
    // Reopened: everything is there and verifies.
    let log = Log::open(&path, key, LogOptions::default()).unwrap();
    assert_eq!(log.head().0, 50);
    assert!(log.verify(None).unwrap().ok);
    assert_eq!(log.append_blocking(body(51, "bot")).unwrap().seq, 51);
}

#[test]
fn a_log_in_another_format_is_refused_with_both_formats_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(faramesh_log::tables::META).unwrap();
            meta.insert("log_id", "00112233445566778899aabbccddeeff").unwrap();
            meta.insert("format", "1").unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Log::open(&path, LogKey::from_seed(&[9u8; 32]), LogOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("format 1") && text.contains("formats 2, 3, 4"), "{text}");
}

#[test]
fn a_closed_log_releases_its_file_while_other_handles_linger() {
    // A task still holding the log when the daemon exits must not keep the file open: a
    // process that ends then leaves a file redb has to repair, which offline reads refuse.
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = new_log(dir.path());
    log.append_blocking(body(1, "bot")).unwrap();
    let log = Arc::new(log);
    let lingering = Arc::clone(&log);
    log.close();
    let db = redb::ReadOnlyDatabase::open(dir.path().join("log.redb"));
    assert!(db.is_ok(), "the file is closed once the log is: {:?}", db.err());
    drop(lingering);
}
