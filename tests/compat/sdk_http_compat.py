"""The published Python SDK (faramesh-sdk 0.3.3, unmodified) against the real daemon's HTTPS listener.

Usage: python sdk_http_compat.py PATH_TO_FARAMESH
Starts `faramesh serve --listen 127.0.0.1:PORT --tls self-signed` on a temporary socket and state
dir, then drives it with the SDK's v1 client (`configure`, `submit_action`, `get_action`,
`list_actions`, `start_action`, `approve_action`, `deny_action`, `gate_decide`,
`replay_decision`, `execute_if_allowed`, the `/result` route) and its remote transport, with the
self-signed certificate as the only trusted CA (Python `ssl`). Also: 401 vs 403, bad input, SSE
seen live, `/metrics` through a Prometheus text parser, SIGKILL under HTTP load. Prints
"N passed, M failed".
"""
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

POLICY = """
version: 1
rules:
  - id: http-read
    match: { tool: http, op: get }
    allow: true
    description: Read-only HTTP
  - id: shell-destructive
    match: { tool: shell, op: "*", pattern: "rm -rf" }
    deny: true
    description: Destructive shell
  - id: shell-needs-approval
    match: { tool: shell, op: "*" }
    require_approval: true
"""

AGENT_TOKEN = "agent-token-0123456789"
APPROVER_TOKEN = "approver-token-9876543210"
BOUND_TOKEN = "bound-token-for-agent-a"

from harness import RESULTS, check, free_port, wait_port  # noqa: E402  (tests/compat/harness.py)


class Daemon:
    def __init__(self, binary, tmp):
        self.binary, self.tmp = binary, tmp
        self.policy = os.path.join(tmp, "policy.yaml")
        with open(self.policy, "w") as f:
            f.write(POLICY)
        self.sock = os.path.join(tmp, "faramesh.sock")
        self.state = os.path.join(tmp, "state")
        os.makedirs(self.state, mode=0o700, exist_ok=True)
        with open(os.path.join(self.state, "tokens.json"), "w") as f:
            json.dump([{"name": "bot-a", "role": "agent", "token": BOUND_TOKEN, "agents": ["agent-a"]}], f)
        self.port = free_port()
        self.proc = None

    def start(self):
        env = dict(os.environ, FARAMESH_TOKEN=AGENT_TOKEN, FARAMESH_APPROVER_TOKEN=APPROVER_TOKEN,
                   FARAMESH_LOG="warn")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--policy", self.policy, "--socket", self.sock, "--state-dir", self.state,
             "--listen", f"127.0.0.1:{self.port}", "--tls", "self-signed"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        try:
            wait_port(self.port, self.proc, timeout=20)
        except RuntimeError as e:
            stderr = self.proc.stderr.read().decode() if self.proc.poll() is not None else ""
            raise RuntimeError(f"{e}: {stderr}") from None

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)

    @property
    def cert(self):
        return os.path.join(self.state, "tls", "cert.pem")

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"


def raw(d, method, path, body=None, token=None, headers=None):
    """One request with Python's ssl, trusting only the daemon's self-signed certificate."""
    ctx = ssl.create_default_context(cafile=d.cert)
    conn = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx, timeout=30)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    if body is not None:
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=body, headers=h)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data.decode(errors="replace")
    return resp.status, parsed


