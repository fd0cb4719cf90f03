"""An MCP client (`mcp.Client`, or a `ClientSession`) whose `call_tool` asks the Faramesh daemon
first (tool = the MCP tool's name, operation `invoke`, args = its arguments). Everything else is
the client's own."""

from __future__ import annotations

from typing import Any

from ..governed import Governor


class GovernedSession:
    """Wraps an `mcp.ClientSession`: `await session.call_tool(name, arguments)` is governed."""

    def __init__(self, session: Any, governor: Governor) -> None:
        self._session = session
        self._governor = governor

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None, *args: Any, **kwargs: Any) -> Any:
        verdict = await self._governor.agate(name, arguments or {}, can_edit=True)
        if not verdict.run:
            return verdict.value
        if verdict.args is not None:
            arguments = verdict.args
        result = await self._session.call_tool(name, arguments, *args, **kwargs)
        checked = await self._governor.achecked(verdict.decision, result)
        if checked is result or not isinstance(checked, dict):
            return checked
        # Redacted: the same result type, from the redacted fields.
        return type(result).model_validate(checked)

    def __getattr__(self, item: str) -> Any:
        return getattr(self._session, item)


def wrap(session: Any, governor: Governor) -> GovernedSession:
    return session if isinstance(session, GovernedSession) else GovernedSession(session, governor)
