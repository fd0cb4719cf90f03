"""Limits across hosts: a budget and a rate limit with `scope: fleet`, counted in Debian's
PostgreSQL, shared by three daemons under concurrent load. The budget is never overspent (the
documented bound is 0); a rate limit leased 5 units at a time stays within its limit and loses at
most 4 units per host; with the database stopped, `on_unavailable: deny` denies and `local`
counts on the host, and each DPR says which applied.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pylib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from faramesh import SocketTransport  # noqa: E402
from faramesh_testd import Daemon  # noqa: E402
from fleet_helpers import Postgres  # noqa: E402

POLICY = """version: 1
agents:
  refund-bot:
    budget: { max_calls: 30, per: day, scope: fleet }
  crawler:
    rate_limit:
      "http/get": { limit: "20/hour", scope: fleet, lease: 5 }
  careful-bot:
    budget: { max_calls: 50, per: day, scope: fleet, on_unavailable: deny }
  lenient-bot:
    budget: { max_calls: 50, per: day, scope: fleet, on_unavailable: local }
rules:
  - id: refunds
    match: { tool: stripe, op: refund }
    allow: true
  - id: reads
    match: { tool: http, op: get }
    allow: true
"""


@pytest.fixture
def hosts(pg: Postgres, tmp_path: Path) -> Iterator[list[Daemon]]:
    pg.sql("DROP TABLE IF EXISTS faramesh_fleet_counters")
    started: list[Daemon] = []
    try:
        for i in range(3):
            d = tmp_path / f"host{i}"
            d.mkdir()
            started.append(Daemon.serve(d, POLICY, args=["--postgres", pg.url]))
        yield started
    finally:
        for h in started:
            h.stop()


def hammer(hosts: list[Daemon], agent: str, tool: str, op: str, per_thread: int, threads_per_host: int = 3) -> list[dict[str, Any]]:
    """Every host at once, several connections each: the decisions."""
    out: list[dict[str, Any]] = []
    lock = threading.Lock()

    def run(h: Daemon, n: int) -> None:
        t = SocketTransport(h.socket)
        try:
            for i in range(per_thread):
                d = t.govern({"agent_id": agent, "tool": tool, "operation": op, "args": {"n": n * 1000 + i}, "context": {}})
                d["host"] = h.socket
                with lock:
                    out.append(d)
        finally:
            t.close()

    workers = [threading.Thread(target=run, args=(h, k)) for h in hosts for k in range(threads_per_host)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    return out


def record(h: Daemon, action_id: str) -> dict[str, Any]:
    got = json.loads(h.cli("get", action_id, "--json").stdout)
    return dict(got.get("record", got))


def test_a_fleet_budget_is_never_overspent_under_concurrent_load(pg: Postgres, hosts: list[Daemon]) -> None:
    decisions = hammer(hosts, "refund-bot", "stripe", "refund", per_thread=6)
    assert len(decisions) == 54
    permits = [d for d in decisions if d["effect"] == "PERMIT"]
    denies = [d for d in decisions if d["effect"] == "DENY"]
    assert len(permits) == 30, (len(permits), [d["reason"] for d in denies][:3])
    assert all(d["reason_code"] == "BUDGET_EXCEEDED" and "budget of 30 calls" in d["reason"] for d in denies), denies[:2]
    assert len({d["host"] for d in permits}) >= 2, "the budget is shared, not one host's"
    assert pg.sql("SELECT used FROM faramesh_fleet_counters WHERE key LIKE 'budget/refund-bot/%'") == "30"
    by_socket = {h.socket: h for h in hosts}
    rec = record(by_socket[permits[0]["host"]], permits[0]["action_id"])
    assert rec["limits"] == [{"limit": "agents.refund-bot.budget", "counted": "fleet"}], rec


def test_a_leased_fleet_rate_limit_stays_within_its_bound(pg: Postgres, hosts: list[Daemon]) -> None:
    decisions = hammer(hosts, "crawler", "http", "get", per_thread=5, threads_per_host=2)
    permits = sum(1 for d in decisions if d["effect"] == "PERMIT")
    # At most the limit; at most (lease - 1) units per host left unused.
    assert 20 - 3 * 4 <= permits <= 20, permits
    assert int(pg.sql("SELECT sum(used) FROM faramesh_fleet_counters WHERE key LIKE 'rate/crawler/%'")) <= 20
    refused = [d for d in decisions if d["effect"] == "DENY"]
    assert refused and all(d["reason_code"] == "RATE_EXCEEDED" and "across every host" in d["reason"] for d in refused)


def test_the_database_down_denies_or_counts_locally_as_the_policy_says(pg: Postgres, hosts: list[Daemon]) -> None:
    h = hosts[0]
    t = SocketTransport(h.socket)
    call = lambda agent: t.govern({"agent_id": agent, "tool": "stripe", "operation": "refund", "args": {}, "context": {}})  # noqa: E731
    try:
        assert call("careful-bot")["effect"] == "PERMIT"
        pg.stop()
        try:
            denied = call("careful-bot")
            assert (denied["effect"], denied["reason_code"]) == ("DENY", "BUDGET_EXCEEDED"), denied
            assert "fleet database is unreachable (on_unavailable: deny)" in denied["reason"], denied
            assert record(h, denied["action_id"])["limits"][0]["counted"] == "unavailable"
            local = call("lenient-bot")
            assert local["effect"] == "PERMIT", local
            assert record(h, local["action_id"])["limits"][0] == {
                "limit": "agents.lenient-bot.budget",
                "counted": "host",
                "why": "the fleet database is unreachable (on_unavailable: local)",
            }
        finally:
            pg.start()
        import time

        deadline = time.time() + 20
        while (d := call("careful-bot"))["effect"] != "PERMIT":
            assert time.time() < deadline, d
            time.sleep(0.5)
        assert record(h, d["action_id"])["limits"][0]["counted"] == "fleet"
        # A counter row edited to a count no host writes is not trusted: the call is answered,
        # as the limit's on_unavailable says.
        pg.sql("UPDATE faramesh_fleet_counters SET used = -9223372036854775808 WHERE key LIKE 'budget/careful-bot/%'")
        h.stop()  # the host holds no lease of it after a restart
        h.start()
        t.close()
        t2 = SocketTransport(h.socket)
        edited = t2.govern({"agent_id": "careful-bot", "tool": "stripe", "operation": "refund", "args": {}, "context": {}})
        t2.close()
        assert (edited["effect"], edited["reason_code"]) == ("DENY", "BUDGET_EXCEEDED"), edited
        t = SocketTransport(h.socket)
    finally:
        t.close()
