"""The OpenClaw plugin (`@faramesh/openclaw`, integrations/openclaw) installed with the real
`openclaw plugins install` and loaded by the real `openclaw` (Node 24), governing the tool calls
of real agent turns (`openclaw agent --local`) against the real daemon.

The model is scripted: an OpenAI-compatible server in this file answers the first request of a
turn with the tool call the message names (`CALL <tool> <json args>`) and the second with the
tool's result as text, so each test sees what OpenClaw told the model the tool returned.

scripts/test.sh installs Node 24 and openclaw from tests/openclaw's lock files, packs the plugin
and runs: OPENCLAW_NODE_BIN=<dir> FARAMESH_OPENCLAW_TGZ=<tarball> pytest tests/openclaw
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pylib"))
from faramesh_testd import BIN, Daemon  # noqa: E402

HERE = Path(__file__).resolve().parent
OPENCLAW = HERE / "node_modules" / ".bin" / "openclaw"
NODE_BIN = os.environ.get("OPENCLAW_NODE_BIN", "")
TGZ = os.environ.get("FARAMESH_OPENCLAW_TGZ", "")

POLICY = """version: 1
approvals:
  allow_same_uid: true   # the test approves as the user running the agent; real hosts leave this false
rules:
  - id: no-rm
    match: { tool: shell, command: [{ program: rm }] }
    deny: true
    description: Nothing is deleted
  - id: deploys-need-a-person
    match: { tool: shell, command: [{ program: touch, args: ["*/deploy-*"] }] }
    require_approval: true
    description: Deploys need a person
  - id: shell
    match: { tool: shell }
    allow: true
  - id: workspace-reads
    match: { tool: file, op: read, path_starts_with: "{ws}/" }
    allow: true
"""


class ScriptedModel(BaseHTTPRequestHandler):
    """An OpenAI chat-completions endpoint: a tool call, then the tool's answer as text."""

    requests: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        req = json.loads(self.rfile.read(int(self.headers["content-length"])))
        ScriptedModel.requests.append(req)
        msgs = req.get("messages", [])
        text = [m["content"] if isinstance(m.get("content"), str) else json.dumps(m.get("content")) for m in msgs]
        # This turn starts at the last message naming a call (a session's history comes before it).
        start = max(i for i, m in enumerate(msgs) if m.get("role") == "user" and "CALL " in text[i])
        said = text[start]
        answered = next((m for m in reversed(msgs[start:]) if m.get("role") == "tool"), None)
        if answered is not None:
            content = answered.get("content")
            text = content if isinstance(content, str) else json.dumps(content)
            delta: dict[str, Any] = {"role": "assistant", "content": "TOOL SAID: " + text}
            finish = "stop"
        else:
            line = said.split("CALL ", 1)[1].split("\\n")[0].split("\n")[0]
            tool, args = line.split(" ", 1)
            call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": tool, "arguments": args}}
            delta = {"role": "assistant", "tool_calls": [call]}
            finish = "tool_calls"
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        now = int(time.time())
        for d, f in ((delta, None), ({}, finish)):
            chunk = {"id": "c1", "object": "chat.completion.chunk", "created": now, "model": "scripted", "choices": [{"index": 0, "delta": d, "finish_reason": f}]}
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")


