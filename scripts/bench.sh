#!/usr/bin/env bash
# Benchmarks (not part of CI). Usage: scripts/bench.sh [engine|log|socket|detect|fleet|export|http|sdk|hook|soak|all]
# (`soak` is not part of `all`: it writes a million decisions; SOAK_N sets how many.)
# Each prints lines `bench <name> <value> <unit>`.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
if [ "$what" = "engine" ] || [ "$what" = "all" ]; then
    cargo bench -p faramesh-bench --bench engine 2>/dev/null | grep '^bench '
fi
if [ "$what" = "log" ] || [ "$what" = "all" ]; then
    mkdir -p target/bench-tmp
    BENCH_DIR="$PWD/target/bench-tmp" cargo bench -p faramesh-bench --bench log 2>/dev/null | grep '^bench '
fi
if [ "$what" = "export" ] || [ "$what" = "all" ]; then
    # `socket` with every entry also shipped over OTLP/HTTP to a sink on loopback (it answers
    # 200 to each batch), then the exporter's lag when the load stops.
    mkdir -p target/bench-tmp
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # The sink stands for a collector on another machine: it runs at the lowest priority here.
    nice -n 19 python3 - "$port" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Sink(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
    sink=$!
    BENCH_OTLP="http://127.0.0.1:$port/v1/logs" BENCH_DIR="$PWD/target/bench-tmp" cargo bench -p faramesh-bench --bench socket 2>/dev/null |
        grep -E '^bench (socket_govern_[0-9]+_clients |export_)' | sed 's/^bench /bench with_export /'
    kill "$sink"
fi
if [ "$what" = "detect" ]; then
    # `socket` under the bundled default policy, then under the same policy with two `detect:`
    # rules first; every call carries a few hundred bytes of text arguments.
    mkdir -p target/bench-tmp
    cp policies/default.yaml target/bench-tmp/default.yaml
    awk '{ print } /^rules:/ {
        print "  - id: no-secrets-out\n    match: { tool: http, detect: secrets }\n    deny: true"
        print "  - id: pii-out\n    match: { tool: http, op: post, detect: pii }\n    require_approval: true"
    }' policies/default.yaml > target/bench-tmp/default-detect.yaml
    args='"url":"https://api.example.com/v1/orders/1042?expand=items","note":"customer asked to resend the invoice for order 1042 to the billing contact; shipment 7731 delayed by the carrier","trace":"4bf92f3577b34da6a3ce929d0e0e4736"'
    for p in default default-detect; do
        BENCH_POLICY="$PWD/target/bench-tmp/$p.yaml" BENCH_ARGS="$args" BENCH_DIR="$PWD/target/bench-tmp" \
            cargo bench -p faramesh-bench --bench socket 2>/dev/null | grep -E '^bench socket_govern_' | sed "s/^bench /bench $p /"
    done
fi
if [ "$what" = "fleet" ]; then
    # `socket` with a budget on every agent: counted on the host, then in PostgreSQL (Debian's
    # server, started here in target/bench-tmp) a unit per call (`lease: 1`) and 100 at a time.
    mkdir -p target/bench-tmp
    pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    pgdir="$PWD/target/bench-tmp/pg"; rm -rf "$pgdir"; mkdir -p "$pgdir"
    as=(); if [ "$(id -u)" = 0 ]; then chown postgres "$pgdir"; as=(runuser -u postgres --); fi
    "${as[@]}" "$pgbin/initdb" -D "$pgdir/data" -A trust -U faramesh --no-sync >/dev/null
    pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "${as[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -o "-p $pgport -k $pgdir -c listen_addresses=127.0.0.1" -l "$pgdir/log" -w start >/dev/null
    trap '"${as[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m fast -w stop >/dev/null' EXIT
    for scope in host fleet fleet-lease100; do
        case $scope in
            host) budget='{ max_calls: 100000000, per: day }' ;;
            fleet) budget='{ max_calls: 100000000, per: day, scope: fleet }' ;;
            *) budget='{ max_calls: 100000000, per: day, scope: fleet, lease: 100 }' ;;
        esac
        { printf 'version: 1\nagents:\n'
          for c in $(seq 0 31); do printf '  bench-%s:\n    budget: %s\n' "$c" "$budget"; done
          printf 'rules:\n  - id: http-get\n    match: { tool: http, op: get }\n    allow: true\n'; } \
            >"target/bench-tmp/budget-$scope.yaml"
        BENCH_POLICY="$PWD/target/bench-tmp/budget-$scope.yaml" BENCH_POSTGRES="postgres://faramesh@127.0.0.1:$pgport/postgres" \
            BENCH_DIR="$PWD/target/bench-tmp" cargo bench -p faramesh-bench --bench socket 2>/dev/null |
            grep -E '^bench socket_govern_' | sed "s/^bench /bench budget_$scope /"
    done
