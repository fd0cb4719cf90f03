//! `scripts/bench.sh soak`: the long-running footprint. The release daemon (`FARAMESH_BIN`)
//! takes `SOAK_N` decisions (default 1,000,000) from 8 pipelining connections, 100 agents; at
//! every tenth it reports its RSS and the log's bytes per decision; then listings by agent
//! paging deep into history, a prune of 90% while clients keep governing, and `log.verify`.
//! Prints `bench <name> <value> <unit>`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "benchmark harness")]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const POLICY: &str =
    "version: 1\nrules:\n  - id: http-get\n    match: { tool: http, op: get }\n    allow: true\n";
const AGENTS: u64 = 100;
const CONNS: u64 = 8;
const WINDOW: u64 = 64;

struct Conn {
    reader: BufReader<UnixStream>,
    w: UnixStream,
}

impl Conn {
    fn new(socket: &Path) -> Conn {
        let stream = UnixStream::connect(socket).unwrap();
        Conn { reader: BufReader::new(stream.try_clone().unwrap()), w: stream }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let line = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        self.w.write_all(line.as_bytes()).unwrap();
        self.w.write_all(b"\n").unwrap();
        let mut reply = String::new();
        self.reader.read_line(&mut reply).unwrap();
        let v: Value = serde_json::from_str(&reply).unwrap();
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }
}

fn govern_line(i: u64) -> String {
    json!({"jsonrpc": "2.0", "id": i, "method": "govern", "params": {
        "agent_id": format!("agent-{}", i % AGENTS), "tool": "http", "operation": "get",
        "params": {"url": format!("https://example.com/items/{i}")}}})
    .to_string()
}

