"""The dashboard in a real browser (Debian's chromium driven by Playwright) against the real
daemon started by `faramesh dev`, with agents using our Python SDK over the socket.

Screenshots (table and drawer, light and dark) are written to target/dashboard/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faramesh import GovernedToolSet, SocketTransport, ToolDeniedException
from playwright.sync_api import Browser, BrowserContext, Page, expect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pylib"))
from faramesh_testd import BIN, ROOT, free_port  # noqa: E402
SHOTS = ROOT / "target" / "dashboard"

POLICY = """
version: 1
approvals:
  allow_same_uid: true   # the test approves from the same user; real deployments leave this false
rules:
  - id: read-ok
    match: { tool: read_file, op: "*" }
    allow: true
    description: Reading files is fine
  - id: shell-approval
    match: { tool: shell, op: "*" }
    require_approval: true
    description: Shell commands need a human
    risk: high
  - id: no-delete
    match: { tool: delete_file, op: "*" }
    deny: true
    description: Deleting files is not allowed
  - id: no-payments
    match: { tool: payments, op: "*" }
    deny: true
    description: No payments from this agent (a rule that never fires here)
"""


class Dev:
    def __init__(self, tmp: Path, policy: str = POLICY) -> None:
        (tmp / "policy.yaml").write_text(policy)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.socket = str(tmp / "dev" / "faramesh.sock")
        self.log = open(tmp / "dev.log", "w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                BIN,
                "dev",
                "--dir",
                str(tmp / "dev"),
                "--policy",
                str(tmp / "policy.yaml"),
                "--listen",
                f"127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
        )
        deadline = time.time() + 30
        self.login = ""
        while time.time() < deadline and not self.login:
            self.log.seek(0)
            found = re.search(r"(http://127\.0\.0\.1:\d+/#login=[0-9a-f]+)", self.log.read())
            if found:
                self.login = found.group(1)
            elif self.proc.poll() is not None:
                raise RuntimeError("faramesh dev exited")
            time.sleep(0.05)
        assert self.login, "faramesh dev printed no login link"

    def agent(self, **kwargs: Any) -> GovernedToolSet:
        ran = kwargs.pop("ran")

        def read_file(path: str) -> str:
            ran.append(("read_file", path))
            return "contents"

        def shell(cmd: str) -> str:
            ran.append(("shell", cmd))
            return f"ran {cmd}"

        def delete_file(path: str) -> str:
            ran.append(("delete_file", path))
            return "deleted"

        return GovernedToolSet(
            [read_file, shell, delete_file], agent_id="dash-agent", transport=SocketTransport(self.socket), **kwargs
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


@pytest.fixture(scope="module")
def dev() -> Iterator[Dev]:
    with tempfile.TemporaryDirectory(prefix="fm-dash-") as tmp:
        d = Dev(Path(tmp))
        try:
            yield d
        finally:
            d.stop()


@pytest.fixture(scope="module")
def session(dev: Dev, browser: Browser) -> Iterator[tuple[BrowserContext, Page]]:
    """One signed-in browser tab (the login link is used here, once)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme="light")
    page = context.new_page()
    page.goto(dev.login)
    expect(page.locator("#main")).to_be_visible()
    assert "#login=" not in page.url, "the secret is removed from the address bar"
    yield context, page
    context.close()


def row(page: Page, text: str) -> Any:
    return page.locator("#rows tr", has_text=text).first


def test_the_login_link_works_once(dev: Dev, browser: Browser, session: tuple[BrowserContext, Page]) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(dev.login)
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#login-error")).to_contain_text("already used")
    expect(page.locator("#main")).to_be_hidden()
    context.close()