def sdk_checks(d):
    import faramesh
    from faramesh import (FarameshAuthError, FarameshError, FarameshPolicyError, configure, get_action,
                          list_actions, start_action, submit_action)
    from faramesh.client import _make_request
    from faramesh.gate import execute_if_allowed, gate_decide, replay_decision
    from faramesh.transport import Transport, govern_via_transport

    configure(base_url=d.url, token=AGENT_TOKEN, max_retries=0)
    a = submit_action("agent-x", "http", "get", {"url": "https://example.com"})
    check("submit_action: allowed", a["status"] == "allowed" and a["decision"] == "allow", a)
    check("submit_action: id and request hash", len(a["id"]) == 16 and len(a["request_hash"]) == 64, a)
    got = get_action(a["id"])
    check("get_action: same action", got["id"] == a["id"] and got["status"] == "allowed", got)
    check("get_action: request_hash verifies with the SDK's own hash",
          faramesh.gate.verify_request_hash({"agent_id": "agent-x", "tool": "http", "operation": "get",
                                             "params": {"url": "https://example.com"}, "context": {}},
                                            got["request_hash"]), got)
    started = start_action(a["id"])
    check("start_action: executing", started["status"] == "executing", started)
    done = _make_request("POST", f"/v1/actions/{a['id']}/result", json_data={"success": True, "error": None})
    check("report result: succeeded", done["status"] == "succeeded", done)
    again = None
    try:
        _make_request("POST", f"/v1/actions/{a['id']}/start")
    except FarameshError as e:
        again = str(e)
    check("start of a finished action: refused (409)", again is not None and "409" in again, again)

    listed = list_actions(limit=10, agent_id="agent-x")
    check("list_actions: filters by agent", [x["id"] for x in listed] == [a["id"]], listed)
    check("list_actions: status filter", list_actions(status="succeeded", agent_id="agent-x")[0]["id"] == a["id"])

    try:
        submit_action("agent-x", "shell", "run", {"cmd": "rm -rf /"})
        denied = None
    except FarameshPolicyError as e:
        denied = str(e)
    check("submit_action: denied raises the SDK's policy error", denied and "Destructive shell" in denied, denied)

    pend = submit_action("agent-x", "shell", "run", {"cmd": "ls"})
    check("submit_action: pending approval", pend["status"] == "pending_approval", pend)
    check("no approval secret for an agent token", pend.get("approval_token") is None, pend)
    status, body = raw(d, "POST", f"/v1/actions/{pend['id']}/start", token=AGENT_TOKEN)
    check("start of a pending action: 409 with a JSON error", status == 409 and body["error"]["code"] == "conflict",
          (status, body))
    status, body = raw(d, "POST", f"/v1/actions/{pend['id']}/approval", {"approve": True}, token=AGENT_TOKEN)
    check("agent token approving: 403", status == 403, (status, body))

    # The approver approves with the SDK (token read from the action as the SDK does).
    configure(base_url=d.url, token=APPROVER_TOKEN, max_retries=0)
    seen = get_action(pend["id"])
    check("approver sees the approval token", seen.get("approval_token") == pend["approval_id"], seen)
    approved = faramesh.approve_action(pend["id"], reason="fine")
    check("approve_action: approved", approved["status"] == "approved", approved)
    configure(base_url=d.url, token=AGENT_TOKEN, max_retries=0)
    check("approved action starts", start_action(pend["id"])["status"] == "executing")
    status, _ = raw(d, "POST", f"/v1/actions/{pend['id']}/start", token=AGENT_TOKEN)
    check("an approval is used once", status == 409, status)

    pend2 = submit_action("agent-x", "shell", "run", {"cmd": "whoami"})
    configure(base_url=d.url, token=APPROVER_TOKEN, max_retries=0)
    denied2 = faramesh.deny_action(pend2["id"], reason="no")
    check("deny_action: denied", denied2["status"] == "denied", denied2)
    events = _make_request("GET", f"/v1/actions/{pend2['id']}/events")
    kinds = [e["event_type"] for e in events]
    check("events: created, decision_made, denied", kinds == ["created", "decision_made", "denied"], kinds)
    configure(base_url=d.url, token=AGENT_TOKEN, max_retries=0)

    g = gate_decide("agent-x", "http", "get", {"url": "https://example.com"})
    check("gate_decide: EXECUTE", g.outcome == "EXECUTE" and g.reason_code == "POLICY_PERMIT", g)
    g2 = gate_decide("agent-x", "shell", "run", {"cmd": "rm -rf /"})
    check("gate_decide: HALT", g2.outcome == "HALT", g2)
    g3 = gate_decide("agent-x", "shell", "run", {"cmd": "ls"})
    check("gate_decide: ABSTAIN", g3.outcome == "ABSTAIN", g3)
    before = len(list_actions(limit=1000))
    gate_decide("agent-x", "http", "get", {})
    check("gate_decide records nothing", len(list_actions(limit=1000)) == before)
    r = replay_decision(action_id=a["id"])
    check("replay_decision: same decision", r.success, r.mismatches)
    ran = execute_if_allowed("agent-x", "http", "get", {"url": "u"}, executor=lambda *a: "done")
    check("execute_if_allowed runs on EXECUTE", ran["executed"] and ran["execution_result"] == "done", ran)

    t = Transport(mode="remote", remote_url=d.url, token=AGENT_TOKEN)
    r1 = govern_via_transport(t, "http/get", {"url": "https://example.com"}, agent_id="agent-x")
    check("remote transport: PERMIT", r1["effect"] == "PERMIT" and r1["reason_code"] == "POLICY_PERMIT", r1)
    r2 = govern_via_transport(t, "shell/run", {"cmd": "ls"}, agent_id="agent-x")
    check("remote transport: DEFER with a defer token", r2["effect"] == "DEFER" and len(r2["defer_token"]) == 32, r2)

    # Tokens: 401 without or with a wrong token, 403 for the wrong role or agent.
    configure(base_url=d.url, token="not-a-token", max_retries=0)
    try:
        submit_action("agent-x", "http", "get", {})
        auth = None
    except FarameshAuthError as e:
        auth = str(e)
    check("wrong token: the SDK's auth error (401)", auth is not None and "401" in auth, auth)
    status, _ = raw(d, "GET", "/v1/actions")
    check("no token: 401", status == 401, status)
    call = {"agent_id": "agent-b", "tool": "http", "operation": "get", "params": {}}
    status, body = raw(d, "POST", "/v1/actions", call, token=BOUND_TOKEN)
    check("token bound to agent-a acting for agent-b: 403", status == 403, (status, body))
    status, body = raw(d, "POST", "/v1/actions", dict(call, agent_id="agent-a"), token=BOUND_TOKEN)
    check("bound token for its agent: allowed", status == 200 and body["status"] == "allowed", (status, body))
    status, body = raw(d, "GET", f"/v1/actions/{a['id']}", token=BOUND_TOKEN)
    check("bound token cannot read another agent's action", status == 404, (status, body))
    check("the DPR records the token identity, not the token",
          body is not None and BOUND_TOKEN not in json.dumps(raw(d, "GET", "/v1/actions?limit=1000",
                                                                 token=APPROVER_TOKEN)[1]))
    _, mine = raw(d, "GET", "/v1/actions?agent_id=agent-a", token=APPROVER_TOKEN)
    check("caller recorded as token identity", mine["actions"][0]["caller"] == {"token": "agent:bot-a", "role": "agent"},
          mine["actions"][0].get("caller"))
    status, body = raw(d, "GET", "/health")
    check("/health needs no token", status == 200 and body["status"] == "ok", (status, body))
    status, body = raw(d, "GET", "/ready", token=AGENT_TOKEN)
    check("/ready: policy loaded and log writable", status == 200 and body["ready"] is True, (status, body))


