"""LangChain and LangGraph: a governed `BaseTool` with the original's name, description and
argument schema. `on_defer="interrupt"` pauses a LangGraph run with
`interrupt({"approval_id": ...})`; resumed with `Command(resume=...)`, the tool re-asks the
daemon with the approval id and runs only on PERMIT `APPROVAL_GRANTED`."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from pydantic import PrivateAttr

from ..governed import Governor, Verdict, filter_metadata


def _split(tool_input: Any) -> tuple[dict[str, Any], str | None]:
    """`(args, tool_call_id)` of a tool input: a ToolCall dict, a dict of args, or a string."""
    if isinstance(tool_input, dict) and tool_input.get("type") == "tool_call":
        return dict(tool_input.get("args") or {}), tool_input.get("id")
    if isinstance(tool_input, dict):
        return dict(tool_input), None
    return {"input": tool_input}, None


def _with_args(tool_input: Any, args: dict[str, Any]) -> Any:
    """`tool_input` with its arguments replaced by an approver's edited `args`."""
    if isinstance(tool_input, dict) and tool_input.get("type") == "tool_call":
        return {**tool_input, "args": args}
    if isinstance(tool_input, dict):
        return args
    return args.get("input", tool_input) if set(args) == {"input"} else args


def _checked(g: Governor, verdict: Verdict, out: Any) -> Any:
    """The tool's output as the daemon's `results:` rules let the agent read it (a ToolMessage
    keeps its shape: only its content is read and replaced)."""
    if isinstance(out, ToolMessage):
        content = g.checked(verdict.decision, out.content)
        if content is out.content:
            return out
        if not isinstance(content, (str, list)):
            content = json.dumps(content, default=str)
        return out.model_copy(update={"content": content})
    return g.checked(verdict.decision, out)


def _metadata(config: RunnableConfig | None) -> dict[str, Any]:
    if not config:
        return {}
    return filter_metadata(config.get("configurable"), config.get("metadata"))


def _as_output(value: Any, name: str, tool_call_id: str | None) -> Any:
    """A callback's value as what the framework expects from the tool."""
    if tool_call_id is None or isinstance(value, ToolMessage):
        return value
    content = value if isinstance(value, str) else json.dumps(value, default=str)
    return ToolMessage(content=content, name=name, tool_call_id=tool_call_id, status="error")


class GovernedTool(BaseTool):
    """A LangChain tool that asks the Faramesh daemon before the wrapped tool runs."""

    _inner: BaseTool = PrivateAttr()
    _governor: Governor = PrivateAttr()

    def __init__(self, inner: BaseTool, governor: Governor) -> None:
        super().__init__(
            name=inner.name,
            description=inner.description,
            args_schema=inner.args_schema if inner.args_schema is not None else inner.get_input_schema(),
            return_direct=inner.return_direct,
            response_format=inner.response_format,
            tags=inner.tags,
            metadata=inner.metadata,
        )
        self._inner = inner
        self._governor = governor

    @property
    def inner(self) -> BaseTool:
        """The tool being governed."""
        return self._inner

    def _interrupt(self, decision: dict[str, Any], call: dict[str, Any]) -> dict[str, Any]:
        """Pauses the graph on a DEFER; on resume, the daemon's answer for the approval."""
        from langgraph.types import interrupt

        g = self._governor
        key = g.hash_of(call)
        approval_id = decision.get("approval_id") or decision.get("defer_token")
        g.paused[key] = str(approval_id)
        interrupt(
            {
                "approval_id": approval_id,
                "action_id": decision.get("action_id"),
                "agent_id": call["agent_id"],
                "tool": call["tool"],
                "args": call["args"],
                "reason": decision.get("reason"),
                "rule_id": decision.get("rule_id"),
            }
        )
        # Resumed: the daemon, not the resume value, says whether the call may run.
        g.paused.pop(key, None)
        return g.resume(call, decision)

    def _verdict(self, args: dict[str, Any], config: RunnableConfig | None) -> Verdict:
        g = self._governor
        call = g.call(self.name, args, _metadata(config))
        if g.on_defer == "interrupt":
            paused = g.paused.get(g.hash_of(call))
            decision = self._interrupt({"approval_id": paused}, call) if paused is not None else g.ask(call)
            while decision.get("effect") == "DEFER":
                decision = self._interrupt(decision, call)
            return g.settle(call, decision)
        return g.settle(call, g.ask(call), can_edit=True)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        args, tool_call_id = _split(input)
        verdict = self._verdict(args, config)
        if not verdict.run:
            return _as_output(verdict.value, self.name, tool_call_id)
        if verdict.args is not None:
            input = _with_args(input, verdict.args)
        return _checked(self._governor, verdict, self._inner.invoke(input, config, **kwargs))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        args, tool_call_id = _split(input)
        g = self._governor
        if g.on_defer == "interrupt":
            # interrupt() must run in the node's context: decide in the same task.
            verdict = self._verdict(args, config)
        else:
            call = g.call(self.name, args, _metadata(config))
            verdict = await g.asettle(call, await g.aask(call), can_edit=True)
        if not verdict.run:
            return _as_output(verdict.value, self.name, tool_call_id)
        if verdict.args is not None:
            input = _with_args(input, verdict.args)
        return _checked(self._governor, verdict, await self._inner.ainvoke(input, config, **kwargs))

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        verdict = self._verdict(dict(kwargs), None)
        if not verdict.run:
            return verdict.value
        out = self._inner.invoke(verdict.args if verdict.args is not None else kwargs)
        return _checked(self._governor, verdict, out)

    async def _arun(self, *args: Any, **kwargs: Any) -> Any:
        g = self._governor
        call = g.call(self.name, dict(kwargs), None)
        verdict = await g.asettle(call, await g.aask(call), can_edit=True)
        if not verdict.run:
            return verdict.value
        out = await self._inner.ainvoke(verdict.args if verdict.args is not None else kwargs)
        return _checked(g, verdict, out)


def wrap(tool: Any, governor: Governor) -> GovernedTool:
    if isinstance(tool, GovernedTool):
        return tool
    return GovernedTool(tool, governor)
