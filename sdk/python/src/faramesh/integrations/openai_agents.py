"""OpenAI Agents human-in-the-loop, settled by the daemon.

tools = GovernedToolSet([refund], agent_id="billing-bot", on_defer="interrupt")
agent = Agent(name="billing", tools=tools, ...)
result = await Runner.run(agent, "refund order 7")
while result.interruptions:
    state = await settle(result)          # waits for `faramesh approve` / `faramesh deny`
    result = await Runner.run(agent, state)
"""

from __future__ import annotations

from typing import Any

from .._frameworks.openai_agents import PAUSED


async def settle(result: Any, timeout_seconds: float = 300.0) -> Any:
    """The run's `RunState` with each of Faramesh's interruptions approved or rejected as the
    daemon's approval was decided (waiting up to `timeout_seconds` for each). Interruptions of
    other tools, and approvals still pending at the timeout, are left as they are."""
    state = result.to_state()
    for item in result.interruptions:
        call_id = getattr(item, "call_id", None)
        paused = PAUSED.get(call_id) if call_id else None
        if paused is None:
            continue
        governor, decision = paused
        status = await governor.transport.await_approval(decision, timeout_seconds)
        if status == "approved":
            state.approve(item)
        elif status in ("denied", "expired"):
            PAUSED.pop(str(call_id), None)
            state.reject(
                item,
                rejection_message=f"Faramesh: approval {decision.get('approval_id')} was {status}; "
                "the tool did not run.",
            )
    return state
