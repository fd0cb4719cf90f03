"""The Anthropic SDK: a governed `@beta_tool` function (same name, description and input schema)
for the SDK's tool runner (`client.beta.messages.tool_runner(tools=...)`).

The tool asks the daemon before the function runs. A DENY (or a DEFER that is not approved)
becomes the SDK's `ToolError`, which the tool runner sends back to the model as an `is_error`
tool result with the reason (and, for a DEFER, the approval to wait for), so the model can
adjust; the function never runs. `on_deny`/`on_defer` callbacks work as for every framework.
"""

from __future__ import annotations

from typing import Any

from anthropic.lib.tools import BetaAsyncFunctionTool, BetaFunctionTool, ToolError

from ..errors import ToolDeniedException
from ..governed import Governor


def _tool_error(e: ToolDeniedException) -> ToolError:
    if e.effect == "DEFER" and e.approval_id:
        text = (
            f"Faramesh: this call waits for a person's approval ({e}): pending approval {e.approval_id}; "
            "retry the same call once it is approved"
        )
    else:
        text = f"Faramesh denied this call: {e}"
    return ToolError(text)


def _args(input: object) -> dict[str, Any]:
    return dict(input) if isinstance(input, dict) else {"input": input}


class GovernedFunctionTool(BetaFunctionTool[Any]):
    """A `@beta_tool` that asks the Faramesh daemon before its function runs."""

    _faramesh_governor: Governor
    _faramesh_inner: BetaFunctionTool[Any]

    def call(self, input: object) -> Any:
        try:
            verdict = self._faramesh_governor.gate(self.name, _args(input), can_edit=isinstance(input, dict))
        except ToolDeniedException as e:
            raise _tool_error(e) from e
        if not verdict.run:
            return verdict.value
        out = self._faramesh_inner.call(verdict.args if verdict.args is not None else input)
        try:
            return self._faramesh_governor.checked(verdict.decision, out)
        except ToolDeniedException as e:
            raise _tool_error(e) from e


class GovernedAsyncFunctionTool(BetaAsyncFunctionTool[Any]):
    """A `@beta_async_tool` that asks the Faramesh daemon before its function runs."""

    _faramesh_governor: Governor
    _faramesh_inner: BetaAsyncFunctionTool[Any]

    async def call(self, input: object) -> Any:
        try:
            verdict = await self._faramesh_governor.agate(self.name, _args(input), can_edit=isinstance(input, dict))
        except ToolDeniedException as e:
            raise _tool_error(e) from e
        if not verdict.run:
            return verdict.value
        out = await self._faramesh_inner.call(verdict.args if verdict.args is not None else input)
        try:
            return await self._faramesh_governor.achecked(verdict.decision, out)
        except ToolDeniedException as e:
            raise _tool_error(e) from e


def wrap(tool: Any, governor: Governor) -> Any:
    """`tool` (a `BetaFunctionTool` or `BetaAsyncFunctionTool`) governed."""
    if isinstance(tool, (GovernedFunctionTool, GovernedAsyncFunctionTool)):
        return tool
    cls = GovernedAsyncFunctionTool if isinstance(tool, BetaAsyncFunctionTool) else GovernedFunctionTool
    governed = cls(tool.func, name=tool.name, description=tool.description, input_schema=tool.input_schema)
    governed._faramesh_governor = governor
    governed._faramesh_inner = tool
    return governed
