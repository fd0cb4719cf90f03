"""Decisions leaving the host over OTLP/HTTP, at least once and provably complete.

A receiver here decodes each request with the official protobuf definitions (the
`opentelemetry-proto` package) and writes it as OTLP/JSON lines, as an OpenTelemetry Collector's
file exporter does; it can be stopped and started again on the same port. The daemon is the
real `faramesh serve`, SIGKILLed mid-stream; `faramesh verify-export` checks the copy.
"""

from __future__ import annotations

import json
import os
import ssl
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
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pylib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from faramesh import GovernedToolSet, SocketTransport  # noqa: E402
from faramesh_testd import BIN, Daemon, free_port, pki  # noqa: E402
from fleet_helpers import govern_many, outage_and_two_sigkills, status, wait_shipped  # noqa: E402

POLICY = """version: 1
rules:
  - id: reads
    match: { tool: http, op: get }
    allow: true
  - id: lookups
    match: { tool: lookup }
    allow: true
"""


class Receiver:
    """An OTLP/HTTP logs endpoint: protobuf in, OTLP/JSON lines out (one request per line).
    With `tls` (`(ca, cert, key)`), HTTPS that requires a client certificate the CA issued."""

    def __init__(self, out: Path, tls: tuple[str, str, str] | None = None) -> None:
        self.out = out
        self.tls = tls
        self.port = free_port()
        self.server: ThreadingHTTPServer | None = None
        self.records: list[dict[str, Any]] = []  # seq, log_id, trace_id, span_id, attributes
        self.lock = threading.Lock()
        self.content_types: set[str] = set()

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                req = ExportLogsServiceRequest()
                req.ParseFromString(body)
                with receiver.lock:
                    receiver.content_types.add(self.headers["content-type"])
                    with receiver.out.open("a") as f:
                        f.write(json.dumps(MessageToDict(req)) + "\n")
                    for rl in req.resource_logs:
                        res = {a.key: a.value.string_value for a in rl.resource.attributes}
                        for sl in rl.scope_logs:
                            for r in sl.log_records:
                                attrs = {a.key: a.value for a in r.attributes}
                                receiver.records.append(
                                    {
                                        "seq": attrs["faramesh.seq"].int_value,
                                        "log_id": res["faramesh.log_id"],
                                        "service": res.get("service.name"),
                                        "trace_id": r.trace_id.hex(),
                                        "span_id": r.span_id.hex(),
                                        "kind": attrs["faramesh.kind"].string_value,
                                        "tool": attrs["faramesh.tool"].string_value if "faramesh.tool" in attrs else None,
                                        "body": r.body.string_value,
                                    }
                                )
                answer = ExportLogsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            ca, cert, key = self.tls
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            ctx.load_verify_locations(ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def seqs(self, log_id: str) -> set[int]:
        with self.lock:
            return {r["seq"] for r in self.records if r["log_id"] == log_id}


@pytest.fixture
def setup() -> Iterator[tuple[Path, Receiver, Daemon]]:
    with tempfile.TemporaryDirectory(prefix="fm-otlp-") as t:
        tmp = Path(t)
        receiver = Receiver(tmp / "collector.jsonl")
        receiver.start()
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
            "OTEL_SERVICE_NAME": "faramesh-test",
        }
        (tmp / "d").mkdir()
        daemon = Daemon.serve(tmp / "d", POLICY, env=env, args=["--export-required", "otlp"])
        try:
            yield tmp, receiver, daemon
        finally:
            daemon.stop()
            receiver.stop()


def without_first(line: str, n: int) -> str:
    """A request (an OTLP/JSON line) without its copies of entries 1 to `n`."""
    req = json.loads(line)
    for rl in req["resourceLogs"]:
        for sl in rl["scopeLogs"]:
            sl["logRecords"] = [
                r for r in sl["logRecords"] if int(next(a["value"]["intValue"] for a in r["attributes"] if a["key"] == "faramesh.seq")) > n
            ]
    return json.dumps(req)


