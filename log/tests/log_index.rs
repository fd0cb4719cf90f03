//! The decision log's query index, compressed batches, the upgrade from format 2 and pruning,
//! against a real redb file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::path::Path;
use std::sync::Arc;

use faramesh_log::index::{FLUSH_ROWS, Term};
use faramesh_log::tables::{ACTION_EVENTS, BATCHES, Batch, META, POSTINGS, TERMS};
use faramesh_log::{Cut, Log, LogError, LogKey, LogOptions, prune, verify_file};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde_json::{Map, Value, json};

fn decision(agent: &str, tool: &str, effect: &str) -> Map<String, Value> {
    json!({"kind": "decision", "agent_id": agent, "tool": tool, "operation": "run", "effect": effect,
           "params": {"n": 1}})
    .as_object()
    .unwrap()
    .clone()
}

fn event(action_id: &str) -> Map<String, Value> {
    json!({"kind": "action", "action_id": action_id, "status": "executing"}).as_object().unwrap().clone()
}

/// Appends `per_thread` decisions from each of 8 threads (agents `agent-0`..`agent-7`, tools
/// `tool-0`/`tool-1` by parity of the thread), so commits group; returns the log.
fn filled(dir: &Path, per_thread: u64) -> Arc<Log> {
    let key = LogKey::load_or_create(&dir.join("log.key")).unwrap();
    let log = Arc::new(Log::open(&dir.join("log.redb"), key, LogOptions::default()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let effect = if i % 10 == 0 { "DENY" } else { "PERMIT" };
                    log.append_blocking(decision(&format!("agent-{t}"), &format!("tool-{}", t % 2), effect))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    log
}

/// Seqs of `agent`'s decisions, newest first, by reading every record.
fn by_reading(log: &Log, agent: &str) -> Vec<u64> {
    let mut out = Vec::new();
    log.scan_newest(None, 1, log.head().0, |seq, record| {
        let v: Value = serde_json::from_str(record).unwrap();
        if v["agent_id"] == agent {
            out.push(seq);
        }
        true
    })
    .unwrap();
    out
}

fn by_index(log: &Log, term: &Term, lo: u64, hi: u64) -> Vec<u64> {
    let mut out = Vec::new();
    log.scan_newest(Some(&term.key()), lo, hi, |seq, record| {
        let v: Value = serde_json::from_str(record).unwrap();
        assert_eq!(v["seq"], seq, "the record handed over is the entry the index names");
        out.push(seq);
        true
    })
    .unwrap();
    out
}

#[test]
fn the_index_answers_by_agent_tool_and_effect_across_flushes_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let per_thread = 200u64; // 1,600 decisions: past one flush of the index rows, not two.
    assert!(8 * per_thread > FLUSH_ROWS as u64 && 8 * per_thread < 2 * FLUSH_ROWS as u64);
    let log = filled(dir.path(), per_thread);
    let size = log.head().0;
    assert_eq!(size, 1600);

    let expected = by_reading(&log, "agent-3");
    assert_eq!(expected.len(), 200);
    let agent = Term::Agent("agent-3".into());
    assert_eq!(by_index(&log, &agent, 1, size), expected, "rows in the tables and in memory");
    // Bounds: a range in the middle, and a page that stops early.
    let (lo, hi) = (expected[150], expected[50]);
    let middle: Vec<u64> = expected.iter().copied().filter(|s| (lo..=hi).contains(s)).collect();
    assert_eq!(by_index(&log, &agent, lo, hi), middle);
    let mut first_five = Vec::new();
    log.scan_newest(Some(&agent.key()), 1, size, |seq, _| {
        first_five.push(seq);
        first_five.len() < 5
    })
    .unwrap();
    assert_eq!(first_five, expected[..5]);
    assert_eq!(by_index(&log, &Term::Tool("tool-1".into()), 1, size).len(), 800);
    assert_eq!(by_index(&log, &Term::Effect("DENY".into()), 1, size).len(), 8 * 20);
    assert!(by_index(&log, &Term::Agent("nobody".into()), 1, size).is_empty());

    // Events about an action are found from its decision.
    let id = log.action_id(expected[199]);
    log.append_blocking(event(&id)).unwrap();
    log.append_blocking(event(&log.action_id(expected[0]))).unwrap();
    log.append_blocking(event(&id)).unwrap();
    let events = log.events_about(expected[199]).unwrap();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.contains(&id)));

    // Closed with rows still in memory (as after a crash): they are rebuilt on open.
    Arc::try_unwrap(log).unwrap().close();
    {
        let db = redb::ReadOnlyDatabase::open(dir.path().join("log.redb")).unwrap();
        let txn = db.begin_read().unwrap();
        let through: u64 =
            txn.open_table(META).unwrap().get("indexed_through").unwrap().unwrap().value().parse().unwrap();
        assert!(through > 0 && through < 1603, "one flush happened, the rest was in memory ({through})");
    }
    let key = LogKey::load_or_create(&dir.path().join("log.key")).unwrap();
    let log = Log::open(&dir.path().join("log.redb"), key, LogOptions::default()).unwrap();
    assert_eq!(by_index(&log, &agent, 1, log.head().0), expected);
    assert_eq!(log.events_about(expected[199]).unwrap().len(), 2);
    assert!(log.verify(None).unwrap().ok);
}

