"""Exceptions the SDK raises, and the typed resolutions a denial carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union


class FarameshError(Exception):
    """Base of every error the SDK raises other than a denial."""


class DaemonUnreachableError(FarameshError, ConnectionError):
    """The daemon could not be reached (socket missing, connection refused, connection lost)."""


class FarameshTimeoutError(FarameshError, TimeoutError):
    """The daemon did not answer within the timeout."""


class UnauthorizedError(FarameshError, PermissionError):
    """The token is missing or unknown (HTTP 401), or not allowed to do this (403, -32001)."""


class InvalidRequestError(FarameshError, ValueError):
    """The daemon refused the request's shape; `field` names the field at fault when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFoundError(FarameshError, LookupError):
    """No such action or approval (or not one the caller may see)."""


class ConflictError(FarameshError):
    """The action or approval is not in a state that allows this (already decided, not executing)."""


@dataclass(frozen=True)
class PendingApproval:
    """A human must approve: resume with `approval_id` once approved."""

    approval_id: str | None
    type: str = "pending_approval"


@dataclass(frozen=True)
class RetryAfter:
    """Rate limited: the call may succeed after `retry_after_seconds`."""

    retry_after_seconds: int
    type: str = "retry_after"


@dataclass(frozen=True)
class BudgetReset:
    """Over budget until `resets_at` (RFC 3339)."""

    resets_at: str | None
    type: str = "budget_reset"


@dataclass(frozen=True)
class RuleBlock:
    """A rule (or the default deny, `rule_id` None) blocks the call; retrying will not help."""

    rule_id: str | None
    type: str = "rule_block"


Resolution = Union[PendingApproval, RetryAfter, BudgetReset, RuleBlock]


def parse_resolution(raw: Any) -> Resolution | None:
    """The typed form of a `structured_denial.resolution` object (None when absent or unknown)."""
    if not isinstance(raw, dict):
        return None
    kind = raw.get("type")
    if kind == "pending_approval":
        return PendingApproval(approval_id=raw.get("approval_id"))
    if kind == "retry_after":
        return RetryAfter(retry_after_seconds=int(raw.get("retry_after_seconds") or 0))
    if kind == "budget_reset":
        return BudgetReset(resets_at=raw.get("resets_at"))
    if kind == "rule_block":
        return RuleBlock(rule_id=raw.get("rule_id"))
    return None


class ToolDeniedException(PermissionError):
    """A governed tool call was not permitted: DENY, or DEFER that was not (yet) approved.

    `code` is the reason code (`POLICY_DENY`, `POLICY_DEFER`, `RATE_EXCEEDED`, ...),
    `human_message` the policy's reason, `rule_ref` the deciding rule's `file:line`,
    `resolution` a typed hint (:class:`PendingApproval`, :class:`RetryAfter`,
    :class:`BudgetReset`, :class:`RuleBlock`), `approval_id` the pending approval for a DEFER, and
    `action_id` the decision record's id (None when nothing was recorded).
    """

    def __init__(
        self,
        code: str,
        human_message: str,
        *,
        effect: str = "DENY",
        rule_id: str | None = None,
        rule_ref: str | None = None,
        resolution: Resolution | None = None,
        approval_id: str | None = None,
        action_id: str | None = None,
        decision: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {human_message}" if human_message else code)
        self.code = code
        self.human_message = human_message
        self.effect = effect
        self.rule_id = rule_id
        self.rule_ref = rule_ref
        self.resolution = resolution
        self.approval_id = approval_id
        self.action_id = action_id
        self.decision = decision or {}

    @classmethod
    def from_decision(cls, decision: dict[str, Any]) -> ToolDeniedException:
        """The exception for a DENY or DEFER decision as the daemon returns it."""
        denial = decision.get("structured_denial") or {}
        resolution = parse_resolution(denial.get("resolution"))
        approval_id = decision.get("approval_id") or (
            resolution.approval_id if isinstance(resolution, PendingApproval) else None
        )
        return cls(
            str(denial.get("code") or decision.get("reason_code") or "DENIED"),
            str(denial.get("human_message") or decision.get("reason") or ""),
            effect=str(decision.get("effect") or "DENY"),
            rule_id=denial.get("rule_id") or decision.get("rule_id"),
            rule_ref=denial.get("rule_ref") or decision.get("rule_ref"),
            resolution=resolution,
            approval_id=approval_id,
            action_id=decision.get("action_id"),
            decision=decision,
        )

    def to_dict(self) -> dict[str, Any]:
        """The structured denial as a JSON-ready dict (what a model is shown)."""
        resolution: dict[str, Any] | None = None
        if self.resolution is not None:
            resolution = dict(vars(self.resolution))
        return {
            "denied": True,
            "effect": self.effect,
            "code": self.code,
            "human_message": self.human_message,
            "rule_id": self.rule_id,
            "rule_ref": self.rule_ref,
            "resolution": resolution,
            "approval_id": self.approval_id,
            "action_id": self.action_id,
        }
