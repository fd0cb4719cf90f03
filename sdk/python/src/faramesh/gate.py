"""Decide-only checks and the execute-if-allowed pattern."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ._trace import add_traceparent
from .transport import Transport, default_transport

_OUTCOME = {"PERMIT": "EXECUTE", "DENY": "HALT", "DEFER": "ABSTAIN"}


@dataclass(frozen=True)
class GateDecision:
    """What the gate would decide: `outcome` is `EXECUTE` (PERMIT), `HALT` (DENY) or `ABSTAIN`
    (DEFER, a human would have to approve)."""

    outcome: str
    effect: str
    reason_code: str
    reason: str | None
    request_hash: str
    policy_hash: str | None
    rule_id: str | None = None
    rule_ref: str | None = None
    risk_level: str | None = None

    @property
    def policy_version(self) -> str | None:
        """The policy hash (the published SDK's name for it)."""
        return self.policy_hash

    @classmethod
    def from_decision(cls, d: dict[str, Any]) -> GateDecision:
        effect = str(d.get("effect") or "DENY")
        return cls(
            outcome=str(d.get("outcome") or _OUTCOME.get(effect, "HALT")),
            effect=effect,
            reason_code=str(d.get("reason_code") or ""),
            reason=d.get("reason"),
            request_hash=str(d.get("request_hash") or ""),
            policy_hash=d.get("policy_hash"),
            rule_id=d.get("rule_id"),
            rule_ref=d.get("rule_ref"),
            risk_level=d.get("risk_level"),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_call(
    agent_id: str | None,
    tool: str,
    operation: str,
    params: dict[str, Any] | None,
    context: dict[str, Any] | None,
) -> dict[str, Any]:
    """The call body; `agent_id` defaults to `context["agent_id"]`, then `FARAMESH_AGENT_ID`."""
    context = dict(context or {})
    agent = agent_id or context.get("agent_id") or os.environ.get("FARAMESH_AGENT_ID")
    if not agent:
        raise ValueError("agent_id is required (or context['agent_id'], or FARAMESH_AGENT_ID)")
    call: dict[str, Any] = {
        "agent_id": str(agent),
        "tool": tool,
        "operation": operation,
        "args": dict(params or {}),
        "context": context,
    }
    principal_token = os.environ.get("FARAMESH_PRINCIPAL_TOKEN")
    if principal_token:
        call["principal_token"] = principal_token
    add_traceparent(call)
    return call


def gate_decide(
    agent_id: str,
    tool: str,
    operation: str,
    params: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    *,
    transport: Transport | None = None,
) -> GateDecision:
    """What the gate would decide for this call, recorded nowhere and executing nothing."""
    link = transport or default_transport()
    return GateDecision.from_decision(link.decide(build_call(agent_id, tool, operation, params, context)))


def _run_executor(
    executor: Callable[..., Any], tool: str, operation: str, params: dict[str, Any], context: dict[str, Any]
) -> Any:
    try:
        n = len(
            [
                p
                for p in inspect.signature(executor).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
            ]
        )
    except (TypeError, ValueError):
        n = 1
    if n >= 4:
        return executor(tool, operation, params, context)
    return executor(params)


def execute_if_allowed(
    agent_id: str,
    tool: str,
    operation: str,
    params: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    executor: Callable[..., Any] | None = None,
    *,
    transport: Transport | None = None,
) -> dict[str, Any]:
    """Records the decision (`govern`); runs `executor` only on PERMIT (outcome `EXECUTE`),
    reporting its start and result to the daemon. `executor(params)`, or
    `executor(tool, operation, params, context)` when it takes four arguments.

    Returns `{"decision", "outcome", "reason_code", "action_id", "executed", "execution_result"}`
    (plus `execution_error` when the executor raised; the error is re-raised after it is
    reported only if `executor` raised BaseException other than Exception).
    """
    link = transport or default_transport()
    call = build_call(agent_id, tool, operation, params, context)
    decision = link.govern(call)
    gate = GateDecision.from_decision(decision)
    out: dict[str, Any] = {
        "decision": decision,
        "outcome": gate.outcome,
        "reason_code": gate.reason_code,
        "action_id": decision.get("action_id"),
        "executed": False,
        "execution_result": None,
    }
    if gate.outcome != "EXECUTE" or executor is None:
        return out
    action_id = decision.get("action_id")
    if action_id:
        link.start_action(str(action_id))
    try:
        result = _run_executor(executor, tool, operation, call["args"], call["context"])
    except Exception as e:
        out["execution_error"] = str(e)
        if action_id:
            link.report_result(str(action_id), success=False, error=str(e))
        return out
    out["executed"] = True
    out["execution_result"] = result
    if action_id:
        link.report_result(str(action_id), success=True, result=result)
    return out
