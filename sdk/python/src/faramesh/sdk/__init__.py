"""The functional API of the upstream Faramesh documentation: `submit_action`, `get_action`, `list_actions`,
`approve_action`, `reject_action`, `start_action`, `report_result`, `wait_for_completion`.

Each call uses one :class:`~faramesh.sdk.client.ExecutionGovernorClient` made from the
environment (`FARAMESH_URL` + `FARAMESH_API_KEY`, else the socket), rebuilt when it changes.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .client import ExecutionGovernorClient

_lock = threading.Lock()
_client: tuple[tuple[str | None, ...], ExecutionGovernorClient] | None = None


def _default() -> ExecutionGovernorClient:
    global _client
    key = tuple(
        os.environ.get(k)
        for k in ("FARAMESH_URL", "FARAMESH_BASE_URL", "FARAMESH_API_KEY", "FARAMESH_TOKEN", "FARAMESH_SOCKET")
    )
    with _lock:
        if _client is None or _client[0] != key:
            _client = (key, ExecutionGovernorClient())
        return _client[1]


def submit_action(
    agent_id: str | None = None,
    tool: str = "",
    operation: str = "",
    params: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Decides and records an action; the v1 action (`status`, `decision`, `id`, ...)."""
    return _default().submit_action(tool, operation, params, context, agent_id=agent_id)


def get_action(action_id: str) -> dict[str, Any]:
    return _default().get_action(action_id)


def list_actions(
    status: str | None = None,
    limit: int = 20,
    agent_id: str | None = None,
    tool: str | None = None,
    offset: int | None = None,
) -> list[dict[str, Any]]:
    return _default().list_actions(status=status, limit=limit, agent_id=agent_id, tool=tool, offset=offset)


def approve_action(action_id: str, token: str | None = None, reason: str | None = None) -> dict[str, Any]:
    """Approves (approver credentials needed; `token` authorizes nothing)."""
    return _default().approve_action(action_id, token=token, reason=reason)


def reject_action(action_id: str, token: str | None = None, reason: str | None = None) -> dict[str, Any]:
    return _default().reject_action(action_id, token=token, reason=reason)


def deny_action(action_id: str, token: str | None = None, reason: str | None = None) -> dict[str, Any]:
    """Denies (approver credentials needed): `reject_action` as the upstream docs also call it."""
    return reject_action(action_id, token=token, reason=reason)


def start_action(action_id: str) -> dict[str, Any]:
    return _default().start_action(action_id)


def report_result(action_id: str, success: bool, result: Any = None, error: str | None = None) -> dict[str, Any]:
    return _default().report_result(action_id, success, result=result, error=error)


def wait_for_completion(action_id: str, timeout: float = 60.0, poll_interval: float = 1.0) -> dict[str, Any]:
    return _default().wait_for_completion(action_id, timeout=timeout, poll_interval=poll_interval)


__all__ = [
    "ExecutionGovernorClient",
    "approve_action",
    "deny_action",
    "get_action",
    "list_actions",
    "reject_action",
    "report_result",
    "start_action",
    "submit_action",
    "wait_for_completion",
]