def test_a_defer_appears_live_and_approve_lets_the_waiting_agent_run(
    dev: Dev, session: tuple[BrowserContext, Page]
) -> None:
    _, page = session
    page.evaluate("window.__no_reload = true")
    ran: list[Any] = []
    tools = dev.agent(ran=ran, on_defer="block", approval_timeout_seconds=60)
    result: dict[str, Any] = {}

    def agent() -> None:
        try:
            result["value"] = tools.by_name("shell")("uptime")
        except Exception as e:  # noqa: BLE001 (reported below)
            result["error"] = e

    t = threading.Thread(target=agent)
    t.start()
    pending = row(page, "pending approval")
    expect(pending).to_be_visible()
    expect(pending).to_contain_text("shell")
    assert page.evaluate("window.__no_reload") is True, "the row arrived without a reload"
    assert t.is_alive() and ran == [], "the agent is waiting"
    pending.click()
    expect(page.locator("#d-approve")).to_be_visible()
    page.locator("#d-reason").fill("checked with on-call")
    page.locator("#d-approve").click()
    t.join(timeout=30)
    assert result.get("value") == "ran uptime", result
    assert ran == [("shell", "uptime")]
    # The agent's resumed call is recorded PERMIT APPROVAL_GRANTED; the drawer shows why the
    # buttons are gone.
    expect(page.locator("#d-approve")).to_have_count(0)
    # The session is the user the sign-in link was printed for (the daemon's own user).
    expect(page.locator("#d-body .note")).to_contain_text(f"approved by dashboard:uid:{os.getuid()}")
    granted = row(page, "APPROVAL_GRANTED")
    expect(granted).to_contain_text("PERMIT")


def test_a_denied_calls_drawer_shows_the_rule_and_the_explain_trace(
    dev: Dev, session: tuple[BrowserContext, Page]
) -> None:
    _, page = session
    ran: list[Any] = []
    with pytest.raises(ToolDeniedException):
        dev.agent(ran=ran).by_name("delete_file")("/etc/passwd")
    denied = row(page, "delete_file")
    expect(denied).to_contain_text("DENY")
    denied.click()
    body = page.locator("#d-body")
    expect(body).to_contain_text("Deleting files is not allowed")
    expect(body).to_contain_text("no-delete")
    expect(body).to_contain_text("policy.yaml:")
    steps = page.locator(".steps li")
    expect(steps.first).to_contain_text("read-ok")
    expect(steps.first).to_contain_text("tool: `delete_file` does not match `read_file`")
    expect(page.locator(".steps li.matched")).to_contain_text("no-delete")
    expect(body).to_contain_text("faramesh explain")
    assert ran == []


def test_agent_supplied_html_is_text(dev: Dev, session: tuple[BrowserContext, Page]) -> None:
    _, page = session
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    ran: list[Any] = []
    payload = "<img src=x onerror=alert(1)>"
    dev.agent(ran=ran).by_name("read_file")(payload)
    r = row(page, "read_file")
    expect(r).to_be_visible()
    r.click()
    expect(page.locator("#d-body pre.json").first).to_contain_text(payload)
    assert page.locator("#drawer img").count() == 0
    page.locator("#f-q").fill("onerror")
    expect(page.locator("#rows tr")).to_have_count(1)
    page.locator("#f-q").fill("")
    page.wait_for_timeout(300)
    assert dialogs == []