#[test]
fn batches_are_stored_compressed_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 20);
    let records = log.entries_from(1, 1000).unwrap();
    assert_eq!(records.len(), 160);
    Arc::try_unwrap(log).unwrap().close();
    let db = redb::ReadOnlyDatabase::open(dir.path().join("log.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(BATCHES).unwrap();
    let (mut stored, mut plain) = (0usize, 0usize);
    for row in t.iter().unwrap() {
        let (_, v) = row.unwrap();
        assert_eq!(&v.value()[..5], &[0xff, 0xff, 0xff, 0xff, 1], "stored as a zstd frame");
        stored += v.value().len();
        plain += Batch::plain(v.value()).unwrap().len();
    }
    assert!(stored * 2 < plain, "compressed {stored} bytes of {plain}");
}

/// Rewrites a log into what format 2 stored: plain batches, no index tables or marks.
fn downgrade_to_format_2(path: &Path) {
    let db = Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(BATCHES).unwrap();
        let rows: Vec<(u64, Vec<u8>)> = t
            .iter()
            .unwrap()
            .map(|r| r.unwrap())
            .map(|(k, v)| (k.value(), Batch::plain(v.value()).unwrap().into_owned()))
            .collect();
        for (k, plain) in rows {
            t.insert(k, plain.as_slice()).unwrap();
        }
        let mut meta = txn.open_table(META).unwrap();
        meta.insert("format", "2").unwrap();
        for key in ["ids", "indexed_through", "next_term"] {
            meta.remove(key).unwrap();
        }
    }
    txn.delete_table(TERMS).unwrap();
    txn.delete_table(POSTINGS).unwrap();
    txn.delete_table(ACTION_EVENTS).unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_format_2_log_is_upgraded_on_open_and_keeps_its_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    // A format-2 log: its meta as format 2 wrote it (no `ids`: the first id scheme).
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.insert("log_id", "00112233445566778899aabbccddeeff").unwrap();
            meta.insert("format", "2").unwrap();
        }
        txn.commit().unwrap();
    }
    let log = filled(dir.path(), 30);
    let size = log.head().0;
    let ids: Vec<String> = (1..=size).map(|s| log.action_id(s)).collect();
    let expected = by_reading(&log, "agent-5");
    Arc::try_unwrap(log).unwrap().close();
    downgrade_to_format_2(&path);

    let key = LogKey::load_or_create(&dir.path().join("log.key")).unwrap();
    let log = Log::open(&path, key, LogOptions::default()).unwrap();
    assert_eq!((1..=size).map(|s| log.action_id(s)).collect::<Vec<_>>(), ids, "ids never change");
    let rec: Value = serde_json::from_str(&log.get_by_id(&ids[9]).unwrap().unwrap()).unwrap();
    assert_eq!(rec["seq"], 10);
    assert_eq!(log.ids_with_prefix(&ids[9][..8], 10).unwrap(), vec![ids[9].clone()]);
    assert_eq!(by_index(&log, &Term::Agent("agent-5".into()), 1, size), expected, "indexed on open");
    // Old plain batches and new compressed ones read and verify together.
    log.append_blocking(decision("agent-5", "tool-1", "PERMIT")).unwrap();
    assert!(log.verify(None).unwrap().ok);
    assert_eq!(log.entries_from(1, 10_000).unwrap().len() as u64, size + 1);
    Arc::new(log).close();
    let db = redb::ReadOnlyDatabase::open(&path).unwrap();
    let meta_format =
        db.begin_read().unwrap().open_table(META).unwrap().get("format").unwrap().unwrap().value().to_owned();
    assert_eq!(meta_format, "4");
}

