"""What both destinations' tests do: decisions through the real socket, the daemon's view of its
export, and the outage with two SIGKILLs that must lose nothing."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pylib"))
from faramesh import SocketTransport  # noqa: E402
from faramesh_testd import Daemon  # noqa: E402


def govern_many(daemon: Daemon, n: int, start: int, agent: str = "fleet-bot") -> None:
    """`n` permitted, recorded decisions (`http/get` of distinct URLs)."""
    transport = SocketTransport(daemon.socket)
    try:
        for i in range(start, start + n):
            d = transport.govern({"agent_id": agent, "tool": "http", "operation": "get", "args": {"url": f"https://example.com/{i}"}, "context": {}})
            assert d["effect"] == "PERMIT", d
    finally:
        transport.close()


def status(daemon: Daemon) -> dict[str, Any]:
    out = daemon.cli("status", "--json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def wait_shipped(daemon: Daemon, timeout: float = 90) -> dict[str, Any]:
    """The status once the (one) destination acknowledged the whole log."""
    deadline = time.time() + timeout
    while True:
        s = status(daemon)
        (dest,) = s["export"]
        if dest["cursor"] == s["log"]["size"] and dest["lag_entries"] == 0:
            return s
        assert time.time() < deadline, dest
        time.sleep(0.2)


def outage_and_two_sigkills(daemon: Daemon, take_down: Callable[[], None], bring_back: Callable[[], None]) -> dict[str, Any]:
    """2,000 decisions: 500, the destination down, 500, SIGKILL, 500 with it still down, back,
    SIGKILL while it catches up, 500; returns the status once everything was shipped."""
    govern_many(daemon, 500, 0)
    take_down()
    govern_many(daemon, 500, 500)
    (dest,) = status(daemon)["export"]
    assert dest["lag_entries"] > 0 and dest["last_error"], dest
    assert daemon.proc is not None
    daemon.proc.kill()  # SIGKILL while entries wait to be shipped
    daemon.proc.wait()
    daemon.start()
    govern_many(daemon, 500, 1000)
    bring_back()
    time.sleep(0.3)
    daemon.proc.kill()  # and again, while it catches up
    daemon.proc.wait()
    daemon.start()
    govern_many(daemon, 500, 1500)
    return wait_shipped(daemon)