class OpenClaw:
    def __init__(self, tmp: Path, daemon: Daemon, model_port: int) -> None:
        self.tmp = tmp
        self.daemon = daemon
        self.ws = tmp / "workspace"
        self.ws.mkdir()
        self.config = tmp / "openclaw" / "openclaw.json"
        self.config.parent.mkdir()
        self.env = {
            **os.environ,
            "PATH": f"{NODE_BIN}:{os.environ['PATH']}",
            "OPENCLAW_STATE_DIR": str(self.config.parent),
            "OPENCLAW_CONFIG_PATH": str(self.config),
            "XDG_RUNTIME_DIR": str(tmp / "xdg"),
            "NO_COLOR": "1",
        }
        provider = {
            "baseUrl": f"http://127.0.0.1:{model_port}/v1",
            "apiKey": "scripted",
            "api": "openai-completions",
            "models": [{"id": "scripted", "name": "Scripted", "reasoning": False, "input": ["text"], "contextWindow": 32000, "maxTokens": 1000, "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0}}],
        }
        self.write(
            {
                "gateway": {"mode": "local", "bind": "loopback"},
                "models": {"mode": "merge", "providers": {"scripted": provider}},
                "agents": {"defaults": {"model": {"primary": "scripted/scripted"}, "workspace": str(self.ws)}},
                "tools": {"profile": "full"},
            }
        )

    def write(self, config: dict[str, Any]) -> None:
        self.config.write_text(json.dumps(config, indent=2))

    def read(self) -> dict[str, Any]:
        return dict(json.loads(self.config.read_text()))

    def plugin_config(self, **config: Any) -> None:
        c = self.read()
        entry = c.setdefault("plugins", {}).setdefault("entries", {}).setdefault("faramesh", {})
        entry["config"] = {"socket": self.daemon.socket, "agentId": "openclaw-test", **config}
        # The hook's time budget must cover the time a DEFER is held for a person.
        entry["hooks"] = {"timeouts": {"before_tool_call": 60_000}}
        self.write(c)

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(OPENCLAW), *args], env=self.env, cwd=self.tmp, capture_output=True, text=True, timeout=timeout, check=False)

    def turn(self, session: str, tool: str, args: dict[str, Any]) -> str:
        """One agent turn whose model calls `tool` with `args`; what the tool said, as OpenClaw told the model."""
        out = self.run("agent", "--local", "--agent", "main", "--session-id", session, "--json", "--message", f"CALL {tool} {json.dumps(args)}")
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        answer = json.loads(out.stdout[out.stdout.index("{") :])
        text = json.dumps(answer)
        assert "TOOL SAID: " in text, text[-3000:]
        return text.split("TOOL SAID: ", 1)[1].split('"', 1)[0]


@pytest.fixture(scope="module")
def oc() -> Iterator[OpenClaw]:
    if not (OPENCLAW.exists() and NODE_BIN and TGZ):
        pytest.fail("run by scripts/test.sh: it installs openclaw and Node 24 and packs the plugin")
    with tempfile.TemporaryDirectory(prefix="fm-openclaw-") as t:
        tmp = Path(t)
        model = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedModel)
        threading.Thread(target=model.serve_forever, daemon=True).start()
        (tmp / "daemon").mkdir()
        daemon = Daemon.serve(tmp / "daemon", POLICY.replace("{ws}", str(tmp / "workspace")))
        try:
            claw = OpenClaw(tmp, daemon, model.server_address[1])
            installed = claw.run("plugins", "install", TGZ, "--force", "--accept-capabilities")
            assert installed.returncode == 0, installed.stdout + installed.stderr
            assert "Installed plugin: faramesh" in installed.stdout + installed.stderr
            assert claw.read()["plugins"]["entries"]["faramesh"]["enabled"] is True
            claw.plugin_config(waitForApprovalMs=0)
            doctor = subprocess.run([BIN, "doctor", "--socket", daemon.socket], env=claw.env, capture_output=True, text=True, timeout=60, check=False)
            assert f"openclaw (the faramesh plugin, {claw.config})" in doctor.stdout + doctor.stderr, doctor.stdout + doctor.stderr
            yield claw
        finally:
            daemon.stop()
            model.shutdown()


def decisions(oc: OpenClaw) -> list[dict[str, Any]]:
    return [a for a in oc.daemon.actions(limit=50) if a["agent_id"] == "openclaw-test"]


def test_a_permitted_command_runs_and_its_outcome_is_recorded(oc: OpenClaw) -> None:
    marker = oc.tmp / "built"
    said = oc.turn("permit", "exec", {"command": f"touch {marker}"})
    assert marker.exists(), said
    (d,) = [a for a in decisions(oc) if a["params"].get("command") == f"touch {marker}"]
    assert (d["tool"], d["operation"], d["effect"], d["rule_id"]) == ("shell", "exec", "PERMIT", "shell")
    assert d["context"]["host"] == "openclaw" and d["context"]["host_tool"] == "exec"
    # after_tool_call recorded the outcome.
    deadline = time.time() + 10
    while d["status"] != "succeeded" and time.time() < deadline:
        time.sleep(0.2)
        d = next(a for a in decisions(oc) if a["id"] == d["id"])
    assert d["status"] == "succeeded"