fi
if [ "$what" = "socket" ] || [ "$what" = "all" ]; then
    mkdir -p target/bench-tmp
    BENCH_DIR="$PWD/target/bench-tmp" cargo bench -p faramesh-bench --bench socket 2>/dev/null | grep '^bench '
fi
if [ "$what" = "hook" ] || [ "$what" = "all" ]; then
    # `faramesh hook claude-code` end to end, as Claude Code runs it: a process per tool call,
    # the payload on stdin, one `govern` over the socket (recorded), the answer on stdout.
    cargo build --release --locked --bin faramesh 2>/dev/null
    dir="$(mktemp -d "$PWD/target/bench-hook.XXXXXX")"
    printf 'version: 1\nrules:\n  - id: reads\n    match: { tool: file, op: read }\n    allow: true\n' >"$dir/policy.yaml"
    FARAMESH_LOG=warn target/release/faramesh serve --policy "$dir/policy.yaml" --socket "$dir/s.sock" \
        --state-dir "$dir/state" &
    hook_pid=$!
    for _ in $(seq 100); do [ -S "$dir/s.sock" ] && break; sleep 0.05; done
    python3 - "$dir/s.sock" <<'PY'
import json, statistics, subprocess, sys, time
payload = json.dumps({"session_id": "bench", "cwd": "/tmp", "hook_event_name": "PreToolUse", "tool_name": "Read",
                      "tool_input": {"file_path": "/tmp/x"}, "tool_use_id": "toolu_bench"}).encode()
times = []
for _ in range(500):
    t = time.perf_counter()
    out = subprocess.run(["target/release/faramesh", "hook", "claude-code", "--socket", sys.argv[1]],
                         input=payload, capture_output=True, check=True)
    times.append((time.perf_counter() - t) * 1e6)
    assert b'"allow"' in out.stdout, out
times.sort()
print(f"bench hook_claude_code_median {statistics.median(times):.0f} us")
print(f"bench hook_claude_code_p99 {times[int(len(times) * 0.99)]:.0f} us")
PY
    kill "$hook_pid"; wait "$hook_pid" 2>/dev/null || true
    rm -rf "$dir"
fi
if [ "$what" = "http" ] || [ "$what" = "all" ]; then
    # The HTTP listener under wrk (a native load generator, from Debian's packages), plain HTTP
    # on loopback like the Python anchor (uvicorn), then socket `govern` at the same concurrency
    # in the same run.
    command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
    cargo build --release --locked --bin faramesh 2>/dev/null
    dir="$(mktemp -d "$PWD/target/bench-http.XXXXXX")"
    printf 'version: 1\nrules:\n  - id: http-get\n    match: { tool: http, op: get }\n    allow: true\n' >"$dir/policy.yaml"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    FARAMESH_TOKEN=bench-token FARAMESH_LOG=warn target/release/faramesh serve --policy "$dir/policy.yaml" \
        --socket "$dir/s.sock" --state-dir "$dir/state" --listen "127.0.0.1:$port" &
    pid=$!
    trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
    for _ in $(seq 100); do [ -S "$dir/s.sock" ] && break; sleep 0.05; done
    cat >"$dir/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"agent_id":"bench","tool":"http","operation":"get","params":{"url":"https://example.com"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-token"
LUA
    for route in gate/decide actions; do
        for conns in 1 16; do
            threads=$([ "$conns" = 1 ] && echo 1 || echo 2)
            rps=$(wrk -t"$threads" -c"$conns" -d5s -s "$dir/post.lua" "http://127.0.0.1:$port/v1/$route" |
                awk '/Requests\/sec/ {print $2}')
            echo "bench http_${route//\//_}_${conns}_conns $rps requests/s"
        done
    done
    kill $pid; wait $pid 2>/dev/null || true
    mkdir -p target/bench-tmp
    BENCH_DIR="$PWD/target/bench-tmp" BENCH_CLIENTS="1 16" cargo bench -p faramesh-bench --bench socket 2>/dev/null |
        grep '^bench socket_govern'
fi
if [ "$what" = "sdk" ] || [ "$what" = "all" ]; then
    # The Python SDK's overhead on a governed LangChain tool call, over the socket.
    cargo build --release --locked --bin faramesh 2>/dev/null
    venv="$PWD/.venv-sdk"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r sdk/python/requirements-test.txt
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall ./sdk/python
    "$venv/bin/python" sdk/python/bench/bench_sdk.py "$PWD/target/release/faramesh" "${BENCH_N:-3000}"
fi
if [ "$what" = "soak" ]; then
    # The long-running footprint: the release daemon's RSS, bytes per decision, indexed
    # listings deep in history, a 90% prune while serving, verification.
    cargo build --release --locked --bin faramesh 2>/dev/null
    mkdir -p target/bench-tmp
    FARAMESH_BIN="$PWD/target/release/faramesh" BENCH_DIR="$PWD/target/bench-tmp" \
        cargo bench -p faramesh-bench --bench soak 2>/dev/null | grep -E '^(bench|soak) '
fi