def request(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_approving_needs_the_session_cookie_and_the_csrf_token(dev: Dev, session: tuple[BrowserContext, Page]) -> None:
    context, page = session
    decision = SocketTransport(dev.socket).govern(
        {"agent_id": "dash-agent", "tool": "shell", "operation": "invoke", "args": {"cmd": "reboot"}}
    )
    assert decision["effect"] == "DEFER"
    url = f"{dev.url}/v1/actions/{decision['action_id']}/approval"
    cookie = next(c for c in context.cookies() if c["name"] == "faramesh_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    jar = {"Cookie": f"faramesh_session={cookie['value']}"}
    assert request(url, "POST", {"approve": True}) == 401, "no cookie"
    assert request(url, "POST", {"approve": True}, jar) == 403, "cookie without CSRF token"
    assert request(url, "POST", {"approve": True}, {**jar, "X-CSRF-Token": "0" * 64}) == 403, "wrong CSRF token"
    assert SocketTransport(dev.socket).get_action(decision["action_id"])["status"] == "pending_approval"
    csp = urllib.request.urlopen(dev.url + "/", timeout=10).headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    # The page's own requests carry the token: deny it from the drawer.
    page.locator("#f-status").select_option("pending_approval")
    expect(page.locator("#rows tr")).to_have_count(1)
    r = row(page, "pending approval")
    expect(r).to_contain_text("shell")
    r.click()
    page.locator("#d-deny").click()
    expect(page.locator("#d-body .note")).to_contain_text("denied")
    page.locator("#f-status").select_option("")


def test_the_queue_approves_in_bulk_and_grants(dev: Dev, session: tuple[BrowserContext, Page]) -> None:
    _, page = session
    page.keyboard.press("Escape")  # a drawer an earlier test opened
    expect(page.locator("#drawer")).to_be_hidden()
    ran: list[Any] = []
    tools = dev.agent(ran=ran)
    for cmd in ("make test", "make lint", "make docs"):
        with pytest.raises(ToolDeniedException):
            tools.by_name("shell")(cmd)
    queue = page.locator("#queue")
    expect(queue).to_be_visible()
    rows = page.locator("#queue-rows tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("cmd: make test")  # oldest first, with its arguments
    expect(rows.first.locator(".age")).to_contain_text(" s")
    expect(rows.first.locator(".expires")).to_contain_text("in ")
    expect(page.locator("#rows tr", has_text="make lint").first).to_contain_text("cmd: make lint")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("document.documentElement.dataset.theme = 'light'")
    page.screenshot(path=str(SHOTS / "queue-light.png"))

    # Two selected, approved with one reason: each recorded on its own.
    page.locator("#queue-rows tr", has_text="make test").locator("input.pick").check()
    page.locator("#queue-rows tr", has_text="make lint").locator("input.pick").check()
    expect(page.locator("#bulk-approve")).to_have_text("Approve 2 selected")
    page.locator("#bulk-reason").fill("release checklist")
    page.locator("#bulk-approve").click()
    expect(rows).to_have_count(1)
    approvals = json.loads(dev_cli(dev, "pending", "--json"))
    approvals = approvals.get("approvals", approvals) if isinstance(approvals, dict) else approvals
    assert [a["tool"] for a in approvals] == ["shell"] and len(approvals) == 1
    log = json.loads(dev_cli(dev, "list", "--json", "--status", "approved", "--limit", "10"))
    approved = log["actions"] if isinstance(log, dict) else log
    assert {a["params"]["cmd"] for a in approved} >= {"make test", "make lint"}

    # The last one approved with a 30-minute grant: the agent's next shell call runs without asking.
    rows.first.locator("button.grant").click()
    expect(queue).to_be_hidden()
    expect(page.locator("#grants")).to_be_visible()
    expect(page.locator("#grant-list li")).to_contain_text("dash-agent → shell/invoke")
    assert tools.by_name("shell")("make clean") == "ran make clean"
    page.locator("#grant-list button").click()
    expect(page.locator("#grants")).to_be_hidden()
    with pytest.raises(ToolDeniedException):
        tools.by_name("shell")("make clean")  # revoked: it asks again
    expect(rows).to_have_count(1)


def test_the_drawer_approves_with_a_grant_for_the_same_arguments(
    dev: Dev, session: tuple[BrowserContext, Page]
) -> None:
    _, page = session
    page.keyboard.press("Escape")
    ran: list[Any] = []
    tools = dev.agent(ran=ran)
    with pytest.raises(ToolDeniedException):
        tools.by_name("shell")("git status")
    row(page, "git status").click()
    expect(page.locator("#d-approve")).to_be_visible()
    page.locator("#d-grant").select_option("15")
    page.locator("#d-grant-same").check()
    page.locator("#d-reason").fill("read-only git")
    page.locator("#d-approve").click()
    expect(page.locator("#grant-list li", has_text="git status")).to_be_visible()
    grants = json.loads(dev_cli(dev, "grants", "--json"))
    grants = grants.get("grants", grants) if isinstance(grants, dict) else grants
    mine = [g for g in grants if g.get("summary") == "cmd: git status"]
    assert len(mine) == 1 and mine[0]["request_hash"], grants
    # The same arguments run without asking; other arguments still ask.
    assert tools.by_name("shell")("git status") == "ran git status"
    with pytest.raises(ToolDeniedException):
        tools.by_name("shell")("git push")
    page.locator("#grant-list li", has_text="git status").locator("button").click()
    expect(page.locator("#grant-list li", has_text="git status")).to_have_count(0)


def test_the_drawer_approves_with_changed_arguments_and_the_agent_runs_them(
    dev: Dev, session: tuple[BrowserContext, Page]
) -> None:
    _, page = session
    page.keyboard.press("Escape")
    ran: list[Any] = []
    tools = dev.agent(ran=ran, on_defer="block", approval_timeout_seconds=60)
    result: dict[str, Any] = {}

    def agent() -> None:
        try:
            result["value"] = tools.by_name("shell")("rm -rf build")
        except Exception as e:  # noqa: BLE001 (reported below)
            result["error"] = e

    t = threading.Thread(target=agent)
    t.start()
    row(page, "rm -rf build").click()
    expect(page.locator("#d-approve")).to_be_visible()
    page.locator("#d-edit summary").click()
    editor = page.locator("#d-params")
    expect(editor).to_have_value(re.compile(r'"cmd": "rm -rf build"'))
    editor.fill("{not json")
    page.locator("#d-approve-edited").click()
    expect(page.locator("#d-body .error")).to_contain_text("not JSON")
    assert t.is_alive() and ran == [], "nothing was decided"
    editor.fill('{"cmd": "ls build"}')
    page.locator("#d-approve-edited").click()
    t.join(timeout=30)
    assert result.get("value") == "ran ls build", result
    assert ran == [("shell", "ls build")]
    expect(page.locator("#d-body h3", has_text="Edited by the approver")).to_be_visible()
    expect(page.locator("#d-body pre", has_text='"cmd": "ls build"')).to_be_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "drawer-edited-light.png"))


def test_the_overview_draws_decisions_agents_and_rules(dev: Dev, session: tuple[BrowserContext, Page]) -> None:
    _, page = session
    page.keyboard.press("Escape")
    ran: list[Any] = []
    dev.agent(ran=ran).by_name("read_file")("/srv/overview")
    page.reload()
    overview = page.locator("#overview")
    expect(overview).to_be_visible()
    expect(page.locator("#notify-trouble")).to_be_hidden()  # no channel, nothing undelivered
    expect(page.locator("#ov-chart svg rect.bar.permit").first).to_be_visible()
    expect(page.locator("#ov-agents")).to_contain_text("dash-agent")
    expect(page.locator("#ov-tools")).to_contain_text("read_file/invoke")
    never = page.locator("#ov-rules tr", has_text="no-payments")
    expect(never).to_have_class(re.compile(r"\bnever\b"))
    expect(never).to_contain_text("never fired")
    fired = page.locator("#ov-rules tr", has_text="read-ok")
    expect(fired).not_to_have_class(re.compile(r"\bnever\b"))
    page.locator("#ov-window").select_option("day")
    expect(page.locator("#ov-caption")).to_contain_text("15 minutes")
    expect(page.locator("#ov-total")).to_contain_text("decisions")
    SHOTS.mkdir(parents=True, exist_ok=True)
    for theme in ("light", "dark"):
        page.evaluate(f"document.documentElement.dataset.theme = '{theme}'")
        overview.screenshot(path=str(SHOTS / f"overview-{theme}.png"))


def test_the_header_warns_when_notifications_are_not_delivered(browser: Browser) -> None:
    # A webhook channel whose receiver is not there, tried once: the DEFER's notification fails.
    dead = free_port()
    policy = POLICY.replace(
        "rules:",
        f"""notifications:
  channels:
    ops:
      type: webhook
      url: http://127.0.0.1:{dead}/hook
      secret_env: FM_TEST_WEBHOOK_SECRET
      attempts: 1
  on_defer: [ops]
rules:""",
        1,
    )
    os.environ["FM_TEST_WEBHOOK_SECRET"] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    with tempfile.TemporaryDirectory(prefix="fm-dash-notify-") as tmp:
        d = Dev(Path(tmp), policy)
        context = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme="light")
        try:
            page = context.new_page()
            page.goto(d.login)
            expect(page.locator("#main")).to_be_visible()
            expect(page.locator("#notify-trouble")).to_be_hidden()
            with pytest.raises(ToolDeniedException):
                d.agent(ran=[]).by_name("shell")("make deploy")
            expect(page.locator("#notify-trouble")).to_be_visible(timeout=20_000)
            expect(page.locator("#notify-trouble-text")).to_contain_text("1 not delivered")
            expect(page.locator("#notify-trouble-text")).to_contain_text("ops:")
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "notifications-failing-light.png"))
        finally:
            context.close()
            d.stop()


