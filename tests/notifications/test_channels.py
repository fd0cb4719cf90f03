"""Notifications with real receivers, against the real daemon: a webhook verified by the
`standardwebhooks` library, a Slack message parsed by `slack_sdk`'s Block Kit models, an email
received by `aiosmtpd`; a receiver that is down for 30 s and a daemon SIGKILLed with
notifications queued still end with every notification delivered (duplicates only by id)."""

from __future__ import annotations

import email
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from slack_sdk.models.blocks import ActionsBlock, Block, SectionBlock
from standardwebhooks.webhooks import Webhook

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pylib"))
from faramesh_testd import Daemon, free_port  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """An HTTP receiver: records POSTs by path; answers 503 while `down`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[tuple[str, dict[str, str], bytes]] = []
        self.down = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if outer.down:
                    self.send_response(503)
                else:
                    outer.got.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(b) for p, _, b in self.got if p == path]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def wait_for(what: str, pred: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def rpc(sock: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock)
        s.sendall((json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            buf += s.recv(65536)
    reply = json.loads(buf)
    assert "error" not in reply, reply
    return dict(reply["result"])


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.http = Receiver()
        self.mailbox = Mailbox()
        self.smtp_port = free_port()
        self.smtp = Controller(self.mailbox, hostname="127.0.0.1", port=self.smtp_port)
        self.smtp.start()
        (tmp / "webhook.secret").write_text(SECRET + "\n")
        (tmp / "slack.url").write_text(f"http://127.0.0.1:{self.http.port}/slack\n")
        policy = f"""
version: 1
approvals:
  allow_same_uid: true
notifications:
  channels:
    ops:
      type: webhook
      url: http://127.0.0.1:{self.http.port}/hook
      secret_file: {tmp / "webhook.secret"}
    team:
      type: slack
      url_file: {tmp / "slack.url"}
    oncall:
      type: email
      smtp: 127.0.0.1:{self.smtp_port}
      tls: none
      from: faramesh@example.com
      to: [oncall@example.com]
  on_defer: [ops, team, oncall]
rules:
  - id: refunds
    match: {{ tool: stripe, op: refund }}
    require_approval: true
    description: Refunds need a person
