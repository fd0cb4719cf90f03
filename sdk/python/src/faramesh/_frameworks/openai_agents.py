"""OpenAI Agents: a governed `FunctionTool` (same name, description and JSON schema).

With `on_defer="interrupt"`, the tool's `needs_approval` asks the daemon: a DEFER becomes the
SDK's own tool-approval interruption, which :func:`faramesh.integrations.openai_agents.settle`
approves or rejects in the `RunState` from the daemon's approval (a human's `faramesh approve`).
On resume the tool re-asks the daemon with the approval id and runs only on PERMIT
`APPROVAL_GRANTED`. A DENY raises from the tool (or calls `on_deny`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from agents import FunctionTool, RunContextWrapper
from agents.tool_context import ToolContext

from ..governed import Governor, filter_metadata


def _metadata(ctx: RunContextWrapper[Any] | None) -> dict[str, Any]:
    context = getattr(ctx, "context", None)
    if isinstance(context, dict):
        return filter_metadata(context)
    if context is not None:
        return filter_metadata(
            {k: getattr(context, k, None) for k in ("principal", "session_id", "request_id", "tags")}
        )
    return {}


def _args(input_json: str) -> dict[str, Any]:
    try:
        parsed = json.loads(input_json or "{}")
    except ValueError:
        return {"input": input_json}
    return parsed if isinstance(parsed, dict) else {"input": parsed}


#: tool call id -> (governor, DEFER decision) of calls paused in an interruption
PAUSED: dict[str, tuple[Governor, dict[str, Any]]] = {}


def wrap(tool: FunctionTool, governor: Governor) -> FunctionTool:
    """`tool` governed."""
    if getattr(tool, "__faramesh_governed__", False):
        return tool
    inner = tool.on_invoke_tool
    # call_id -> (call, decision) made by needs_approval, used once by the invocation
    asked: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    async def needs_approval(ctx: RunContextWrapper[Any], params: dict[str, Any], call_id: str) -> bool:
        call = governor.call(tool.name, params, _metadata(ctx))
        decision = await governor.aask(call)
        asked[call_id] = (call, decision)
        if decision.get("effect") == "DEFER":
            PAUSED[call_id] = (governor, decision)
            return True
        return False

    async def on_invoke_tool(ctx: ToolContext[Any], input_json: str) -> Any:
        earlier = asked.pop(ctx.tool_call_id, None)
        if earlier is not None:
            call, decision = earlier
            if decision.get("effect") == "DEFER":
                # The run was resumed after the interruption was approved: the daemon decides.
                PAUSED.pop(ctx.tool_call_id, None)
                decision = await governor.aresume(call, decision)
        else:
            call = governor.call(tool.name, _args(input_json), _metadata(ctx))
            decision = await governor.aask(call)
        verdict = await governor.asettle(call, decision, can_edit=True)
        if not verdict.run:
            return verdict.value
        if verdict.args is not None:
            input_json = json.dumps(verdict.args)
        return await governor.achecked(verdict.decision, await inner(ctx, input_json))

    governed = dataclasses.replace(
        tool,
        on_invoke_tool=on_invoke_tool,
        needs_approval=needs_approval if governor.on_defer == "interrupt" else tool.needs_approval,
    )
    governed.__faramesh_governed__ = True  # type: ignore[attr-defined]
    governed.__faramesh_asked__ = asked  # type: ignore[attr-defined]
    return governed