def bad_input_checks(d):
    cases = [
        ("not JSON", b"{nope", 400, None),
        ("not an object", b"[1,2]", 400, None),
        ("wrong field type", {"agent_id": "x", "tool": "http", "operation": "get", "params": "nope"}, 422, "params"),
        ("missing field", {"tool": "http", "operation": "get"}, 422, "agent_id"),
        ("non-finite number", b'{"agent_id":"x","tool":"http","operation":"get","params":{"n":1e999}}', 422, "params"),
    ]
    for name, body, want, field in cases:
        status, reply = raw(d, "POST", "/v1/actions", body, token=AGENT_TOKEN,
                            headers={"Content-Type": "application/json"})
        ok = status == want and isinstance(reply, dict) and "error" in reply
        if field:
            ok = ok and reply["error"].get("field") == field
        check(f"bad input ({name}): {want}", ok, (status, reply))
    dup = b'{"agent_id":"x","tool":"shell","operation":"run","params":{"cmd":"rm -rf /","cmd":"ls"}}'
    status, reply = raw(d, "POST", "/v1/evaluate", dup, token=AGENT_TOKEN)
    check("duplicate key: 400 naming the key path", status == 400 and reply["error"].get("field") == "params.cmd",
          (status, reply))
    status, reply = raw(d, "POST", "/v1/actions", {"agent_id": "x", "tool": "http", "operation": "get", "parms": {}},
                        token=AGENT_TOKEN)
    check("unknown call key: DENY INVALID_REQUEST naming it",
          status == 200 and reply["reason_code"] == "INVALID_REQUEST" and "`parms`" in reply["reason"], (status, reply))
    big = json.dumps({"agent_id": "x", "tool": "http", "operation": "get", "params": {"pad": "x" * (2 << 20)}}).encode()
    status, reply = raw(d, "POST", "/v1/actions", big, token=AGENT_TOKEN)
    check("body over 1 MiB: 413", status == 413, status)
    status, reply = raw(d, "GET", "/v1/actions?limit=0", token=AGENT_TOKEN)
    check("limit out of range: 422 naming limit", status == 422 and reply["error"]["field"] == "limit", reply)
    status, reply = raw(d, "GET", "/v1/actions?status=allow", token=AGENT_TOKEN)
    check("unknown status: 422 listing the values", status == 422 and "pending_approval" in reply["error"]["message"],
          reply)
    # A client that sends headers slowly is cut off without holding anything up.
    slow = socket.create_connection(("127.0.0.1", d.port))
    slow.sendall(b"\x16\x03\x01")  # the start of a TLS hello, then nothing
    status, _ = raw(d, "GET", "/health")
    check("a stalled client does not block others", status == 200, status)
    slow.close()


