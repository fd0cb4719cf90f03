//! `scripts/bench.sh socket`: in one run, a bare JSON echo over a Unix socket (the baseline),
//! `decide` sequentially, and `govern` with 1 and 32 concurrent clients against the real server
//! with a durable log. Prints `bench <name> <value> <unit>`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "benchmark harness")]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use faramesh_server::{self as server, Config, Limits};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

const POLICY: &str =
    "version: 1\nrules:\n  - id: http-get\n    match: { tool: http, op: get }\n    allow: true\n";
const DECIDE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"decide","params":{"agent_id":"bench","tool":"http","operation":"get","args":{"url":"https://example.com"}}}"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One connection, sending a line and reading its reply.
struct Conn {
    reader: BufReader<UnixStream>,
    w: UnixStream,
    reply: String,
}

impl Conn {
    fn new(socket: &Path) -> Conn {
        let stream = UnixStream::connect(socket).unwrap();
        Conn { reader: BufReader::new(stream.try_clone().unwrap()), w: stream, reply: String::new() }
    }

    /// One round trip, in microseconds.
    fn roundtrip(&mut self, line: &str) -> f64 {
        let start = Instant::now();
        self.w.write_all(line.as_bytes()).unwrap();
        self.w.write_all(b"\n").unwrap();
        self.reply.clear();
        self.reader.read_line(&mut self.reply).unwrap();
        let us = start.elapsed().as_secs_f64() * 1e6;
        assert!(!self.reply.contains("\"error\""), "{}", self.reply);
        us
    }
}

/// CPU time (user + system) this process has used, in microseconds (10 ms resolution).
fn cpu_us() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line (11 and 12 after the name), in ticks of 10 ms.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks * 10_000.0
}

/// CPU time of the server's own threads (tokio workers and the log writer), in microseconds.
fn server_cpu_us() -> f64 {
    let mut ticks = 0.0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !(comm.starts_with("tokio-rt-worker") || comm.starts_with("faramesh-log-wr")) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let Some(close) = stat.rfind(')') else { continue };
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        ticks += fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    }
    ticks * 10_000.0
}

