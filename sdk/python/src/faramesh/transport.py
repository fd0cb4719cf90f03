"""How the SDK talks to the daemon: the Unix socket (JSON-RPC, one line a message) or HTTP(S).

Both transports offer the same operations, so everything above them (GovernedToolSet, the
functional API, the client class) is written once. Selection (:func:`auto_transport`), in the
order the docs give: `FARAMESH_REMOTE_URL` (HTTPS `POST /v1/evaluate`), `FARAMESH_SOCKET`,
`FARAMESH_BASE_URL` / `FARAMESH_URL` (the v1 API), then the default socket path.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import json
import logging
import os
import socket
import ssl
import threading
import time
import urllib.parse
from abc import ABC, abstractmethod
from typing import Any

from .errors import (
    ConflictError,
    DaemonUnreachableError,
    FarameshError,
    FarameshTimeoutError,
    InvalidRequestError,
    NotFoundError,
    UnauthorizedError,
)

log = logging.getLogger("faramesh")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

DEFAULT_SOCKET = "~/.faramesh/runtime/faramesh.sock"


class Transport(ABC):
    """One connection to the daemon. Thread-safe; share one per process."""

    #: "socket", "http" or "stub"
    kind: str = ""
    #: where it connects (a path or a URL), for messages
    target: str = ""

    @abstractmethod
    def govern(self, call: dict[str, Any]) -> dict[str, Any]:
        """Decide and record `call`; the decision (with `action_id`)."""

    @abstractmethod
    def decide(self, call: dict[str, Any]) -> dict[str, Any]:
        """The decision for `call`, recorded nowhere."""

    @abstractmethod
    def wait_approval(self, decision: dict[str, Any], timeout_seconds: float) -> str:
        """Waits for the approval a DEFER `decision` created: `approved`, `denied`, `expired`, or
        `pending` when `timeout_seconds` passed first."""

    @abstractmethod
    def get_action(self, action_id: str) -> dict[str, Any]:
        """One action (v1 shape)."""

    @abstractmethod
    def list_actions(self, **filters: Any) -> list[dict[str, Any]]:
        """Actions, newest first (v1 shape)."""

    @abstractmethod
    def decide_approval(self, action_id: str, approve: bool, reason: str | None = None) -> dict[str, Any]:
        """Approves or denies the pending approval of an action (approver credentials only)."""

    @abstractmethod
    def start_action(self, action_id: str) -> dict[str, Any]:
        """`allowed|approved -> executing`."""

    @abstractmethod
    def get_events(self, action_id: str) -> list[dict[str, Any]]:
        """The action's timeline (v1 events: `created`, `decision_made`, `approved`, `started`, ...)."""

    @abstractmethod
    def report_result(
        self, action_id: str, success: bool, result: Any = None, error: str | None = None
    ) -> dict[str, Any]:
        """`executing -> succeeded|failed`."""

    @abstractmethod
    def submit(self, call: dict[str, Any]) -> dict[str, Any]:
        """Decide and record `call`, answered as the v1 action it became (`status`,
        `decision`, `id`, ...): the daemon builds that shape on both doors."""

    async def agovern(self, call: dict[str, Any]) -> dict[str, Any]:
        """:meth:`govern` without blocking the event loop."""
        return await asyncio.to_thread(self.govern, call)

    async def await_approval(self, decision: dict[str, Any], timeout_seconds: float) -> str:
        """:meth:`wait_approval` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_approval, decision, timeout_seconds)

    def check_result(self, action_id: str, result: Any) -> dict[str, Any]:
        """Has the daemon's `results:` rules read a permitted call's result: `{verdict, result,
        rule_id, reason, findings}` (`result` is what to hand on; none for `deny`)."""
        raise InvalidRequestError(f"the {self.kind or 'this'} transport cannot have results checked", field="result")

    def wait_for_approval(self, decision: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        """:meth:`wait_approval`, answered as `{"status", "edit"}`: `edit` is the approver's
        change to the call (`{"params": {...}, ...}`) when it was approved with edits."""
        return {"status": self.wait_approval(decision, timeout_seconds), "edit": None}

    async def await_for_approval(self, decision: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        """:meth:`wait_for_approval` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for_approval, decision, timeout_seconds)

    def close(self) -> None:  # noqa: B027 (optional to override)
        """Closes the connection (a later call reconnects)."""


def _waited(approval: dict[str, Any]) -> dict[str, Any]:
    """`approval.wait`'s answer as `{"status", "edit"}`."""
    if approval.get("timed_out"):
        return {"status": "pending", "edit": None}
    edit = approval.get("edit")
    return {"status": str(approval.get("status")), "edit": edit if isinstance(edit, dict) else None}