def sse_checks(d):
    ctx = ssl.create_default_context(cafile=d.cert)
    conn = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx, timeout=10)
    conn.request("GET", "/v1/events?agent_id=sse-agent", headers={"Authorization": f"Bearer {AGENT_TOKEN}"})
    resp = conn.getresponse()
    check("SSE: text/event-stream", resp.status == 200 and resp.getheader("content-type") == "text/event-stream",
          resp.getheader("content-type"))
    got = []

    def reader():
        buf = b""
        while len(got) < 3:
            chunk = resp.read1(65536)
            if not chunk:
                return
            buf += chunk
            while b"\n\n" in buf:
                frame, buf = buf.split(b"\n\n", 1)
                fields = dict(line.split(": ", 1) for line in frame.decode().splitlines() if not line.startswith(":"))
                if "data" in fields:
                    got.append((int(fields["id"]), json.loads(fields["data"])))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(0.3)
    ids = []
    for i in range(3):
        _, body = raw(d, "POST", "/v1/evaluate", {"agent_id": "sse-agent", "tool_id": "http/get", "args": {"i": i}},
                      token=AGENT_TOKEN)
        ids.append(body["action_id"])
        raw(d, "POST", "/v1/evaluate", {"agent_id": "other", "tool_id": "http/get", "args": {}}, token=AGENT_TOKEN)
    t.join(timeout=10)
    check("SSE: each govern seen live, filtered by agent", [e["id"] for _, e in got] == ids, got)
    check("SSE: events carry seq ids and event_type",
          all(e["event_type"] == "decision_made" and s == e["seq"] for s, e in got), got)
    conn.close()
    # Resume from Last-Event-ID: the entries after it are replayed first.
    if got:
        first_seq = got[0][0]
        conn = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx, timeout=10)
        conn.request("GET", "/v1/events?agent_id=sse-agent",
                     headers={"Authorization": f"Bearer {AGENT_TOKEN}", "Last-Event-ID": str(first_seq)})
        resp = conn.getresponse()
        buf = b""
        deadline = time.time() + 5
        while buf.count(b"data: ") < 2 and time.time() < deadline:
            buf += resp.read1(65536)
        replayed = [json.loads(line[6:]) for line in buf.decode().splitlines() if line.startswith("data: ")]
        check("SSE: Last-Event-ID resumes after that seq", [e["id"] for e in replayed[:2]] == ids[1:], replayed)
        conn.close()


def metrics_checks(d):
    # The daemon serves the OpenMetrics text format (its Content-Type says so): use that parser.
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    status, _ = raw(d, "GET", "/metrics")
    check("/metrics needs a token", status == 401, status)
    ctx = ssl.create_default_context(cafile=d.cert)
    conn = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx, timeout=10)
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {AGENT_TOKEN}"})
    resp = conn.getresponse()
    ctype = resp.getheader("content-type")
    text = resp.read().decode()
    conn.close()
    check("/metrics: OpenMetrics content type", ctype.startswith("application/openmetrics-text"), ctype)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    want = ["faramesh_decisions", "faramesh_decide_seconds", "faramesh_log_commit_seconds",
            "faramesh_log_commit_batch_records", "faramesh_log_writer_queue_depth", "faramesh_policy_reloads",
            "faramesh_policy_reload_failures", "faramesh_pending_approvals", "faramesh_open_connections"]
    check("/metrics: every family parses", all(w in families for w in want),
          sorted(set(want) - set(families)))
    permits = sum(s.value for s in families["faramesh_decisions"].samples
                  if s.labels.get("effect") == "PERMIT" and s.name.endswith("_total"))
    check("/metrics: decisions counted by effect", permits >= 5, permits)
    http_conns = [s.value for s in families["faramesh_open_connections"].samples if s.labels.get("transport") == "http"]
    check("/metrics: open HTTP connections counted", http_conns and http_conns[0] >= 1, http_conns)


