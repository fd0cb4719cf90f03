"""The container image, run the way the docs say: `faramesh init-docker` next to a policy, then
`podman-compose up -d` (the compose.yaml it wrote, built FROM scratch from this faramesh), and
the image built by `scripts/container-image.sh`.

Needs FARAMESH_BIN (the binary under test), podman and podman-compose; CONTAINERS_CONF may point
podman at a configuration for this machine (scripts/test.sh writes one).
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pylib"))
from faramesh_testd import free_port  # noqa: E402

import pytest

BIN = os.environ["FARAMESH_BIN"]
IMAGE = os.environ.get("FARAMESH_IMAGE", "localhost/faramesh-ci:test")


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def request(port: int, method: str, path: str, body: object = None,
            token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def wait_healthy(port: int, logs: object) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if request(port, "GET", "/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the container never answered /health on {port}: {logs}")


class Project:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.name = "fmci" + secrets.token_hex(4)
        tokens = dict(line.split("=", 1) for line in (root / ".env").read_text().splitlines()
                      if line and not line.startswith("#"))
        self.agent = tokens["FARAMESH_TOKEN"]
        self.approver = tokens["FARAMESH_APPROVER_TOKEN"]

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # BUILDAH_FORMAT=docker: podman builds OCI images otherwise, which carry no HEALTHCHECK.
        env = {**os.environ, "FARAMESH_PORT": str(self.port), "BUILDAH_FORMAT": "docker"}
        return run("podman-compose", "-p", self.name, *args, cwd=self.root, env=env, check=check)

    @property
    def container(self) -> str:
        return f"{self.name}_faramesh_1"

    def exec(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run("podman", "exec", self.container, "/usr/local/bin/faramesh", *args, check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("compose")
    written = run(BIN, "init-docker", "--dir", str(root))
    assert "fresh random tokens" in written.stdout, written.stdout
    assert (root / "policies/default.yaml").is_file()
    assert oct((root / ".env").stat().st_mode & 0o777) == "0o600"
    p = Project(root, free_port())
    p.compose("up", "-d")
    try:
        wait_healthy(p.port, p.compose("logs", check=False).stdout)
        yield p
    finally:
        p.compose("down", "-v", check=False)
        run("podman", "rmi", "-f", "faramesh:local", check=False)


def test_compose_serves_health_and_the_dashboard_page(project: Project) -> None:
    status, _, body = request(project.port, "GET", "/health")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    status, _, page = request(project.port, "GET", "/")
    assert status == 200 and b"Faramesh" in page
    status, headers, _ = request(project.port, "POST", "/v1/session", {"token": project.approver})
    assert status == 200 and "faramesh_session=" in headers.get("set-cookie", ""), (status, headers)


def test_calls_need_a_token_and_are_decided_by_the_mounted_policy(project: Project) -> None:
    call = {"agent_id": "c", "tool": "http", "operation": "get", "params": {"url": "https://example.com"}}
    assert request(project.port, "POST", "/v1/actions", call)[0] == 401
    status, _, body = request(project.port, "POST", "/v1/actions", call, token=project.agent)
    action = json.loads(body)
    assert status == 200 and action["status"] == "allowed", body
    lines = (project.root / "policies/default.yaml").read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.strip() == "- id: http-read")
    assert action["rule_ref"] == f"/app/policies/default.yaml:{line}", action
    rm = {"agent_id": "c", "tool": "shell", "operation": "exec", "params": {"cmd": "rm -rf /"}}
    status, _, body = request(project.port, "POST", "/v1/actions", rm, token=project.agent)
    assert json.loads(body)["status"] == "denied", body


def test_a_deferred_call_is_approved_by_the_approver_token_only(project: Project) -> None:
    ls = {"agent_id": "c", "tool": "shell", "operation": "exec", "params": {"cmd": "ls -la"}}
    _, _, body = request(project.port, "POST", "/v1/actions", ls, token=project.agent)
    action = json.loads(body)
    assert action["status"] == "pending_approval", body
    path = f"/v1/actions/{action['id']}/approval"
    assert request(project.port, "POST", path, {"approve": True}, token=project.agent)[0] == 403
    status, _, body = request(project.port, "POST", path, {"approve": True, "reason": "ok"}, token=project.approver)
    assert status == 200 and json.loads(body)["status"] == "approved", body


def test_the_daemon_runs_as_the_image_user_and_its_healthcheck_passes(project: Project) -> None:
    status = project.exec("status", "--json")
    assert status.returncode == 0, status
    info = json.loads(status.stdout)
    assert info["uid"] == 10001 and info["pid"] == 1, info
    assert info["http"]["loopback"] is False and info["http"]["anonymous_agents"] is False, info
    health = run("podman", "healthcheck", "run", project.container, check=False)
    assert health.returncode == 0, health


def test_the_log_survives_a_restart_in_its_volume_and_verifies(project: Project) -> None:
    call = {"agent_id": "restart", "tool": "http", "operation": "get", "params": {"url": "https://example.com"}}
    _, _, body = request(project.port, "POST", "/v1/actions", call, token=project.agent)
    action_id = json.loads(body)["id"]
    project.compose("restart")
    wait_healthy(project.port, project.compose("logs", check=False).stdout)
    status, _, body = request(project.port, "GET", f"/v1/actions/{action_id}", token=project.approver)
    assert status == 200 and json.loads(body)["id"] == action_id, body
    verify = project.exec("verify-log")
    assert verify.returncode == 0, verify


def test_the_image_refuses_to_start_without_a_token() -> None:
    done = run("podman", "run", "--rm", IMAGE, check=False, timeout=60)
    assert done.returncode != 0, done
    assert "FARAMESH_TOKEN" in done.stderr, done.stderr


def test_the_script_built_image_governs_a_call_on_the_host_network() -> None:
    port = free_port()
    name = "fmci" + secrets.token_hex(4)
    run("podman", "run", "-d", "--name", name, "--network", "host",
        "-e", f"FARAMESH_LISTEN=127.0.0.1:{port}", "-e", "FARAMESH_TOKEN=agent-secret", IMAGE)
    try:
        wait_healthy(port, run("podman", "logs", name, check=False).stderr)
        call = {"agent_id": "h", "tool": "shell", "operation": "exec", "params": {"cmd": "mkfs /dev/sda"}}
        status, _, body = request(port, "POST", "/v1/actions", call, token="agent-secret")
        assert status == 200 and json.loads(body)["rule_id"] == "shell-destructive", body
    finally:
        run("podman", "rm", "-f", "-v", name, check=False)
