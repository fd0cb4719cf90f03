"""The fleet queue: three daemons (three state dirs) and one Debian PostgreSQL. A person approves
each host's waiting call from one place with `faramesh fleet approve --sign` and a key in a real
`ssh-agent`; each host reads the signed statement from the database, checks it, and the call
resumes. A row written by someone without an approver's key approves nothing: forged, replayed,
for another host or another request hash, or signed by a key the policy no longer lists, each is
refused and recorded. Rules with `approvals_required: 2` need two distinct signers. With the
database down, local approvals still work and the queue catches up when it is back.
"""

from __future__ import annotations

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
from fleet_helpers import Postgres, status, wait_shipped  # noqa: E402

REFUND = {"agent_id": "pay-bot", "tool": "stripe", "operation": "refund", "context": {}}
PAYOUT = {"agent_id": "pay-bot", "tool": "stripe", "operation": "payout", "context": {}}


def policy(keys: dict[str, str]) -> str:
    approvers = "".join(f'    - {{ name: {name}, ssh_key: "{key}" }}\n' for name, key in keys.items())
    return f"""version: 1
approvals:
  allow_same_uid: true
  approvers:
{approvers}rules:
  - id: refunds-need-a-person
    match: {{ tool: stripe, op: refund }}
    require_approval: true
  - id: payouts-need-two
    match: {{ tool: stripe, op: payout }}
    require_approval: true
    approvals_required: 2
  - id: reads
    match: {{ tool: http, op: get }}
    allow: true
"""


class Keys:
    """Ed25519 keys made with ssh-keygen; alice's and bob's in a real ssh-agent, carol's not
    listed by any policy."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.agent_sock = str(root / "agent.sock")
        self.agent = subprocess.Popen(["ssh-agent", "-D", "-a", self.agent_sock], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while not os.path.exists(self.agent_sock):
            assert time.time() < deadline, "ssh-agent did not start"
            time.sleep(0.05)
        self.public: dict[str, str] = {}
        for name in ("alice", "bob", "carol"):
            key = root / name
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
            self.public[name] = (root / f"{name}.pub").read_text().strip()
        for name in ("alice", "bob"):
            subprocess.run(["ssh-add", "-q", str(root / name)], check=True, env=self.env(), capture_output=True)

    def env(self) -> dict[str, str]:
        return {**os.environ, "SSH_AUTH_SOCK": self.agent_sock}

    def sign(self, name: str, text: str) -> str:
        """An SSHSIG of `text` in namespace faramesh-approval, made with `name`'s key file."""
        out = subprocess.run(
            ["ssh-keygen", "-q", "-Y", "sign", "-n", "faramesh-approval", "-f", str(self.root / name)],
            input=text, capture_output=True, text=True, check=True,
        )
        return out.stdout

    def close(self) -> None:
        self.agent.terminate()
        self.agent.wait(timeout=10)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    k = Keys(tmp_path_factory.mktemp("keys"))
    try:
        yield k
    finally:
        k.close()


@pytest.fixture
def hosts(pg: Postgres, keys: Keys, tmp_path: Path) -> Iterator[list[Daemon]]:
    listed = {n: keys.public[n] for n in ("alice", "bob")}
    started: list[Daemon] = []
    try:
        for i in range(3):
            d = tmp_path / f"host{i}"
            d.mkdir()
            started.append(Daemon.serve(d, policy(listed), args=["--postgres", pg.url]))
        yield started
    finally:
        for h in started:
            h.stop()


def fleet(pg: Postgres, keys: Keys, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BIN, "fleet", *args, "--url", pg.url], capture_output=True, text=True, timeout=90, check=False, env=keys.env())


def defer(host: Daemon, call: dict[str, Any], amount: int) -> dict[str, Any]:
    t = SocketTransport(host.socket)
    try:
        d = t.govern({**call, "args": {"amount": amount}})
    finally:
        t.close()
    assert d["effect"] == "DEFER" and d["approval_id"], d
    return d


def resume(host: Daemon, call: dict[str, Any], amount: int, approval_id: str) -> dict[str, Any]:
    t = SocketTransport(host.socket)
    try:
        return t.govern({**call, "args": {"amount": amount}, "approval_id": approval_id})
    finally:
        t.close()


