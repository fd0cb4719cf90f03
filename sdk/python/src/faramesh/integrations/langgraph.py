"""LangGraph human-in-the-loop, settled by the daemon.

tools = GovernedToolSet([refund], agent_id="billing-bot", on_defer="interrupt")
graph = create_react_agent(model, tools, checkpointer=InMemorySaver())
graph.invoke({"messages": [...]}, config)            # pauses on a DEFER
command = resume_command(graph, config)              # waits for `faramesh approve` / `deny`
graph.invoke(command, config)                        # the tool re-asks the daemon, runs once
"""

from __future__ import annotations

from typing import Any

from ..transport import Transport, default_transport


def approvals(graph: Any, config: Any) -> list[dict[str, Any]]:
    """The Faramesh approvals the paused graph waits on (each interrupt's value)."""
    state = graph.get_state(config)
    return [i.value for i in state.interrupts if isinstance(i.value, dict) and i.value.get("approval_id")]


def _command(decided: dict[str, Any]) -> Any:
    from langgraph.types import Command

    return Command(resume=decided) if decided else None


def resume_command(graph: Any, config: Any, transport: Transport | None = None, timeout_seconds: float = 300.0) -> Any:
    """A `Command(resume={interrupt_id: {"approval_id", "status"}})` for every Faramesh interrupt
    whose approval the daemon has decided (waiting up to `timeout_seconds` for each), or None
    when none was decided in time. The resume value is informational: the resumed tool asks the
    daemon again with the approval id and runs only if the daemon permits."""
    link = transport or default_transport()
    decided: dict[str, Any] = {}
    for interrupt in graph.get_state(config).interrupts:
        value = interrupt.value
        if not (isinstance(value, dict) and value.get("approval_id")):
            continue
        status = link.wait_approval(value, timeout_seconds)
        if status != "pending":
            decided[interrupt.id] = {"approval_id": value["approval_id"], "status": status}
    return _command(decided)


async def aresume_command(
    graph: Any, config: Any, transport: Transport | None = None, timeout_seconds: float = 300.0
) -> Any:
    """:func:`resume_command` for async code (`graph.aget_state`)."""
    link = transport or default_transport()
    decided: dict[str, Any] = {}
    for interrupt in (await graph.aget_state(config)).interrupts:
        value = interrupt.value
        if not (isinstance(value, dict) and value.get("approval_id")):
            continue
        status = await link.await_approval(value, timeout_seconds)
        if status != "pending":
            decided[interrupt.id] = {"approval_id": value["approval_id"], "status": status}
    return _command(decided)
