"""The real `faramesh` daemon for the Python test suites (our SDK's, the MCP gateway's, the
dashboard's and the compatibility checks against the published SDK): one way to start it on a
temporary socket and state dir, wait for it, talk to it with the CLI, and stop it.

Nothing of ours is mocked. The binary is `$FARAMESH_BIN`, else `target/debug/faramesh` of this
checkout. Each suite puts this folder on `sys.path` (a line in its conftest or script).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("FARAMESH_BIN") or str(ROOT / "target" / "debug" / "faramesh")


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(connect: Callable[[], None], proc: subprocess.Popen[Any], timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"exited {proc.returncode} before {what}")
        try:
            connect()
            return
        except OSError:
            if time.time() > deadline:
                raise RuntimeError(f"not {what} after {timeout:g} s") from None
            time.sleep(0.05)


def wait_port(port: int, proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    """Waits until something accepts on 127.0.0.1:`port`; fails if `proc` exits first."""

    def connect() -> None:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()

    _wait(connect, proc, timeout, f"listening on {port}")


def wait_socket(path: str, proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    """Waits until the daemon accepts on its Unix socket; fails if it exits first."""

    def connect() -> None:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)

    _wait(connect, proc, timeout, f"serving {path}")


@dataclass
class Daemon:
    """`faramesh serve` on a temporary socket and state dir, optionally with its HTTP(S) listener."""

    dir: Path
    policy: Path
    socket: str
    state: Path
    url: str | None = None
    cert: str | None = None
    port: int | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def serve(
        cls,
        tmp: Path,
        policy: str,
        *,
        listen: bool = False,
        tls: bool = False,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> Daemon:
        """Writes `policy` into `tmp` and starts the daemon there; with `listen`, also its HTTP
        listener on a free loopback port (`tls`: a self-signed certificate)."""
        (tmp / "policy.yaml").write_text(policy)
        d = cls(dir=tmp, policy=tmp / "policy.yaml", socket=str(tmp / "f.sock"), state=tmp / "state")
        d.env = dict(env or {})
        d.args = list(args or [])
        if listen:
            d.port = free_port()
            d.args += ["--listen", f"127.0.0.1:{d.port}"]
            d.url = f"{'https' if tls else 'http'}://127.0.0.1:{d.port}"
            if tls:
                d.args += ["--tls", "self-signed"]
                d.cert = str(d.state / "tls" / "cert.pem")
        d.start()
        return d

    def start(self) -> None:
        with open(self.dir / "daemon.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    BIN,
                    "serve",
                    "--policy",
                    str(self.policy),
                    "--socket",
                    self.socket,
                    "--state-dir",
                    str(self.state),
                    *self.args,
                ],
                env={**os.environ, **self.env},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            wait_socket(self.socket, self.proc)
            if self.port is not None:
                wait_port(self.port, self.proc)
        except RuntimeError as e:
            raise RuntimeError(f"{e}: {(self.dir / 'daemon.log').read_text()}") from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The operator's CLI against this daemon (another process)."""
        return subprocess.run(
            [BIN, *args, "--socket", self.socket], capture_output=True, text=True, timeout=30, check=False
        )

    def approve(self, approval_id: str) -> None:
        out = self.cli("approve", approval_id)
        assert out.returncode == 0, out.stderr

    def deny(self, approval_id: str) -> None:
        out = self.cli("deny", approval_id)
        assert out.returncode == 0, out.stderr

    def actions(self, **params: Any) -> list[dict[str, Any]]:
        flags = [part for k, v in params.items() for part in (f"--{k.replace('_', '-')}", str(v))]
        out = self.cli("list", "--json", *flags)
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        return list(data["actions"] if isinstance(data, dict) else data)


def pki(tmp: Path) -> dict[str, str]:
    """A private CA (openssl) and two certificates it issued, in `tmp` (made once): a server's
    for 127.0.0.1 and a client's. Keys `ca`, `server`, `server-key`, `client`, `client-key`."""
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    f = {n: str(tmp / f"{n}.pem") for n in ("ca", "ca-key", "server", "server-key", "client", "client-key")}
    if all(Path(p).exists() for p in f.values()):
        return f
    run("req", "-x509", *ec, "-keyout", f["ca-key"], "-out", f["ca"], "-days", "1", "-subj", "/CN=test CA")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        csr, extfile = tmp / f"{name}.csr", tmp / f"{name}.ext"
        extfile.write_text(f"{ext}\nbasicConstraints=CA:FALSE\n")
        run("req", *ec, "-keyout", f[f"{name}-key"], "-out", str(csr), "-subj", f"/CN={name}")
        run("x509", "-req", "-in", str(csr), "-CA", f["ca"], "-CAkey", f["ca-key"], "-CAcreateserial",
            "-out", f[name], "-days", "1", "-extfile", str(extfile))
    return f