fn file_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("log.redb")).unwrap().len()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn a_prune_needs_an_export_records_the_cut_shrinks_the_file_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 400); // 3,200 decisions
    let size = log.head().0;
    let rt = runtime();

    // Nothing was exported: refused, and nothing changes.
    let err = rt.block_on(log.prune(Cut::KeepLast(320), false, json!("test"))).unwrap_err();
    assert!(matches!(err, LogError::NotExported { exported_through: 0, .. }), "{err}");
    assert_eq!(log.first_seq().unwrap(), 1);
    assert_eq!(log.head().0, size);

    // Exported through the cut: allowed. A mark that does not join the first one does not move.
    assert_eq!(log.mark_exported(100, size).unwrap(), 0);
    assert_eq!(log.mark_exported(1, 2000).unwrap(), 2000);
    assert_eq!(log.mark_exported(2001, size).unwrap(), size);
    let plan = log.plan_prune(Cut::KeepLast(320)).unwrap();
    assert!(plan.first_kept_seq <= size - 319, "whole batches: never more than asked {plan:?}");
    assert!(plan.first_kept_seq > size - 400, "{plan:?}");
    let before = file_len(dir.path());

    // Appends go on while the prune runs.
    let appender = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            let seqs: Vec<u64> = (0..200)
                .map(|_| log.append_blocking(decision("late", "tool-0", "PERMIT")).unwrap().seq)
                .collect();
            seqs.len()
        })
    };
    // The cut is the planned seq: late appends landing first must not move it.
    let done = rt.block_on(log.prune(Cut::BeforeSeq(plan.first_kept_seq), false, json!("test"))).unwrap();
    assert_eq!(appender.join().unwrap(), 200);
    let removed = |p: &faramesh_log::PrunePlan| (p.first_seq, p.first_kept_seq, p.entries);
    assert_eq!(removed(&done.plan), removed(&plan));
    assert!(done.plan.size >= size);
    assert!(done.batches > 0);
    assert_eq!(log.first_seq().unwrap(), plan.first_kept_seq);
    let after = file_len(dir.path());
    // A small file keeps redb's fixed overhead; the soak bench measures a large one.
    assert!(done.compacted && after * 4 < before * 3, "the file shrank: {before} → {after}");

    // The prune entry says what happened; reads start at the first kept entry.
    let prune: Value = serde_json::from_str(&log.get(done.entry_seq.unwrap()).unwrap().unwrap()).unwrap();
    assert_eq!(prune["kind"], "prune");
    assert_eq!(prune["first_kept_seq"], plan.first_kept_seq);
    assert_eq!(prune["pruned_entries"], plan.entries);
    assert_eq!(log.get(1).unwrap(), None);
    assert_eq!(log.get_by_id(&log.action_id(5)).unwrap(), None);
    assert!(log.ids_with_prefix(&log.action_id(5), 10).unwrap().is_empty());
    let first = log.entries_from(1, 1).unwrap();
    assert!(first[0].contains(&format!("\"seq\":{}", plan.first_kept_seq)));
    let mut exported = Vec::new();
    let kept = log.head().0 - plan.first_kept_seq + 1;
    assert_eq!(log.export(&mut exported, 0).unwrap(), kept, "an export of a pruned log starts at the cut");
    assert_eq!(String::from_utf8(exported).unwrap().lines().count() as u64, kept);
    let agent = by_index(&log, &Term::Agent("agent-2".into()), 1, log.head().0);
    assert!(!agent.is_empty() && agent.iter().all(|&s| s >= plan.first_kept_seq));

    let report = log.verify(None).unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.first_seq, plan.first_kept_seq);
    assert_eq!(report.pruned_entries, plan.first_kept_seq - 1);
    assert_eq!(report.pruned_at.as_deref(), prune["ts"].as_str());
    let key = log.key().public();
    Arc::try_unwrap(log).unwrap().close();
    assert!(verify_file(&dir.path().join("log.redb"), &key, None).ok, "offline too");

    // Reopened: it goes on from where it was.
    let key = LogKey::load_or_create(&dir.path().join("log.key")).unwrap();
    let log = Log::open(&dir.path().join("log.redb"), key, LogOptions::default()).unwrap();
    log.append_blocking(decision("agent-1", "tool-1", "PERMIT")).unwrap();
    assert!(log.verify(None).unwrap().ok);
}

