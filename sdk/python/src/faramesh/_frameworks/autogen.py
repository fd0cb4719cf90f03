"""AutoGen: a governed tool with the original's name, description and argument type."""

from __future__ import annotations

from typing import Any

from autogen_core import CancellationToken
from autogen_core.tools import BaseTool

from ..governed import Governor


class GovernedAutogenTool(BaseTool[Any, Any]):
    """An AutoGen tool that asks the Faramesh daemon before the wrapped tool runs."""

    def __init__(self, inner: BaseTool[Any, Any], governor: Governor) -> None:
        super().__init__(inner.args_type(), inner.return_type(), inner.name, inner.description)
        self._inner = inner
        self._governor = governor

    async def run(self, args: Any, cancellation_token: CancellationToken) -> Any:
        verdict = await self._governor.agate(self.name, args.model_dump(), can_edit=True)
        if not verdict.run:
            return verdict.value
        if verdict.args is not None:
            args = type(args).model_validate(verdict.args)
        return await self._governor.achecked(verdict.decision, await self._inner.run(args, cancellation_token))


def wrap(tool: BaseTool[Any, Any], governor: Governor) -> BaseTool[Any, Any]:
    if isinstance(tool, GovernedAutogenTool):
        return tool
    return GovernedAutogenTool(tool, governor)