def test_the_header_shows_the_kill_switch_and_the_rules_their_shadow_hits(browser: Browser) -> None:
    # A rule in shadow mode in front of `read-ok`: reads stay allowed, and it counts what it would deny.
    policy = POLICY.replace(
        "rules:",
        """rules:
  - id: no-reads-shadow
    mode: shadow
    match: { tool: read_file, op: "*" }
    deny: true""",
        1,
    )
    with tempfile.TemporaryDirectory(prefix="fm-dash-kill-") as tmp:
        d = Dev(Path(tmp), policy)
        context = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme="light")
        try:
            page = context.new_page()
            page.goto(d.login)
            expect(page.locator("#main")).to_be_visible()
            ran: list[Any] = []
            d.agent(ran=ran).by_name("read_file")("/srv/shadowed")
            assert ran == [("read_file", "/srv/shadowed")], "the shadow rule decides nothing"
            dev_cli(d, "kill", "--reason", "agents misbehaving")
            page.reload()
            expect(page.locator("#kill-switch")).to_be_visible()
            expect(page.locator("#kill-switch-text")).to_contain_text("every agent")
            expect(page.locator("#kill-switch-text")).to_contain_text("agents misbehaving")
            shadow = page.locator("#ov-rules tr", has_text="no-reads-shadow")
            expect(shadow).to_have_class(re.compile(r"\bshadow\b"))
            expect(shadow).to_contain_text("would have changed 1 call")
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "kill-switch-light.png"))
            dev_cli(d, "kill", "--lift")
            page.reload()
            expect(page.locator("#main")).to_be_visible()
            expect(page.locator("#kill-switch")).to_be_hidden()
        finally:
            context.close()
            d.stop()


