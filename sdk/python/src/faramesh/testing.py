"""Test your wiring without a daemon.

    tools = GovernedToolSet([search_docs], agent_id="my-agent",
                            transport=StubTransport({"search_docs": "permit"}))

`StubTransport` takes a mapping from tool name to effect (`permit`, `deny`, `defer`) or a
callable that gets the call and returns a decision (a dict, or an effect string). A tool the
mapping does not name is denied (`DEFAULT_DENY_NO_MATCH`), as the daemon would. DEFERs create
approvals you settle with :meth:`StubTransport.approve` / :meth:`StubTransport.deny`.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from typing import Any, Union

from .canonical import request_hash
from .errors import NotFoundError
from .transport import Transport

Rule = Union[Mapping[str, str], Callable[[dict[str, Any]], str | dict[str, Any]]]

_CODES = {"PERMIT": "POLICY_PERMIT", "DENY": "POLICY_DENY", "DEFER": "POLICY_DEFER"}
_DECISION = {"PERMIT": "allow", "DENY": "deny", "DEFER": "require_approval"}
_OUTCOME = {"PERMIT": "EXECUTE", "DENY": "HALT", "DEFER": "ABSTAIN"}


class StubTransport(Transport):
    """An in-memory stand-in for the daemon, for unit tests of code that uses the SDK."""

    kind = "stub"
    target = "stub"

    def __init__(self, rules: Rule) -> None:
        self.rules = rules
        #: every call governed or decided, in order
        self.calls: list[dict[str, Any]] = []
        self._actions: dict[str, dict[str, Any]] = {}
        self._approvals: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def _decision(self, call: dict[str, Any]) -> dict[str, Any]:
        args = call.get("args", call.get("params", {}))
        context = call.get("context", {})
        rhash = request_hash(call["agent_id"], call["tool"], call.get("operation", "invoke"), args, context)
        base: dict[str, Any] = {
            "effect": "DENY",
            "reason_code": "DEFAULT_DENY_NO_MATCH",
            "reason": f"the stub has no rule for `{call['tool']}`",
            "rule_id": None,
            "rule_ref": None,
            "risk_level": "low",
            "request_hash": rhash,
            "policy_hash": "stub",
            "approval_id": None,
            "defer_token": None,
        }
        if callable(self.rules):
            out = self.rules(call)
            if isinstance(out, dict):
                return {**base, **out}
            effect = str(out).upper()
        elif call["tool"] in self.rules:
            effect = str(self.rules[call["tool"]]).upper()
        else:
            effect = ""
        if effect in _CODES:
            base.update(effect=effect, reason_code=_CODES[effect], reason=f"stub: {effect.lower()}")
        return base

    def _denial(self, d: dict[str, Any]) -> dict[str, Any] | None:
        if d["effect"] == "PERMIT":
            return None
        resolution: dict[str, Any] = {"type": "rule_block", "rule_id": d.get("rule_id")}
        if d["effect"] == "DEFER":
            resolution = {"type": "pending_approval", "approval_id": d.get("approval_id")}
        return {
            "code": d["reason_code"],
            "rule_id": d.get("rule_id"),
            "rule_ref": d.get("rule_ref"),
            "human_message": d.get("reason"),
            "resolution": resolution,
        }

    def govern(self, call: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.calls.append(call)
            action_id = f"stub{next(self._ids):012d}"
            approval_id = call.get("approval_id")
            if approval_id:
                status = self._approvals.get(approval_id)
                d = self._decision(call)
                if status == "approved":
                    d.update(effect="PERMIT", reason_code="APPROVAL_GRANTED", reason="approved")
                    self._approvals[approval_id] = "used"
                elif status == "pending":
                    d.update(effect="DEFER", reason_code="POLICY_DEFER", approval_id=approval_id)
                else:
                    d.update(effect="DENY", reason_code="APPROVAL_DENIED", reason=f"approval {status}")
            else:
                d = self._decision(call)
                if d["effect"] == "DEFER":
                    d["approval_id"] = f"approval{next(self._ids):024d}"
                    self._approvals[d["approval_id"]] = "pending"
            d["defer_token"] = d["approval_id"] if d["effect"] == "DEFER" else None
            d["action_id"] = action_id
            d["structured_denial"] = self._denial(d)
            status = {"PERMIT": "allowed", "DEFER": "pending_approval"}.get(d["effect"], "denied")
            if d["reason_code"] == "APPROVAL_GRANTED":
                status = "approved"
            # Kept in the v1 action shape the daemon answers with.
            self._actions[action_id] = {
                "id": action_id,
                "agent_id": call.get("agent_id"),
                "tool": call.get("tool"),
                "operation": call.get("operation"),
                "params": call.get("args", call.get("params", {})),
                "context": call.get("context", {}),
                **d,
                "status": status,
                "decision": _DECISION[d["effect"]],
                "outcome": _OUTCOME[d["effect"]],
                "provenance_id": action_id,
            }
            return dict(d)

    def submit(self, call: dict[str, Any]) -> dict[str, Any]:
        action_id = self.govern(call)["action_id"]
        with self._lock:
            return dict(self._actions[action_id])

    def decide(self, call: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.calls.append(call)
            d = self._decision(call)
            d["action_id"] = None
            d["structured_denial"] = self._denial(d)
            return d

    def _settle(self, approval_id: str, status: str) -> None:
        with self._changed:
            if self._approvals.get(approval_id) != "pending":
                raise NotFoundError(f"no pending approval `{approval_id}`")
            self._approvals[approval_id] = status
            for action in self._actions.values():
                if action.get("approval_id") == approval_id:
                    action["status"] = status
            self._changed.notify_all()

    def approve(self, approval_id: str) -> None:
        """Approves a pending approval (as a human would with `faramesh approve`)."""
        self._settle(approval_id, "approved")

    def deny(self, approval_id: str) -> None:
        """Denies a pending approval."""
        self._settle(approval_id, "denied")

    def wait_approval(self, decision: dict[str, Any], timeout_seconds: float) -> str:
        approval_id = str(decision.get("approval_id"))
        with self._changed:
            self._changed.wait_for(lambda: self._approvals.get(approval_id) != "pending", timeout_seconds)
            status = self._approvals.get(approval_id, "denied")
            return "approved" if status == "used" else status

    def get_action(self, action_id: str) -> dict[str, Any]:
        with self._lock:
            if action_id not in self._actions:
                raise NotFoundError(f"no action `{action_id}`")
            return dict(self._actions[action_id])

    def list_actions(self, **filters: Any) -> list[dict[str, Any]]:
        with self._lock:
            actions = [dict(a) for a in reversed(self._actions.values())]
        for key in ("agent_id", "tool", "status", "effect"):
            if filters.get(key) is not None:
                actions = [a for a in actions if a.get(key) == filters[key]]
        return actions[: int(filters.get("limit") or 50)]

    def decide_approval(self, action_id: str, approve: bool, reason: str | None = None) -> dict[str, Any]:
        approval_id = str(self.get_action(action_id).get("approval_id"))
        self._settle(approval_id, "approved" if approve else "denied")
        return {"approval_id": approval_id, "status": "approved" if approve else "denied", "reason": reason}

    def get_events(self, action_id: str) -> list[dict[str, Any]]:
        action = self.get_action(action_id)
        return [
            {"id": f"{action_id}-created", "action_id": action_id, "event_type": "created", "meta": {}},
            {
                "id": f"{action_id}-decided",
                "action_id": action_id,
                "event_type": "decision_made",
                "meta": {"decision": action.get("decision")},
            },
        ]

    def start_action(self, action_id: str) -> dict[str, Any]:
        with self._lock:
            self._actions[action_id]["status"] = "executing"
            return dict(self._actions[action_id])

    def report_result(
        self, action_id: str, success: bool, result: Any = None, error: str | None = None
    ) -> dict[str, Any]:
        status = "succeeded" if success else "failed"
        with self._lock:
            self._actions[action_id]["status"] = status
            return dict(self._actions[action_id])


__all__ = ["StubTransport"]
