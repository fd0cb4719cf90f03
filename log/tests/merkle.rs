//! The log's RFC 6962 tree, checked against an independent implementation (`ct-merkle`): roots,
//! inclusion and consistency proofs for every size up to a few hundred and random larger ones,
//! through commits, a prune, a reopen, and the conversion of a log from before the tree.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::path::Path;

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof};
use faramesh_log::merkle::{self, Hash, Leaves};
use faramesh_log::tables::{BATCHES, Batch, META, TREE};
use faramesh_log::{Checkpoint, Cut, Log, LogError, LogKey, LogOptions, entry, verify_file};
use proptest::prelude::*;
use redb::{Database, ReadableTable};
use serde_json::{Map, Value, json};
use sha2::Sha256;

type Ct = MemoryBackedTree<Sha256, [u8; 32]>;

fn ct_of(entry_hashes: &[Hash]) -> Ct {
    let mut t = Ct::new();
    for h in entry_hashes {
        t.push(*h);
    }
    t
}

fn ct_root(entry_hashes: &[Hash]) -> Hash {
    ct_of(entry_hashes).root().as_bytes().as_slice().try_into().unwrap()
}

fn hashes(n: u64, salt: u8) -> Vec<Hash> {
    (0..n)
        .map(|i| {
            merkle::leaf_hash(&[salt; 32]).map(|b| b ^ (i as u8)).map(|b| b.wrapping_add((i >> 8) as u8))
        })
        .collect()
}

fn flat(proof: &[Hash]) -> Vec<u8> {
    proof.concat()
}

/// Our root, inclusion proof of `index` and consistency proof from `old`, against ct-merkle's,
/// both ways: the same bytes, and each verifier accepting the other's proofs.
fn check(entry_hashes: &[Hash], index: u64, old: u64) {
    let size = entry_hashes.len() as u64;
    let leaves: Vec<Hash> = entry_hashes.iter().map(merkle::leaf_hash).collect();
    let ours = merkle::root(&mut Leaves(&leaves), size).unwrap();
    let ct = ct_of(entry_hashes);
    assert_eq!(ours.as_slice(), ct.root().as_bytes().as_slice(), "root of {size}");
    let mut frontier = merkle::Frontier::default();
    for l in &leaves {
        frontier.push(*l, |_, _, _| {});
    }
    assert_eq!(frontier.root(), ours, "the writer's frontier, size {size}");

    let proof = merkle::inclusion_proof(&mut Leaves(&leaves), index, size).unwrap();
    let theirs = ct.prove_inclusion(index as usize);
    assert_eq!(flat(&proof), theirs.as_bytes(), "inclusion of {index} in {size}");
    assert!(merkle::verify_inclusion(&leaves[index as usize], index, size, &proof, &ours));
    ct.root()
        .verify_inclusion(
            &entry_hashes[index as usize],
            index,
            &InclusionProof::<Sha256>::from_bytes(flat(&proof)),
        )
        .unwrap();

    if old > 0 && old < size {
        let old_ct = ct_of(&entry_hashes[..old as usize]);
        let old_root: Hash = old_ct.root().as_bytes().as_slice().try_into().unwrap();
        let proof = merkle::consistency_proof(&mut Leaves(&leaves), old, size).unwrap();
        let theirs = ct.prove_consistency((size - old) as usize);
        assert_eq!(flat(&proof), theirs.as_bytes(), "consistency {old} -> {size}");
        assert!(merkle::verify_consistency(old, size, &old_root, &ours, &proof));
        ct.root()
            .verify_consistency(
                &old_ct.root(),
                &ConsistencyProof::<Sha256>::try_from_bytes(flat(&proof)).unwrap(),
            )
            .unwrap();
        // A proof for other sizes, or against another old root, does not verify.
        assert!(!merkle::verify_consistency(old, size, &ours, &ours, &proof) || old_root == ours);
    }
}