def dev_cli(dev: Dev, *args: str) -> str:
    out = subprocess.run([BIN, *args, "--socket", dev.socket], capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_screenshots(dev: Dev, session: tuple[BrowserContext, Page]) -> None:
    _, page = session
    ran: list[Any] = []
    tools = dev.agent(ran=ran)
    for path in ("/srv/app/config.yaml", "/var/log/syslog"):
        tools.by_name("read_file")(path)
    with pytest.raises(ToolDeniedException):
        tools.by_name("shell")("df -h")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.keyboard.press("Escape")  # closes the drawer if one is open
    expect(row(page, "df -h").or_(row(page, "pending approval"))).to_be_visible()
    for theme in ("light", "dark"):
        page.evaluate(f"document.documentElement.dataset.theme = '{theme}'")
        page.screenshot(path=str(SHOTS / f"table-{theme}.png"))
    row(page, "pending approval").click()
    expect(page.locator("#d-approve")).to_be_visible()
    for theme in ("light", "dark"):
        page.evaluate(f"document.documentElement.dataset.theme = '{theme}'")
        page.screenshot(path=str(SHOTS / f"drawer-{theme}.png"))
    row(page, "delete_file").click()
    expect(page.locator(".steps li.matched")).to_be_visible()
    page.evaluate("document.documentElement.dataset.theme = 'light'")
    page.screenshot(path=str(SHOTS / "drawer-denied-light.png"))
    assert all(
        (SHOTS / f"{n}.png").stat().st_size > 10_000
        for n in ("table-light", "table-dark", "drawer-light", "drawer-dark")
    )


def test_the_header_says_loudly_when_no_signed_policy_bundle_is_in_force(browser: Browser) -> None:
    # A host that takes its policy from signed bundles and has never reached its fleet database:
    # every call is denied, and the header says why in red.
    with tempfile.TemporaryDirectory(prefix="fm-dash-bundle-") as tmp:
        root = Path(tmp)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "publisher")], check=True)
        port = free_port()
        socket = str(root / "f.sock")
        log = open(root / "daemon.log", "w+")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                BIN, "serve", "--socket", socket, "--state-dir", str(root / "state"),
                "--listen", f"127.0.0.1:{port}",
                "--postgres", "postgres://faramesh@127.0.0.1:9/nowhere",
                "--policy-from", "postgres", "--policy-key", str(root / "publisher.pub"),
            ],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1", "FARAMESH_APPROVER_TOKEN": "t" * 32},
        )
        context = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme="light")
        try:
            deadline = time.time() + 30
            link = None
            while link is None:
                out = subprocess.run([BIN, "dashboard", "--socket", socket], capture_output=True, text=True, check=False)
                found = re.search(r"(http://127\.0\.0\.1:\d+/login/[0-9a-f]+)", out.stdout)
                link = found.group(1) if found else None
                assert link or time.time() < deadline, out.stdout + out.stderr + (root / "daemon.log").read_text()
                time.sleep(0.1)
            page = context.new_page()
            page.goto(link)
            expect(page.locator("#main")).to_be_visible()
            expect(page.locator("#bundle")).to_be_visible()
            expect(page.locator("#bundle-text")).to_contain_text("no signed policy bundle has been received yet")
            expect(page.locator("#bundle-label")).to_have_class(re.compile(r"\bbad\b"))
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "no-policy-bundle-light.png"))
        finally:
            context.close()
            proc.terminate()
            proc.wait(timeout=20)
            log.close()