/// The load generator: `clients` connections, each with one `govern` in flight at a time, all
/// driven by one thread (a single-threaded async runtime), so the generator's own scheduling
/// cost stays small next to the server's. Returns (decisions, latencies in µs).
fn load(socket: &Path, clients: usize, run_for: Duration) -> (u64, Vec<f64>) {
    let socket = socket.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let start = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for c in 0..clients {
                let socket = socket.clone();
                tasks.spawn(async move {
                    let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
                    let (r, mut w) = stream.into_split();
                    let mut lines = tokio::io::BufReader::new(r).lines();
                    let (mut n, mut lat) = (0u64, Vec::new());
                    // BENCH_ARGS: more arguments for every call (a JSON object's members).
                    let extra = std::env::var("BENCH_ARGS").map(|a| format!(",{a}")).unwrap_or_default();
                    while start.elapsed() < run_for {
                        let line = format!(
                            "{{\"jsonrpc\":\"2.0\",\"id\":{n},\"method\":\"govern\",\"params\":{{\"agent_id\":\"bench-{c}\",\"tool\":\"http\",\"operation\":\"get\",\"args\":{{\"n\":{n}{extra}}}}}}}\n"
                        );
                        let t = Instant::now();
                        w.write_all(line.as_bytes()).await.unwrap();
                        let reply = lines.next_line().await.unwrap().unwrap();
                        lat.push(t.elapsed().as_secs_f64() * 1e6);
                        assert!(reply.contains("\"PERMIT\""), "{reply}");
                        n += 1;
                    }
                    (n, lat)
                });
            }
            let (mut total, mut lat) = (0, Vec::new());
            while let Some(done) = tasks.join_next().await {
                let (n, l) = done.unwrap();
                total += n;
                lat.extend(l);
            }
            (total, lat)
        })
    })
    .join()
    .unwrap()
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

    // BENCH_POLICY: another policy file (scripts/bench.sh detect runs the default policy with
    // and without `detect:` rules).
    let policy = dir.path().join("policy.yaml");
    match std::env::var("BENCH_POLICY") {
        Ok(path) => std::fs::copy(path, &policy).map(|_| ()).unwrap(),
        Err(_) => std::fs::write(&policy, POLICY).unwrap(),
    }
    let socket = dir.path().join("faramesh.sock");
    let config = Config {
        policy_path: policy,
        socket_path: socket.clone(),
        state_dir: dir.path().join("state"),
        socket_mode: 0o660,
        limits: Limits::default(),
        http: None,
        retention: None,
        single_user: false,
        demo: false,
        witnesses: None,
        kill_file: None,
        fleet_queue: None,
        bundle: None,
        // `BENCH_POSTGRES=URL` (scripts/bench.sh fleet): `scope: fleet` limits counted there.
        fleet_counter: std::env::var("BENCH_POSTGRES").ok().map(|url| {
            std::sync::Arc::new(faramesh_adapters::export::PostgresCounter::new(&url))
                as std::sync::Arc<dyn faramesh_daemon::service::outbound::FleetCounter>
        }),
        // `BENCH_OTLP=URL` (scripts/bench.sh export): every entry also shipped over OTLP/HTTP.
        export: std::env::var("BENCH_OTLP")
            .ok()
            .map(|url| {
                faramesh_adapters::export::export(
                    "otlp",
                    false,
                    faramesh_adapters::export::OtlpExporter::new(faramesh_adapters::export::Otlp {
                        endpoint: url,
                        headers: Vec::new(),
                        resource: vec![("service.name".into(), "faramesh-bench".into())],
                        ..Default::default()
                    }),
                )
            })
            .into_iter()
            .collect(),
        outbound: faramesh_adapters::outbound(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(server::run(config, async move {
        let _ = stop_rx.await;
    }));
    while UnixStream::connect(&socket).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Echo and decide alternate, one request each, so both see the same machine.
    let (mut echo_conn, mut decide_conn) = (Conn::new(&echo_path), Conn::new(&socket));
    let (mut echo_lat, mut decide_lat) = (Vec::new(), Vec::new());
    for _ in 0..20_000 {
        echo_lat.push(echo_conn.roundtrip(DECIDE));
        decide_lat.push(decide_conn.roundtrip(DECIDE));
    }
    let (echo, decide) = (median(echo_lat), median(decide_lat));
    println!("bench socket_echo_median {echo:.1} us");
    println!("bench socket_decide_median {decide:.1} us");
    println!("bench socket_decide_vs_echo {:.2} x", decide / echo);

    // `BENCH_CLIENTS="1 16"` (scripts/bench.sh http) compares with HTTP at the same concurrency.
    let client_counts: Vec<usize> = std::env::var("BENCH_CLIENTS")
        .unwrap_or_else(|_| "1 32".into())
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    for clients in client_counts {
        let run_for = Duration::from_secs(4);
        let (cpu_before, server_before) = (cpu_us(), server_cpu_us());
        let start = Instant::now();
        let (total, lat) = load(&socket, clients, run_for);
        let rate = total as f64 / start.elapsed().as_secs_f64();
        println!("bench socket_govern_{clients}_clients {rate:.0} decisions/s");
        println!("bench socket_govern_{clients}_clients_median {:.1} us", median(lat));
        // Server and clients share this process and the machine's cores.
        println!(
            "bench socket_govern_{clients}_clients_cpu_per_decision {:.1} us",
            (cpu_us() - cpu_before) / total as f64
        );
        println!(
            "bench socket_govern_{clients}_clients_server_cpu_per_decision {:.1} us",
            (server_cpu_us() - server_before) / total as f64
        );
    }
    if std::env::var("BENCH_OTLP").is_ok() {
        // How far behind the exporter is when the load stops, and how long it takes to catch up.
        let mut status = Conn::new(&socket);
        let lag = |c: &mut Conn| {
            c.roundtrip(r#"{"jsonrpc":"2.0","id":1,"method":"status","params":{}}"#);
            let v: serde_json::Value = serde_json::from_str(&c.reply).unwrap();
            v["result"]["export"][0]["lag_entries"].as_u64().unwrap()
        };
        println!("bench export_lag_at_end {} entries", lag(&mut status));
        let start = Instant::now();
        while lag(&mut status) > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        println!("bench export_catch_up {:.2} s", start.elapsed().as_secs_f64());
    }
    let _ = stop_tx.send(());
    runtime.block_on(server).unwrap().unwrap();
}
