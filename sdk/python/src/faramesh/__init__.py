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
    "canonical_json",
    "configure",
    "execute_if_allowed",
    "gate_decide",
    "report_denial",
    "request_hash",
]