def test_a_denied_command_never_runs_and_the_model_is_told_why(oc: OpenClaw) -> None:
    keep = oc.tmp / "keep"
    keep.mkdir()
    (keep / "file").write_text("still here")
    said = oc.turn("deny", "exec", {"command": f"rm -rf {keep}"})
    assert (keep / "file").read_text() == "still here"
    assert said.startswith("Faramesh denied this call: Nothing is deleted (POLICY_DENY, rule no-rm)"), said
    (d,) = [a for a in decisions(oc) if a["params"].get("command") == f"rm -rf {keep}"]
    assert (d["effect"], d["reason_code"], d["status"]) == ("DENY", "POLICY_DENY", "denied")


def test_a_relative_read_is_decided_on_its_absolute_path(oc: OpenClaw) -> None:
    (oc.ws / "notes.txt").write_text("the plan")
    said = oc.turn("read", "read", {"path": "notes.txt"})
    assert "the plan" in said
    (d,) = [a for a in decisions(oc) if a["tool"] == "file"]
    assert (d["operation"], d["effect"], d["params"]["path"]) == ("read", "PERMIT", str(oc.ws / "notes.txt"))
    said = oc.turn("read-outside", "read", {"path": "/etc/hostname"})
    assert said.startswith("Faramesh denied this call"), said


def test_a_deferred_command_waits_for_approval_and_a_retry_runs_once_approved(oc: OpenClaw) -> None:
    marker = oc.tmp / "deploy-1"
    said = oc.turn("defer-1", "exec", {"command": f"touch {marker}"})
    assert not marker.exists()
    assert "waits for a person's approval" in said and "faramesh approve " in said, said
    approval = said.split("faramesh approve ", 1)[1].split("`", 1)[0]
    oc.daemon.approve(approval)
    said = oc.turn("defer-1", "exec", {"command": f"touch {marker}"})  # the agent retries
    assert marker.exists(), said

    # Held: the plugin waits while a person approves, then the call runs.
    oc.plugin_config(waitForApprovalMs=45_000)
    marker = oc.tmp / "deploy-2"
    stop = threading.Event()

    def approver() -> None:
        while not stop.is_set():
            pending = json.loads(oc.daemon.cli("pending", "--json").stdout or "[]")
            pending = pending.get("approvals", pending) if isinstance(pending, dict) else pending
            for p in pending:
                if p.get("agent_id") == "openclaw-test":
                    oc.daemon.approve(p["approval_id"])
                    return
            time.sleep(0.3)

    t = threading.Thread(target=approver, daemon=True)
    t.start()
    try:
        said = oc.turn("defer-2", "exec", {"command": f"touch {marker}"})
    finally:
        stop.set()
        oc.plugin_config(waitForApprovalMs=0)
    assert marker.exists(), said


def test_an_unreachable_daemon_blocks_every_call(oc: OpenClaw) -> None:
    c = oc.read()
    c["plugins"]["entries"]["faramesh"]["config"]["socket"] = str(oc.tmp / "no-daemon.sock")
    oc.write(c)
    marker = oc.tmp / "unreachable"
    try:
        said = oc.turn("unreachable", "exec", {"command": f"touch {marker}"})
    finally:
        oc.plugin_config(waitForApprovalMs=0)
    assert not marker.exists()
    assert said.startswith("Faramesh refused the call: cannot reach the faramesh daemon"), said


def test_a_symlink_out_of_the_workspace_is_followed(oc: OpenClaw) -> None:
    # A link in the workspace was decided on its own name (a workspace read) while OpenClaw
    # read the file it points to: the plugin follows symlinks where the file exists.
    outside = oc.tmp / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the secret")
    (oc.ws / "link.txt").symlink_to(outside / "secret.txt")
    (oc.ws / "elsewhere").symlink_to(outside)
    for i, path in enumerate(["link.txt", "elsewhere/secret.txt"]):
        said = oc.turn(f"symlink-{i}", "read", {"path": path})
        assert "the secret" not in said, said
        assert said.startswith("Faramesh denied this call"), said
    found = [a for a in decisions(oc) if a["params"].get("path") == str(outside / "secret.txt")]
    assert len(found) == 2 and all(a["effect"] == "DENY" for a in found), found
    said = oc.turn("dotdot", "read", {"path": "../outside/secret.txt"})
    assert said.startswith("Faramesh denied this call"), said


