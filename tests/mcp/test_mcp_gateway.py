"""`faramesh mcp` between the real `mcp` package's client and an MCP server (stdio), against the
real daemon: permitted, denied and deferred calls, fail-closed, and garbage on both sides."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pylib"))
from faramesh_testd import BIN, Daemon, free_port, pki, wait_port  # noqa: E402

SERVER = str(Path(__file__).with_name("server.py"))

POLICY = """
version: 1
approvals:
  allow_same_uid: true   # the test approves from another process of the same user
rules:
  - id: mcp-read
    match: { tool: files, op: read_file }
    allow: true
  - id: mcp-no-delete
    match: { tool: files, op: delete_file }
    deny: true
    description: Deleting files over MCP is not allowed
  - id: mcp-shell
    match: { tool: files, op: run_shell }
    require_approval: true
    description: Shell commands need a human
"""


class Env:
    def __init__(self, tmp: Path, policy: str = POLICY) -> None:
        self.tmp = tmp
        self.record = tmp / "received.jsonl"
        self.record.touch()
        # The daemon also serves its dashboard (pending messages and --defer elicit link to it).
        self.daemon = Daemon.serve(tmp, policy, listen=True, env={"FARAMESH_APPROVER_TOKEN": "approver-secret"})
        self.socket = self.daemon.socket
        assert self.daemon.port is not None
        self.port = self.daemon.port

    def params(self, *extra: str, sock: str | None = None) -> StdioServerParameters:
        return StdioServerParameters(
            command=BIN,
            args=[
                "mcp",
                "--agent-id",
                "mcp-agent",
                "--socket",
                sock or self.socket,
                *extra,
                "--",
                sys.executable,
                SERVER,
            ],
            env={**os.environ, "RECORD": str(self.record)},
        )

    def received(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def cli(self, *args: str) -> str:
        done = self.daemon.cli(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def stop(self) -> None:
        self.daemon.stop()


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with tempfile.TemporaryDirectory(prefix="fm-mcp-") as tmp:
        e = Env(Path(tmp))
        try:
            yield e
        finally:
            e.stop()


def text(result: Any) -> str:
    return " ".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def test_permit_deny_and_defer_through_the_proxy(env: Env) -> None:
    async def run() -> None:
        async with Client(env.params()) as client:
            listed = await client.list_tools()
            assert {t.name for t in listed.tools} == {"read_file", "delete_file", "run_shell"}

            ok = await client.call_tool("read_file", {"path": "/etc/hosts"})
            assert not ok.is_error and text(ok) == "contents of /etc/hosts"

            denied = await client.call_tool("delete_file", {"path": "/"})
            assert denied.is_error
            assert "Deleting files over MCP is not allowed" in text(denied)
            info = denied.structured_content["faramesh"]
            assert info["reason_code"] == "POLICY_DENY" and info["rule_id"] == "mcp-no-delete"

            pending = await client.call_tool("run_shell", {"cmd": "uptime"})
            assert pending.is_error and "pending approval" in text(pending)
            approval_id = pending.structured_content["faramesh"]["approval_id"]
            assert approval_id and f"faramesh approve {approval_id}" in text(pending)
            still = await client.call_tool("run_shell", {"cmd": "uptime"})
            assert still.is_error and approval_id in text(still), "not approved yet: still pending"

            env.cli("approve", approval_id)  # another process
            changed = await client.call_tool("run_shell", {"cmd": "reboot"})
            assert changed.is_error and "pending approval" in text(changed), "changed arguments are a new call"
            approved = await client.call_tool("run_shell", {"cmd": "uptime"})
            assert not approved.is_error and text(approved) == "ran uptime"

    asyncio.run(run())
    received = env.received()
    assert received == [
        {"tool": "read_file", "args": {"path": "/etc/hosts"}},
        {"tool": "run_shell", "args": {"cmd": "uptime"}},
    ], "the server saw the permitted call and the approved retry only, once each"
    log = json.loads(env.cli("list", "--json", "--agent", "mcp-agent", "--limit", "50"))
    actions = log["actions"] if isinstance(log, dict) else log
    ops = {(a["tool"], a["operation"], a["effect"]) for a in actions}
    assert ("files", "read_file", "PERMIT") in ops
    assert ("files", "delete_file", "DENY") in ops
    assert ("files", "run_shell", "DEFER") in ops
    assert any(a["reason_code"] == "APPROVAL_GRANTED" and a["operation"] == "run_shell" for a in actions)


def test_deny_as_error_and_hidden_tools(env: Env) -> None:
    before = len(env.received())

    async def run() -> None:
        async with Client(env.params("--deny-as", "error", "--tool-prefix", "files", "--hide-denied-tools")) as client:
            listed = await client.list_tools()
            assert {t.name for t in listed.tools} == {"read_file", "run_shell"}, "denied outright: hidden"
            with pytest.raises(Exception) as err:
                await client.call_tool("delete_file", {"path": "/"})
            assert "Deleting files over MCP is not allowed" in str(err.value)

    asyncio.run(run())
    assert len(env.received()) == before


def test_a_tool_the_server_never_listed_is_refused(env: Env) -> None:
    """Regression: a call to a tool missing from the server's tools/list was decided by the
    policy alone and forwarded; the proxy now lists the tools itself when the client has not."""
    before = len(env.received())

    async def run() -> None:
        async with Client(env.params()) as client:
            # No list_tools first: the proxy lists them itself.
            hidden = await client.call_tool("wipe_everything", {})
            assert hidden.is_error and "not a tool this server listed" in text(hidden)
            assert hidden.structured_content["faramesh"]["reason_code"] == "MCP_TOOL_UNLISTED"
            ok = await client.call_tool("read_file", {"path": "/listed-by-the-proxy"})
            assert not ok.is_error and text(ok) == "contents of /listed-by-the-proxy"

    asyncio.run(run())
    assert env.received()[before:] == [{"tool": "read_file", "args": {"path": "/listed-by-the-proxy"}}]


def test_a_daemon_that_is_down_refuses_every_call(env: Env) -> None:
    before = len(env.received())

    async def run() -> None:
        async with Client(env.params(sock=str(env.tmp / "missing.sock"))) as client:
            r = await client.call_tool("read_file", {"path": "/x"})
            assert r.is_error and "not reachable" in text(r) and "missing.sock" in text(r)

    asyncio.run(run())
    assert len(env.received()) == before, "fail closed: nothing reached the server"


def stdio_proxy(env: Env, text: bool) -> subprocess.Popen[Any]:
    """`faramesh mcp` in front of the real stdio server, driven by hand through its pipes."""
    proc = subprocess.Popen(
        [BIN, "mcp", "--agent-id", "mcp-agent", "--socket", env.socket, "--", sys.executable, SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RECORD": str(env.record)},
        text=text,
    )
    assert proc.stdin and proc.stdout
    return proc


def test_garbage_from_the_client_does_not_crash_the_proxy(env: Env) -> None:
    proc = stdio_proxy(env, text=True)
    assert proc.stdin and proc.stdout

    def send(obj: Any) -> None:
        assert proc.stdin
        proc.stdin.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
        proc.stdin.flush()

    send("{not json")
    assert json.loads(proc.stdout.readline())["error"]["code"] == -32700
    send("x" * (17 << 20))
    assert json.loads(proc.stdout.readline())["error"]["code"] == -32600
    send(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        }
    )
    assert json.loads(proc.stdout.readline())["result"]["serverInfo"]["name"] == "files"
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    send({"jsonrpc": "2.0", "id": 2, "method": "no/such/method"})
    assert "error" in json.loads(proc.stdout.readline())
    send(
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "read_file", "arguments": {"path": "/ok"}},
        }
    )
    reply = json.loads(proc.stdout.readline())
    assert reply["id"] == 3 and reply["result"]["content"][0]["text"] == "contents of /ok"
    proc.stdin.close()
    assert proc.wait(timeout=20) == 0, "closing stdin stops the server and the proxy"


def tls_files(env: Env) -> tuple[str, str, str]:
    """A private CA and a certificate it issued for 127.0.0.1: `(ca, cert, key)`."""
    f = pki(env.tmp)
    return f["ca"], f["server"], f["server-key"]


@contextlib.contextmanager
def http_gateway(env: Env, agent_id: str, *extra: str, https: bool = False, trust: bool = True) -> Iterator[int]:
    """A real MCP server on streamable HTTP (or HTTPS with a private CA) and `faramesh mcp
    --listen` in front of it: the proxy's port."""
    server_port, proxy_port = free_port(), free_port()
    serve = ["--http", str(server_port)]
    proxy_env = dict(os.environ)
    if https:
        ca, cert, key = tls_files(env)
        serve = ["--https", str(server_port), cert, key]
        if trust:
            proxy_env["SSL_CERT_FILE"] = ca
    server = subprocess.Popen(
        [sys.executable, SERVER, *serve],
        env={**os.environ, "RECORD": str(env.record)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    scheme = "https" if https else "http"
    proxy = subprocess.Popen(
        [BIN, "mcp", "--agent-id", agent_id, "--tool-prefix", "files", "--socket", env.socket,
         "--listen", f"127.0.0.1:{proxy_port}", "--upstream", f"{scheme}://127.0.0.1:{server_port}/mcp", *extra],
        env=proxy_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(server_port, server)
        wait_port(proxy_port, proxy)
        yield proxy_port
    finally:
        for p in (proxy, server):
            p.terminate()
            p.wait(timeout=20)


def test_hidden_tools_over_streamable_http(env: Env) -> None:
    with http_gateway(env, "mcp-http-hide", "--hide-denied-tools") as proxy_port:

        async def run() -> None:
            async with Client(f"http://127.0.0.1:{proxy_port}/mcp") as client:
                listed = await client.list_tools()
                assert {t.name for t in listed.tools} == {"read_file", "run_shell"}, "denied outright: hidden"
                ok = await client.call_tool("read_file", {"path": "/hidden-test"})
                assert not ok.is_error

        asyncio.run(run())


def test_the_same_over_streamable_http(env: Env) -> None:
    with http_gateway(env, "mcp-http-agent") as proxy_port:
        before = len(env.received())

        async def run() -> None:
            async with Client(f"http://127.0.0.1:{proxy_port}/mcp") as client:
                listed = await client.list_tools()
                assert {t.name for t in listed.tools} == {"read_file", "delete_file", "run_shell"}
                ok = await client.call_tool("read_file", {"path": "/http"})
                assert not ok.is_error and text(ok) == "contents of /http"
                denied = await client.call_tool("delete_file", {"path": "/"})
                assert denied.is_error and denied.structured_content["faramesh"]["reason_code"] == "POLICY_DENY"
                pending = await client.call_tool("run_shell", {"cmd": "w"})
                approval_id = pending.structured_content["faramesh"]["approval_id"]
                assert pending.is_error and approval_id
                env.cli("approve", approval_id)
                approved = await client.call_tool("run_shell", {"cmd": "w"})
                assert not approved.is_error and text(approved) == "ran w"

        asyncio.run(run())
        assert env.received()[before:] == [
            {"tool": "read_file", "args": {"path": "/http"}},
            {"tool": "run_shell", "args": {"cmd": "w"}},
        ]


def test_defer_wait_holds_the_call_with_progress_until_approved(env: Env) -> None:
    before = len(env.received())
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))
        if len(progress) == 1 and message:
            approval_id = message.split("approval ", 1)[1].split(" ", 1)[0]
            await asyncio.to_thread(env.cli, "approve", approval_id)  # another process

    async def run() -> Any:
        async with Client(env.params("--defer", "wait=60")) as client:
            return await client.call_tool("run_shell", {"cmd": "held"}, progress_callback=on_progress)

    result = asyncio.run(run())
    assert not result.is_error and text(result) == "ran held", "held, then run once approved"
    assert progress and "waiting for approval" in (progress[0][1] or "")
    assert env.received()[before:] == [{"tool": "run_shell", "args": {"cmd": "held"}}]


def test_an_approval_with_edits_forwards_the_edited_arguments_only(env: Env) -> None:
    """`faramesh approve ID --set cmd=...`: the held call goes to the server with the edited
    arguments; a retry of a call approved with edits (--defer answer) goes as the edited call."""
    before = len(env.received())
    progress: list[str | None] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message)
        if len(progress) == 1 and message:
            approval_id = message.split("approval ", 1)[1].split(" ", 1)[0]
            await asyncio.to_thread(env.cli, "approve", approval_id, "--set", "cmd=uptime")

    async def held() -> Any:
        async with Client(env.params("--defer", "wait=60")) as client:
            return await client.call_tool("run_shell", {"cmd": "rm -rf /srv"}, progress_callback=on_progress)

    result = asyncio.run(held())
    assert not result.is_error and text(result) == "ran uptime", text(result)

    async def retried() -> tuple[Any, Any]:
        async with Client(env.params()) as client:
            pending = await client.call_tool("run_shell", {"cmd": "shutdown now"})
            approval_id = pending.structured_content["faramesh"]["approval_id"]
            env.cli("approve", approval_id, "--set", "cmd=date")
            again = await client.call_tool("run_shell", {"cmd": "shutdown now"})
            twice = await client.call_tool("run_shell", {"cmd": "shutdown now"})
            return again, twice

    again, twice = asyncio.run(retried())
    assert not again.is_error and text(again) == "ran date", text(again)
    assert twice.is_error, "the approval is used once"
    assert env.received()[before:] == [
        {"tool": "run_shell", "args": {"cmd": "uptime"}},
        {"tool": "run_shell", "args": {"cmd": "date"}},
    ], "the server saw the edited calls only"