def log_id(host: Daemon) -> str:
    return str(status(host)["log"]["origin"]).removeprefix("faramesh/")


def approval(host: Daemon, approval_id: str) -> dict[str, Any]:
    out = host.cli("pending", "--json")
    assert out.returncode == 0, out.stderr
    for a in json.loads(out.stdout)["approvals"]:
        if a["approval_id"] == approval_id:
            return dict(a)
    return {"approval_id": approval_id, "status": "gone from pending"}


def wait_outcome(pg: Postgres, row: str, timeout: float = 30) -> str:
    deadline = time.time() + timeout
    while True:
        out = pg.sql(f"SELECT coalesce(outcome, '') FROM faramesh_approval_decisions WHERE id = {row}")
        if out:
            return out
        assert time.time() < deadline, f"no host noted an outcome on row {row}"
        time.sleep(0.1)


def insert(pg: Postgres, lid: str, approval_id: str, statement: str, signature: str) -> str:
    q = lambda s: "'" + s.replace("'", "''") + "'"  # noqa: E731
    return pg.sql(
        "WITH r AS (INSERT INTO faramesh_approval_decisions (log_id, approval_id, statement, signature) "
        f"VALUES ({q(lid)}, {q(approval_id)}, {q(statement)}, {q(signature)}) RETURNING id) "
        f"SELECT id FROM r; NOTIFY faramesh_decisions, {q(lid)}"
    ).splitlines()[0]


def statement(host: str, d: dict[str, Any], approver: str, *, request: str | None = None, decision: str = "approve") -> str:
    now = time.time()
    fmt = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000Z"  # noqa: E731
    return (
        "faramesh approval v1\n"
        f"host: {host}\napproval: {d['approval_id']}\naction: {d['action_id']}\n"
        f"request: {request or d['request_hash']}\ndecision: {decision}\napprover: {approver}\n"
        f"signed: {fmt(now)}\nexpires: {fmt(now + 600)}\n"
    )


