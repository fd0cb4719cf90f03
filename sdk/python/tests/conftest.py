"""Fixtures: the real `faramesh` binary on a temporary socket and state dir (and, for the HTTP
tests, its HTTPS listener with a self-signed certificate), started by the test suites' shared
`tests/pylib/faramesh_testd.py`. Nothing of ours is mocked.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "pylib"))
from faramesh_testd import BIN, ROOT, Daemon

__all__ = ["BIN", "ROOT", "Daemon"]

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


def make_daemon(tmp: Path, http: bool = False, policy: str = POLICY) -> Daemon:
    env = {"FARAMESH_TOKEN": AGENT_TOKEN, "FARAMESH_APPROVER_TOKEN": APPROVER_TOKEN} if http else None
    return Daemon.serve(tmp, policy, listen=http, tls=http, env=env)


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
