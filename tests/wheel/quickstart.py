"""The upstream quickstart, as written, from a wheel installed into a fresh venv.

Usage: VENV/bin/python quickstart.py   (the venv holds only the faramesh wheel)

`pip install faramesh` put the `faramesh` command and the Python SDK in the venv; then
`faramesh serve` with nothing configured: the dashboard page and its sign-in link, a tokenless
`curl`-style POST of an action, `faramesh approve <action-id>`, and a governed Python call
through the SDK. HOME is a temporary directory and the port a free one. Prints "N passed, M
failed".
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pylib"))
from faramesh_testd import free_port  # noqa: E402

RESULTS = {"passed": 0, "failed": 0}


def check(name: str, ok: bool, detail: object = "") -> None:
    RESULTS["passed" if ok else "failed"] += 1
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f" {detail}"))


def request(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def main() -> int:
    exe = shutil.which("faramesh", path=str(Path(sys.executable).parent))
    check("the wheel installed the faramesh command", exe is not None, sys.executable)
    assert exe
    version = subprocess.run([exe, "--version"], capture_output=True, text=True)
    check("faramesh --version", version.returncode == 0 and version.stdout.startswith("faramesh "), version)
    with tempfile.TemporaryDirectory(prefix="fm-wheel-") as home:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FARAMESH_")}
        for k in ("INVOCATION_ID", "LISTEN_FDS", "NOTIFY_SOCKET", "XDG_CONFIG_HOME"):
            env.pop(k, None)
        env.update(HOME=home, FARAMESH_PORT=str(port), FARAMESH_LOG="warn")
        log = Path(home) / "serve.log"
        with open(log, "w") as out:
            daemon = subprocess.Popen([exe, "serve"], cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 30
            while "single-user mode" not in log.read_text() and time.time() < deadline:
                time.sleep(0.05)
            text = log.read_text()
            check("faramesh serve prints the socket line", "export FARAMESH_SOCKET=" in text, text)
            status, _, page = request(port, "GET", "/")
            check("the dashboard is live", status == 200 and b"Faramesh" in page, status)
            link = re.search(r"http://127\.0\.0\.1:\d+(/login/[0-9a-f]+)", text)
            check("a sign-in link is printed", link is not None, text)
            if link:
                status, headers, _ = request(port, "GET", link.group(1))
                check("the sign-in link sets the session and redirects",
                      status == 303 and "faramesh_session=" in headers.get("set-cookie", ""), (status, headers))
            status, _, body = request(port, "POST", "/v1/actions", {
                "agent_id": "quickstart", "tool": "shell", "operation": "exec", "params": {"cmd": "ls -la"}})
            action = json.loads(body) if status == 200 else {}
            check("a tokenless POST /v1/actions is decided", action.get("status") == "pending_approval", (status, body))
            approve = subprocess.run([exe, "approve", action.get("id", "?")], env=env, capture_output=True, text=True)
            check("faramesh approve <action-id>", approve.returncode == 0 and "approved" in approve.stdout,
                  approve.stdout + approve.stderr)
            sock = re.search(r"export FARAMESH_SOCKET=(\S+)", text)
            if sock:
                from faramesh import SocketTransport, submit_action  # noqa: F401  (the quickstart's import)

                decision = SocketTransport(sock.group(1)).govern(
                    {"agent_id": "quickstart", "tool": "http", "operation": "get", "args": {"url": "https://example.com"}})
                check("a governed Python call from the wheel's SDK", decision.get("effect") == "PERMIT", decision)
        finally:
            daemon.terminate()
            daemon.wait(timeout=20)
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
