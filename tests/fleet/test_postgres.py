"""Decisions leaving the host into PostgreSQL (Debian's server, started here on a free port in a
temporary directory), at least once across an outage of the database and SIGKILLs of the daemon;
`faramesh verify-export postgres` names deleted and edited rows; `faramesh fleet` reads every
host's decisions in one place.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pylib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from faramesh import SocketTransport  # noqa: E402
from faramesh_testd import BIN, Daemon  # noqa: E402
from fleet_helpers import Postgres, govern_many, outage_and_two_sigkills, status, wait_shipped  # noqa: E402

POLICY = """version: 1
approvals:
  allow_same_uid: true
rules:
  - id: reads
    match: { tool: http, op: get }
    allow: true
  - id: refunds-need-a-person
    match: { tool: stripe, op: refund }
    require_approval: true
  - id: no-shell
    match: { tool: shell }
    deny: true
"""


def fleet(pg: Postgres, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BIN, "fleet", *args, "--url", pg.url], capture_output=True, text=True, timeout=60, check=False)


def test_an_outage_and_two_sigkills_lose_nothing_and_edits_are_named(pg: Postgres, tmp_path: Path) -> None:
    daemon = Daemon.serve(tmp_path, POLICY, args=["--postgres", pg.url, "--export-required", "postgres"])
    try:
        (dest,) = status(daemon)["export"]
        assert dest["target"] == pg.url  # no password here to hide
        s = outage_and_two_sigkills(daemon, pg.stop, pg.start)
        log_id = s["log"]["origin"].removeprefix("faramesh/")
        head = s["log"]["size"]
        assert pg.sql(f"SELECT count(*), min(seq), max(seq) FROM faramesh_entries WHERE log_id = '{log_id}'") == f"{head}|1|{head}"
        assert pg.sql(f"SELECT count(*) FROM faramesh_entries WHERE log_id = '{log_id}' AND kind = 'decision'") == "2000"
        assert int(pg.sql(f"SELECT count(*) FROM faramesh_checkpoints WHERE log_id = '{log_id}'")) >= 1
        assert pg.sql(f"SELECT public_key LIKE 'faramesh/%' FROM faramesh_hosts WHERE log_id = '{log_id}'") == "t"

        ok = daemon.cli("verify-export", "postgres", "--url", pg.url)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.startswith(f"ok: entries 1 to {head} of log {log_id}"), ok.stdout

        # A row deleted and another edited: verify-export names both.
        pg.sql(f"DELETE FROM faramesh_entries WHERE log_id = '{log_id}' AND seq = 700")
        pg.sql(f"UPDATE faramesh_entries SET record = replace(record, '\"PERMIT\"', '\"DENY\"') WHERE log_id = '{log_id}' AND seq = 900")
        bad = daemon.cli("verify-export", "postgres", "--url", pg.url)
        assert bad.returncode == 1, bad.stdout
        assert "missing: entry 700" in bad.stdout, bad.stdout
        assert "altered: entry 900: entry_hash does not match" in bad.stdout, bad.stdout

        # Rewound, the daemon writes them again: the deleted row comes back (the edited one is
        # left as it is, idempotent on (log_id, seq): delete it to have it rewritten).
        pg.sql(f"DELETE FROM faramesh_entries WHERE log_id = '{log_id}' AND seq = 900")
        fixed = daemon.cli("verify-export", "postgres", "--url", pg.url, "--rewind")
        assert "rewound" in fixed.stdout, fixed.stdout
        wait_shipped(daemon)
        again = daemon.cli("verify-export", "postgres", "--url", pg.url)
        assert again.returncode == 0, again.stdout
    finally:
        daemon.stop()


def test_edited_effect_column_fails_verify_export(pg: Postgres, tmp_path: Path) -> None:
    """Regression: rows whose `effect`, `agent_id` or host columns were edited still verified,
    while `fleet list --effect deny` and `fleet pending` answered from the edited columns."""
    daemon = Daemon.serve(tmp_path, POLICY, args=["--postgres", pg.url])
    try:
        govern_many(daemon, 3, 0, agent="edit-bot")
        t = SocketTransport(daemon.socket)
        denied = t.govern({"agent_id": "edit-bot", "tool": "shell", "operation": "exec", "args": {"cmd": "ls"}, "context": {}})
        deferred = t.govern({"agent_id": "edit-bot", "tool": "stripe", "operation": "refund", "args": {"amount": 9}, "context": {}})
        t.close()
        assert (denied["effect"], deferred["effect"]) == ("DENY", "DEFER")
        log_id = wait_shipped(daemon)["log"]["origin"].removeprefix("faramesh/")
        ok = daemon.cli("verify-export", "postgres", "--url", pg.url)
        assert ok.returncode == 0, ok.stdout + ok.stderr

        def seq_of(action_id: str) -> int:
            return int(pg.sql(f"SELECT seq FROM faramesh_entries WHERE log_id = '{log_id}' AND action_id = '{action_id}'"))

        deny_seq, defer_seq = seq_of(denied["action_id"]), seq_of(deferred["action_id"])
        # The columns say PERMIT and another agent; the signed records are untouched.
        pg.sql(f"UPDATE faramesh_entries SET effect = 'PERMIT', agent_id = 'someone-else' WHERE log_id = '{log_id}' AND seq = {deny_seq}")
        pg.sql(f"UPDATE faramesh_entries SET effect = 'PERMIT' WHERE log_id = '{log_id}' AND seq = {defer_seq}")
        pg.sql(f"UPDATE faramesh_hosts SET host = 'elsewhere' WHERE log_id = '{log_id}'")

        bad = daemon.cli("verify-export", "postgres", "--url", pg.url)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        out = bad.stdout
        assert f"altered: entry {deny_seq}: column `agent_id` is `someone-else` where the record says `edit-bot`" in out, out
        assert f"column `effect` is `PERMIT` where the record says `DENY`" in out, out
        assert f"altered: entry {defer_seq}: column `effect` is `PERMIT` where the record says `DEFER`" in out, out
        assert "faramesh_hosts: `host` is `elsewhere`" in out, out
        # The hint names the database, not a file.
        assert "faramesh verify-export postgres --url … --rewind" in out and "--file" not in out, out
        as_json = json.loads(daemon.cli("verify-export", "postgres", "--url", pg.url, "--json").stdout)
        assert not as_json["ok"] and [a[0] for a in as_json["altered"]] == [deny_seq, defer_seq], as_json

        # fleet reads the records: the DENY is still a DENY of edit-bot, the DEFER still pending.
        denies = json.loads(fleet(pg, "list", "--effect", "deny", "--agent", "edit-bot", "--json").stdout)["actions"]
        assert [(d["id"], d["effect"], d["agent_id"]) for d in denies] == [(denied["action_id"], "DENY", "edit-bot")]
        assert json.loads(fleet(pg, "list", "--agent", "someone-else", "--json").stdout)["actions"] == []
        pending = json.loads(fleet(pg, "pending", "--json").stdout)["actions"]
        assert [p["id"] for p in pending if p["agent_id"] == "edit-bot"] == [deferred["action_id"]]
        got = json.loads(fleet(pg, "get", denied["action_id"], "--json").stdout)
        assert got["effect"] == "DENY", got

        # Deleted and sent again (the host row with them), the copy verifies.
        pg.sql(f"DELETE FROM faramesh_entries WHERE log_id = '{log_id}' AND seq IN ({deny_seq}, {defer_seq})")
        fixed = daemon.cli("verify-export", "postgres", "--url", pg.url, "--rewind")
        assert "rewound" in fixed.stdout, fixed.stdout
        wait_shipped(daemon)
        again = daemon.cli("verify-export", "postgres", "--url", pg.url)
        assert again.returncode == 0, again.stdout
    finally:
        daemon.stop()


def test_fleet_reads_every_hosts_decisions(pg: Postgres, tmp_path: Path) -> None:
    hosts = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        hosts.append(Daemon.serve(tmp_path / name, POLICY, args=["--postgres", pg.url]))
    try:
        govern_many(hosts[0], 3, 0, agent="agent-a")
        govern_many(hosts[1], 2, 0, agent="agent-b")
        t = SocketTransport(hosts[1].socket)
        deferred = t.govern({"agent_id": "agent-b", "tool": "stripe", "operation": "refund", "args": {"amount": 40}, "context": {}})
        denied = t.govern({"agent_id": "agent-a", "tool": "shell", "operation": "exec", "args": {"cmd": "ls"}, "context": {}})
        t.close()
        assert (deferred["effect"], denied["effect"]) == ("DEFER", "DENY")
        for h in hosts:
            wait_shipped(h)
        listed = json.loads(fleet(pg, "list", "--json").stdout)["actions"]
        assert {a["agent_id"] for a in listed} >= {"agent-a", "agent-b"}
        assert len({a["log_id"] for a in listed}) >= 2, "two hosts' logs in one place"
        pending = json.loads(fleet(pg, "pending", "--json").stdout)["actions"]
        assert [p["id"] for p in pending if p["agent_id"] == "agent-b"] == [deferred["action_id"]]
        denies = json.loads(fleet(pg, "list", "--effect", "deny", "--agent", "agent-a", "--json").stdout)["actions"]
        assert [d["id"] for d in denies] == [denied["action_id"]]
        got = fleet(pg, "get", deferred["action_id"][:12], "--json")
        assert json.loads(got.stdout)["tool"] == "stripe", got.stdout + got.stderr
        text = fleet(pg, "list", "--limit", "5")
        assert text.returncode == 0 and "HOST" in text.stdout and "agent-" in text.stdout, text.stdout + text.stderr
        # Approved on host b: no longer pending anywhere.
        hosts[1].approve(deferred["approval_id"])
        wait_shipped(hosts[1])
        pending = json.loads(fleet(pg, "pending", "--json").stdout)["actions"]
        assert all(p["id"] != deferred["action_id"] for p in pending)
    finally:
        for h in hosts:
            h.stop()


def test_init_db_creates_the_tables(pg: Postgres) -> None:
    out = fleet(pg, "init-db")
    assert out.returncode == 0, out.stderr
    assert "faramesh_entries" in out.stdout
    tables = pg.sql("SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_name LIKE 'faramesh_%'")
    assert tables.split(",") == [
        "faramesh_approval_decisions",
        "faramesh_checkpoints",
        "faramesh_entries",
        "faramesh_fleet_counters",
        "faramesh_host_policy",
        "faramesh_hosts",
        "faramesh_policy_bundles",
    ], tables