def kill_under_load(d, binary):
    acked = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(n):
        ctx = ssl.create_default_context(cafile=d.cert)
        i = 0
        while not stop.is_set():
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx, timeout=5)
                while not stop.is_set():
                    body = json.dumps({"agent_id": f"load-{n}", "tool": "http", "operation": "get",
                                       "params": {"i": i}}).encode()
                    conn.request("POST", "/v1/actions", body=body,
                                 headers={"Authorization": f"Bearer {AGENT_TOKEN}", "Content-Type": "application/json"})
                    reply = json.loads(conn.getresponse().read())
                    if reply.get("id"):
                        with lock:
                            acked.append(reply["id"])
                    i += 1
            except Exception:
                return

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    d.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    d.start()
    missing = [a for a in acked if raw(d, "GET", f"/v1/actions/{a}", token=APPROVER_TOKEN)[0] != 200]
    check(f"SIGKILL under HTTP load: all {len(acked)} acknowledged actions survive", acked and not missing,
          missing[:5])
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(d.sock)
        s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"log.verify"}\n')
        buf = b""
        while not buf.endswith(b"\n"):
            buf += s.recv(65536)
    report = json.loads(buf)["result"]
    check("verify-log passes after the restart", report.get("ok") is True, report)


def refused_starts(binary, tmp):
    policy = os.path.join(tmp, "refused.yaml")
    with open(policy, "w") as f:
        f.write(POLICY)
    base = [binary, "serve", "--policy", policy, "--socket", os.path.join(tmp, "r.sock"),
            "--state-dir", os.path.join(tmp, "r-state")]
    env = dict(os.environ, FARAMESH_TOKEN=AGENT_TOKEN)
    out = subprocess.run(base + ["--listen", f"0.0.0.0:{free_port()}"], capture_output=True, text=True, env=env,
                         timeout=20)
    check("plain HTTP on a non-loopback address is refused at start",
          out.returncode != 0 and "not a loopback address" in out.stderr, out.stderr)
    env.pop("FARAMESH_TOKEN")
    env.pop("FARAMESH_APPROVER_TOKEN", None)
    out = subprocess.run(base + ["--listen", f"127.0.0.1:{free_port()}"], capture_output=True, text=True, env=env,
                         timeout=20)
    check("a listener without any token is refused at start",
          out.returncode != 0 and "needs at least one token" in out.stderr, out.stderr)


def main():
    binary = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="fm-http-")
    refused_starts(binary, tmp)
    d = Daemon(binary, tmp)
    d.start()
    # The SDK's HTTP client (requests) and remote transport (urllib) trust only this certificate.
    os.environ["REQUESTS_CA_BUNDLE"] = d.cert
    os.environ["SSL_CERT_FILE"] = d.cert
    try:
        status = subprocess.run([binary, "status", "--socket", d.sock, "--json"], capture_output=True, text=True)
        info = json.loads(status.stdout)["http"]
        check("status shows the listener and its certificate fingerprint",
              info["url"] == d.url and len(info["tls_fingerprint"]) == 95, info)
        sdk_checks(d)
        bad_input_checks(d)
        sse_checks(d)
        metrics_checks(d)
        fingerprint = info["tls_fingerprint"]
        d.stop()
        d.start()
        again = json.loads(subprocess.run([binary, "status", "--socket", d.sock, "--json"], capture_output=True,
                                          text=True).stdout)["http"]["tls_fingerprint"]
        check("the self-signed certificate is reused after a restart", again == fingerprint, (again, fingerprint))
        kill_under_load(d, binary)
    finally:
        d.stop()
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