def verify(daemon: Daemon, file: Path, *more: str) -> subprocess.CompletedProcess[str]:
    return daemon.cli("verify-export", "otlp", "--file", str(file), *more)


def test_an_outage_and_two_sigkills_lose_nothing_and_verify_export_proves_it(setup: tuple[Path, Receiver, Daemon]) -> None:
    tmp, receiver, daemon = setup
    (otlp,) = status(daemon)["export"]
    assert otlp["required"] is True
    s = outage_and_two_sigkills(daemon, receiver.stop, receiver.start)
    log_id = s["log"]["origin"].removeprefix("faramesh/")
    head = s["log"]["size"]
    assert head >= 2000
    assert receiver.seqs(log_id) == set(range(1, head + 1)), "every entry arrived"
    decisions = [r for r in receiver.records if r["kind"] == "decision" and r["log_id"] == log_id]
    assert len({json.loads(r["body"])["id"] for r in decisions}) == 2000
    assert receiver.content_types == {"application/x-protobuf"}
    assert {r["service"] for r in receiver.records} == {"faramesh-test"}

    ok = verify(daemon, receiver.out)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith(f"ok: entries 1 to {head} of log {log_id}"), ok.stdout

    # A copy with an edited record and lost entries: verify-export names them.
    lines = receiver.out.read_text().splitlines()
    edited = tmp / "edited.jsonl"
    edited.write_text("\n".join(line.replace('example.com/100\\"', 'example.org/100\\"') for line in lines) + "\n")
    assert edited.read_text() != receiver.out.read_text()  # one decision's URL changed
    bad = verify(daemon, edited)
    assert bad.returncode == 1, bad.stdout
    assert "altered: entry" in bad.stdout and "entry_hash does not match" in bad.stdout, bad.stdout
    short = tmp / "short.jsonl"
    short.write_text("\n".join(without_first(line, 10) for line in lines) + "\n")  # entries 1-10 never arrived
    missing = verify(daemon, short, "--json")
    report = json.loads(missing.stdout)
    assert missing.returncode == 1 and report["ok"] is False and report["missing"] == [[1, 10]], report

    # --rewind: the daemon sends them again, and the live copy stays complete.
    rewind = verify(daemon, short, "--rewind")
    assert "rewound: the daemon sends entries after 0 again" in rewind.stdout, rewind.stdout
    before = len(receiver.records)
    wait_shipped(daemon)
    assert len(receiver.records) >= before + head, "everything was sent again"
    assert verify(daemon, receiver.out).returncode == 0


def test_retention_waits_for_a_required_destination(setup: tuple[Path, Receiver, Daemon]) -> None:
    _, receiver, daemon = setup
    govern_many(daemon, 50, 0)
    wait_shipped(daemon)
    receiver.stop()
    govern_many(daemon, 50, 50)
    cursor = status(daemon)["export"][0]["cursor"]
    out = daemon.cli("log", "prune", "--keep-last", "1", "--force", "--dry-run", "--json", "--state-dir", str(daemon.state))
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)["plan"]
    assert plan["first_kept_seq"] <= cursor + 1, (plan, cursor)
    assert plan["held_for_export"] == cursor + 1, plan


