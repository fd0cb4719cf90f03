"""The published Python SDK (faramesh-sdk 0.3.3, unmodified) against the real daemon.

Usage: python sdk_daemon_compat.py PATH_TO_FARAMESH
Starts `faramesh serve` on a temporary socket and state dir, then drives it with the SDK's
socket transport (`govern_via_transport`) and `GovernedToolSet`. Prints "N passed, M failed".
"""
import functools
import inspect
import os
import signal
import subprocess
import sys
import tempfile

# faramesh-sdk 0.3.3's GovernedToolSet calls functools.iscoroutinefunction, which Python 3.11
# lacks (added in 3.12). Alias that one name; nothing in the package is changed.
if not hasattr(functools, "iscoroutinefunction"):
    functools.iscoroutinefunction = inspect.iscoroutinefunction

from faramesh import GovernedToolSet  # noqa: E402
from faramesh.exceptions import ToolDeniedException  # noqa: E402
from faramesh.transport import detect_transport, govern_via_transport  # noqa: E402

POLICY = """
version: 1
rules:
  - id: http-read
    match: { tool: http, op: get }
    allow: true
  - id: shell-needs-approval
    match: { tool: shell, op: "*" }
    require_approval: true
  - id: read-file
    match: { tool: read_file, op: invoke }
    allow: true
  - id: no-delete
    match: { tool: delete_file, op: invoke }
    deny: true
    description: Deleting files is not allowed
"""

from harness import RESULTS, check, wait_socket  # noqa: E402  (tests/compat/harness.py)


def main():
    binary = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="fm-sdk-")
    policy = os.path.join(tmp, "policy.yaml")
    with open(policy, "w") as f:
        f.write(POLICY)
    sock = os.path.join(tmp, "faramesh.sock")
    state = os.path.join(tmp, "state")
    proc = subprocess.Popen([binary, "serve", "--policy", policy, "--socket", sock, "--state-dir", state],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_socket(sock, proc, timeout=20)
        os.environ["FARAMESH_SOCKET"] = sock
        os.environ.pop("FARAMESH_REMOTE_URL", None)
        transport = detect_transport()
        check("detect_transport picks the socket", transport.mode == "socket", transport)

        r = govern_via_transport(transport, "http/get", {"url": "https://example.com"}, agent_id="sdk-agent")
        check("transport: permitted call", r["effect"] == "PERMIT" and r["reason_code"] == "POLICY_PERMIT", r)

        r = govern_via_transport(transport, "shell/exec", {"cmd": "ls"}, agent_id="sdk-agent")
        check("transport: deferred call has a defer token",
              r["effect"] == "DEFER" and r["reason_code"] == "POLICY_DEFER" and len(r["defer_token"] or "") > 0, r)
        check("transport: DEFER carries structured_denial with the approval id",
              r.get("structured_denial", {}).get("resolution", {}).get("approval_id") == r["defer_token"], r)

        r = govern_via_transport(transport, "payments/refund", {"amount": 5}, agent_id="sdk-agent")
        check("transport: no matching rule is denied",
              r["effect"] == "DENY" and r["reason_code"] == "DEFAULT_DENY_NO_MATCH"
              and r["structured_denial"]["code"] == "DEFAULT_DENY_NO_MATCH", r)

        ran = []

        def read_file(path):
            ran.append(("read", path))
            return f"contents of {path}"

        def delete_file(path):
            ran.append(("delete", path))
            return "deleted"

        def shell(cmd):
            ran.append(("shell", cmd))
            return "ran"

        tools = GovernedToolSet([read_file, delete_file, shell], agent_id="sdk-agent")
        by_name = {t.__name__: t for t in tools}
        check("GovernedToolSet: permitted function runs",
              by_name["read_file"]("/etc/hosts") == "contents of /etc/hosts" and ran == [("read", "/etc/hosts")], ran)
        try:
            by_name["delete_file"]("/etc/hosts")
            check("GovernedToolSet: denied function raises", False, "no exception")
        except ToolDeniedException as exc:
            check("GovernedToolSet: denied function raises with the code",
                  exc.code == "POLICY_DENY" and exc.rule_id == "no-delete", vars(exc))
            check("GovernedToolSet: denied function never runs", ("delete", "/etc/hosts") not in ran, ran)
        try:
            by_name["shell"]("ls")
            check("GovernedToolSet: deferred function raises", False, "no exception")
        except ToolDeniedException as exc:
            check("GovernedToolSet: deferred function raises POLICY_DEFER with an approval id",
                  exc.code == "POLICY_DEFER" and len(exc.approval_id) == 32 and exc.effect == "DEFER", vars(exc))
            check("GovernedToolSet: deferred function never runs", not any(k == "shell" for k, _ in ran), ran)

        def send_money(amount):
            ran.append(("money", amount))

        try:
            GovernedToolSet([send_money], agent_id="sdk-agent")[0](100)
            check("GovernedToolSet: unmatched tool raises", False, "no exception")
        except ToolDeniedException as exc:
            check("GovernedToolSet: unmatched tool denied by default", exc.code == "DEFAULT_DENY_NO_MATCH", vars(exc))
            check("GovernedToolSet: unmatched tool never runs", not any(k == "money" for k, _ in ran), ran)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
    check("daemon exits 0 on SIGTERM", code == 0, code)
    check("socket removed on exit", not os.path.exists(sock))
    v = subprocess.run([binary, "verify-log", "--state-dir", state], capture_output=True, text=True)
    check("verify-log passes after the run", v.returncode == 0, v.stdout + v.stderr)
    print(f"sdk daemon compat: {RESULTS['passed']} passed, {RESULTS['failed']} failed")
    sys.exit(1 if RESULTS["failed"] else 0)


if __name__ == "__main__":
    main()
