"""Fixtures: the real `faramesh` binary on a temporary socket and state dir (and, for the HTTP
tests, its HTTPS listener with a self-signed certificate). Nothing of ours is mocked.

The binary is `$FARAMESH_BIN`, else `target/debug/faramesh` of this checkout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = os.environ.get("FARAMESH_BIN") or str(ROOT / "target" / "debug" / "faramesh")

POLICY = """
version: 1
approvals:
  # The tests approve from another process of the same user (a real deployment runs agents
  # as their own uid and leaves this false).
  allow_same_uid: true
rules:
  - id: read-ok
    match: { tool: read_file, op: "*" }
    allow: true
  - id: search-ok
    match: { tool: search_docs, op: "*" }
    allow: true
  - id: no-delete
    match: { tool: delete_file, op: "*" }
    deny: true
    description: Deleting files is not allowed
  - id: refund-small
    match: { tool: refund, op: "*", amount_lte: 100 }
    allow: true
    reason: Small refunds allowed
  - id: refund-large
    match: { tool: refund, op: "*", amount_gt: 100 }
    require_approval: true
    reason: Large refunds need approval
    risk: high
  - id: shell-approval
    match: { tool: shell, op: "*" }
    require_approval: true
    description: Shell commands need a human
  - id: http-get
    match: { tool: http, op: get }
    allow: true
  - id: my-tool-ok
    match: { tool: my_tool, op: "*" }
    allow: true
"""

AGENT_TOKEN = "agent-token-for-tests"
APPROVER_TOKEN = "approver-token-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    """A running `faramesh serve`."""

    dir: Path
    socket: str
    state: Path
    policy: Path
    url: str | None = None
    cert: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                BIN,
                "serve",
                "--policy",
                str(self.policy),
                "--socket",
                self.socket,
                "--state-dir",
                str(self.state),
                *self.args,
            ],
            env={**os.environ, **self.env},
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "daemon.log", "ab"),  # noqa: SIM115
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {(self.dir / 'daemon.log').read_text()}")
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(self.socket)
                if self.url is None or self._http_up():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("daemon did not start")

    def _http_up(self) -> bool:
        port = int(str(self.url).rsplit(":", 1)[1])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The operator's CLI against this daemon (another process)."""
        return subprocess.run(
            [BIN, *args, "--socket", self.socket], capture_output=True, text=True, timeout=30, check=False
        )

    def approve(self, approval_id: str) -> None:
        out = self.cli("approve", approval_id)
        assert out.returncode == 0, out.stderr

    def deny(self, approval_id: str) -> None:
        out = self.cli("deny", approval_id)
        assert out.returncode == 0, out.stderr

    def actions(self, **params: Any) -> list[dict[str, Any]]:
        import json

        flags = [part for k, v in params.items() for part in (f"--{k.replace('_', '-')}", str(v))]
        out = self.cli("list", "--json", *flags)
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        return list(data["actions"] if isinstance(data, dict) else data)


def make_daemon(tmp: Path, http: bool = False, policy: str = POLICY) -> Daemon:
    (tmp / "policy.yaml").write_text(policy)
    d = Daemon(dir=tmp, socket=str(tmp / "f.sock"), state=tmp / "state", policy=tmp / "policy.yaml")
    if http:
        port = free_port()
        d.url = f"https://127.0.0.1:{port}"
        d.args = ["--listen", f"127.0.0.1:{port}", "--tls", "self-signed"]
        d.env = {"FARAMESH_TOKEN": AGENT_TOKEN, "FARAMESH_APPROVER_TOKEN": APPROVER_TOKEN}
        d.cert = str(d.state / "tls" / "cert.pem")
    d.start()
    return d


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No FARAMESH_* variable leaks in from the caller or between tests; the SDK's shared
    transports are dropped after each test."""
    for key in list(os.environ):
        if key.startswith("FARAMESH_") and key != "FARAMESH_BIN":
            monkeypatch.delenv(key)
    yield
    import faramesh.transport as t

    for transport in t._shared.values():
        transport.close()
    t._shared.clear()
    t._configured = None


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with tempfile.TemporaryDirectory(prefix="fm-py-") as tmp:
        d = make_daemon(Path(tmp))
        try:
            yield d
        finally:
            d.stop()


@pytest.fixture(scope="module")
def https_daemon() -> Iterator[Daemon]:
    with tempfile.TemporaryDirectory(prefix="fm-py-") as tmp:
        d = make_daemon(Path(tmp), http=True)
        try:
            yield d
        finally:
            d.stop()


@pytest.fixture
def sock_env(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> Daemon:
    monkeypatch.setenv("FARAMESH_SOCKET", daemon.socket)
    return daemon