def test_a_traceparent_from_the_python_sdk_is_on_the_exported_record(setup: tuple[Path, Receiver, Daemon]) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    _, receiver, daemon = setup
    tracer = TracerProvider().get_tracer("agent")

    def lookup(key: str) -> str:
        return f"value of {key}"

    tools = GovernedToolSet([lookup], agent_id="traced-agent", transport=SocketTransport(daemon.socket))
    with tracer.start_as_current_span("agent-step") as span:
        assert tools.by_name("lookup")("k1") == "value of k1"
        ctx = span.get_span_context()
    s = wait_shipped(daemon)
    log_id = s["log"]["origin"].removeprefix("faramesh/")
    (rec,) = [r for r in receiver.records if r["tool"] == "lookup" and r["log_id"] == log_id]
    assert rec["trace_id"] == f"{ctx.trace_id:032x}"
    assert rec["span_id"] == f"{ctx.span_id:016x}"
    assert json.loads(rec["body"])["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def refused_start(tmp_path: Path, env: dict[str, str]) -> str:
    """`faramesh serve` with `env` added, expected to refuse to start: its stderr."""
    (tmp_path / "policy.yaml").write_text(POLICY)
    out = subprocess.run(
        [BIN, "serve", "--policy", str(tmp_path / "policy.yaml"), "--socket", str(tmp_path / "s.sock"), "--state-dir", str(tmp_path / "st"), "--listen", "off"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode != 0, out.stderr
    return out.stderr


def test_the_standard_variables_are_checked_at_start(tmp_path: Path) -> None:
    err = refused_start(tmp_path, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert "OTEL_EXPORTER_OTLP_PROTOCOL `grpc` is not supported" in err, err


def wait_error(daemon: Daemon, timeout: float = 30) -> dict[str, Any]:
    """The destination's status once a batch failed."""
    deadline = time.time() + timeout
    while True:
        (dest,) = status(daemon)["export"]
        if dest["errors"] > 0:
            return dict(dest)
        assert time.time() < deadline, dest
        time.sleep(0.2)


def test_https_with_a_private_ca_and_a_client_certificate(tmp_path: Path) -> None:
    f = pki(tmp_path)
    receiver = Receiver(tmp_path / "collector.jsonl", tls=(f["ca"], f["server"], f["server-key"]))
    receiver.start()
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"https://127.0.0.1:{receiver.port}"}
    mtls = {
        **endpoint,
        "OTEL_EXPORTER_OTLP_CERTIFICATE": f["ca"],
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": f["client"],
        "OTEL_EXPORTER_OTLP_CLIENT_KEY": f["client-key"],
    }
    daemons = []
    try:
        # Trusting the CA and presenting the client certificate: everything arrives.
        (tmp_path / "ok").mkdir()
        ok = Daemon.serve(tmp_path / "ok", POLICY, env=mtls)
        daemons.append(ok)
        govern_many(ok, 20, 0)
        s = wait_shipped(ok)
        log_id = s["log"]["origin"].removeprefix("faramesh/")
        assert receiver.seqs(log_id) == set(range(1, s["log"]["size"] + 1))

        # The collector's CA not trusted: the certificate is refused, nothing is acknowledged.
        (tmp_path / "untrusted").mkdir()
        untrusted = Daemon.serve(tmp_path / "untrusted", POLICY, env=endpoint)
        daemons.append(untrusted)
        govern_many(untrusted, 3, 0)
        dest = wait_error(untrusted)
        assert dest["cursor"] == 0 and "UnknownIssuer" in dest["last_error"], dest

        # The CA trusted but no client certificate: the collector refuses the connection.
        (tmp_path / "anonymous").mkdir()
        anonymous = Daemon.serve(tmp_path / "anonymous", POLICY, env={**endpoint, "OTEL_EXPORTER_OTLP_CERTIFICATE": f["ca"]})
        daemons.append(anonymous)
        govern_many(anonymous, 3, 0)
        dest = wait_error(anonymous)
        assert dest["cursor"] == 0 and "CertificateRequired" in dest["last_error"], dest
        for d in (untrusted, anonymous):
            assert not receiver.seqs(status(d)["log"]["origin"].removeprefix("faramesh/")), "nothing got through"
    finally:
        for d in daemons:
            d.stop()
        receiver.stop()


def test_a_client_certificate_without_its_key_stops_the_start(tmp_path: Path) -> None:
    f = pki(tmp_path)
    err = refused_start(tmp_path, {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:1", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": f["client"]})
    assert "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE is set without its pair" in err, err