def _rpc_error(error: dict[str, Any], method: str) -> FarameshError:
    code = error.get("code")
    message = str(error.get("message") or "error")
    data = error.get("data") if isinstance(error.get("data"), dict) else {}
    if code == -32602:
        return InvalidRequestError(message, field=(data or {}).get("field"))
    if code == -32001:
        return UnauthorizedError(message)
    if code == -32002:
        return NotFoundError(message)
    if code == -32003:
        return ConflictError(message)
    if code == -32601:
        return FarameshError(f"the daemon does not know `{method}` (older version?): {message}")
    return FarameshError(f"{method}: {message} (code {code})")


class _Slot:
    """Where one request's reply (or the connection's failure) lands."""

    __slots__ = ("error", "reply")

    def __init__(self) -> None:
        self.reply: dict[str, Any] | None = None
        self.error: str | None = None

    def done(self) -> bool:
        return self.reply is not None or self.error is not None


class _Connection:
    """One socket connection shared by every thread. Requests are written under a lock and
    answered by id. There is no reader thread: a caller waiting for its reply reads the socket
    itself when nobody else is, handing other callers' replies to them, so a lone caller pays no
    thread hand-off."""

    def __init__(self, path: str, timeout: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.pending: dict[int, _Slot] = {}
        self.write_lock = threading.Lock()
        self.state = threading.Condition()
        self.reading = False
        self.alive = True
        self.buffer = bytearray()

    def _fail(self, why: str) -> None:
        with self.state:
            self.alive = False
            waiting = list(self.pending.values())
            self.pending.clear()
            for slot in waiting:
                slot.error = why
            self.state.notify_all()

    def send(self, msg_id: int, line: bytes) -> _Slot:
        slot = _Slot()
        with self.state:
            if not self.alive:
                raise DaemonUnreachableError("connection closed")
            self.pending[msg_id] = slot
        with self.write_lock:
            try:
                self.sock.sendall(line)
            except OSError as e:
                self._fail(f"cannot send: {e}")
                raise DaemonUnreachableError(f"cannot send: {e}") from e
        return slot

    def _dispatch(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            return
        if not isinstance(msg, dict) or "id" not in msg:
            return
        with self.state:
            slot = self.pending.pop(msg["id"], None)
            if slot is not None:
                slot.reply = msg
                self.state.notify_all()

    def _read_until(self, slot: _Slot, deadline: float) -> None:
        """Reads and dispatches replies until `slot` is answered or the deadline passes."""
        while not slot.done():
            newline = self.buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self.buffer[:newline])
                del self.buffer[: newline + 1]
                self._dispatch(line)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return
            except OSError as e:
                self._fail(f"connection lost: {e}")
                return
            if not chunk:
                self._fail("the daemon closed the connection")
                return
            self.buffer += chunk

    def wait(self, slot: _Slot, timeout: float) -> dict[str, Any] | None:
        """The reply, or None when `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while not slot.done():
            with self.state:
                if slot.done():
                    break
                if self.reading or not self.alive:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self.state.wait(remaining)
                    continue
                self.reading = True
            try:
                self._read_until(slot, deadline)
            finally:
                with self.state:
                    self.reading = False
                    self.state.notify_all()
            if not slot.done() and time.monotonic() >= deadline:
                return None
        if slot.error is not None:
            raise DaemonUnreachableError(slot.error)
        return slot.reply

    def forget(self, msg_id: int) -> None:
        with self.state:
            self.pending.pop(msg_id, None)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class SocketTransport(Transport):
    """JSON-RPC over the daemon's Unix socket: one persistent connection per transport, shared by
    every thread (requests are pipelined and answered by id), reconnected after a daemon restart.
    """

    kind = "socket"

    def __init__(self, path: str | None = None, timeout_seconds: float = 10.0) -> None:
        self.path = os.path.expanduser(path or os.environ.get("FARAMESH_SOCKET") or DEFAULT_SOCKET)
        self.target = self.path
        self.timeout_seconds = timeout_seconds
        self._conn: _Connection | None = None
        self._connect_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._ever_connected = False

    def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.alive:
            return conn
        with self._connect_lock:
            conn = self._conn
            if conn is not None and conn.alive:
                return conn
            if conn is not None:
                conn.close()
            try:
                conn = _Connection(self.path, self.timeout_seconds)
            except OSError as e:
                raise DaemonUnreachableError(
                    f"cannot reach the faramesh daemon at `{self.path}` ({e.strerror or e}); start it with "
                    "`faramesh dev` or `faramesh serve`, or set FARAMESH_SOCKET to its socket"
                ) from e
            log.info("faramesh: %s socket %s", "reconnected to" if self._ever_connected else "connected to", self.path)
            self._ever_connected = True
            self._conn = conn
            return conn

    def _send(self, method: str, params: dict[str, Any]) -> tuple[_Connection, int, _Slot]:
        msg_id = next(self._ids)
        line = (_dumps({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}) + "\n").encode()
        for attempt in (1, 2):
            conn = self._connection()
            try:
                return conn, msg_id, conn.send(msg_id, line)
            except DaemonUnreachableError:
                if attempt == 2:
                    raise
                log.warning("faramesh: the socket connection broke; reconnecting")
        raise DaemonUnreachableError(self.path)  # pragma: no cover

    def call(self, method: str, params: dict[str, Any], timeout: float | None = None) -> Any:
        """One JSON-RPC call; the `result`, or the mapped error. A connection lost before the
        reply is retried once on a new connection."""
        wait = self.timeout_seconds if timeout is None else timeout
        for attempt in (1, 2):
            conn, msg_id, slot = self._send(method, params)
            try:
                reply = conn.wait(slot, wait)
            except DaemonUnreachableError:
                if attempt == 2:
                    raise
                log.warning("faramesh: lost the connection during `%s`; retrying once", method)
                continue
            if reply is None:
                conn.forget(msg_id)
                raise FarameshTimeoutError(f"the daemon at `{self.path}` did not answer `{method}` within {wait:g} s")
            if "error" in reply:
                raise _rpc_error(reply["error"], method)
            return reply.get("result")
        raise DaemonUnreachableError(self.path)  # pragma: no cover

    async def acall(self, method: str, params: dict[str, Any], timeout: float | None = None) -> Any:
        """:meth:`call` for async code, on a worker thread (the event loop never blocks)."""
        return await asyncio.to_thread(self.call, method, params, timeout)

    def govern(self, call: dict[str, Any]) -> dict[str, Any]:
        return dict(self.call("govern", call))

    async def agovern(self, call: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.acall("govern", call))

    def decide(self, call: dict[str, Any]) -> dict[str, Any]:
        return dict(self.call("decide", call))

    def _wait_params(self, decision: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        approval_id = decision.get("approval_id") or decision.get("defer_token")
        if not approval_id:
            raise InvalidRequestError("the decision has no approval_id to wait for", field="approval_id")
        return {"approval_id": approval_id, "timeout_seconds": max(0.0, min(timeout_seconds, 3600.0))}

    def wait_approval(self, decision: dict[str, Any], timeout_seconds: float) -> str:
        return str(self.wait_for_approval(decision, timeout_seconds)["status"])

    def wait_for_approval(self, decision: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        params = self._wait_params(decision, timeout_seconds)
        approval = self.call("approval.wait", params, timeout=timeout_seconds + self.timeout_seconds)
        return _waited(approval)

    async def await_for_approval(self, decision: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        params = self._wait_params(decision, timeout_seconds)
        approval = await self.acall("approval.wait", params, timeout=timeout_seconds + self.timeout_seconds)
        return _waited(approval)

    async def await_approval(self, decision: dict[str, Any], timeout_seconds: float) -> str:
        params = self._wait_params(decision, timeout_seconds)
        approval = await self.acall("approval.wait", params, timeout=timeout_seconds + self.timeout_seconds)
        return "pending" if approval.get("timed_out") else str(approval.get("status"))

    def submit(self, call: dict[str, Any]) -> dict[str, Any]:
        return dict(self.call("action.submit", call))

    def check_result(self, action_id: str, result: Any) -> dict[str, Any]:
        return dict(self.call("result.check", {"action_id": action_id, "result": result}))

    def get_action(self, action_id: str) -> dict[str, Any]:
        return dict(self.call("action.get", {"id": action_id, "format": "v1"}))

    def list_actions(self, **filters: Any) -> list[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v is not None}
        params["format"] = "v1"
        return list(self.call("action.list", params).get("actions", []))

    def decide_approval(self, action_id: str, approve: bool, reason: str | None = None) -> dict[str, Any]:
        action = self.call("action.get", {"id": action_id})
        approval_id = action.get("approval_id")
        if not approval_id:
            raise ConflictError(f"action `{action_id}` awaits no approval")
        params: dict[str, Any] = {"approval_id": approval_id}
        if reason is not None:
            params["reason"] = reason
        result: dict[str, Any] = self.call("approval.approve" if approve else "approval.deny", params)
        return result

    def start_action(self, action_id: str) -> dict[str, Any]:
        return dict(self.call("action.start", {"id": action_id, "format": "v1"}))

    def get_events(self, action_id: str) -> list[dict[str, Any]]:
        return list(self.call("action.events", {"id": action_id, "format": "v1"}))

    def report_result(
        self, action_id: str, success: bool, result: Any = None, error: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"id": action_id, "success": success, "format": "v1"}
        if result is not None:
            params["result"] = result
        if error is not None:
            params["error"] = error
        return dict(self.call("action.result", params))

    def close(self) -> None:
        with self._connect_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class HttpTransport(Transport):
    """The daemon's HTTP(S) listener: `POST /v1/evaluate` to govern, the v1 actions API for the
    rest. Keep-alive connections, one per thread. `cafile` (or `FARAMESH_CA_CERT`) trusts a
    self-signed certificate, e.g. `<state dir>/tls/cert.pem`."""

    kind = "http"

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout_seconds: float = 10.0,
        cafile: str | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise InvalidRequestError(f"`{url}` is not an http(s) URL", field="url")
        self.url = url.rstrip("/")
        self.target = self.url
        self._parsed = parsed
        self._prefix = parsed.path.rstrip("/")
        self.token = token if token is not None else env_token()
        self.timeout_seconds = timeout_seconds
        self._ssl: ssl.SSLContext | None = None
        if parsed.scheme == "https":
            self._ssl = ssl.create_default_context(cafile=cafile or os.environ.get("FARAMESH_CA_CERT") or None)
        self._local = threading.local()

    def _conn(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and not fresh:
            return conn
        if conn is not None:
            conn.close()
        host = self._parsed.hostname or "localhost"
        if self._ssl is not None:
            conn = http.client.HTTPSConnection(
                host, self._parsed.port or 443, timeout=self.timeout_seconds, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(host, self._parsed.port or 80, timeout=self.timeout_seconds)
        self._local.conn = conn
        return conn

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One request; the JSON reply, or the mapped error."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in (1, 2):
            conn = self._conn(fresh=attempt == 2)
            try:
                conn.request(method, self._prefix + path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                status = resp.status
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise DaemonUnreachableError(f"cannot reach the faramesh daemon at {self.url}: {e}") from e
            except TimeoutError as e:
                conn.close()
                self._local.conn = None
                raise FarameshTimeoutError(f"{self.url}{path} did not answer within {self.timeout_seconds:g} s") from e
            except ssl.SSLError as e:
                conn.close()
                self._local.conn = None
                raise DaemonUnreachableError(
                    f"TLS with {self.url} failed ({e}); for a self-signed certificate set FARAMESH_CA_CERT "
                    "to the daemon's cert.pem"
                ) from e
            except OSError as e:
                conn.close()
                self._local.conn = None
                raise DaemonUnreachableError(
                    f"cannot reach the faramesh daemon at {self.url} ({e}); is `faramesh serve --listen` running?"
                ) from e
        try:
            reply = json.loads(raw) if raw else None
        except ValueError:
            reply = None
        if 200 <= status < 300:
            return reply
        raise _http_error(status, reply, f"{method} {path}")

    def govern(self, call: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/evaluate", call))

    def decide(self, call: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/gate/decide", call))

    def submit(self, call: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/actions", call))

    def wait_approval(self, decision: dict[str, Any], timeout_seconds: float) -> str:
        return str(self.wait_for_approval(decision, timeout_seconds)["status"])

    def wait_for_approval(self, decision: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        action_id = decision.get("action_id") or decision.get("id")
        if not action_id:
            raise InvalidRequestError("the decision has no action_id to wait on", field="action_id")
        deadline = time.monotonic() + timeout_seconds
        pause = 0.1
        while True:
            action = self.get_action(str(action_id))
            status = action.get("status")
            edit = action.get("edit") if isinstance(action.get("edit"), dict) else None
            if status in ("approved", "executing", "succeeded", "failed"):
                return {"status": "approved", "edit": edit}
            if status == "denied":
                return {"status": "denied", "edit": edit}
            if time.monotonic() >= deadline:
                return {"status": "pending", "edit": None}
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 1.0)

    def get_action(self, action_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/actions/{urllib.parse.quote(action_id)}"))

    def list_actions(self, **filters: Any) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({k: v for k, v in filters.items() if v is not None})
        reply = self.request("GET", "/v1/actions" + (f"?{query}" if query else ""))
        return list(reply.get("actions", []) if isinstance(reply, dict) else reply)

    def check_result(self, action_id: str, result: Any) -> dict[str, Any]:
        path = f"/v1/actions/{urllib.parse.quote(action_id)}/result-check"
        return dict(self.request("POST", path, {"result": result}))

    def decide_approval(self, action_id: str, approve: bool, reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"approve": approve}
        if reason is not None:
            body["reason"] = reason
        return dict(self.request("POST", f"/v1/actions/{urllib.parse.quote(action_id)}/approval", body))

    def start_action(self, action_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/v1/actions/{urllib.parse.quote(action_id)}/start", {}))

    def get_events(self, action_id: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/v1/actions/{urllib.parse.quote(action_id)}/events"))

    def report_result(
        self, action_id: str, success: bool, result: Any = None, error: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"success": success}
        if result is not None:
            body["result"] = result
        if error is not None:
            body["error"] = error
        return dict(self.request("POST", f"/v1/actions/{urllib.parse.quote(action_id)}/result", body))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _http_error(status: int, reply: Any, what: str) -> FarameshError:
    err = reply.get("error") if isinstance(reply, dict) else None
    message = str(err.get("message")) if isinstance(err, dict) else f"HTTP {status}"
    field = err.get("field") if isinstance(err, dict) else None
    if status == 401:
        return UnauthorizedError(f"{what}: {message} (set FARAMESH_TOKEN or FARAMESH_API_KEY)")
    if status == 403:
        return UnauthorizedError(f"{what}: {message}")
    if status == 404:
        return NotFoundError(f"{what}: {message}")
    if status == 409:
        return ConflictError(f"{what}: {message}")
    if status in (400, 413, 422):
        return InvalidRequestError(f"{what}: {message}", field=field)
    if status == 408:
        return FarameshTimeoutError(f"{what}: {message}")
    return FarameshError(f"{what}: HTTP {status}: {message}")


def env_token() -> str | None:
    """`FARAMESH_TOKEN`, else `FARAMESH_API_KEY`."""
    return os.environ.get("FARAMESH_TOKEN") or os.environ.get("FARAMESH_API_KEY") or None


def auto_transport(timeout_seconds: float = 10.0) -> Transport:
    """The transport the environment names, in the documented order."""
    env = os.environ
    remote = env.get("FARAMESH_REMOTE_URL")
    if remote:
        return HttpTransport(remote, timeout_seconds=timeout_seconds)
    sock = env.get("FARAMESH_SOCKET")
    if sock:
        return SocketTransport(sock, timeout_seconds=timeout_seconds)
    base = env.get("FARAMESH_BASE_URL") or env.get("FARAMESH_URL")
    if base:
        return HttpTransport(base, timeout_seconds=timeout_seconds)
    return SocketTransport(DEFAULT_SOCKET, timeout_seconds=timeout_seconds)


_shared: dict[tuple[str | None, ...], Transport] = {}
_shared_lock = threading.Lock()


_configured: Transport | None = None


def configure(
    transport: Transport | None = None,
    *,
    base_url: str | None = None,
    token: str | None = None,
    socket_path: str | None = None,
    timeout_seconds: float = 10.0,
) -> Transport:
    """Sets the transport every default (GovernedToolSet without `transport=`, the functional
    API's socket fallback, `gate_decide`) uses, instead of the environment's."""
    global _configured
    if transport is None:
        if base_url:
            transport = HttpTransport(base_url, token=token, timeout_seconds=timeout_seconds)
        else:
            transport = SocketTransport(socket_path, timeout_seconds=timeout_seconds)
    _configured = transport
    return transport


def default_transport() -> Transport:
    """One shared transport per process for the current environment (so every governed tool
    and the functional API use a single socket connection), or the one :func:`configure` set."""
    if _configured is not None:
        return _configured
    env = os.environ
    key = tuple(
        env.get(k)
        for k in (
            "FARAMESH_REMOTE_URL",
            "FARAMESH_SOCKET",
            "FARAMESH_BASE_URL",
            "FARAMESH_URL",
            "FARAMESH_TOKEN",
            "FARAMESH_API_KEY",
            "FARAMESH_CA_CERT",
        )
    )
    with _shared_lock:
        transport = _shared.get(key)
        if transport is None:
            transport = auto_transport()
            log.info("faramesh: using the %s transport to %s", transport.kind, transport.target)
            _shared[key] = transport
        return transport