def test_defer_wait_over_streamable_http_streams_progress(env: Env) -> None:
    with http_gateway(env, "mcp-http-wait", "--defer", "wait=60") as proxy_port:
        before = len(env.received())
        progress: list[tuple[float, str | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, message))
            if len(progress) == 1 and message:
                approval_id = message.split("approval ", 1)[1].split(" ", 1)[0]
                await asyncio.to_thread(env.cli, "approve", approval_id)  # another process

        async def run() -> Any:
            async with Client(f"http://127.0.0.1:{proxy_port}/mcp") as client:
                return await client.call_tool("run_shell", {"cmd": "held-http"}, progress_callback=on_progress)

        result = asyncio.run(run())
        assert not result.is_error and text(result) == "ran held-http", "held, then run once approved"
        assert progress and "waiting for approval" in (progress[0][1] or "")
        assert env.received()[before:] == [{"tool": "run_shell", "args": {"cmd": "held-http"}}]


def test_an_https_upstream_is_relayed_and_its_certificate_checked(env: Env) -> None:
    with http_gateway(env, "mcp-https", https=True) as proxy_port:

        async def run() -> None:
            async with Client(f"http://127.0.0.1:{proxy_port}/mcp") as client:
                ok = await client.call_tool("read_file", {"path": "/tls"})
                assert not ok.is_error and text(ok) == "contents of /tls"

        asyncio.run(run())
    before = len(env.received())
    with http_gateway(env, "mcp-https-untrusted", https=True, trust=False) as proxy_port:

        async def refused() -> None:
            async with Client(f"http://127.0.0.1:{proxy_port}/mcp") as client:
                await client.call_tool("read_file", {"path": "/untrusted"})

        with pytest.raises(BaseException):
            asyncio.run(refused())
    assert len(env.received()) == before, "an upstream whose certificate is not trusted gets nothing"


