"""What both destinations' tests do: decisions through the real socket, the daemon's view of its
export, and the outage with two SIGKILLs that must lose nothing."""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pylib"))
from faramesh import SocketTransport  # noqa: E402
from faramesh_testd import Daemon, free_port  # noqa: E402


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


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    assert found or shutil.which(name), f"PostgreSQL's {name} is not installed (scripts/test.sh installs postgresql)"
    return found[-1] if found else str(shutil.which(name))


class Postgres:
    """A throwaway PostgreSQL server: trust authentication on 127.0.0.1, superuser `faramesh`."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "pg"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"postgres://faramesh@127.0.0.1:{self.port}/postgres"
        # PostgreSQL refuses to run as root: then it runs as the `postgres` user.
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chmod(root, 0o755)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.run(pg_bin("initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "faramesh", "--no-sync")

    def run(self, *argv: str) -> None:
        out = subprocess.run([*self.as_user, *argv], capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 0, out.stdout + out.stderr

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run(pg_bin("pg_ctl"), "-D", str(self.dir / "data"), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self) -> None:
        self.run(pg_bin("pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def sql(self, query: str) -> str:
        out = subprocess.run(["psql", self.url, "-At", "-v", "ON_ERROR_STOP=1", "-c", query], capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A throwaway PostgreSQL server, started in a temporary directory and stopped after."""
    with tempfile.TemporaryDirectory(prefix="fm-pg-") as t:
        server = Postgres(Path(t))
        server.start()
        try:
            yield server
        finally:
            try:
                server.stop()
            except AssertionError:
                pass
