"""What the SDK adds to a governed call (scripts/bench.sh sdk; not run in CI).

Usage: python bench_sdk.py PATH_TO_FARAMESH [N]
Starts the daemon on a temporary socket with a permit policy, then times, one call at a time:
  raw      a bare JSON-RPC `govern` round trip on one socket (no SDK)
  sdk      SocketTransport.govern (the SDK's transport)
  bare     a LangChain tool's invoke, ungoverned
  governed the same tool governed by GovernedToolSet (daemon round trip included)
  raw_then_bare  a raw `govern` round trip then the bare tool: the same work without the SDK
and prints p50/p99 of each and `sdk_overhead` = governed - raw_then_bare at the median.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from langchain_core.tools import tool

from faramesh import GovernedToolSet, SocketTransport

POLICY = "version: 1\nrules:\n  - id: ok\n    match: { tool: lookup, op: '*' }\n    allow: true\n"


def timed(fn: Callable[[], object], n: int) -> list[float]:
    for _ in range(min(200, n)):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t) / 1000)
    return out


def pct(xs: list[float], p: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * p))]


def main() -> None:
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    tmp = tempfile.mkdtemp(prefix="fm-sdk-bench-")
    with open(os.path.join(tmp, "policy.yaml"), "w") as f:
        f.write(POLICY)
    sock_path = os.path.join(tmp, "s.sock")
    env = {**os.environ, "FARAMESH_LOG": "warn"}
    proc = subprocess.Popen(
        [binary, "serve", "--policy", f.name, "--socket", sock_path, "--state-dir", os.path.join(tmp, "state")],
        env=env,
    )
    try:
        for _ in range(200):
            if os.path.exists(sock_path):
                break
            time.sleep(0.05)
        args = {"key": "k-1"}
        raw = socket.socket(socket.AF_UNIX)
        raw.connect(sock_path)
        reader = raw.makefile("rb")
        counter = iter(range(1, 10**9))

        def raw_govern() -> None:
            msg = {"jsonrpc": "2.0", "id": next(counter), "method": "govern",
                   "params": {"agent_id": "bench", "tool": "lookup", "operation": "invoke", "args": args}}
            raw.sendall(json.dumps(msg).encode() + b"\n")
            reply = json.loads(reader.readline())
            assert reply["result"]["effect"] == "PERMIT"

        transport = SocketTransport(sock_path)

        def sdk_govern() -> None:
            d = transport.govern({"agent_id": "bench", "tool": "lookup", "operation": "invoke", "args": args})
            assert d["effect"] == "PERMIT"

        @tool
        def lookup(key: str) -> str:
            """Look a key up."""
            return key.upper()

        governed = GovernedToolSet([lookup], agent_id="bench", transport=transport)[0]
        def raw_then_bare() -> None:
            raw_govern()
            lookup.invoke(args)

        results = {
            "raw": timed(raw_govern, n),
            "sdk": timed(sdk_govern, n),
            "bare": timed(lambda: lookup.invoke(args), n),
            "raw_then_bare": timed(raw_then_bare, n),
            "governed": timed(lambda: governed.invoke(args), n),
        }
        for name, xs in results.items():
            print(f"bench sdk_{name}_p50 {pct(xs, 0.5):.1f} us")
            print(f"bench sdk_{name}_p99 {pct(xs, 0.99):.1f} us")
        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"bench sdk_transport_overhead_p50 {med['sdk'] - med['raw']:.1f} us")
        # The same work without the SDK: a raw `govern` round trip, then the bare tool, in one
        # loop (timing the bare tool alone, with warm caches, would understate it).
        print(f"bench sdk_overhead_p50 {med['governed'] - med['raw_then_bare']:.1f} us")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
