"""`faramesh fleet serve` in a real browser (Debian's chromium, Playwright): two daemons with
waiting calls, one Debian PostgreSQL, alice's key in a real ssh-agent. The page lists both
hosts' calls; one is approved with its own button, the other denied through the bulk action;
each host applies the signed statement and the agent's call resumes (or stays refused).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faramesh import SocketTransport
from playwright.sync_api import Browser, expect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pylib"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fleet"))
from faramesh_testd import BIN, ROOT, Daemon, free_port  # noqa: E402
from fleet_helpers import Postgres, postgres_server, wait_shipped  # noqa: E402

SHOTS = ROOT / "target" / "dashboard"


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


def test_the_fleet_page_approves_one_call_and_denies_another_in_bulk(browser: Browser, pg: Postgres, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f", str(tmp_path / "alice")], check=True)
    agent_sock = str(tmp_path / "agent.sock")
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", agent_sock], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {**os.environ, "SSH_AUTH_SOCK": agent_sock, "NO_COLOR": "1"}
    deadline = time.time() + 10
    while not os.path.exists(agent_sock):
        assert time.time() < deadline, "ssh-agent did not start"
        time.sleep(0.05)
    subprocess.run(["ssh-add", "-q", str(tmp_path / "alice")], check=True, env=env, capture_output=True)
    key = (tmp_path / "alice.pub").read_text().strip()
    policy = f"""version: 1
approvals:
  approvers:
    - {{ name: alice, ssh_key: "{key}" }}
rules:
  - id: refunds-need-a-person
    match: {{ tool: stripe, op: refund }}
    require_approval: true
    risk: high
"""
    hosts: list[Daemon] = []
    page_proc = None
    context = browser.new_context(viewport={"width": 1400, "height": 800}, color_scheme="light")
    try:
        for i in range(2):
            d = tmp_path / f"host{i}"
            d.mkdir()
            hosts.append(Daemon.serve(d, policy, args=["--postgres", pg.url]))
        waiting = []
        for i, h in enumerate(hosts):
            t = SocketTransport(h.socket)
            waiting.append(t.govern({"agent_id": f"pay-bot-{i}", "tool": "stripe", "operation": "refund", "args": {"amount": 40 + i}, "context": {}}))
            t.close()
            wait_shipped(h)
        port = free_port()
        log = open(tmp_path / "page.log", "w+")  # noqa: SIM115
        page_proc = subprocess.Popen(
            [BIN, "fleet", "serve", "--url", pg.url, "--as", "alice", "--listen", f"127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        link = None
        deadline = time.time() + 20
        while link is None:
            log.seek(0)
            found = re.search(r"(http://127\.0\.0\.1:\d+/#token=[0-9a-f]+)", log.read())
            link = found.group(1) if found else None
            assert link or (time.time() < deadline and page_proc.poll() is None), (tmp_path / "page.log").read_text()
            time.sleep(0.05)
        page = context.new_page()
        page.goto(link)
        rows = page.locator("#rows tr")
        expect(rows).to_have_count(2)
        expect(page.locator("#approver")).to_have_text("alice")
        first = page.locator(f"#rows tr[data-approval='{waiting[0]['approval_id']}']")
        expect(first).to_contain_text("stripe/refund")
        expect(first).to_contain_text("refunds-need-a-person")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "fleet-page-light.png"))
        # One click approves host 0's call.
        first.locator("button.approve").click()
        expect(page.locator("#results li").first).to_contain_text("applied: approved", timeout=20_000)
        # The other is denied through the bulk action.
        second = page.locator(f"#rows tr[data-approval='{waiting[1]['approval_id']}']")
        second.locator("input[type=checkbox]").check()
        page.locator("#deny-selected").click()
        expect(page.locator("#results li").first).to_contain_text("applied: denied", timeout=20_000)
        page.screenshot(path=str(SHOTS / "fleet-page-decided-light.png"))
        for i, (h, d) in enumerate(zip(hosts, waiting)):
            t = SocketTransport(h.socket)
            resumed = t.govern({"agent_id": f"pay-bot-{i}", "tool": "stripe", "operation": "refund", "args": {"amount": 40 + i}, "context": {}, "approval_id": d["approval_id"]})
            t.close()
            assert resumed["effect"] == ("PERMIT" if i == 0 else "DENY"), resumed
        # Without the token the page's API answers nothing.
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/pending", timeout=5)
        assert refused.value.code == 401
        # Another host name (a name rebound to 127.0.0.1), or a body that is not JSON: refused
        # even with the token.
        token = link.rsplit("token=", 1)[1]
        for headers, body in [
            ({"Host": f"evil.example:{port}", "Authorization": f"Bearer {token}"}, None),
            ({"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}, b'{"approval_ids": ["x"], "decision": "deny"}'),
            ({"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Origin": "http://evil.example"}, b'{"approval_ids": ["x"], "decision": "deny"}'),
        ]:
            path = "/api/pending" if body is None else "/api/decide"
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(req, timeout=5)
            assert refused.value.code == 403, headers
    finally:
        context.close()
        if page_proc is not None:
            page_proc.terminate()
            page_proc.wait(timeout=10)
        for h in hosts:
            h.stop()
        agent.terminate()