/// Sends decisions `from..to` over `CONNS` connections, `WINDOW` in flight on each.
fn load(socket: &Path, from: u64, to: u64) {
    let next = Arc::new(AtomicU64::new(from));
    let threads: Vec<_> = (0..CONNS)
        .map(|_| {
            let next = Arc::clone(&next);
            let socket = socket.to_owned();
            std::thread::spawn(move || {
                let mut c = Conn::new(&socket);
                let mut in_flight = 0u64;
                let mut line = String::new();
                loop {
                    while in_flight < WINDOW {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= to {
                            break;
                        }
                        let mut l = govern_line(i);
                        l.push('\n');
                        c.w.write_all(l.as_bytes()).unwrap();
                        in_flight += 1;
                    }
                    if in_flight == 0 {
                        return;
                    }
                    line.clear();
                    c.reader.read_line(&mut line).unwrap();
                    assert!(line.contains("\"PERMIT\""), "{line}");
                    in_flight -= 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The file's allocated bytes (what it takes on disk).
fn disk_bytes(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.len(), m.blocks() * 512)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let bin =
        PathBuf::from(std::env::var("FARAMESH_BIN").expect("FARAMESH_BIN: the release faramesh binary"));
    let n: u64 = std::env::var("SOAK_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let base = std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::tempdir_in(base).unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let socket = dir.path().join("s.sock");
    let state = dir.path().join("state");
    let log_file = state.join("log.redb");
    let child = Command::new(&bin)
        .args(["serve", "--policy"])
        .arg(&policy)
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(&state)
        .args(
            std::env::var("SOAK_CACHE_MB").map(|mb| vec!["--cache-size".to_owned(), mb]).unwrap_or_default(),
        )
        .env("FARAMESH_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    let pid = daemon.0.id();
    while UnixStream::connect(&socket).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }

    let step = n / 10;
    let mut rss_at_tenth = 0;
    let started = Instant::now();
    for k in 1..=10 {
        let t = Instant::now();
        load(&socket, (k - 1) * step, k * step);
        let rate = step as f64 / t.elapsed().as_secs_f64();
        let rss = rss_kib(pid);
        let (len, disk) = disk_bytes(&log_file);
        if k == 1 {
            rss_at_tenth = rss;
        }
        println!(
            "soak {:>8} decisions: {rate:>7.0}/s, rss {:>6.1} MiB (anon {:>6.1}), file {:>7.1} MB ({:.0} B/decision, {:.0} B/decision allocated)",
            k * step,
            rss as f64 / 1024.0,
            status_kib(pid, "RssAnon:") as f64 / 1024.0,
            len as f64 / 1e6,
            len as f64 / (k * step) as f64,
            disk as f64 / (k * step) as f64,
        );
    }
    let total = started.elapsed().as_secs_f64();
    let rss_end = rss_kib(pid);
    let (len, _) = disk_bytes(&log_file);
    println!("bench soak_decisions {n} decisions");
    println!("bench soak_throughput {:.0} decisions/s", n as f64 / total);
    println!("bench soak_rss_at_10pct {:.1} MiB", rss_at_tenth as f64 / 1024.0);
    println!("bench soak_rss_end {:.1} MiB", rss_end as f64 / 1024.0);
    println!("bench soak_rss_growth {:.2} x", rss_end as f64 / rss_at_tenth.max(1) as f64);
    println!("bench soak_bytes_per_decision {:.0} bytes", len as f64 / n as f64);

    // Listings by agent: the newest page, and pages deep in history (a cursor near the start).
    let mut c = Conn::new(&socket);
    let mut newest = Vec::new();
    let mut deep = Vec::new();
    let mut found_deep = 0;
    for q in 0..50u64 {
        let agent = format!("agent-{}", (q * 7) % AGENTS);
        let t = Instant::now();
        let r = c.call("action.list", json!({"agent_id": agent, "limit": 50}));
        newest.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r["actions"].as_array().unwrap().len(), 50);
        // A cursor in the first tenth of the log (a decision's id): the page before it is deep
        // history.
        let probe = c.call("log.entries", json!({"from_seq": 1000 + q * (step / 50), "limit": 10}));
        let decision = probe["entries"].as_array().unwrap().iter().find(|e| e["kind"] == "decision").unwrap();
        let probe_seq = decision["seq"].as_u64().unwrap();
        let cursor = decision["id"].clone();
        let t = Instant::now();
        let r = c.call("action.list", json!({"agent_id": agent, "limit": 50, "cursor": cursor}));
        deep.push(t.elapsed().as_secs_f64() * 1e3);
        let got = r["actions"].as_array().unwrap();
        assert!(
            got.iter().all(|a| a["seq"].as_u64().unwrap() <= probe_seq && a["agent_id"] == agent.as_str())
        );
        found_deep += got.len();
    }
    println!("bench soak_list_by_agent_newest_median {:.2} ms", median(newest));
    println!("bench soak_list_by_agent_deep_median {:.2} ms", median(deep));
    println!("bench soak_list_by_agent_deep_found {found_deep} actions");

    // Prune 90% while 4 clients keep governing.
    let (size_before, disk_before) = disk_bytes(&log_file);
    let keep = n / 10;
    c.call("log.exported", json!({"from_seq": 1, "through_seq": n}));
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let worst_us = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (stop, served, worst_us) = (Arc::clone(&stop), Arc::clone(&served), Arc::clone(&worst_us));
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut c = Conn::new(&socket);
                let mut i = 10_000_000 * (t + 1);
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let r = c.call(
                        "govern",
                        serde_json::from_str::<Value>(&govern_line(i)).unwrap()["params"].clone(),
                    );
                    assert_eq!(r["effect"], "PERMIT");
                    worst_us.fetch_max(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                    served.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    let mut pc = Conn::new(&socket);
    let t = Instant::now();
    let pruned = pc.call("log.prune", json!({"keep_last": keep}));
    let prune_s = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in clients {
        h.join().unwrap();
    }
    let (size_after, disk_after) = disk_bytes(&log_file);
    println!(
        "soak prune: {} entries in {} commits, compacted {}",
        pruned["plan"]["entries"], pruned["batches"], pruned["compacted"]
    );
    println!("bench soak_prune_seconds {prune_s:.1} s");
    println!("bench soak_prune_file_before {:.1} MB", size_before as f64 / 1e6);
    println!("bench soak_prune_file_after {:.1} MB", size_after as f64 / 1e6);
    println!("bench soak_prune_disk_before {:.1} MB", disk_before as f64 / 1e6);
    println!("bench soak_prune_disk_after {:.1} MB", disk_after as f64 / 1e6);
    println!("bench soak_prune_served_during {} decisions", served.load(Ordering::Relaxed));
    println!("bench soak_prune_worst_govern {:.1} ms", worst_us.load(Ordering::Relaxed) as f64 / 1e3);
    let t = Instant::now();
    let report = c.call("log.verify", json!({}));
    println!("bench soak_verify_after_prune_seconds {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!(report["ok"], true, "{report}");
    println!(
        "soak verify: ok, entries {} to {}, {} pruned",
        report["first_seq"], report["size"], report["pruned_entries"]
    );
    println!("bench soak_rss_after_prune {:.1} MiB", rss_kib(pid) as f64 / 1024.0);
    drop(daemon);
}