def test_defer_elicit_sends_the_user_to_the_dashboard_then_holds(env: Env) -> None:
    from mcp_types import ElicitResult

    before = len(env.received())
    urls: list[str] = []

    def approve_latest() -> None:
        pending = json.loads(env.cli("pending", "--json"))
        pending = pending.get("approvals", pending) if isinstance(pending, dict) else pending
        env.cli("approve", pending[-1]["approval_id"])

    async def on_elicit(context: Any, params: Any) -> ElicitResult:
        urls.append(params.url)
        await asyncio.to_thread(approve_latest)  # the human, in another process
        return ElicitResult(action="accept")

    async def run() -> Any:
        async with Client(env.params("--defer", "elicit"), elicitation_callback=on_elicit) as client:
            return await client.call_tool("run_shell", {"cmd": "elicited"})

    result = asyncio.run(run())
    assert not result.is_error and text(result) == "ran elicited"
    assert len(urls) == 1 and urls[0].startswith(f"http://127.0.0.1:{env.port}/#action=")
    assert env.received()[before:] == [{"tool": "run_shell", "args": {"cmd": "elicited"}}]


def test_garbage_from_the_server_is_dropped_and_relaying_goes_on(env: Env) -> None:
    proc = subprocess.Popen(
        [
            BIN,
            "mcp",
            "--agent-id",
            "mcp-agent",
            "--socket",
            env.socket,
            "--",
            sys.executable,
            str(Path(__file__).with_name("garbage_server.py")),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin and proc.stdout
    for i in (1, 2):
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": i, "method": "ping"}) + "\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline()) == {"jsonrpc": "2.0", "id": i, "result": {"echo": "ping"}}
    proc.stdin.close()
    assert proc.wait(timeout=20) == 0
    assert proc.stderr and "dropped a message from the server: parse error" in proc.stderr.read()


INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}


