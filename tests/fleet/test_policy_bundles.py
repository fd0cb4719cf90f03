"""One policy, signed, on every host: `faramesh policy publish FILE --sign` writes a bundle to
PostgreSQL (Debian's server); three daemons started with `--policy-from postgres` take it, check
the signature against the publisher key they pin, and record its serial and digest in every
decision. A bundle for a label reaches only hosts with it; a tampered bundle, an older serial, an
expired bundle, one signed by a key no host pins, or one whose labels column was edited are
refused and recorded; a host restarted with the database down runs its last good bundle; past
expiry, `--on-stale deny` denies every call. The bundles checked here are also written by this
file's own reading of the format (docs/fleet.md), signed with `ssh-keygen -Y sign`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pylib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from faramesh import SocketTransport  # noqa: E402
from faramesh_testd import BIN, Daemon  # noqa: E402
from fleet_helpers import Postgres, status  # noqa: E402

ALLOW_READS = """version: 1
rules:
  - id: reads
    match: { tool: http, op: get }
    allow: true
"""
DENY_READS = """version: 1
rules:
  - id: no-reads-on-canaries
    match: { tool: http, op: get }
    deny: true
"""


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("publisher")
    for name in ("publisher", "stranger"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(root / name)], check=True)
    (root / "pinned").write_text("# the fleet's publisher\n" + (root / "publisher.pub").read_text())
    yield root


def fmt(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def bundle_text(serial: int, policy: str, expires_ms: int, labels: list[str] | None = None, publisher: str = "test") -> str:
    """A bundle as docs/fleet.md describes it, byte for byte."""
    body = policy.encode()
    return (
        "faramesh policy bundle v1\n"
        f"serial: {serial}\n"
        f"expires: {fmt(expires_ms)}\n"
        f"labels: {','.join(sorted(labels)) if labels else '*'}\n"
        f"publisher: {publisher}\n"
        f"policy-sha256: {hashlib.sha256(body).hexdigest()}\n"
        f"policy-bytes: {len(body)}\n"
        "\n"
        f"{policy}"
    )


def sign(keys: Path, who: str, text: str) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-n", "faramesh-policy", "-f", str(keys / who)],
        input=text, capture_output=True, text=True, check=True,
    )
    return out.stdout


def insert(pg: Postgres, column_serial: int, text: str, signature: str, labels: str = "{}") -> None:
    q = lambda s: "'" + s.replace("'", "''") + "'"  # noqa: E731
    pg.sql(
        "INSERT INTO faramesh_policy_bundles (serial, labels, expires_at, publisher, digest, bundle, signature) "
        f"VALUES ({column_serial}, {q(labels)}, now(), 'test', {q(hashlib.sha256(text.encode()).hexdigest())}, {q(text)}, {q(signature)}); "
        "NOTIFY faramesh_policy"
    )


def publish(pg: Postgres, keys: Path, policy: str, *args: str) -> subprocess.CompletedProcess[str]:
    f = keys / "policy-to-publish.yaml"
    f.write_text(policy)
    return subprocess.run(
        [BIN, "policy", "publish", str(f), "--sign", "--key", str(keys / "publisher"), "--as", "release-bot", "--url", pg.url, *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


def bundle(h: Daemon) -> dict[str, Any]:
    return dict(status(h)["policy"]["bundle"])


def wait_serial(h: Daemon, serial: int, timeout: float = 30) -> dict[str, Any]:
    deadline = time.time() + timeout
    while True:
        b = bundle(h)
        if b.get("serial") == serial:
            return b
        assert time.time() < deadline, b
        time.sleep(0.1)


def wait_refused(h: Daemon, serial: int | None, timeout: float = 30) -> dict[str, Any]:
    deadline = time.time() + timeout
    while True:
        r = bundle(h).get("refused")
        if r and r.get("serial") == serial:
            return dict(r)
        assert time.time() < deadline, bundle(h)
        time.sleep(0.1)


def read(h: Daemon) -> dict[str, Any]:
    t = SocketTransport(h.socket)
    try:
        return t.govern({"agent_id": "reader", "tool": "http", "operation": "get", "args": {"url": "https://example.com/"}, "context": {}})
    finally:
        t.close()


def serve(root: Path, pg: Postgres, keys: Path, *extra: str) -> Daemon:
    root.mkdir(exist_ok=True)
    d = Daemon(dir=root, policy=root / "unused.yaml", socket=str(root / "f.sock"), state=root / "state")
    d.args = ["--postgres", pg.url, "--policy-from", "postgres", "--policy-key", str(keys / "pinned"), *extra]
    start(d)
    return d


def start(d: Daemon) -> None:
    with open(d.dir / "daemon.log", "ab") as log:
        d.proc = subprocess.Popen(
            [BIN, "serve", "--socket", d.socket, "--state-dir", str(d.state), *d.args],
            stdout=subprocess.DEVNULL, stderr=log, env={k: v for k, v in os.environ.items() if k != "FARAMESH_POLICY"},
        )
    deadline = time.time() + 30
    while not os.path.exists(d.socket) or d.cli("status").returncode != 0:
        assert d.proc.poll() is None, (d.dir / "daemon.log").read_text()
        assert time.time() < deadline, (d.dir / "daemon.log").read_text()
        time.sleep(0.05)


@pytest.fixture
def hosts(pg: Postgres, keys: Path, tmp_path: Path) -> Iterator[list[Daemon]]:
    pg.sql("DROP TABLE IF EXISTS faramesh_policy_bundles, faramesh_host_policy")
    started: list[Daemon] = []
    try:
        started.append(serve(tmp_path / "canary", pg, keys, "--labels", "canary"))
        started.append(serve(tmp_path / "web", pg, keys, "--labels", "web"))
        started.append(serve(tmp_path / "edge", pg, keys, "--labels", "edge", "--on-stale", "deny"))
        yield started
    finally:
        for h in started:
            h.stop()


def test_a_signed_bundle_reaches_every_host_and_a_labelled_one_only_some(pg: Postgres, keys: Path, hosts: list[Daemon]) -> None:
    canary, web, edge = hosts
    # No bundle yet: every call is denied, and status says why.
    assert bundle(web)["serial"] is None and "no signed policy bundle" in bundle(web)["warning"]
    assert read(web)["effect"] == "DENY"

    out = publish(pg, keys, ALLOW_READS, "--expires", "30d")
    assert out.returncode == 0, out.stdout + out.stderr
    for h in hosts:
        b = wait_serial(h, 1)
        assert b["publisher"] == "release-bot" and not b["stale"], b
        d = read(h)
        assert d["effect"] == "PERMIT", d
        got = json.loads(h.cli("get", d["action_id"], "--json").stdout)
        record = got.get("record", got)
        assert record["policy_bundle"] == {"serial": 1, "digest": b["digest"]}, record

    # To the canaries first.
    out = publish(pg, keys, DENY_READS, "--labels", "canary")
    assert out.returncode == 0, out.stdout + out.stderr
    wait_serial(canary, 2)
    assert read(canary)["effect"] == "DENY"
    time.sleep(1)
    assert bundle(web)["serial"] == 1 and read(web)["effect"] == "PERMIT"

    listed = subprocess.run([BIN, "fleet", "hosts", "--json", "--url", pg.url], capture_output=True, text=True, check=True)
    by_labels = {",".join(h["labels"]): h["serial"] for h in json.loads(listed.stdout)["hosts"] if h["labels"]}
    assert by_labels == {"canary": 2, "web": 1, "edge": 1}, listed.stdout
    table = subprocess.run([BIN, "fleet", "hosts", "--url", pg.url], capture_output=True, text=True, check=True)
    assert "BUNDLE" in table.stdout and "canary" in table.stdout, table.stdout

    # An older serial is refused: a validly signed bundle 1, under a higher serial column.
    now = int(time.time() * 1000)
    old = bundle_text(1, ALLOW_READS, now + 86_400_000)
    insert(pg, 40, old, sign(keys, "publisher", old))
    r = wait_refused(canary, 1)
    assert "not newer" in r["error"], r
    assert bundle(canary)["serial"] == 2
    pg.sql("DELETE FROM faramesh_policy_bundles WHERE serial = 40")

    # A database writer points the canary bundle at every host: the signed labels say otherwise.
    pg.sql("UPDATE faramesh_policy_bundles SET labels = '{}' WHERE serial = 2")
    r = wait_refused(web, 2)
    assert "labels canary" in r["error"], r
    assert bundle(web)["serial"] == 1
    pg.sql("UPDATE faramesh_policy_bundles SET labels = '{canary}' WHERE serial = 2")


def test_tampered_expired_and_unpinned_bundles_are_refused_and_recorded(pg: Postgres, keys: Path, hosts: list[Daemon]) -> None:
    canary, web, edge = hosts
    now = int(time.time() * 1000)
    good = bundle_text(5, ALLOW_READS, now + 86_400_000)
    insert(pg, 5, good, sign(keys, "publisher", good))
    for h in hosts:
        wait_serial(h, 5)

    cases = [
        # The policy changed after signing.
        ("tampered", bundle_text(6, ALLOW_READS.replace("allow: true", "allow: true\n    description: x"), now + 86_400_000),
         sign(keys, "publisher", bundle_text(6, ALLOW_READS, now + 86_400_000)), "does not match"),
        # Signed by a key no host pins.
        ("unpinned", bundle_text(7, ALLOW_READS, now + 86_400_000), None, "does not pin"),
        # Expired before it arrived.
        ("expired", bundle_text(8, ALLOW_READS, now - 1000), None, "expired"),
    ]
    for i, (why, text, signature, expect) in enumerate(cases):
        signer = "stranger" if why == "unpinned" else "publisher"
        insert(pg, 100 + i, text, signature or sign(keys, signer, text))
        r = wait_refused(web, 6 + i)
        assert expect in r["error"], (why, r)
        assert bundle(web)["serial"] == 5, why
        assert read(web)["effect"] == "PERMIT", why
        pg.sql(f"DELETE FROM faramesh_policy_bundles WHERE serial = {100 + i}")

    # Each refusal is in the host's log.
    web.stop()
    exported = subprocess.run([BIN, "export", "--state-dir", str(web.state)], capture_output=True, text=True, check=True)
    kinds = [json.loads(line) for line in exported.stdout.splitlines()]
    refused = [e for e in kinds if e["kind"] == "policy_bundle_refused"]
    assert [e["serial"] for e in refused] == [6, 7, 8], refused
    applied = [e for e in kinds if e["kind"] == "policy_bundle"]
    assert [e["serial"] for e in applied] == [5]

    # Restarted with the database down: the last good bundle, checked again, serves.
    pg.stop()
    try:
        start(web)
        b = bundle(web)
        assert b["serial"] == 5 and b["last_fetch"] is None, b
        assert read(web)["effect"] == "PERMIT"
    finally:
        pg.start()
    deadline = time.time() + 30
    while bundle(web)["last_fetch"] is None:
        assert time.time() < deadline, bundle(web)
        time.sleep(0.2)

    # A genuine but older bundle, copied into the state dir, is not taken: not on reload...
    older = bundle_text(4, DENY_READS, now + 86_400_000)
    kept = web.state / "policy-bundle"
    (kept / "bundle.sig").write_text(sign(keys, "publisher", older))
    (kept / "bundle.txt").write_text(older)
    deadline = time.time() + 20
    while "not used" not in str(status(web)["policy"]["last_error"]):
        assert time.time() < deadline, status(web)["policy"]
        time.sleep(0.1)
    assert bundle(web)["serial"] == 5 and read(web)["effect"] == "PERMIT"
    # ...nor at a restart: the host denies until the database hands it bundle 5 again.
    web.stop()
    start(web)
    wait_serial(web, 5)
    assert read(web)["effect"] == "PERMIT"


def test_past_expiry_a_host_keeps_or_denies_as_it_was_told(pg: Postgres, keys: Path, hosts: list[Daemon]) -> None:
    canary, web, edge = hosts
    now = int(time.time() * 1000)
    short = bundle_text(9, ALLOW_READS, now + 4000)
    insert(pg, 9, short, sign(keys, "publisher", short))
    for h in hosts:
        wait_serial(h, 9)
    assert read(edge)["effect"] == "PERMIT"
    time.sleep(max(0.0, (now + 4500 - time.time() * 1000) / 1000))
    # --on-stale deny: every call is denied, saying why.
    d = read(edge)
    assert (d["effect"], d["reason_code"]) == ("DENY", "POLICY_STALE"), d
    b = bundle(edge)
    assert b["stale"] and b["on_stale"] == "deny" and "every call is denied" in b["warning"], b
    # The default, keep: it serves, and says so loudly.
    assert read(web)["effect"] == "PERMIT"
    b = bundle(web)
    assert b["stale"] and b["on_stale"] == "keep" and "keeps serving" in b["warning"], b
    text = web.cli("status").stdout
    assert "STALE" in text or "expired" in text, text
    # A newer bundle ends it.
    out = publish(pg, keys, ALLOW_READS)
    assert out.returncode == 0, out.stdout + out.stderr
    wait_serial(edge, 10)
    assert read(edge)["effect"] == "PERMIT"
