"""Google ADK: every tool call an ADK agent makes, decided by the Faramesh daemon first.

Either for every agent a runner runs, as a plugin::

    app = App(name="support", root_agent=root_agent, plugins=[FarameshPlugin(agent_id="support-bot")])
    runner = InMemoryRunner(app=app)

or for one agent, as its `before_tool_callback`::

    agent = Agent(..., tools=[refund], before_tool_callback=before_tool_callback(agent_id="support-bot"))

A PERMIT lets the tool run. A DENY (or a DEFER that is not approved) answers the tool call
instead of running it: the model gets `{"error": "Faramesh denied …"}` (or `"… waits for a
person's approval …"`, with the approval id) as the tool's response and can adjust. The same
options as `GovernedToolSet` (`on_defer="block"` waits for a person; `on_deny`/`on_defer`
callbacks whose value becomes the tool's response; `transport`, `fail_open`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from google.adk.plugins import BasePlugin

from ..errors import ToolDeniedException
from ..governed import Governor


async def _decide(governor: Governor, tool: Any, args: dict[str, Any], tool_context: Any) -> dict[str, Any] | None:
    metadata: dict[str, Any] = {}
    session = getattr(tool_context, "session", None)
    session_id = getattr(session, "id", None)
    if isinstance(session_id, str):
        metadata["session_id"] = session_id
    try:
        verdict = await governor.agate(str(getattr(tool, "name", tool)), dict(args), metadata)
    except ToolDeniedException as e:
        if e.effect == "DEFER" and e.approval_id:
            return {
                "error": f"Faramesh: this call waits for a person's approval ({e}): pending approval "
                f"{e.approval_id}; retry the same call once it is approved"
            }
        return {"error": f"Faramesh denied this call: {e}"}
    if verdict.run:
        return None
    value = verdict.value
    return value if isinstance(value, dict) else {"result": value}


def before_tool_callback(
    agent_id: str | None = None, **options: Any
) -> Callable[[Any, dict[str, Any], Any], Awaitable[dict[str, Any] | None]]:
    """An ADK `before_tool_callback` that asks the daemon (options as `GovernedToolSet`'s)."""
    governor = Governor(agent_id, **options)

    async def callback(tool: Any, args: dict[str, Any], tool_context: Any) -> dict[str, Any] | None:
        return await _decide(governor, tool, args, tool_context)

    return callback


class FarameshPlugin(BasePlugin):  # type: ignore[misc]
    """An ADK runner plugin: every tool of every agent the runner runs is decided first."""

    def __init__(self, agent_id: str | None = None, name: str = "faramesh", **options: Any) -> None:
        super().__init__(name=name)
        self.governor = Governor(agent_id, **options)

    async def before_tool_callback(
        self, *, tool: Any, tool_args: dict[str, Any], tool_context: Any
    ) -> dict[str, Any] | None:
        return await _decide(self.governor, tool, tool_args, tool_context)


__all__ = ["FarameshPlugin", "before_tool_callback"]
