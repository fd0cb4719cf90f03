//! `scripts/bench.sh log`: bare redb with one record per durable commit (the baseline), then our
//! log with 1, 8 and 32 concurrent appenders, in one run. Prints `bench <name> <value> <unit>`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "benchmark harness")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use faramesh_log::{Log, LogKey, LogOptions, dpr};
use faramesh_proto::{Call, Decision, Effect, ReasonCode, RiskLevel};
use redb::{Database, TableDefinition};
use serde_json::json;

const BARE: TableDefinition<u64, &[u8]> = TableDefinition::new("bare");

fn sample_body(i: u64) -> serde_json::Map<String, serde_json::Value> {
    let mut call = Call::new("bench-agent", "http", "get");
    call.params = json!({"url": format!("https://example.com/{i}")});
    let decision = Decision {
        effect: Effect::Permit,
        reason_code: ReasonCode::PolicyPermit,
        reason: "Read-only HTTP".into(),
        rule_id: Some("http-get".into()),
        rule_ref: Some("policy.yaml:3".into()),
        risk_level: RiskLevel::Low,
        request_hash: call.request_hash().unwrap(),
        policy_hash: "0".repeat(64),
        structured_denial: None,
        provenance: None,
        params_hash: String::new(),
        shadow: None,
        findings: Vec::new(),
    };
    dpr::decision_entry(&call, &decision, None, None, &[])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let record = serde_json::to_vec(&sample_body(0)).unwrap();

    // Baseline: bare redb, one record per durable commit; and our log with one sequential
    // appender. The two alternate, one commit each, so both see the same disk: this shared
    // virtual disk drifts by tens of percent over a run.
    let db = Database::create(dir.path().join("bare.redb")).unwrap();
    let key = LogKey::from_seed(&[5u8; 32]);
    let log = Arc::new(Log::open(&dir.path().join("log.redb"), key, LogOptions::default()).unwrap());
    let (mut bare_lat, mut log_lat) = (Vec::new(), Vec::new());
    for i in 0..1000u64 {
        let start = Instant::now();
        let txn = db.begin_write().unwrap();
        txn.open_table(BARE).unwrap().insert(i, record.as_slice()).unwrap();
        txn.commit().unwrap();
        bare_lat.push(start.elapsed().as_secs_f64() * 1e6);
        let body = sample_body(i);
        let start = Instant::now();
        log.append_blocking(body).unwrap();
        log_lat.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let bare = median(bare_lat);
    let seq = median(log_lat);
    println!("bench log_bare_redb_commit_median {bare:.1} us");
    println!("bench log_append_1_appender_median {seq:.1} us");
    println!("bench log_append_1_appender_vs_bare {:.2} x", seq / bare);
    let mut lat = Vec::new();
    for i in 0..300u64 {
        let start = Instant::now();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(BARE).unwrap();
            for j in 0..32u64 {
                t.insert(1_000_000 + i * 32 + j, record.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
        lat.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let bare32 = median(lat);
    println!("bench log_bare_redb_commit_32_records_median {bare32:.1} us");
    println!("bench log_bare_redb_32_per_commit_ceiling {:.0} entries/s", 32.0 / bare32 * 1e6);
    drop(db);

    // Appenders are tasks on a 2-thread tokio runtime, as in the daemon (one task per request).
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for appenders in [1usize, 8, 32] {
        let run_for = Duration::from_secs(3);
        let start = Instant::now();
        let total: u64 = runtime.block_on(async {
            let tasks: Vec<_> = (0..appenders)
                .map(|t| {
                    let log = Arc::clone(&log);
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        while start.elapsed() < run_for {
                            log.append(sample_body(t as u64 * 1_000_000 + n)).await.unwrap();
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            total
        });
        let rate = total as f64 / start.elapsed().as_secs_f64();
        println!("bench log_append_{appenders}_appenders {rate:.0} entries/s");
    }
    let report = log.verify(None).unwrap();
    assert!(report.ok, "{report:?}");
    tree_cost();
}

/// The Merkle tree's CPU per entry as the writer spends it: a leaf hash and the frontier's
/// merges per entry, the root folded once per commit, and the tile nodes a commit completes
/// collected for the commit's transaction (their redb insert, one per 256 entries, is part of
/// the `log_append_*` figures above). Compare with `socket_govern_*_server_cpu_per_decision`.
fn tree_cost() {
    use faramesh_log::merkle::{Frontier, leaf_hash};
    const ENTRIES: u64 = 2_000_000;
    for per_commit in [1u64, 32, 256] {
        let mut frontier = Frontier::default();
        let mut nodes = Vec::new();
        let mut sink = 0u8;
        let start = Instant::now();
        for i in 0..ENTRIES {
            let mut entry_hash = [0u8; 32];
            entry_hash[..8].copy_from_slice(&i.to_le_bytes());
            frontier.push(leaf_hash(&entry_hash), |h, idx, hash| nodes.push((h, idx, *hash)));
            if (i + 1) % per_commit == 0 {
                sink ^= frontier.root()[0];
                nodes.clear();
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / ENTRIES as f64;
        std::hint::black_box(sink);
        println!("bench log_tree_cpu_per_entry_{per_commit}_per_commit {:.3} us", ns / 1000.0);
    }
}