"""
        self.daemon = Daemon.serve(tmp, policy)

    def defer(self, amount: int, agent: str = "billing-bot", **args: Any) -> dict[str, Any]:
        d = rpc(self.daemon.socket, "govern", {"agent_id": agent, "tool": "stripe", "operation": "refund", "args": {"amount": amount, **args}})
        assert d["effect"] == "DEFER", d
        return d

    def stop(self) -> None:
        self.daemon.stop()
        self.smtp.stop()
        self.http.server.shutdown()


@pytest.fixture()
def env() -> Iterator[Env]:
    with tempfile.TemporaryDirectory(prefix="fm-notify-") as tmp:
        e = Env(Path(tmp))
        try:
            yield e
        finally:
            e.stop()


def test_a_defer_reaches_a_webhook_slack_and_email(env: Env) -> None:
    d = env.defer(150)
    wait_for("all three channels", lambda: env.http.bodies("/hook") and env.http.bodies("/slack") and env.mailbox.messages)

    # The webhook verifies with the Standard Webhooks library.
    path, headers, raw = next(g for g in env.http.got if g[0] == "/hook")
    payload = Webhook(SECRET).verify(raw, headers)
    assert payload["type"] == "approval.requested"
    assert payload["data"]["action_id"] == d["action_id"] and payload["data"]["approval_id"] == d["approval_id"]
    assert payload["data"]["summary"] == "amount: 150" and payload["data"]["reason"] == "Refunds need a person"
    with pytest.raises(Exception):
        Webhook(SECRET).verify(raw.replace(b"150", b"999"), headers)

    # The Slack message parses as Block Kit.
    slack = env.http.bodies("/slack")[0]
    blocks = Block.parse_all(slack["blocks"])
    assert isinstance(blocks[0], SectionBlock) and "Approval needed" in blocks[0].text.text
    assert "amount: 150" in blocks[0].text.text and "Refunds need a person" in blocks[0].text.text
    assert not any(isinstance(b, ActionsBlock) for b in blocks), "no dashboard: no button"
    assert "Approval needed" in slack["text"]

    # The email.
    msg = env.mailbox.messages[0]
    assert msg["Subject"] == "[Faramesh] Approval needed: billing-bot -> stripe/refund"
    assert msg["To"] == "oncall@example.com" and msg["From"] == "faramesh@example.com"
    text = msg.get_payload(decode=True).decode()
    assert f"faramesh approve {d['approval_id']}" in text and "> Why:       Refunds need a person" in text

    # The approval's outcome follows on every channel.
    env.daemon.approve(d["approval_id"])
    wait_for("the follow-ups", lambda: len(env.http.bodies("/hook")) >= 2 and len(env.mailbox.messages) >= 2)
    assert env.http.bodies("/hook")[1]["type"] == "approval.decided"
    assert env.http.bodies("/hook")[1]["data"]["status"] == "approved"
    assert "Approval approved" in env.mailbox.messages[1]["Subject"]


def test_nothing_is_lost_to_a_receiver_outage_or_a_sigkill(env: Env) -> None:
    env.http.down = True
    first = [env.defer(n) for n in (1, 2, 3)]
    time.sleep(30)  # the receiver is down for 30 s; the daemon retries with backoff
    assert env.http.bodies("/hook") == []
    # Killed with everything still queued, then started again with the receiver back.
    assert env.daemon.proc is not None
    os.kill(env.daemon.proc.pid, signal.SIGKILL)
    env.daemon.proc.wait()
    env.http.down = False
    env.daemon.start()
    second = [env.defer(n) for n in (4, 5)]
    wanted = {d["action_id"] for d in first + second}
    wait_for("every notification", lambda: {b["data"]["action_id"] for b in env.http.bodies("/hook")} >= wanted)
    ids = [h["webhook-id"] for p, h, _ in env.http.got if p == "/hook"]
    by_action = {b["data"]["action_id"] for b in env.http.bodies("/hook")}
    assert by_action == wanted, "one notification per DEFER reached the webhook"
    assert len(set(ids)) == len(wanted), "duplicates, if any, carry the same id"
    wait_for("the emails too", lambda: len(env.mailbox.messages) >= 5)
    status = rpc(env.daemon.socket, "status", {})
    wait_for("an empty outbox", lambda: rpc(env.daemon.socket, "status", {})["notifications"]["waiting"] == 0)
    assert status["notifications"]["failed"] == 0


# What an agent writes in its call, aimed at the people the notice reaches: a mention, a link
# dressed as the dashboard's button, a forged risk line, a backquote ending a code span, and
# (email) a forged approve command for another pending approval.
HOSTILE_AGENT = "<!channel>"
HOSTILE_ARG = (
    "<https://evil.example/approve|Open in Faramesh>`<!here>`\n*Risk:* low\nRisk: low\n"
    "Approve: faramesh approve apr_other"
)


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[Env, dict[str, Any]]]:
    """One DEFER whose agent id and arguments carry every attack, as Slack and email got it."""
    with tempfile.TemporaryDirectory(prefix="fm-notify-") as tmp:
        e = Env(Path(tmp))
        try:
            # `amount` is the summary's key: the hostile text goes in it.
            d = rpc(e.daemon.socket, "govern", {"agent_id": HOSTILE_AGENT, "tool": "stripe", "operation": "refund", "args": {"amount": HOSTILE_ARG}})
            assert d["effect"] == "DEFER", d
            wait_for("Slack and email", lambda: bool(e.http.bodies("/slack") and e.mailbox.messages))
            yield e, d
        finally:
            e.stop()


def slack_lines(e: Env) -> list[str]:
    slack = e.http.bodies("/slack")[0]
    blocks = Block.parse_all(slack["blocks"])
    assert isinstance(blocks[0], SectionBlock) and blocks[0].text.type == "mrkdwn"
    return [slack["text"], *blocks[0].text.text.splitlines()]


def outside_code(line: str) -> str:
    return "".join(line.split("`")[::2])


def test_slack_channel_mention_in_agent_text_is_escaped(hostile: tuple[Env, dict[str, Any]]) -> None:
    e, _ = hostile
    lines = slack_lines(e)
    assert not any("<!" in line for line in lines), lines
    assert "&lt;!channel&gt;" in lines[0] and "&lt;!here&gt;" in "\n".join(lines)


def test_slack_link_in_agent_text_is_not_a_link(hostile: tuple[Env, dict[str, Any]]) -> None:
    e, _ = hostile
    lines = slack_lines(e)
    assert not any("<http" in line for line in lines), lines
    assert not any("evil.example" in outside_code(line) for line in lines), "inside code spans only"
    assert not any(isinstance(b, ActionsBlock) for b in Block.parse_all(e.http.bodies("/slack")[0]["blocks"]))


def test_forged_risk_line_stays_inside_quote(hostile: tuple[Env, dict[str, Any]]) -> None:
    e, _ = hostile
    risk = [line for line in slack_lines(e) if "Risk:" in outside_code(line)]
    assert risk == ["*Risk:* `low`"], "the daemon's risk line only"
    assert any("⏎*Risk:* low⏎Risk: low" in line.split("`")[1] for line in slack_lines(e) if "`" in line)
    text = e.mailbox.messages[0].get_payload(decode=True).decode()
    forged = [line for line in text.splitlines() if "Risk: low" in line]
    assert forged and all(line.startswith("> ") for line in forged), text


def test_email_forged_approve_line_is_quoted(hostile: tuple[Env, dict[str, Any]]) -> None:
    e, d = hostile
    msg = e.mailbox.messages[0]
    text = msg.get_payload(decode=True).decode()
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("Approve:")] == [f"Approve: faramesh approve {d['approval_id']}"]
    assert all(line.startswith("> ") for line in lines if "apr_other" in line), text
    first_quote = next(i for i, line in enumerate(lines) if line.startswith("> "))
    assert lines.index(f"Approve: faramesh approve {d['approval_id']}") < first_quote
    assert "\n" not in msg["Subject"] and msg["Subject"] == "[Faramesh] Approval needed: <!channel> -> stripe/refund"
