"""`govern(tool, agent_id)`: one tool of any framework, governed.

from faramesh.integrations import govern
tool = govern(ShellTool(), agent_id="my-agent")                       # LangChain
tool = govern(FileReadTool(), agent_id="my-agent")                    # CrewAI
governed_fn = govern(my_function, agent_id="my-agent", framework="autogen")
session = govern(mcp_session, agent_id="my-agent")                    # MCP client session
"""

from __future__ import annotations

from typing import Any

from ..governed import Governor, OnDefer, OnDeny, wrap_tool
from ..transport import Transport


def govern(
    tool: Any,
    agent_id: str | None = None,
    framework: str | None = None,
    *,
    transport: Transport | None = None,
    on_defer: OnDefer = "raise",
    on_deny: OnDeny = "raise",
    timeout_seconds: float | None = None,
    fail_open: bool = False,
    approval_timeout_seconds: float = 300.0,
) -> Any:
    """`tool` governed as `agent_id`, returned as the same kind of object. `framework` forces the
    adapter (`langchain`, `openai_agents`, `crewai`, `autogen`, `mcp`); by default it is told from
    the tool's class. A plain function (also with `framework="autogen"`) stays a function."""
    governor = Governor(
        agent_id,
        transport=transport,
        on_defer=on_defer,
        on_deny=on_deny,
        timeout_seconds=timeout_seconds,
        fail_open=fail_open,
        approval_timeout_seconds=approval_timeout_seconds,
    )
    return wrap_tool(tool, governor, framework)


__all__ = ["govern"]