def test_a_call_that_needs_two_signed_approvers_shows_how_many_signed(browser: Browser) -> None:
    with tempfile.TemporaryDirectory(prefix="fm-dash-two-") as tmp:
        root = Path(tmp)
        for name in ("alice", "bob"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(root / name)], check=True)
        keys = {n: (root / f"{n}.pub").read_text().strip() for n in ("alice", "bob")}
        policy = f"""version: 1
approvals:
  allow_same_uid: true
  approvers:
    - {{ name: alice, ssh_key: "{keys['alice']}" }}
    - {{ name: bob, ssh_key: "{keys['bob']}" }}
rules:
  - id: payouts-need-two
    match: {{ tool: payout, op: "*" }}
    require_approval: true
    approvals_required: 2
"""
        d = Dev(root, policy)
        context = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme="light")
        try:
            t = SocketTransport(d.socket)
            waiting = t.govern({"agent_id": "pay-bot", "tool": "payout", "operation": "send", "args": {"amount": 900}, "context": {}})
            t.close()
            assert waiting["effect"] == "DEFER"
            dev_cli(d, "approve", waiting["approval_id"], "--sign", "--as", "alice", "--key", str(root / "alice"))
            page = context.new_page()
            page.goto(d.login)
            row = page.locator(f".queue-row[data-id='{waiting['action_id']}']")
            expect(row).to_contain_text("1 of 2 signed")
            row.locator("td").nth(2).click()
            expect(page.locator("#d-signed")).to_contain_text("1 of 2 so far (alice)")
            expect(page.locator("#d-approve")).to_be_disabled()
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "two-approvers-light.png"))
            dev_cli(d, "approve", waiting["approval_id"], "--sign", "--as", "bob", "--key", str(root / "bob"))
            page.reload()
            expect(page.locator(f".queue-row[data-id='{waiting['action_id']}']")).to_have_count(0)
        finally:
            context.close()
            d.stop()


