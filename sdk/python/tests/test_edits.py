"""Approval with edits through the SDK, against the real daemon: an approver runs `faramesh
approve ID --set KEY=VALUE`; a governed tool waiting with `on_defer="block"` runs with the edited
arguments only (socket and HTTPS), a LangChain tool too, and a caller that cannot substitute
arguments gets a refusal naming the suggested call instead of running the original."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
from conftest import AGENT_TOKEN, Daemon
from langchain_core.tools import tool as lc_tool

from faramesh import GovernedToolSet, HttpTransport, SocketTransport, ToolDeniedException
from faramesh.governed import Governor


def approve_with(d: Daemon, tool: str, *flags: str) -> threading.Thread:
    """Another process (the CLI) approves the next pending call of `tool` with `flags`."""

    def pending() -> list[dict[str, Any]]:
        out = json.loads(d.cli("pending", "--json").stdout or "[]")
        return list(out.get("approvals", out) if isinstance(out, dict) else out)

    before = {a["approval_id"] for a in pending()}

    def run() -> None:
        deadline = time.time() + 20
        while time.time() < deadline:
            for a in pending():
                if a.get("tool") == tool and a["approval_id"] not in before:
                    d.cli("approve", a["approval_id"], *flags)
                    return
            time.sleep(0.05)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_a_blocked_tool_runs_with_the_approvers_edits_only(sock_env: Daemon) -> None:
    ran: list[Any] = []

    def shell(cmd: str) -> str:
        ran.append(cmd)
        return "ran " + cmd

    def refund(amount: int, customer: str) -> str:
        ran.append((amount, customer))
        return f"refunded {amount}"

    ts = GovernedToolSet([shell, refund], agent_id="py-agent", on_defer="block")
    approver = approve_with(sock_env, "shell", "--set", "cmd=uptime")
    assert ts.by_name("shell")("reboot") == "ran uptime"
    approver.join()
    approver = approve_with(sock_env, "refund", "--set", "amount=50")
    assert ts.by_name("refund")(500, customer="c-1") == "refunded 50"
    approver.join()
    assert ran == ["uptime", (50, "c-1")]
    executed = [a for a in sock_env.actions(agent="py-agent") if a.get("reason_code") == "APPROVAL_GRANTED"]
    assert sorted(json.dumps(a["params"], sort_keys=True) for a in executed) == [
        '{"amount": 50, "customer": "c-1"}',
        '{"cmd": "uptime"}',
    ]


def test_an_async_tool_and_a_langchain_tool_run_the_edit(sock_env: Daemon) -> None:
    ran: list[Any] = []

    async def shell(cmd: str) -> str:
        ran.append(cmd)
        return "ran " + cmd

    ts = GovernedToolSet([shell], agent_id="py-agent", on_defer="block")
    approver = approve_with(sock_env, "shell", "--set", "cmd=date")
    assert asyncio.run(ts.by_name("shell")("rm -rf /tmp/x")) == "ran date"
    approver.join()

    @lc_tool
    def shell_lc(cmd: str) -> str:
        """Run a shell command."""
        ran.append(("lc", cmd))
        return "ran " + cmd

    shell_lc.name = "shell"
    governed = GovernedToolSet([shell_lc], agent_id="py-agent", on_defer="block")[0]
    approver = approve_with(sock_env, "shell", "--set", "cmd=whoami")
    assert governed.invoke({"cmd": "shutdown now"}) == "ran whoami"
    approver.join()
    assert ran == ["date", ("lc", "whoami")]


def test_a_caller_that_cannot_substitute_is_refused_with_the_suggested_call(sock_env: Daemon) -> None:
    g = Governor("py-agent", on_defer="block")
    approver = approve_with(sock_env, "shell", "--set", "cmd=uptime")
    with pytest.raises(ToolDeniedException) as e:
        g.gate("shell", {"cmd": "reboot"})
    approver.join()
    assert e.value.code == "APPROVAL_DENIED"
    assert 'make the call again as `shell` with {"cmd": "uptime"}' in str(e.value)
    # Nothing ran under the approval: it is still approved and unused.
    assert e.value.approval_id
    waited = SocketTransport(sock_env.socket).call(
        "approval.wait", {"approval_id": e.value.approval_id, "timeout_seconds": 0}
    )
    assert (waited["status"], waited["edit"]["params"]) == ("approved", {"cmd": "uptime"})


def test_https_transport_reads_the_edit_from_the_action(https_daemon: Daemon) -> None:
    assert https_daemon.url and https_daemon.cert
    transport = HttpTransport(https_daemon.url, token=AGENT_TOKEN, cafile=https_daemon.cert)
    ran: list[str] = []

    def shell(cmd: str) -> str:
        ran.append(cmd)
        return "ran " + cmd

    ts = GovernedToolSet([shell], agent_id="py-agent", transport=transport, on_defer="block")
    approver = approve_with(https_daemon, "shell", "--set", "cmd=hostname")
    assert ts.by_name("shell")("cat /etc/shadow") == "ran hostname"
    approver.join()
    assert ran == ["hostname"]