#[test]
fn every_size_up_to_300_matches_ct_merkle() {
    let all = hashes(300, 7);
    for size in 1..=all.len() {
        let s = size as u64;
        check(&all[..size], (s * 7 + 3) % s, (s * 5 + 1) % s);
        check(&all[..size], s - 1, s / 2);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_larger_trees_match_ct_merkle(size in 300u64..5000, i in any::<u64>(), o in any::<u64>(), salt in any::<u8>()) {
        let all = hashes(size, salt);
        check(&all, i % size, o % size);
    }
}

fn body(i: u64) -> Map<String, Value> {
    json!({"kind": "decision", "n": i, "agent_id": "bot", "tool": "shell", "operation": "exec", "effect": "DENY"})
        .as_object()
        .unwrap()
        .clone()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Appends `n` entries, most of them in multi-entry commits (appenders in parallel).
fn fill(log: &std::sync::Arc<Log>, n: u64) {
    let rt = runtime();
    // In waves of at most 50 appends: commit batches stay small however loaded the machine is,
    // so a prune always finds batch boundaries before its cut.
    rt.block_on(async {
        let mut i = 0;
        while i < n {
            let mut tasks = Vec::new();
            for j in i..n.min(i + 50) {
                let log = std::sync::Arc::clone(log);
                tasks.push(tokio::spawn(async move { log.append(body(j)).await.unwrap() }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            i += 50;
        }
    });
}

/// Every stored entry hash, in seq order.
fn entry_hashes(log: &Log) -> Vec<Hash> {
    log.entries_from(1, usize::MAX)
        .unwrap()
        .iter()
        .map(|r| entry::open(r.as_bytes()).unwrap().entry_hash)
        .collect()
}

fn checkpoint_root(log: &Log) -> (u64, Hash) {
    let note = log.latest_checkpoint().unwrap().unwrap();
    let cp = log.key().public().verify_checkpoint(&note).unwrap();
    assert!(!cp.legacy);
    (cp.size, cp.root)
}

#[test]
fn the_logs_tree_and_checkpoints_match_ct_merkle_through_a_prune_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let key = LogKey::load_or_create(&dir.path().join("log.key")).unwrap();
    let path = dir.path().join("log.redb");
    let log = std::sync::Arc::new(Log::open(&path, key.clone(), LogOptions::default()).unwrap());
    fill(&log, 1500);
    let all = entry_hashes(&log);
    let size = all.len() as u64;
    assert_eq!(checkpoint_root(&log), (size, ct_root(&all)));
    assert_eq!(log.tree_head(), (size, ct_root(&all)));
    // The checkpoint is signed under the log's origin: `name+keyid+base64` names it.
    assert!(log.key().public().to_text().starts_with(&format!("{}+", log.origin())));
    let ct = ct_of(&all);
    for seq in [1, 2, 255, 256, 257, 511, 512, 777, 1024, 1025, size] {
        let proof = log.inclusion_proof(seq, size).unwrap();
        assert_eq!(flat(&proof), ct.prove_inclusion(seq as usize - 1).as_bytes(), "entry {seq}");
    }
    for old in [1, 255, 256, 300, 1024, size - 1] {
        assert_eq!(log.tree_root(old).unwrap(), ct_root(&all[..old as usize]), "root at {old}");
        let proof = log.consistency_proof(old, size).unwrap();
        assert_eq!(flat(&proof), ct.prove_consistency((size - old) as usize).as_bytes(), "{old} -> {size}");
    }
    // Tiles: level 0 holds leaf hashes, level 1 the roots of full level-0 tiles.
    let tile = log.tile(0, 1, 256).unwrap();
    assert_eq!(&tile[..32], merkle::leaf_hash(&all[256]).as_slice());
    let level1 = log.tile(1, 0, 2).unwrap();
    assert_eq!(&level1[32..], ct_root(&all[256..512]).as_slice());

    // A prune keeps the compact range of what it removes: every later root and proof computes.
    log.mark_exported(1, size).unwrap();
    let outcome = runtime().block_on(log.prune(Cut::KeepLast(500), false, json!("test"))).unwrap();
    let first_kept = outcome.plan.first_kept_seq;
    assert!(first_kept > 1 && first_kept <= 1001, "whole batches, never past the cut: {outcome:?}");
    assert_eq!(log.first_seq().unwrap(), first_kept);
    fill(&log, 300);
    let mut all = all;
    all.extend(
        log.entries_from(size + 1, usize::MAX)
            .unwrap()
            .iter()
            .map(|r| entry::open(r.as_bytes()).unwrap().entry_hash),
    );
    let size2 = all.len() as u64;
    let ct = ct_of(&all);
    assert_eq!(checkpoint_root(&log), (size2, ct_root(&all)));
    for seq in [first_kept, first_kept + 1, size, size2] {
        let proof = log.inclusion_proof(seq, size2).unwrap();
        assert_eq!(
            flat(&proof),
            ct.prove_inclusion(seq as usize - 1).as_bytes(),
            "entry {seq} after the prune"
        );
    }
    let proof = log.consistency_proof(size, size2).unwrap();
    assert_eq!(flat(&proof), ct.prove_consistency((size2 - size) as usize).as_bytes());
    // A pruned entry: refused when the nodes its proof needs went with it, and otherwise (the
    // stored node hashes still cover it, which depends on where the commit batches fell) the
    // proof given must be the right one.
    match log.inclusion_proof(first_kept - 1, size2) {
        Err(LogError::Tree(merkle::TreeError::Pruned { .. })) => {}
        Ok(proof) => assert_eq!(
            flat(&proof),
            ct.prove_inclusion(first_kept as usize - 2).as_bytes(),
            "a proof for a pruned entry, when given, is the right one"
        ),
        Err(other) => panic!("a pruned entry: {other:?}"),
    }
    assert!(log.verify(None).unwrap().ok);
    std::sync::Arc::try_unwrap(log).unwrap().close();

    // Reopened: the frontier is rebuilt from the stored nodes and the last leaves.
    let log = std::sync::Arc::new(Log::open(&path, key.clone(), LogOptions::default()).unwrap());
    assert_eq!(log.tree_head(), (size2, ct_root(&all)));
    fill(&log, 10);
    let report = verify_file_after_close(log, &path, &key);
    assert!(report.ok, "{report:?}");
}

fn verify_file_after_close(log: std::sync::Arc<Log>, path: &Path, key: &LogKey) -> faramesh_log::Report {
    let public = log.key().public();
    std::sync::Arc::try_unwrap(log).unwrap().close();
    // Both the origin-named key and the key text of earlier versions verify.
    assert!(verify_file(path, &key.public(), None).ok);
    verify_file(path, &public, None)
}

/// Turns a log into what format 3 wrote: checkpoints over the last entry's hash under the key
/// name `faramesh-log`, no tree table.
fn downgrade_to_format_3(path: &Path, key: &LogKey) {
    let db = Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(BATCHES).unwrap();
        let rows: Vec<(u64, Batch)> = t
            .iter()
            .unwrap()
            .map(|r| r.unwrap())
            .map(|(k, v)| (k.value(), Batch::decode(v.value()).unwrap()))
            .collect();
        for (k, mut batch) in rows {
            let old = Checkpoint::parse_note(&batch.checkpoint).unwrap();
            let head = entry::open(batch.records.last().unwrap()).unwrap().entry_hash;
            batch.checkpoint = key.sign_checkpoint(&Checkpoint { root: head, legacy: true, ..old });
            t.insert(k, Batch::compress(&batch.to_bytes()).unwrap().as_slice()).unwrap();
        }
        txn.open_table(META).unwrap().insert("format", "3").unwrap();
    }
    txn.delete_table(TREE).unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_format_3_log_gets_its_tree_on_open_and_its_old_checkpoints_still_verify() {
    let dir = tempfile::tempdir().unwrap();
    let key = LogKey::load_or_create(&dir.path().join("log.key")).unwrap();
    let path = dir.path().join("log.redb");
    let log = std::sync::Arc::new(Log::open(&path, key.clone(), LogOptions::default()).unwrap());
    fill(&log, 700);
    let before = entry_hashes(&log);
    std::sync::Arc::try_unwrap(log).unwrap().close();
    downgrade_to_format_3(&path, &key);
    let r = verify_file(&path, &key.public(), None);
    assert!(r.ok && r.root.is_some(), "the older format verifies: {r:?}");

    let log = std::sync::Arc::new(Log::open(&path, key.clone(), LogOptions::default()).unwrap());
    assert_eq!(log.tree_head(), (700, ct_root(&before)), "the tree is built on open");
    fill(&log, 20);
    fill(&log, 5);
    let all = entry_hashes(&log);
    assert_eq!(checkpoint_root(&log), (725, ct_root(&all)));
    assert_eq!(
        flat(&log.inclusion_proof(300, 725).unwrap()),
        ct_of(&all).prove_inclusion(299).as_bytes(),
        "nodes stored by the conversion serve proofs"
    );
    let report = verify_file_after_close(log, &path, &key);
    assert!(report.ok, "older checkpoints, then checkpoints over the tree: {report:?}");

    // An older-format checkpoint after one over the tree is refused.
    let db = Database::open(&path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(BATCHES).unwrap();
        let (k, mut batch) = {
            let (k, v) = t.last().unwrap().unwrap();
            (k.value(), Batch::decode(v.value()).unwrap())
        };
        let cp = Checkpoint::parse_note(&batch.checkpoint).unwrap();
        let head = entry::open(batch.records.last().unwrap()).unwrap().entry_hash;
        batch.checkpoint = key.sign_checkpoint(&Checkpoint { root: head, legacy: true, ..cp });
        t.insert(k, batch.to_bytes().as_slice()).unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    let r = verify_file(&path, &key.public(), None);
    assert!(!r.ok && r.problem.as_deref().unwrap_or("").contains("older format"), "{r:?}");
}

#[test]
fn a_rewritten_history_resigned_with_the_key_changes_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let key = LogKey::load_or_create(&dir.path().join("log.key")).unwrap();
    let path = dir.path().join("log.redb");
    let log = std::sync::Arc::new(Log::open(&path, key.clone(), LogOptions::default()).unwrap());
    fill(&log, 50);
    let (size, root) = checkpoint_root(&log);
    let old = log.latest_checkpoint().unwrap().unwrap();
    std::sync::Arc::try_unwrap(log).unwrap().close();
    // The holder of the key rewrites entry 10 and everything after, and re-signs every checkpoint.
    let named = key.named(Checkpoint::parse_note(&old).unwrap().origin.as_str());
    let db = Database::open(&path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(BATCHES).unwrap();
        let rows: Vec<(u64, Batch)> = t
            .iter()
            .unwrap()
            .map(|r| r.unwrap())
            .map(|(k, v)| (k.value(), Batch::decode(v.value()).unwrap()))
            .collect();
        let mut prev = entry::GENESIS;
        let mut frontier = merkle::Frontier::default();
        for (k, mut batch) in rows {
            for rec in &mut batch.records {
                let opened = entry::open(rec).unwrap();
                let mut value = opened.value.clone();
                if opened.seq == 10 {
                    value.insert("effect".into(), json!("PERMIT"));
                }
                let sealed = entry::seal(&prev, value).unwrap();
                prev = sealed.entry_hash;
                frontier.push(merkle::leaf_hash(&prev), |_, _, _| {});
                *rec = sealed.record.into_bytes();
            }
            let cp = Checkpoint::parse_note(&batch.checkpoint).unwrap();
            batch.checkpoint = named.sign_checkpoint(&Checkpoint { root: frontier.root(), ..cp });
            t.insert(k, batch.to_bytes().as_slice()).unwrap();
        }
    }
    txn.delete_table(TREE).unwrap();
    txn.commit().unwrap();
    drop(db);
    // It verifies on its own (the key signed it all), but not against the checkpoint saved before.
    assert!(verify_file(&path, &key.public(), None).ok);
    let r = verify_file(&path, &key.public(), Some(&old));
    assert_eq!((r.ok, r.first_bad_seq), (false, Some(size)), "{r:?}");
    let reopened = Log::open(&path, key, LogOptions::default()).unwrap();
    assert_ne!(reopened.tree_head(), (size, root));
}

#[test]
fn checkpoints_verify_with_the_signed_note_crate() {
    let dir = tempfile::tempdir().unwrap();
    let key = LogKey::load_or_create(&dir.path().join("log.key")).unwrap();
    let log =
        std::sync::Arc::new(Log::open(&dir.path().join("log.redb"), key, LogOptions::default()).unwrap());
    fill(&log, 10);
    let note = log.latest_checkpoint().unwrap().unwrap();
    let vkey = log.key().public().to_text();
    let verifiers = || {
        let v: Box<dyn signed_note::Verifier> = Box::new(signed_note::StandardVerifier::new(&vkey).unwrap());
        signed_note::VerifierList::new(vec![v])
    };
    let parsed = signed_note::Note::from_bytes(note.as_bytes()).unwrap();
    let (verified, unverified) = parsed.verify(&verifiers()).unwrap();
    assert_eq!((verified.len(), unverified.len()), (1, 0));
    assert_eq!(verified[0].name(), log.origin(), "the key is named after the origin");
    assert_eq!(parsed.text(), Checkpoint::parse_note(&note).unwrap().body().as_bytes());
    // A changed size fails there too.
    let forged = note.replacen("\n10\n", "\n11\n", 1);
    let parsed = signed_note::Note::from_bytes(forged.as_bytes()).unwrap();
    assert!(parsed.verify(&verifiers()).is_err());
}