def test_a_passkey_registered_in_the_dashboard_signs_an_approval(browser: Browser) -> None:
    # Chromium's virtual authenticator makes and uses the passkey; the assertion the daemon
    # accepted is verified again here by Duo's webauthn library.
    import base64
    import hashlib

    import cbor2
    from cryptography.hazmat.primitives.serialization import load_der_public_key
    from webauthn import verify_authentication_response

    with tempfile.TemporaryDirectory(prefix="fm-dash-passkey-") as tmp:
        root = Path(tmp)
        d = Dev(root, POLICY)
        context = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme="light")
        try:
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            cdp.send("WebAuthn.enable")
            cdp.send(
                "WebAuthn.addVirtualAuthenticator",
                {
                    "options": {
                        "protocol": "ctap2",
                        "transport": "internal",
                        "hasResidentKey": True,
                        "hasUserVerification": True,
                        "isUserVerified": True,
                        "automaticPresenceSimulation": True,
                    }
                },
            )
            # A passkey's relying party is a host name: the dashboard is opened as localhost.
            origin = d.url.replace("127.0.0.1", "localhost")
            page.goto(d.login.replace("127.0.0.1", "localhost"))
            expect(page.locator("#main")).to_be_visible()
            page.locator("#passkey-open").click()
            page.locator("#passkey-name").fill("bob")
            page.locator("#passkey-register").click()
            expect(page.locator("#passkey-snippet")).to_be_visible()
            snippet = page.locator("#passkey-snippet").inner_text()
            cred_id = re.search(r'id: "([A-Za-z0-9_-]+)"', snippet).group(1)  # type: ignore[union-attr]
            spki = re.search(r'public_key: "([A-Za-z0-9+/=]+)"', snippet).group(1)  # type: ignore[union-attr]
            # The operator lists the passkey under bob's name; the policy hot-reloads.
            before = json.loads(dev_cli(d, "status", "--json"))["policy"]["policy_hash"]
            policy = POLICY.replace(
                "  allow_same_uid: true",
                f'  allow_same_uid: true\n  approvers:\n    - {{ name: bob, passkey: {{ id: "{cred_id}", public_key: "{spki}" }} }}',
            )
            (root / "policy.yaml").write_text(policy)
            deadline = time.time() + 20
            while json.loads(dev_cli(d, "status", "--json"))["policy"]["policy_hash"] == before:
                assert time.time() < deadline, "the policy was not reloaded"
                time.sleep(0.1)
            t = SocketTransport(d.socket)
            waiting = t.govern({"agent_id": "ops-bot", "tool": "shell", "operation": "exec", "args": {"cmd": "make deploy"}, "context": {}})
            assert waiting["effect"] == "DEFER"
            page.reload()
            row = page.locator(f".queue-row[data-id='{waiting['action_id']}']")
            row.locator("td").nth(2).click()
            expect(page.locator("#d-passkey-name")).to_have_value("bob")
            page.locator("#d-passkey-approve").click()
            expect(page.locator(".approve .ok-text")).to_contain_text("signed with your passkey: approved")
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "passkey-approved-light.png"))
            resumed = t.govern({"agent_id": "ops-bot", "tool": "shell", "operation": "exec", "args": {"cmd": "make deploy"}, "context": {}, "approval_id": waiting["approval_id"]})
            t.close()
            assert resumed["effect"] == "PERMIT", resumed
            assert resumed["provenance"]["by"]["token"] == "key:bob", resumed

            # The recorded assertion, verified by an independent WebAuthn implementation.
            entries = [json.loads(line) for line in dev_cli(d, "export", "--state-dir", str(root / "dev" / "state")).splitlines()]
            (approval,) = [e for e in entries if e["kind"] == "approval" and e["approval_id"] == waiting["approval_id"]]
            signed = approval["signed"]
            assert signed["approver"] == "bob" and signed["key"].startswith("passkey ")
            numbers = load_der_public_key(base64.b64decode(spki)).public_numbers()  # type: ignore[union-attr]
            cose = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})
            p = signed["passkey"]
            verified = verify_authentication_response(
                credential={
                    "id": p["credential_id"],
                    "rawId": p["credential_id"],
                    "type": "public-key",
                    "response": {
                        "authenticatorData": p["authenticator_data"],
                        "clientDataJSON": p["client_data_json"],
                        "signature": p["signature"],
                    },
                },
                expected_challenge=hashlib.sha256(signed["statement"].encode()).digest(),
                expected_rp_id="localhost",
                expected_origin=origin,
                credential_public_key=cose,
                credential_current_sign_count=0,
                require_user_verification=True,
            )
            assert verified.user_verified
            # verify-log re-checks it too (through the daemon that holds the log).
            out = dev_cli(d, "verify-log", "--state-dir", str(root / "dev" / "state"))
            assert "signed approvals: 1 statement re-checked" in out, out
        finally:
            context.close()
            d.stop()
