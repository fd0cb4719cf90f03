"""`ExecutionGovernorClient`: the v1 action lifecycle (submit, check, approve, start, report).

client = ExecutionGovernorClient()   # FARAMESH_URL and FARAMESH_API_KEY (or the socket)
action = client.submit_action(tool="refund", operation="process",
                              params={"amount": 50}, context={"agent_id": "billing-bot"})
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..errors import FarameshTimeoutError, UnauthorizedError
from ..gate import GateDecision, build_call
from ..governed import jsonable
from ..transport import HttpTransport, Transport, default_transport, env_token

TERMINAL = ("succeeded", "failed", "denied")

_APPROVER_HINT = (
    "approving needs an approver's credentials: over HTTP an approver token "
    "(FARAMESH_APPROVER_TOKEN or a tokens.json entry with role approver) as FARAMESH_API_KEY; on the "
    "socket a uid the policy lists under approvals. An approval token only names the action, and an "
    "agent never approves its own call"
)


class ExecutionGovernorClient:
    """A client of the daemon's action API. Reads `FARAMESH_URL` and `FARAMESH_API_KEY` (or
    `FARAMESH_TOKEN`); without a URL it uses the environment's transport (the socket)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        transport: Transport | None = None,
        timeout_seconds: float = 10.0,
    ) -> None:
        if transport is not None:
            self.transport = transport
        else:
            url = base_url or os.environ.get("FARAMESH_URL") or os.environ.get("FARAMESH_BASE_URL")
            if url:
                self.transport = HttpTransport(url, token=api_key or env_token(), timeout_seconds=timeout_seconds)
            else:
                self.transport = default_transport()

    def submit_action(
        self,
        tool: str,
        operation: str,
        params: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        agent_id: str | None = None,
    ) -> dict[str, Any]:
        """Decides and records the action; the v1 action (`id`, `status`: `allowed`, `denied` or
        `pending_approval`, `decision`, `reason`, ...)."""
        return self.transport.submit(build_call(agent_id, tool, operation, params, context))

    def get_action(self, action_id: str) -> dict[str, Any]:
        """The action (id or a unique prefix of 8+ characters)."""
        return self.transport.get_action(action_id)

    def list_actions(
        self,
        status: str | None = None,
        limit: int = 20,
        agent_id: str | None = None,
        tool: str | None = None,
        offset: int | None = None,
    ) -> list[dict[str, Any]]:
        """Actions, newest first."""
        return self.transport.list_actions(status=status, limit=limit, agent_id=agent_id, tool=tool, offset=offset)

    def get_events(self, action_id: str) -> list[dict[str, Any]]:
        """The action's timeline: `created`, `decision_made`, then approvals, start and result."""
        return self.transport.get_events(action_id)

    def _decide(self, action_id: str, approve: bool, reason: str | None) -> dict[str, Any]:
        try:
            return self.transport.decide_approval(action_id, approve, reason)
        except UnauthorizedError as e:
            raise UnauthorizedError(f"{e}; {_APPROVER_HINT}") from e

    def approve_action(self, action_id: str, token: str | None = None, reason: str | None = None) -> dict[str, Any]:
        """Approves a pending action. `token` (the action's approval token) is accepted for
        compatibility and authorizes nothing: the caller must be an approver."""
        return self._decide(action_id, True, reason)

    def reject_action(self, action_id: str, token: str | None = None, reason: str | None = None) -> dict[str, Any]:
        """Denies a pending action (approver credentials, as for :meth:`approve_action`)."""
        return self._decide(action_id, False, reason)

    def start_action(self, action_id: str) -> dict[str, Any]:
        """`allowed|approved -> executing`."""
        return self.transport.start_action(action_id)

    def report_result(
        self, action_id: str, success: bool, result: Any = None, error: str | None = None
    ) -> dict[str, Any]:
        """Reports the outcome. An action not yet started is started first (the upstream
        Faramesh documentation reports straight after an allowed submit)."""
        status = self.transport.get_action(action_id).get("status")
        if status in ("allowed", "approved"):
            self.transport.start_action(action_id)
        return self.transport.report_result(action_id, success, jsonable(result), error)

    def wait_for_completion(self, action_id: str, timeout: float = 60.0, poll_interval: float = 1.0) -> dict[str, Any]:
        """Polls until the action is `succeeded`, `failed` or `denied`."""
        deadline = time.monotonic() + timeout
        while True:
            action = self.transport.get_action(action_id)
            if action.get("status") in TERMINAL:
                return action
            if time.monotonic() >= deadline:
                raise FarameshTimeoutError(f"action {action_id} is still `{action.get('status')}` after {timeout:g} s")
            time.sleep(poll_interval)

    def gate_decide(
        self,
        agent_id: str,
        tool: str,
        operation: str,
        params: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> GateDecision:
        """What the gate would decide, recorded nowhere."""
        return GateDecision.from_decision(self.transport.decide(build_call(agent_id, tool, operation, params, context)))


__all__ = ["ExecutionGovernorClient"]
