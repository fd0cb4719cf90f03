"""GovernedToolSet on plain callables, both transports, errors and fail-open, against the real
daemon."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import AGENT_TOKEN, APPROVER_TOKEN, BIN, POLICY, ROOT, Daemon, make_daemon

import faramesh
from faramesh import (
    DaemonUnreachableError,
    GovernedToolSet,
    HttpTransport,
    InvalidRequestError,
    PendingApproval,
    RuleBlock,
    SocketTransport,
    ToolDeniedException,
    UnauthorizedError,
)
from faramesh.testing import StubTransport


def approve_when_pending(d: Daemon, tool: str, deny: bool = False) -> threading.Thread:
    """Another process (the CLI) approves or denies the first call of `tool` that becomes
    pending after this is called."""

    def pending() -> list[dict[str, Any]]:
        out = json.loads(d.cli("pending", "--json").stdout or "[]")
        return list(out.get("approvals", out) if isinstance(out, dict) else out)

    before = {a["approval_id"] for a in pending()}

    def run() -> None:
        deadline = time.time() + 20
        while time.time() < deadline:
            for a in pending():
                if a.get("tool") == tool and a["approval_id"] not in before:
                    (d.deny if deny else d.approve)(a["approval_id"])
                    return
            time.sleep(0.05)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def tools(ran: list[Any], **kwargs: Any) -> GovernedToolSet:
    def read_file(path: str) -> str:
        ran.append(("read_file", path))
        return f"contents of {path}"

    def delete_file(path: str) -> str:
        ran.append(("delete_file", path))
        return "deleted"

    def shell(cmd: str) -> str:
        ran.append(("shell", cmd))
        return "ran " + cmd

    async def search_docs(query: str, limit: int = 3) -> list[str]:
        ran.append(("search_docs", query))
        return [query] * limit

    return GovernedToolSet([read_file, delete_file, shell, search_docs], agent_id="py-agent", **kwargs)


def test_permit_runs_deny_never_runs_with_structured_denial(sock_env: Daemon) -> None:
    ran: list[Any] = []
    ts = tools(ran)
    assert [t.__name__ for t in ts] == ["read_file", "delete_file", "shell", "search_docs"]
    assert ts.by_name("read_file")("/etc/hosts") == "contents of /etc/hosts"
    with pytest.raises(ToolDeniedException) as err:
        ts.by_name("delete_file")("/etc/hosts")
    denial = err.value
    assert ("delete_file", "/etc/hosts") not in ran
    assert denial.code == "POLICY_DENY"
    assert denial.human_message == "Deleting files is not allowed"
    assert denial.rule_id == "no-delete"
    line = POLICY.splitlines().index("  - id: no-delete") + 1
    assert denial.rule_ref == f"{sock_env.policy}:{line}"
    assert denial.resolution == RuleBlock(rule_id="no-delete")
    assert denial.action_id and len(denial.action_id) == 16
    assert isinstance(denial, PermissionError)
    recorded = sock_env.cli("get", denial.action_id, "--json")
    assert json.loads(recorded.stdout)["effect"] == "DENY"


def test_defer_raises_with_approval_id_by_default(sock_env: Daemon) -> None:
    ran: list[Any] = []
    with pytest.raises(ToolDeniedException) as err:
        tools(ran).by_name("shell")("ls")
    assert err.value.code == "POLICY_DEFER"
    assert isinstance(err.value.resolution, PendingApproval)
    assert err.value.approval_id and err.value.resolution.approval_id == err.value.approval_id
    assert ran == []


def test_block_runs_once_after_another_process_approves(sock_env: Daemon) -> None:
    ran: list[Any] = []
    approver = approve_when_pending(sock_env, "shell")
    assert tools(ran, on_defer="block").by_name("shell")("uptime") == "ran uptime"
    approver.join()
    assert ran == [("shell", "uptime")]
    granted = [a for a in sock_env.actions(tool="shell") if a.get("reason_code") == "APPROVAL_GRANTED"]
    assert granted, "the run after approval is recorded as PERMIT APPROVAL_GRANTED"


def test_block_then_deny_raises_and_never_runs(sock_env: Daemon) -> None:
    ran: list[Any] = []
    denier = approve_when_pending(sock_env, "shell", deny=True)
    with pytest.raises(ToolDeniedException) as err:
        tools(ran, on_defer="block").by_name("shell")("reboot")
    denier.join()
    assert err.value.code == "APPROVAL_DENIED"
    assert ran == []


def test_block_times_out_as_pending(sock_env: Daemon) -> None:
    ran: list[Any] = []
    with pytest.raises(ToolDeniedException) as err:
        tools(ran, on_defer="block", approval_timeout_seconds=0.3).by_name("shell")("whoami")
    assert err.value.code == "POLICY_DEFER" and "still pending" in err.value.human_message
    assert ran == []


def test_callbacks_replace_the_result(sock_env: Daemon) -> None:
    ran: list[Any] = []
    seen: list[Any] = []

    def on_defer(approval_id: str | None, denial: ToolDeniedException) -> str:
        seen.append((approval_id, denial.code))
        return "queued for approval"

    ts = tools(ran, on_defer=on_defer, on_deny=faramesh.report_denial)
    assert ts.by_name("shell")("ls") == "queued for approval"
    assert seen[0][0] and seen[0][1] == "POLICY_DEFER"
    out = json.loads(ts.by_name("delete_file")("/x"))
    assert out["code"] == "POLICY_DENY" and out["rule_id"] == "no-delete" and out["denied"] is True
    assert ran == []


def test_async_tools(sock_env: Daemon) -> None:
    ran: list[Any] = []
    ts = tools(ran)
    search = ts.by_name("search_docs")
    assert asyncio.iscoroutinefunction(search)
    assert asyncio.run(search("faramesh", limit=2)) == ["faramesh", "faramesh"]
    assert ran == [("search_docs", "faramesh")]
    last = sock_env.actions(tool="search_docs")[0]
    assert last["params"] == {"query": "faramesh", "limit": 2}


def test_metadata_forwarding_keeps_only_known_keys() -> None:
    stub = StubTransport({"read_file": "permit"})
    ts = GovernedToolSet([lambda path: path], agent_id="a", transport=stub)
    call = ts.governor.call("read_file", {"path": "/x"}, {"session_id": 7, "tags": "prod", "secret": "no", "user": "x"})
    assert {k: v for k, v in call.items() if k not in ("agent_id", "tool", "operation", "args", "context")} == {
        "session_id": "7",
        "tags": ["prod"],
    }


def test_unreachable_daemon_fails_closed_and_names_the_socket(tmp_path: Path) -> None:
    ran: list[Any] = []
    ts = tools(ran, transport=SocketTransport(str(tmp_path / "none.sock")))
    with pytest.raises(DaemonUnreachableError) as err:
        ts.by_name("read_file")("/x")
    assert str(tmp_path / "none.sock") in str(err.value) and "faramesh dev" in str(err.value)
    assert ran == []


def test_fail_open_permits_with_a_warning_and_is_refused_in_production(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[Any] = []
    caplog.set_level(logging.WARNING, logger="faramesh")
    ts = tools(ran, transport=SocketTransport(str(tmp_path / "none.sock")), fail_open=True)
    assert ts.by_name("delete_file")("/x") == "deleted"
    assert any("FAIL OPEN" in r.message for r in caplog.records)
    monkeypatch.setenv("FARAMESH_ENV", "production")
    with pytest.raises(ValueError, match="production"):
        tools(ran, fail_open=True)


def test_invalid_request_names_the_field(sock_env: Daemon) -> None:
    transport = SocketTransport(sock_env.socket)
    with pytest.raises(InvalidRequestError) as err:
        transport.govern({"agent_id": "a", "tool": "http", "operation": "get", "args": [1]})
    assert err.value.field == "args"


def test_socket_shared_by_32_threads_on_one_connection(sock_env: Daemon) -> None:
    transport = SocketTransport(sock_env.socket)
    results: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        for j in range(20):
            d = transport.govern(
                {"agent_id": f"t{i}", "tool": "read_file", "operation": "invoke", "args": {"i": i, "j": j}}
            )
            with lock:
                results.append(str(d["effect"]) + ":" + str(d["action_id"]))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 640 and all(r.startswith("PERMIT:") for r in results)
    assert len(set(results)) == 640, "every call got its own answer"
    conn = transport._conn
    assert conn is not None and conn.alive, "one connection carried all of them"
    transport.close()


def test_socket_reconnects_after_a_daemon_restart(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="faramesh")
    d = make_daemon(tmp_path)
    try:
        transport = SocketTransport(d.socket)
        call = {"agent_id": "r", "tool": "read_file", "operation": "invoke", "args": {}}
        assert transport.govern(call)["effect"] == "PERMIT"
        d.stop()
        with pytest.raises(DaemonUnreachableError):
            transport.govern(call)
        d.start()
        assert transport.govern(call)["effect"] == "PERMIT"
        assert any("reconnected" in r.message for r in caplog.records)
    finally:
        d.stop()


def test_request_hash_matches_the_daemon_on_the_shared_vectors() -> None:
    vectors = json.loads((ROOT / "proto" / "tests" / "request_hash_vectors.json").read_text())
    lines = []
    for v in vectors:
        ours = faramesh.request_hash(v["agent_id"], v["tool"], v["operation"], v["params"], v["context"])
        assert ours == v["request_hash"], v
        lines.append(json.dumps({k: v[k] for k in ("agent_id", "tool", "operation", "params", "context")}))
    daemon = subprocess.run([BIN, "request-hash"], input="\n".join(lines) + "\n", capture_output=True, text=True)
    assert daemon.stdout.split() == [v["request_hash"] for v in vectors]


def test_logs_decisions_on_the_faramesh_logger(sock_env: Daemon, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="faramesh")
    tools([]).by_name("read_file")("/etc/hosts")
    line = next(r.message for r in caplog.records if "read_file/invoke" in r.message)
    assert "PERMIT POLICY_PERMIT" in line and " ms " in line and "action " in line


def test_stub_transport_mapping_and_callable() -> None:
    def search_docs(query: str) -> str:
        return "found " + query

    stub = StubTransport({"search_docs": "permit"})
    ts = GovernedToolSet([search_docs], agent_id="my-agent", transport=stub)
    assert ts[0]("x") == "found x"
    with pytest.raises(ToolDeniedException) as err:
        GovernedToolSet([print], agent_id="a", transport=stub)[0]("no rule")
    assert err.value.code == "DEFAULT_DENY_NO_MATCH"

    def ls(path: str) -> str:
        return path

    by_args = StubTransport(lambda call: "deny" if call["args"].get("path") == "/etc" else "permit")
    ls = GovernedToolSet([ls], agent_id="a", transport=by_args)[0]
    assert ls("/tmp") == "/tmp"
    with pytest.raises(ToolDeniedException):
        ls("/etc")


def test_https_transport_govern_block_and_errors(https_daemon: Daemon) -> None:
    assert https_daemon.url and https_daemon.cert
    transport = HttpTransport(https_daemon.url, token=AGENT_TOKEN, cafile=https_daemon.cert)
    ran: list[Any] = []
    ts = tools(ran, transport=transport, on_defer="block")
    assert ts.by_name("read_file")("/a") == "contents of /a"
    with pytest.raises(ToolDeniedException):
        ts.by_name("delete_file")("/a")
    approver = HttpTransport(https_daemon.url, token=APPROVER_TOKEN, cafile=https_daemon.cert)

    def approve() -> None:
        deadline = time.time() + 20
        while time.time() < deadline:
            pending = approver.list_actions(status="pending_approval", tool="shell")
            if pending:
                approver.decide_approval(pending[0]["id"], True, "ok")
                return
            time.sleep(0.05)

    t = threading.Thread(target=approve)
    t.start()
    assert ts.by_name("shell")("date") == "ran date"
    t.join()
    assert ("shell", "date") in ran
    with pytest.raises(UnauthorizedError):
        HttpTransport(https_daemon.url, token="wrong", cafile=https_daemon.cert).govern(
            {"agent_id": "a", "tool": "http", "operation": "get"}
        )
    with pytest.raises(DaemonUnreachableError, match="FARAMESH_CA_CERT"):
        HttpTransport(https_daemon.url, token=AGENT_TOKEN).govern({"agent_id": "a", "tool": "http", "operation": "get"})


def test_auto_transport_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from faramesh.transport import auto_transport

    monkeypatch.setenv("FARAMESH_BASE_URL", "http://127.0.0.1:1")
    assert auto_transport().kind == "http"
    monkeypatch.setenv("FARAMESH_SOCKET", "/tmp/x.sock")
    assert auto_transport().kind == "socket"
    monkeypatch.setenv("FARAMESH_REMOTE_URL", "https://127.0.0.1:2")
    t = auto_transport()
    assert t.kind == "http" and t.target == "https://127.0.0.1:2"