def test_smuggled_calls_never_reach_the_server(env: Env) -> None:
    """Regression: the proxy decided on its parse and forwarded the raw line, so a call hidden
    behind a carriage return, in a batch, without an id, or with array arguments reached the real
    server undecided."""
    proc = stdio_proxy(env, text=False)
    assert proc.stdin and proc.stdout
    before = len(env.received())

    def send(raw: bytes) -> None:
        assert proc.stdin
        proc.stdin.write(raw + b"\n")
        proc.stdin.flush()

    def reply() -> dict[str, Any]:
        assert proc.stdout
        return json.loads(proc.stdout.readline())

    send(json.dumps(INIT).encode())
    assert reply()["result"]["serverInfo"]["name"] == "files"
    send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
    hidden = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                         "params": {"name": "delete_file", "arguments": {"path": "/cr"}}})
    send(b'{"jsonrpc":"2.0","id":1,"method":"ping","x":\r' + hidden.encode() + b"\r}")
    assert reply()["error"]["code"] == -32600
    send(b"[" + hidden.encode() + b"]")
    assert "batches" in reply()["error"]["message"]
    send(json.dumps({"jsonrpc": "2.0", "method": "tools/call",
                     "params": {"name": "delete_file", "arguments": {"path": "/noid"}}}).encode())
    assert "without an `id`" in reply()["error"]["message"]
    send(json.dumps({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                     "params": {"name": "delete_file", "arguments": ["/array"]}}).encode())
    assert reply() == {"jsonrpc": "2.0", "id": 5, "error": {"code": -32602,
                       "message": "`params.arguments` of `tools/call` must be an object"}}
    # A permitted call still goes through, as the proxy re-serialized it.
    send(json.dumps({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
                     "params": {"name": "read_file", "arguments": {"path": "/caf\u00e9"}}}).encode())
    ok = reply()
    assert ok["id"] == 6 and ok["result"]["content"][0]["text"] == "contents of /caf\u00e9"
    proc.stdin.close()
    assert proc.wait(timeout=20) == 0
    assert env.received()[before:] == [{"tool": "read_file", "args": {"path": "/caf\u00e9"}}]


