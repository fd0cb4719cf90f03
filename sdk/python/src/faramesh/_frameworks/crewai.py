"""CrewAI: a governed `BaseTool` (same name, description and argument schema)."""

from __future__ import annotations

import asyncio
from typing import Any

from crewai.tools import BaseTool
from pydantic import PrivateAttr

from ..governed import Governor


class GovernedCrewTool(BaseTool):
    """A CrewAI tool that asks the Faramesh daemon before the wrapped tool runs."""

    _inner: BaseTool = PrivateAttr()
    _governor: Governor = PrivateAttr()

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        args_by_name = dict(kwargs)
        if args:
            args_by_name.update({f"arg{i}": a for i, a in enumerate(args)})
        # Edits are run by name; a call with positional arguments cannot take them.
        verdict = self._governor.gate(self.name, args_by_name, can_edit=not args)
        if not verdict.run:
            return verdict.value
        if verdict.args is not None:
            kwargs = dict(verdict.args)
        result = self._inner._run(*args, **kwargs)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return self._governor.checked(verdict.decision, result)


def wrap(tool: BaseTool, governor: Governor) -> BaseTool:
    if isinstance(tool, GovernedCrewTool):
        return tool
    governed = GovernedCrewTool(
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        result_as_answer=tool.result_as_answer,
        max_usage_count=tool.max_usage_count,
    )
    # BaseTool prefixes the description with the name and arguments; keep the original's text.
    governed.description = tool.description
    governed._inner = tool
    governed._governor = governor
    return governed