def test_one_signed_approval_from_anywhere_resumes_each_hosts_call(pg: Postgres, keys: Keys, hosts: list[Daemon]) -> None:
    waiting = [defer(h, REFUND, 10 + i) for i, h in enumerate(hosts)]
    for h in hosts:
        wait_shipped(h)
    listed = fleet(pg, keys, "pending", "--json")
    assert listed.returncode == 0, listed.stderr
    pending = {p["approval_id"] for p in json.loads(listed.stdout)["actions"]}
    assert {d["approval_id"] for d in waiting} <= pending
    table = fleet(pg, keys, "pending")
    assert "APPROVAL" in table.stdout and "refunds-need-a-person" in table.stdout, table.stdout

    # One command, three hosts: alice's key from ssh-agent.
    out = fleet(pg, keys, "approve", *[d["approval_id"][:12] for d in waiting], "--sign", "--as", "alice", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads(out.stdout)["decisions"]
    assert [r["outcome"] for r in results] == ["applied: approved"] * 3, results
    assert {r["log_id"] for r in results} == {log_id(h) for h in hosts}

    for i, (h, d) in enumerate(zip(hosts, waiting)):
        ran = resume(h, REFUND, 10 + i, d["approval_id"])
        assert ran["effect"] == "PERMIT", ran
        assert ran["provenance"]["kind"] == "approval", ran
        assert ran["provenance"]["by"]["token"] == "key:alice", ran
        wait_shipped(h)
        # The host's log keeps the statement and the signature of the approval.
        rec = json.loads(
            pg.sql(
                f"SELECT record FROM faramesh_entries WHERE log_id = '{log_id(h)}' AND kind = 'approval' "
                f"AND approval_id = '{d['approval_id']}'"
            )
        )
        assert rec["status"] == "approved" and rec["signed"]["approver"] == "alice", rec
        assert rec["signed"]["handed_in_by"]["token"] == "fleet:postgres", rec
        assert f"host: {log_id(h)}\n" in rec["signed"]["statement"]
        # The verifier re-checks the signed statement, through the daemon and then offline.
        for _ in ("daemon", "file"):
            ok = h.cli("verify-log", "--state-dir", str(h.state))
            assert ok.returncode == 0, ok.stdout + ok.stderr
            assert "signed approvals: 1 statement re-checked" in ok.stdout, ok.stdout
            h.stop()
    after = json.loads(fleet(pg, keys, "pending", "--json").stdout)["actions"]
    assert not {d["approval_id"] for d in waiting} & {p["approval_id"] for p in after}


def test_a_row_without_an_approvers_key_approves_nothing(pg: Postgres, keys: Keys, hosts: list[Daemon]) -> None:
    a, b = hosts[0], hosts[1]
    a_id, b_id = log_id(a), log_id(b)
    used = defer(a, REFUND, 5)
    target = defer(b, REFUND, 7)
    for h in (a, b):
        wait_shipped(h)
    # A real approval on host a, whose statement and signature are then replayed.
    out = fleet(pg, keys, "approve", used["approval_id"], "--sign", "--as", "alice")
    assert out.returncode == 0 and "applied: approved" in out.stdout, out.stdout + out.stderr
    good_text, good_sig = pg.sql(
        f"SELECT statement || '\x1f' || signature FROM faramesh_approval_decisions WHERE approval_id = '{used['approval_id']}'"
    ).split("\x1f")
    good_text += "\n" if not good_text.endswith("\n") else ""

    cases = {
        # Signed by a key no policy lists.
        "carol's key": (statement(b_id, target, "carol"), keys.sign("carol", statement(b_id, target, "carol"))),
        # alice's name, carol's key.
        "another's key under alice's name": (statement(b_id, target, "alice"), keys.sign("carol", statement(b_id, target, "alice"))),
        # No signature at all.
        "a forged row": (statement(b_id, target, "alice"), "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n"),
        # alice's real approval for host a, handed to host b's approval.
        "a replayed statement": (good_text, good_sig),
        # alice signed it, but for host a.
        "another host": (statement(a_id, target, "alice"), keys.sign("alice", statement(a_id, target, "alice"))),
        # alice signed it, but for other arguments.
        "another request hash": (
            statement(b_id, target, "alice", request="0" * 64),
            keys.sign("alice", statement(b_id, target, "alice", request="0" * 64)),
        ),
        # alice signed a denial; the row is presented as nothing else.
        "an edited statement": (statement(b_id, target, "alice").replace("amount", "x"), keys.sign("alice", statement(b_id, target, "bob"))),
    }
    for why, (text, sig) in cases.items():
        row = insert(pg, b_id, target["approval_id"], text, sig)
        outcome = wait_outcome(pg, row)
        assert outcome.startswith("refused: "), (why, outcome)
        assert approval(b, target["approval_id"])["status"] == "pending", why
    assert resume(b, REFUND, 7, target["approval_id"])["effect"] == "DEFER"

    # bob is removed from the policy (reloaded); his signature no longer counts.
    b.policy.write_text(policy({"alice": keys.public["alice"]}))
    deadline = time.time() + 20
    while "bob" in b.policy.read_text() or status(b)["policy"]["reloads"] < 1:
        assert time.time() < deadline, status(b)["policy"]
        time.sleep(0.1)
    bob_text = statement(b_id, target, "bob")
    row = insert(pg, b_id, target["approval_id"], bob_text, keys.sign("bob", bob_text))
    outcome = wait_outcome(pg, row)
    assert outcome.startswith("refused: ") and "bob" in outcome, outcome
    assert approval(b, target["approval_id"])["status"] == "pending"

    # Every refusal is in host b's log (and so in the fleet database).
    wait_shipped(b)
    refused = int(
        pg.sql(
            f"SELECT count(*) FROM faramesh_entries WHERE log_id = '{b_id}' AND kind = 'approval_refused' "
            f"AND approval_id = '{target['approval_id']}'"
        )
    )
    assert refused == len(cases) + 1, refused
    # And alice's own, for this host and this call, still works.
    out = fleet(pg, keys, "approve", target["approval_id"], "--sign", "--as", "alice")
    assert out.returncode == 0 and "applied: approved" in out.stdout, out.stdout + out.stderr
    assert resume(b, REFUND, 7, target["approval_id"])["effect"] == "PERMIT"


def test_two_approvers_each_sign(pg: Postgres, keys: Keys, hosts: list[Daemon]) -> None:
    h = hosts[2]
    d = defer(h, PAYOUT, 900)
    wait_shipped(h)
    # An unsigned approval does not count towards the two.
    local = h.cli("approve", d["approval_id"])
    assert local.returncode != 0 and "2 approvers" in local.stderr, local.stdout + local.stderr
    first = fleet(pg, keys, "approve", d["approval_id"], "--sign", "--as", "alice")
    assert first.returncode == 0 and "applied: pending (1 of 2)" in first.stdout, first.stdout + first.stderr
    assert resume(h, PAYOUT, 900, d["approval_id"])["effect"] == "DEFER"
    again = fleet(pg, keys, "approve", d["approval_id"], "--sign", "--as", "alice")
    assert again.returncode == 1 and "already signed" in again.stdout, again.stdout + again.stderr
    assert "1 of 2" in h.cli("pending").stdout
    second = fleet(pg, keys, "approve", d["approval_id"], "--sign", "--as", "bob", "--key", str(keys.root / "bob"))
    assert second.returncode == 0 and "applied: approved" in second.stdout, second.stdout + second.stderr
    ran = resume(h, PAYOUT, 900, d["approval_id"])
    assert ran["effect"] == "PERMIT", ran
    wait_shipped(h)
    rec = json.loads(
        pg.sql(f"SELECT record FROM faramesh_entries WHERE kind = 'approval' AND approval_id = '{d['approval_id']}'")
    )
    assert [s["approver"] for s in rec["signatures"]] == ["alice", "bob"], rec
    h.stop()
    ok = h.cli("verify-log", "--state-dir", str(h.state))
    assert ok.returncode == 0 and "signed approvals: 3 statements re-checked" in ok.stdout, ok.stdout + ok.stderr


def test_the_database_down_loses_nothing_and_the_queue_catches_up(pg: Postgres, keys: Keys, hosts: list[Daemon]) -> None:
    h = hosts[0]
    held = defer(h, REFUND, 31)
    local = defer(h, REFUND, 32)
    wait_shipped(h)
    pg.stop()
    try:
        # Local approvals still work, and calls are still decided and recorded.
        h.approve(local["approval_id"])
        assert resume(h, REFUND, 32, local["approval_id"])["effect"] == "PERMIT"
        assert approval(h, held["approval_id"])["status"] == "pending"
        s = status(h)
        assert s["export"][0]["last_error"] or s["export"][0]["lag_entries"] > 0, s["export"]
    finally:
        pg.start()
    out = fleet(pg, keys, "approve", held["approval_id"], "--sign", "--as", "alice", "--wait", "60s")
    assert out.returncode == 0 and "applied: approved" in out.stdout, out.stdout + out.stderr
    assert resume(h, REFUND, 31, held["approval_id"])["effect"] == "PERMIT"
    final = wait_shipped(h)
    lid = log_id(h)
    head = final["log"]["size"]
    assert pg.sql(f"SELECT count(*) FROM faramesh_entries WHERE log_id = '{lid}'") == str(head)
    assert status(h)["fleet_queue"]["applied"] >= 1


def test_what_the_database_shows_is_what_is_signed_and_rows_cannot_jam_the_queue(pg: Postgres, keys: Keys, hosts: list[Daemon]) -> None:
    h = hosts[1]
    lid = log_id(h)
    # An agent's call whose arguments hold a NUL: every fleet query still reads the records.
    t = SocketTransport(h.socket)
    try:
        t.govern({**REFUND, "args": {"amount": 1, "memo": "a\u0000b"}})
    finally:
        t.close()
    edited = defer(h, REFUND, 999_999)
    other = defer(h, REFUND, 12)
    jammed = defer(h, REFUND, 13)
    wait_shipped(h)
    listed = fleet(pg, keys, "pending", "--json")
    assert listed.returncode == 0, listed.stderr

    # The record is edited to show a small refund: fleet approve refuses to sign it.
    pg.sql(
        "UPDATE faramesh_entries SET record = replace(record, '999999', '5') "
        f"WHERE log_id = '{lid}' AND kind = 'decision' AND approval_id = '{edited['approval_id']}'"
    )
    out = fleet(pg, keys, "approve", edited["approval_id"], "--sign", "--as", "alice")
    assert out.returncode == 1 and "refusing to sign" in out.stderr, out.stdout + out.stderr
    assert pg.sql(f"SELECT count(*) FROM faramesh_approval_decisions WHERE approval_id = '{edited['approval_id']}'") == "0"
    # Unedited, it shows the arguments it signs for.
    out = fleet(pg, keys, "approve", other["approval_id"], "--sign", "--as", "alice")
    assert out.returncode == 0 and '"amount":12' in out.stderr, out.stdout + out.stderr

    # 300 rows with a signature whose namespace holds NULs, and one with a 10,000-character
    # approver name, for one approval; then alice's real one for another: it is applied at once.
    good = statement(lid, jammed, "alice")
    sig = keys.sign("alice", good)
    import base64

    body = "".join(line for line in sig.splitlines() if not line.startswith("-----"))
    blob = base64.b64decode(body).replace(b"faramesh-approval", b"f\x00\x00\x00\x01esh-approval")
    nul_sig = "-----BEGIN SSH SIGNATURE-----\n" + base64.b64encode(blob).decode() + "\n-----END SSH SIGNATURE-----\n"
    victim = edited["approval_id"]
    q = lambda s: "'" + s.replace("'", "''") + "'"  # noqa: E731
    pg.sql(
        "INSERT INTO faramesh_approval_decisions (log_id, approval_id, statement, signature) "
        f"SELECT {q(lid)}, {q(victim)}, {q(statement(lid, edited, 'alice'))}, {q(nul_sig)} FROM generate_series(1, 300)"
    )
    long_name = statement(lid, edited, "alice").replace("approver: alice", "approver: " + "x" * 10_000)
    insert(pg, lid, victim, long_name, keys.sign("carol", long_name))
    row = insert(pg, lid, jammed["approval_id"], good, sig)
    assert wait_outcome(pg, row, timeout=30) == "applied: approved"
    assert resume(h, REFUND, 13, jammed["approval_id"])["effect"] == "PERMIT"
    wait_shipped(h)
    recorded = pg.sql(
        f"SELECT string_agg(record, E'\\n') FROM faramesh_entries WHERE log_id = '{lid}' AND kind = 'approval_refused' "
        f"AND approval_id = '{victim}'"
    )
    assert "\\u0000" not in recorded and "x" * 100 not in recorded, recorded[:500]
    assert fleet(pg, keys, "list", "--limit", "5").returncode == 0
    assert approval(h, victim)["status"] == "pending"


def test_one_key_is_one_approver_and_a_removed_key_stops_counting(pg: Postgres, keys: Keys, hosts: list[Daemon]) -> None:
    h = hosts[0]
    d = defer(h, PAYOUT, 77)
    wait_shipped(h)
    lid = log_id(h)
    bob = statement(lid, d, "bob")
    row = insert(pg, lid, d["approval_id"], bob, keys.sign("bob", bob))
    assert wait_outcome(pg, row) == "applied: pending (1 of 2)"
    # bob's key is removed (carol's listed instead): his signature no longer counts.
    h.policy.write_text(policy({"alice": keys.public["alice"], "carol": keys.public["carol"]}))
    deadline = time.time() + 20
    while status(h)["policy"]["reloads"] < 1:
        assert time.time() < deadline
        time.sleep(0.1)
    alice = statement(lid, d, "alice")
    row = insert(pg, lid, d["approval_id"], alice, keys.sign("alice", alice))
    assert wait_outcome(pg, row) == "applied: pending (1 of 2)"
    assert resume(h, PAYOUT, 77, d["approval_id"])["effect"] == "DEFER"
    carol = statement(lid, d, "carol")
    row = insert(pg, lid, d["approval_id"], carol, keys.sign("carol", carol))
    assert wait_outcome(pg, row) == "applied: approved"
    assert resume(h, PAYOUT, 77, d["approval_id"])["effect"] == "PERMIT"
    # One key under two names is refused when the policy is checked.
    twice = h.dir / "twice.yaml"
    twice.write_text(policy({"alice": keys.public["alice"], "alice2": keys.public["alice"]}))
    out = subprocess.run([BIN, "policy", "check", str(twice)], capture_output=True, text=True, check=False)
    assert out.returncode == 3 and "the same key as" in (out.stdout + out.stderr), out.stdout + out.stderr