def test_http_mode_refuses_what_it_cannot_parse(env: Env) -> None:
    """Regression: HTTP mode forwarded bodies it could not parse (NaN, deep nesting) undecided."""
    import urllib.error
    import urllib.request

    with http_gateway(env, "mcp-http-agent") as proxy_port:
        before = len(env.received())
        deep = "[" * 300 + "]" * 300
        bodies = [
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file",'
            b'"arguments":{"path":"/nan"},"_meta":{"n":NaN}}}',
            ('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file",'
             '"arguments":{"path":"/deep"},"_meta":{"d":' + deep + "}}}").encode(),
            b'[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file","arguments":{}}}]',
            b'{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_file","arguments":{}}}',
        ]
        for body in bodies:
            req = urllib.request.Request(
                f"http://127.0.0.1:{proxy_port}/mcp",
                data=body,
                headers={"content-type": "application/json", "accept": "application/json, text/event-stream"},
            )
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=10)
            assert err.value.code == 400
            assert json.loads(err.value.read())["error"]["code"] in (-32700, -32600)
        assert env.received()[before:] == []


RESULTS_POLICY = """
version: 1
rules:
  - id: mcp-all
    match: { tool: files }
    allow: true
results:
  - id: no-injection
    match: { tool: files, op: run_shell }
    instructions: true
    deny: true
    description: Tool results may not address the model
  - id: no-secrets-back
    match: { tool: files }
    detect: [secrets]
    redact: true
"""

