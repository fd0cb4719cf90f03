"""Faramesh: every tool call an agent makes is decided by the Faramesh daemon before it runs.

from faramesh import GovernedToolSet
tools = GovernedToolSet([search_docs, send_email, charge_card], agent_id="payments-bot")
"""

from __future__ import annotations

import json

from .canonical import canonical_json, request_hash
from .errors import (
    BudgetReset,
    ConflictError,
    DaemonUnreachableError,
    FarameshError,
    FarameshTimeoutError,
    InvalidRequestError,
    NotFoundError,
    PendingApproval,
    RetryAfter,
    RuleBlock,
    ToolDeniedException,
    UnauthorizedError,
)
from .gate import GateDecision, execute_if_allowed, gate_decide
from .governed import GovernedToolSet

# The functional API at the top level too, as the upstream Faramesh documentation imports it
# (`from faramesh import submit_action, get_action, ...`).
from .sdk import (
    ExecutionGovernorClient,
    approve_action,
    deny_action,
    get_action,
    list_actions,
    reject_action,
    report_result,
    start_action,
    submit_action,
    wait_for_completion,
)
from .transport import HttpTransport, SocketTransport, Transport, configure

__version__ = "0.1.0"


def report_denial(approval_id: str | None, denial: ToolDeniedException) -> str:
    """An `on_deny` / `on_defer` callback that hands the structured denial to the model as the
    tool's output (JSON text) instead of raising."""
    return json.dumps(denial.to_dict())


__all__ = [
    "BudgetReset",
    "ConflictError",
    "DaemonUnreachableError",
    "ExecutionGovernorClient",
    "FarameshError",
    "FarameshTimeoutError",
    "GateDecision",
    "GovernedToolSet",
    "HttpTransport",
    "InvalidRequestError",
    "NotFoundError",
    "PendingApproval",
    "RetryAfter",
    "RuleBlock",
    "SocketTransport",
    "ToolDeniedException",
    "Transport",
    "UnauthorizedError",
    "approve_action",
    "canonical_json",
    "configure",
    "deny_action",
    "execute_if_allowed",
    "gate_decide",
    "get_action",
    "list_actions",
    "reject_action",
    "report_denial",
    "report_result",
    "request_hash",
    "start_action",
    "submit_action",
    "wait_for_completion",
]
