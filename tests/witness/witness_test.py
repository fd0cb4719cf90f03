"""The decision log against a real, independent C2SP witness: aics-witness from PyPI.

Usage: python witness_test.py PATH_TO_FARAMESH [DECISIONS]

Starts aics-witness on loopback trusting this log's key, then `faramesh serve --witnesses`
with the interval at 1 s, and checks:
- the witness cosigns the log's checkpoints after DECISIONS decisions (default 10,000), and its
  cosignatures verify with `faramesh verify-log --witness-policy`, with `faramesh verify-proof`
  (an offline receipt for one decision) and with aics-tlog, the witness's companion verifier;
- a copy of the log taken earlier (a rollback) raises the 409 alarm: in `status`, `/metrics`
  and a webhook notification;
- that copy, grown into a different history signed with the same host key (a rewrite), is
  refused by the witness (422), and `verify-log --witness-policy` fails against the witness's
  cosigned checkpoint.
Prints "N passed, M failed".
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BIN = sys.argv[1]
DECISIONS = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
HERE = os.path.dirname(os.path.abspath(__file__))
VENV_BIN = os.path.dirname(sys.executable)
PASSED, FAILED = [], []
APPROVER_TOKEN = "witness-test-approver-token-0123456789"


def get(url):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {APPROVER_TOKEN}"})
    return urllib.request.urlopen(req, timeout=10).read()


def check(name, ok, detail=""):
    (PASSED if ok else FAILED).append(name)
    print(("ok     " if ok else "FAILED ") + name + ("" if ok else f": {detail}"), flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(*args, check_rc=True):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=120)
    if check_rc and p.returncode != 0:
        raise RuntimeError(f"{args}: exit {p.returncode}: {p.stdout}{p.stderr}")
    return p


def rpc(sock, method, params, timeout=30):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(sock)
        s.sendall((json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf)
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def govern_many(sock, n, tag):
    """n `govern` calls, pipelined over 4 connections; returns how many were answered."""
    def one_conn(count, out, k):
        # A window of requests in flight, then their replies: the socket buffers never fill.
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(120)
            s.connect(sock)
            got, buf, sent = 0, b"", 0
            while sent < count:
                window = min(200, count - sent)
                s.sendall("".join(
                    json.dumps({"jsonrpc": "2.0", "id": i, "method": "govern",
                                "params": {"agent_id": f"bot-{k}", "tool": "http", "operation": "get",
                                           "args": {"url": f"https://example.com/{tag}/{k}/{i}"}}}) + "\n"
                    for i in range(sent, sent + window)).encode())
                sent += window
                while got < sent:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        out.append(got)
                        return
                    buf += chunk
                    got = buf.count(b"\n")
            out.append(got)
    out, threads = [], []
    for k in range(4):
        t = threading.Thread(target=one_conn, args=(n // 4 + (1 if k < n % 4 else 0), out, k))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    return sum(out)


class Hooks(BaseHTTPRequestHandler):
    received = []

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        Hooks.received.append(json.loads(body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()


class Daemon:
    def __init__(self, tmp, name, state, policy, witnesses, http_port):
        self.sock = os.path.join(tmp, f"{name}.sock")
        self.state = state
        self.http = f"http://127.0.0.1:{http_port}"
        env = dict(os.environ, FARAMESH_LOG="warn", FARAMESH_APPROVER_TOKEN=APPROVER_TOKEN)
        self.proc = subprocess.Popen(
            [BIN, "serve", "--policy", policy, "--socket", self.sock, "--state-dir", state,
             "--witnesses", witnesses, "--witness-interval", "1s", "--listen", f"127.0.0.1:{http_port}"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, f"{name}.err"), "w"), env=env)
        for _ in range(400):
            if os.path.exists(self.sock):
                try:
                    rpc(self.sock, "status", {})
                    return
                except (OSError, RuntimeError, ValueError):
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon {name} did not start")

    def status(self):
        return rpc(self.sock, "status", {})

    def witness(self):
        ws = self.status().get("witnesses") or []
        return ws[0] if ws else {}

    def wait(self, what, pred, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            w = self.witness()
            if pred(w):
                return w
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}: {self.witness()}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def main():
    tmp = tempfile.mkdtemp(prefix="fm-witness-")
    procs = []
    try:
        hook_port = free_port()
        hooks = ThreadingHTTPServer(("127.0.0.1", hook_port), Hooks)
        threading.Thread(target=hooks.serve_forever, daemon=True).start()
        secret = os.path.join(tmp, "hook.secret")
        with open(secret, "w") as f:
            f.write("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        policy = os.path.join(tmp, "policy.yaml")
        with open(policy, "w") as f:
            f.write("version: 1\nrules:\n  - id: reads\n    match: { tool: http, op: get }\n    allow: true\n"
                    f"notifications:\n  channels:\n    ops: {{ type: webhook, url: \"http://127.0.0.1:{hook_port}/\", "
                    f"secret_file: {secret} }}\n")
        state = os.path.join(tmp, "state")
        # The log's key and origin exist once the daemon has opened the log.
        p = subprocess.Popen([BIN, "serve", "--policy", policy, "--socket", os.path.join(tmp, "first.sock"),
                              "--state-dir", state], stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "first.err"), "w"))
        for _ in range(400):
            try:
                rpc(os.path.join(tmp, "first.sock"), "status", {})
                break
            except (OSError, RuntimeError, ValueError):
                time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        vkey = run(BIN, "log", "pubkey", "--state-dir", state).stdout.strip()
        origin = vkey.split("+")[0]
        check("log pubkey prints the C2SP verifier key named after the origin",
              origin.startswith("faramesh/") and len(vkey.split("+", 2)) == 3, vkey)

        # The witness: its own key and database, trusting this log's key.
        wport = free_port()
        wcfg = os.path.join(tmp, "witness", "witness.json")
        os.makedirs(os.path.dirname(wcfg))
        init = run(os.path.join(VENV_BIN, "aics-witness"), "init", "--config", wcfg, "--name", "witness.test/w1",
                   "--listen", f"127.0.0.1:{wport}")
        wkey = next(w for w in init.stdout.split() if w.startswith("witness.test/w1+"))
        run(os.path.join(VENV_BIN, "aics-witness"), "add-log", "--config", wcfg, "--origin", origin, "--vkey", vkey)
        witness = subprocess.Popen([os.path.join(VENV_BIN, "aics-witness"), "serve", "--config", wcfg],
                                   stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "witness.err"), "w"))
        procs.append(witness)
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{wport}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        wpolicy = os.path.join(tmp, "witnesses.policy")
        with open(wpolicy, "w") as f:
            f.write(f"log {vkey}\nwitness w1 {wkey} http://127.0.0.1:{wport}\nquorum w1\n")

        a = Daemon(tmp, "a", state, policy, wpolicy, free_port())
        procs.append(a.proc)
        started = time.time()
        answered = govern_many(a.sock, DECISIONS, "a")
        check(f"{DECISIONS} decisions answered", answered == DECISIONS, answered)
        size = a.status()["log"]["size"]
        w = a.wait("the witness to cosign the log", lambda w: w.get("size", 0) >= size)
        check(f"the witness cosigned the log through entry {w['size']} within {time.time() - started:.1f} s "
              f"of the first decision (interval 1 s)", w["size"] >= DECISIONS and w.get("alarm") is None, w)

        out = run(BIN, "verify-log", "--state-dir", state, "--socket", a.sock, "--witness-policy", wpolicy,
                  check_rc=False)
        check("verify-log --witness-policy: the cosigned root matches the recomputed tree",
              out.returncode == 0 and "witnessed: entries 1 to" in out.stdout, out.stdout + out.stderr)

        cp = rpc(a.sock, "log.checkpoint", {})
        note = cp["cosigned"]
        notefile = os.path.join(tmp, "cosigned.checkpoint")
        with open(notefile, "w") as f:
            f.write(note)
        out = run(os.path.join(VENV_BIN, "aics-tlog"), "verify-checkpoint", "--note", notefile, "--origin", origin,
                  "--log-key", vkey, "--witness-key", wkey, "--quorum", "1", check_rc=False)
        verdict = json.loads(out.stdout or "{}")
        check("aics-tlog verifies the log's signature and the witness's cosignature on the checkpoint",
              out.returncode == 0 and verdict.get("ok") is True, out.stdout + out.stderr)

        receipt = os.path.join(tmp, "entry.tlog-proof")
        run(BIN, "log", "proof", "--state-dir", state, "--socket", a.sock, "--seq", str(DECISIONS // 2), "-o", receipt)
        out = run(BIN, "verify-proof", receipt, "--key", vkey, "--witness-policy", wpolicy, check_rc=False)
        check("a receipt for one decision verifies offline with the log key and the witness policy",
              out.returncode == 0 and "cosigned by witness.test/w1" in out.stdout, out.stdout + out.stderr)
        # The receipt's proof, checked by aics-tlog against the cosigned checkpoint's root.
        lines = open(receipt).read().split("\n\n")[0].split("\n")
        record = json.loads(__import__("base64").b64decode(lines[1].split(" ", 1)[1]))
        index = int(lines[2].split(" ")[1])
        proof = os.path.join(tmp, "proof.b64")
        with open(proof, "w") as f:
            f.write("\n".join(lines[3:]) + "\n")
        rnote = open(receipt).read().split("\n\n", 1)[1]
        rsize, rroot = int(rnote.split("\n")[1]), rnote.split("\n")[2]
        leaves = os.path.join(tmp, "leaf.txt")
        with open(leaves, "w") as f:
            f.write(record["entry_hash"] + "\n")
        out = run(os.path.join(VENV_BIN, "python"), "-c",
                  "import sys,base64; from aics_tlog import verify_inclusion, leaf_hash;"
                  "h=bytes.fromhex(sys.argv[1]); p=[base64.b64decode(l) for l in open(sys.argv[4]).read().split()];"
                  "print(verify_inclusion(leaf_hash(h), int(sys.argv[2]), int(sys.argv[3]), p, base64.b64decode(sys.argv[5])))",
                  record["entry_hash"], str(index), str(rsize), proof, rroot, check_rc=False)
        check("aics-tlog's RFC 9162 verifier accepts the receipt's inclusion proof",
              out.stdout.strip() == "True", out.stdout + out.stderr)

        # The same tree read as tlog-tiles from the HTTP listener (for full readers only), by
        # aics-tlog's tile algorithms.
        from aics_tlog.tiles import inclusion_proof_from_tiles, tile_path, tree_root_from_tiles

        class Tiles:
            def read_tile(self, level, index, width):
                try:
                    return get(f"{a.http}/v1/log/{tile_path(level, index, width)}")
                except urllib.error.HTTPError:
                    return None

            def read_entry_bundle(self, index, width):
                return None

        served = get(f"{a.http}/v1/log/checkpoint").decode()
        ssize, sroot = int(served.split("\n")[1]), __import__("base64").b64decode(served.split("\n")[2])
        check("GET /v1/log/checkpoint serves the signed checkpoint", served.startswith(origin + "\n"), served)
        check("the tree from the tiles has the checkpoint's root (aics-tlog)",
              tree_root_from_tiles(Tiles(), ssize) == sroot, ssize)
        want = [__import__("base64").b64decode(l) for l in open(proof).read().split()]
        check("the tiles give the receipt's inclusion proof (aics-tlog)",
              inclusion_proof_from_tiles(Tiles(), index, rsize) == want, index)
        try:
            urllib.request.urlopen(f"{a.http}/v1/log/checkpoint", timeout=5)
            refused = False
        except urllib.error.HTTPError as e:
            refused = e.code in (401, 403)
        check("the tiles need a reader's token", refused)

        # A copy of the log as it is now; then the log goes on and the witness sees more.
        copy = os.path.join(tmp, "copy")
        os.makedirs(copy)
        run(BIN, "log", "backup", "--state-dir", state, "--socket", a.sock, os.path.join(copy, "log.redb"))
        shutil.copy2(os.path.join(state, "log.key"), os.path.join(copy, "log.key"))
        govern_many(a.sock, 40, "a2")
        size = a.status()["log"]["size"]
        a.wait("the witness to cosign the grown log", lambda w: w.get("size", 0) >= size)
        a.stop()
        procs.remove(a.proc)
        wstatus = json.loads(run(os.path.join(VENV_BIN, "aics-witness"), "status", "--config", wcfg, "--json").stdout)
        wsize = max((l.get("size") or 0) for l in wstatus.get("logs", [])) if isinstance(wstatus.get("logs"), list) else None
        check("at shutdown the checkpoint recording the stop went to the witness",
              wsize is not None and wsize > size, f"witness {wsize}, log before stopping {size}")

        out = run(BIN, "verify-log", "--state-dir", state, "--witness-policy", wpolicy, check_rc=False)
        check("verify-log --witness-policy offline: ok, and it says what is not witnessed yet",
              out.returncode == 0 and "not witnessed yet" in out.stdout, out.stdout + out.stderr)

        # The copy is a rollback: the witness has seen more than it holds.
        b = Daemon(tmp, "b", copy, policy, wpolicy, free_port())
        procs.append(b.proc)
        w = b.wait("the 409 alarm", lambda w: (w.get("alarm") or {}).get("status") == 409, timeout=30)
        check("a rolled-back copy raises the 409 alarm (status)", "rolled back" in w["alarm"]["message"], w)
        metrics = get(f"{b.http}/metrics").decode()
        check("/metrics shows the alarm", 'faramesh_witness_alarm{witness="w1"} 1' in metrics,
              [l for l in metrics.splitlines() if "witness" in l])
        for _ in range(100):
            if any(h.get("type") == "witness.alarm" for h in Hooks.received):
                break
            time.sleep(0.1)
        check("the alarm went to the notification channel",
              any(h.get("type") == "witness.alarm" and h["data"].get("status") == 409 for h in Hooks.received),
              Hooks.received)
        st = run(BIN, "status", "--socket", b.sock).stdout
        check("`faramesh status` shows the alarm", "ALARM (409)" in st, st)

        # The copy grows into another history past what the witness saw: a rewrite under the
        # same key. The witness refuses it (422), and the log's checkpoints no longer match the
        # witness's.
        govern_many(b.sock, 80, "b")
        w = b.wait("the 422 alarm", lambda w: (w.get("alarm") or {}).get("status") == 422, timeout=30)
        check("a rewritten history is refused by the witness (422)", "rewritten" in w["alarm"]["message"], w)
        b.stop()
        procs.remove(b.proc)
        ocp = hashlib.sha256(origin.encode()).hexdigest()
        witnessed = urllib.request.urlopen(f"http://127.0.0.1:{wport}/{ocp}/checkpoint", timeout=5).read().decode()
        wfile = os.path.join(tmp, "witness.checkpoint")
        with open(wfile, "w") as f:
            f.write(witnessed)
        out = run(BIN, "verify-log", "--state-dir", copy, "--witness-policy", wpolicy, "--against", wfile,
                  check_rc=False)
        check("verify-log --witness-policy fails on the rewritten log",
              out.returncode == 1 and "does not match" in out.stdout, out.stdout + out.stderr)
        out = run(BIN, "verify-log", "--state-dir", state, "--witness-policy", wpolicy, "--against", wfile,
                  check_rc=False)
        check("and passes on the original against the same cosigned checkpoint", out.returncode == 0,
              out.stdout + out.stderr)
        hooks.shutdown()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        if not FAILED and not os.environ.get("KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")
    print(f"{len(PASSED)} passed, {len(FAILED)} failed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
