#!/usr/bin/env bash
# Benchmarks (not part of CI). Usage: scripts/bench.sh [engine|log|socket|all]
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
if [ "$what" = "socket" ] || [ "$what" = "all" ]; then
    mkdir -p target/bench-tmp
    BENCH_DIR="$PWD/target/bench-tmp" cargo bench -p faramesh-bench --bench socket 2>/dev/null | grep '^bench '
fi