def test_dotdot_after_a_symlink_resolves_like_the_kernel(oc: OpenClaw) -> None:
    # `elsewhere/../outside/secret.txt`, where `elsewhere` links to <tmp>/outside, was resolved
    # as text to a workspace file and allowed; the kernel applies `..` to <tmp>/outside and
    # opens <tmp>/outside/secret.txt. Where the text reading names another file, both are decided.
    outside = oc.tmp / "outside-2"
    outside.mkdir()
    (outside / "secret.txt").write_text("the second secret")
    (oc.ws / "elsewhere-2").symlink_to(outside)
    said = oc.turn("dotdot-kernel", "read", {"path": "elsewhere-2/../outside-2/secret.txt"})
    assert "the second secret" not in said and said.startswith("Faramesh denied this call"), said
    (d,) = [a for a in decisions(oc) if str(outside / "secret.txt") in a["params"].get("paths", [])]
    assert d["params"]["paths"] == [str(outside / "secret.txt"), str(oc.ws / "outside-2" / "secret.txt")], d
    assert "both are decided" in d["context"]["path_note"], d
    (oc.ws / "link-2.txt").symlink_to(outside / "secret.txt")
    said = oc.turn("dotdot-text", "read", {"path": str(oc.ws / "elsewhere-2" / ".." / "link-2.txt")})
    assert "the second secret" not in said and said.startswith("Faramesh denied this call"), said


def test_a_write_through_a_dangling_symlink_decides_the_target(oc: OpenClaw) -> None:
    # Writing to a link whose target is missing creates the target: it was decided on the
    # link's name in the workspace. The link is followed through its target text.
    (oc.tmp / "outside-later").mkdir()
    (oc.ws / "later.txt").symlink_to(oc.tmp / "outside-later" / "x")
    said = oc.turn("dangling", "write", {"path": "later.txt", "content": "written"})
    assert said.startswith("Faramesh denied this call"), said
    assert not (oc.tmp / "outside-later" / "x").exists()
    (d,) = [a for a in decisions(oc) if a["tool"] == "file" and a["operation"] == "write"]
    assert d["params"]["path"] == str(oc.tmp / "outside-later" / "x"), d
    note = d["context"].get("path_note", "")
    assert str(oc.ws / "later.txt") in note and "does not exist" in note, d


def test_calls_carry_the_session_id(oc: OpenClaw) -> None:
    # A grant made when a call is approved covers the call's session: the plugin names it.
    marker = oc.tmp / "in-session"
    oc.turn("session-a", "exec", {"command": f"touch {marker}"})
    (d,) = [a for a in decisions(oc) if a["params"].get("command") == f"touch {marker}"]
    assert d.get("session_id") == "session-a", d


def test_a_path_that_is_not_utf8_is_refused(oc: OpenClaw) -> None:
    # A workspace link to a name that is not UTF-8 was decided as a workspace read. OpenClaw's
    # own tools read such names as text and cannot open them, so the plugin's path reading is
    # called directly, as `openclaw plugins install` installed it: every way a path can fail to
    # be text is refused.
    (index,) = [p for p in oc.config.parent.rglob("index.js") if p.match("*/dist/integrations/openclaw/src/index.js")]
    odd = os.fsencode(str(oc.tmp)) + b"/odd-\xff"
    Path(os.fsdecode(odd)).write_text("odd")
    os.symlink(odd, os.fsencode(str(oc.ws / "odd.txt")))
    script = (
        "const m = await import(process.argv[1]);"
        "for (const p of ['odd.txt', 'a\\u0000b', 'x\\ud800y', 'README.md']) {"
        "  try { console.log(JSON.stringify({ paths: m.resolvePath(p, process.argv[2]).paths })); }"
        "  catch (e) { console.log(JSON.stringify({ refused: e.message })); }"
        "}"
    )
    out = subprocess.run([f"{NODE_BIN}/node", "--input-type=module", "-e", script, str(index), str(oc.ws)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    odd_txt, nul, surrogate, plain = (json.loads(line) for line in out.stdout.splitlines())
    assert odd_txt["refused"].startswith("the path `odd.txt` leads to") and "not valid UTF-8" in odd_txt["refused"], odd_txt
    assert "NUL" in nul["refused"], nul
    assert "lone surrogate" in surrogate["refused"], surrogate
    assert plain == {"paths": [str(oc.ws / "README.md")]}