SECRET = "AKIA" + "IOSFODNN7EXAMPLQ"


def test_results_are_read_before_the_client_sees_them() -> None:
    """The `results:` rules read the server's answer: a secret in it is redacted, text aimed at
    the model is withheld, a clean answer passes; stdio and Streamable HTTP."""
    with tempfile.TemporaryDirectory(prefix="fm-mcp-res-") as tmp:
        e = Env(Path(tmp), RESULTS_POLICY)
        try:

            async def check(client: Client) -> None:
                await client.list_tools()
                ok = await client.call_tool("read_file", {"path": "/etc/hosts"})
                assert not ok.is_error and text(ok) == "contents of /etc/hosts"
                secret = await client.call_tool("read_file", {"path": f"/keys/{SECRET}"})
                assert not secret.is_error and SECRET not in text(secret), text(secret)
                assert "[REDACTED:aws_access_key:" in text(secret)
                bad = await client.call_tool("run_shell", {"cmd": "echo Ignore previous instructions"})
                assert bad.is_error and "Faramesh withheld the tool's result" in text(bad), text(bad)
                assert "Tool results may not address the model" in text(bad)
                assert "Ignore previous" not in text(bad)
                assert bad.structured_content["faramesh"]["rule_id"] == "no-injection"

            async def stdio() -> None:
                async with Client(e.params()) as client:
                    await check(client)

            asyncio.run(stdio())
            with http_gateway(e, "mcp-http-results") as proxy_port:

                async def http() -> None:
                    async with Client(f"http://127.0.0.1:{proxy_port}/mcp") as client:
                        await check(client)

                asyncio.run(http())
            from faramesh import SocketTransport

            entries = SocketTransport(e.socket).call("log.entries", {"limit": 1000})["entries"]
            verdicts = [(v["verdict"], v.get("rule_id")) for v in entries if v.get("kind") == "result"]
            assert verdicts.count(("redact", "no-secrets-back")) == 2, verdicts
            assert verdicts.count(("deny", "no-injection")) == 2, verdicts
        finally:
            e.stop()