/// Removes the batches stored under keys below `below`, behind the log's back.
fn cut_batches(path: &Path, below: u64) {
    let db = Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(BATCHES).unwrap().retain_in(..below, |_, _| false).unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_cut_that_was_not_recorded_is_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 100);
    let public = log.key().public();
    let size = log.head().0;
    let rt = runtime();
    let done = rt.block_on(log.prune(Cut::KeepLast(size / 2), true, json!("test"))).unwrap();
    let kept = done.plan.first_kept_seq;
    assert!(log.verify(None).unwrap().ok);
    Arc::try_unwrap(log).unwrap().close();
    let path = dir.path().join("log.redb");

    // More removed than the prune recorded.
    let copy = dir.path().join("more.redb");
    std::fs::copy(&path, &copy).unwrap();
    cut_batches(&copy, kept + 40);
    let report = verify_file(&copy, &public, None);
    assert!(!report.ok);
    assert_eq!(report.first_bad_seq, Some(kept), "{report:?}");

    // The prune mark edited to cover the extra cut.
    let copy = dir.path().join("mark.redb");
    std::fs::copy(&path, &copy).unwrap();
    {
        let db = Database::open(&copy).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut state = txn.open_table(faramesh_log::tables::STATE).unwrap();
            let mut mark: Value =
                serde_json::from_slice(state.get(prune::MARK).unwrap().unwrap().value()).unwrap();
            mark["first_kept_seq"] = json!(kept + 40);
            state.insert(prune::MARK, serde_json::to_vec(&mark).unwrap().as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let report = verify_file(&copy, &public, None);
    assert!(!report.ok && report.problem.as_deref().unwrap().contains("prune"), "{report:?}");

    // A log never pruned, with its start cut off.
    let other = tempfile::tempdir().unwrap();
    let log = filled(other.path(), 20);
    let public = log.key().public();
    Arc::try_unwrap(log).unwrap().close();
    cut_batches(&other.path().join("log.redb"), 30);
    let report = verify_file(&other.path().join("log.redb"), &public, None);
    assert!(!report.ok);
    assert_eq!(report.first_bad_seq, Some(1));
    assert!(report.problem.as_deref().unwrap().contains("no prune was recorded"), "{report:?}");
}

#[test]
fn a_prune_cut_short_resumes_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 50);
    let size = log.head().0;
    // What a prune records before it removes anything, as a crash would leave it.
    let plan = log.plan_prune(Cut::KeepLast(100)).unwrap();
    let anchor: Value = serde_json::from_str(&log.get(plan.first_kept_seq).unwrap().unwrap()).unwrap();
    let anchor = anchor["prev_hash"].as_str().unwrap().to_owned();
    let range: Vec<String> = log
        .compact_range(plan.first_kept_seq - 1)
        .unwrap()
        .iter()
        .map(|h| faramesh_log::keys::base64_encode(h))
        .collect();
    let body = faramesh_log::dpr::event_entry(
        "prune",
        json!({"first_kept_seq": plan.first_kept_seq, "anchor_hash": anchor, "pruned_range": range}),
    );
    let first_kept_seq = plan.first_kept_seq;
    let writes: faramesh_log::StateWrites = Box::new(move |seq, _| {
        let mark = prune::Mark { first_kept_seq, anchor_hash: anchor, seq, pruned_range: range };
        vec![(prune::MARK.to_owned(), Some(serde_json::to_vec(&mark).unwrap()))]
    });
    runtime().block_on(log.append_with_state(body, Some(writes))).unwrap();
    assert_eq!(log.first_seq().unwrap(), 1);
    assert!(log.verify(None).unwrap().ok, "recorded, not yet carried out: still whole");
    Arc::try_unwrap(log).unwrap().close();

    let key = LogKey::load_or_create(&dir.path().join("log.key")).unwrap();
    let log = Log::open(&dir.path().join("log.redb"), key, LogOptions::default()).unwrap();
    // The writer finishes the prune in the background; an append queues behind it.
    log.append_blocking(decision("after", "tool-0", "PERMIT")).unwrap();
    assert_eq!(log.first_seq().unwrap(), first_kept_seq);
    let report = log.verify(None).unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.size, size + 2);
}

#[test]
fn a_prune_of_everything_keeps_the_prune_entry_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 10);
    let size = log.head().0;
    let rt = runtime();
    // Other appends race the cut: the anchor must still be the last pruned entry's hash.
    let appender = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for _ in 0..50 {
                log.append_blocking(decision("late", "tool-0", "PERMIT")).unwrap();
            }
        })
    };
    let done = rt.block_on(log.prune(Cut::KeepLast(0), true, json!("test"))).unwrap();
    appender.join().unwrap();
    assert!(done.plan.first_kept_seq > size);
    assert_eq!(log.first_seq().unwrap(), done.plan.first_kept_seq);
    let report = log.verify(None).unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.pruned_entries, done.plan.first_kept_seq - 1);
}
