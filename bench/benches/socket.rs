//! `scripts/bench.sh socket`: in one run, a bare JSON echo over a Unix socket (the baseline),
//! `decide` sequentially, and `govern` with 1 and 32 concurrent clients against the real server
//! with a durable log. Prints `bench <name> <value> <unit>`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "benchmark harness")]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use faramesh_daemon::server::{self, Config, Limits};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

const POLICY: &str =
    "version: 1\nrules:\n  - id: http-get\n    match: { tool: http, op: get }\n    allow: true\n";
const DECIDE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"decide","params":{"agent_id":"bench","tool":"http","operation":"get","args":{"url":"https://example.com"}}}"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn roundtrips(socket: &Path, line: &str, n: usize) -> Vec<f64> {
    let stream = UnixStream::connect(socket).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let mut reply = String::new();
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
        reply.clear();
        reader.read_line(&mut reply).unwrap();
        lat.push(start.elapsed().as_secs_f64() * 1e6);
    }
    assert!(!reply.contains("\"error\""), "{reply}");
    lat
}

fn main() {
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();

    // Baseline: a bare JSON echo server (parse the line, write it back) on the same kind of socket.
    let echo_path = dir.path().join("echo.sock");
    let listener = runtime.block_on(async { tokio::net::UnixListener::bind(&echo_path).unwrap() });
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = tokio::io::BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                    let mut out = serde_json::json!({"jsonrpc": "2.0", "id": v["id"], "result": v["params"]})
                        .to_string();
                    out.push('\n');
                    if w.write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let echo = median(roundtrips(&echo_path, DECIDE, 20_000));
    println!("bench socket_echo_median {echo:.1} us");

    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let socket = dir.path().join("faramesh.sock");
    let config = Config {
        policy_path: policy,
        socket_path: socket.clone(),
        state_dir: dir.path().join("state"),
        socket_mode: 0o660,
        limits: Limits::default(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(server::run(config, async move {
        let _ = stop_rx.await;
    }));
    while UnixStream::connect(&socket).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let decide = median(roundtrips(&socket, DECIDE, 20_000));
    println!("bench socket_decide_median {decide:.1} us");
    println!("bench socket_decide_vs_echo {:.2} x", decide / echo);

    for clients in [1usize, 32] {
        let run_for = Duration::from_secs(4);
        let start = Instant::now();
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                let socket = socket.clone();
                std::thread::spawn(move || {
                    let stream = UnixStream::connect(&socket).unwrap();
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut w = stream;
                    let mut reply = String::new();
                    let mut n = 0u64;
                    let mut lat = Vec::new();
                    while start.elapsed() < run_for {
                        let line = format!(
                            r#"{{"jsonrpc":"2.0","id":{n},"method":"govern","params":{{"agent_id":"bench-{c}","tool":"http","operation":"get","args":{{"n":{n}}}}}}}"#
                        );
                        let t = Instant::now();
                        w.write_all(line.as_bytes()).unwrap();
                        w.write_all(b"\n").unwrap();
                        reply.clear();
                        reader.read_line(&mut reply).unwrap();
                        lat.push(t.elapsed().as_secs_f64() * 1e6);
                        assert!(reply.contains("\"PERMIT\""), "{reply}");
                        n += 1;
                    }
                    (n, lat)
                })
            })
            .collect();
        let mut total = 0;
        let mut lat = Vec::new();
        for t in threads {
            let (n, l) = t.join().unwrap();
            total += n;
            lat.extend(l);
        }
        let rate = total as f64 / start.elapsed().as_secs_f64();
        println!("bench socket_govern_{clients}_clients {rate:.0} decisions/s");
        println!("bench socket_govern_{clients}_clients_median {:.1} us", median(lat));
    }
    let _ = stop_tx.send(());
    runtime.block_on(server).unwrap().unwrap();
}
