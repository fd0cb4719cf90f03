"""The governance step every wrapped tool goes through, and `GovernedToolSet`.

A governed tool asks the daemon before it runs: PERMIT runs it; DENY raises
:class:`ToolDeniedException` (or calls `on_deny`); DEFER raises, blocks until a human decides
(`on_defer="block"`), calls `on_defer`, or pauses the framework's run (`on_defer="interrupt"`,
LangGraph and OpenAI Agents). Nothing runs on an error unless `fail_open=True`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

from ._trace import add_traceparent
from .canonical import request_hash
from .errors import DaemonUnreachableError, FarameshTimeoutError, ToolDeniedException
from .transport import Transport, auto_transport, default_transport

log = logging.getLogger("faramesh")

#: The only metadata keys forwarded to the daemon; anything else is dropped at the SDK boundary.
METADATA_KEYS = ("principal", "session_id", "request_id", "tags", "traceparent")

DeferCallback = Callable[[str | None, ToolDeniedException], Any]
OnDefer = Union[Literal["raise", "block", "interrupt"], DeferCallback]
OnDeny = Union[Literal["raise"], DeferCallback]


def filter_metadata(*sources: Mapping[str, Any] | None) -> dict[str, Any]:
    """`principal`, `session_id`, `request_id` and `tags` from the given mappings (later ones
    win); every other key is dropped."""
    out: dict[str, Any] = {}
    for source in sources:
        if not source:
            continue
        for key in METADATA_KEYS:
            value = source.get(key)
            if value is None:
                continue
            if key == "tags":
                if isinstance(value, str):
                    value = [value]
                value = [str(t) for t in value]
            elif key in ("session_id", "request_id", "traceparent"):
                value = str(value)
            out[key] = value
    return out


def jsonable(value: Any) -> Any:
    """`value` as JSON data: pydantic models and dataclasses become dicts, tuples lists, and
    anything else its `str`."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return jsonable(dump())
    if hasattr(value, "__dataclass_fields__"):
        return jsonable(vars(value))
    return str(value)


@dataclass
class Verdict:
    """What a governed tool does: run (with the decision), or return `value` instead."""

    run: bool
    decision: dict[str, Any]
    value: Any = None
    #: The arguments to run with instead of the ones asked about, when an approver approved the
    #: call with edits (None: run as asked).
    args: dict[str, Any] | None = None


class Governor:
    """The settings of a GovernedToolSet and the one governance step all adapters call."""

    def __init__(
        self,
        agent_id: str | None,
        transport: Transport | None = None,
        on_defer: OnDefer = "raise",
        on_deny: OnDeny = "raise",
        timeout_seconds: float | None = None,
        fail_open: bool = False,
        approval_timeout_seconds: float = 300.0,
    ) -> None:
        agent = agent_id or os.environ.get("FARAMESH_AGENT_ID")
        if not agent:
            raise ValueError("agent_id is required (or set FARAMESH_AGENT_ID)")
        if on_defer not in ("raise", "block", "interrupt") and not callable(on_defer):
            raise ValueError(f"on_defer must be 'raise', 'block', 'interrupt' or a callback, not {on_defer!r}")
        if on_deny != "raise" and not callable(on_deny):
            raise ValueError(f"on_deny must be 'raise' or a callback (denials never resolve), not {on_deny!r}")
        if fail_open and os.environ.get("FARAMESH_ENV", "").lower() == "production":
            raise ValueError("fail_open=True is refused when FARAMESH_ENV=production")
        self.agent_id = agent
        self._transport = transport
        self.on_defer = on_defer
        self.on_deny = on_deny
        #: None: the process's shared transport for the environment (10 s per call); a number:
        #: a transport of this governor's own with that timeout.
        self.timeout_seconds = timeout_seconds
        self.fail_open = fail_open
        self.approval_timeout_seconds = approval_timeout_seconds
        #: request_hash -> approval_id of calls paused in a framework's interrupt
        self.paused: dict[str, str] = {}
        if fail_open:
            log.warning("faramesh: fail_open=True for agent %s: calls run when the daemon is unreachable", agent)

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = (
                default_transport() if self.timeout_seconds is None else auto_transport(self.timeout_seconds)
            )
        return self._transport

    def call(
        self,
        tool: str,
        args: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
        operation: str = "invoke",
        approval_id: str | None = None,
    ) -> dict[str, Any]:
        """The call the daemon is asked about."""
        call: dict[str, Any] = {
            "agent_id": self.agent_id,
            "tool": tool,
            "operation": operation,
            "args": jsonable(dict(args)),
            "context": {},
        }
        call.update(filter_metadata(metadata))
        principal_token = os.environ.get("FARAMESH_PRINCIPAL_TOKEN")
        if principal_token:
            call["principal_token"] = principal_token
        if approval_id:
            call["approval_id"] = approval_id
        add_traceparent(call)
        return call

    def hash_of(self, call: Mapping[str, Any]) -> str:
        return request_hash(call["agent_id"], call["tool"], call["operation"], call["args"], call["context"])

    def _logged(self, call: Mapping[str, Any], decision: dict[str, Any], started: float) -> dict[str, Any]:
        log.info(
            "faramesh: %s %s/%s -> %s %s in %.2f ms (action %s)",
            call["agent_id"],
            call["tool"],
            call["operation"],
            decision.get("effect"),
            decision.get("reason_code"),
            (time.perf_counter() - started) * 1000,
            decision.get("action_id"),
        )
        return decision

    def _failed_open(self, call: Mapping[str, Any], error: Exception) -> dict[str, Any]:
        log.warning(
            "faramesh: FAIL OPEN: %s/%s for %s runs without a decision: %s",
            call["tool"],
            call["operation"],
            call["agent_id"],
            error,
        )
        return {"effect": "PERMIT", "reason_code": "FAIL_OPEN", "reason": str(error), "action_id": None}

    def ask(self, call: dict[str, Any]) -> dict[str, Any]:
        """`govern` (fail-open only when configured)."""
        started = time.perf_counter()
        try:
            return self._logged(call, self.transport.govern(call), started)
        except (DaemonUnreachableError, FarameshTimeoutError) as e:
            if self.fail_open:
                return self._failed_open(call, e)
            raise

    async def aask(self, call: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            return self._logged(call, await self.transport.agovern(call), started)
        except (DaemonUnreachableError, FarameshTimeoutError) as e:
            if self.fail_open:
                return self._failed_open(call, e)
            raise

    def _denied(self, decision: dict[str, Any]) -> Verdict:
        denial = ToolDeniedException.from_decision(decision)
        if callable(self.on_deny):
            return Verdict(False, decision, self.on_deny(denial.approval_id, denial))
        raise denial

    def _still_pending(self, decision: dict[str, Any]) -> ToolDeniedException:
        denial = ToolDeniedException.from_decision(decision)
        denial.human_message = (
            f"approval {denial.approval_id} is still pending after {self.approval_timeout_seconds:g} s"
        )
        return denial

    def _edited(
        self, call: dict[str, Any], decision: dict[str, Any], approval: dict[str, Any], can_edit: bool
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The call to resume with: the approver's edited arguments when it was approved with
        edits (a tool that cannot run them gets a refusal naming the suggested call)."""
        edit = approval.get("edit") if approval.get("status") == "approved" else None
        if not edit:
            return call, None
        params = edit.get("params")
        if not isinstance(params, dict):
            return call, None
        if not can_edit:
            approval_id = decision.get("approval_id") or decision.get("defer_token")
            suggested = json.dumps(params, sort_keys=True)
            message = (
                f"approval {approval_id} approved this call with changed arguments, which this tool cannot "
                f"substitute: make the call again as `{call['tool']}` with {suggested}"
            )
            refusal = {**decision, "effect": "DENY", "reason_code": "APPROVAL_DENIED", "reason": message}
            refusal["structured_denial"] = None
            raise ToolDeniedException.from_decision(refusal)
        return {**call, "args": params}, params

    def settle(self, call: dict[str, Any], decision: dict[str, Any], can_edit: bool = False) -> Verdict:
        """Applies on_defer / on_deny to a decision (blocking for `on_defer="block"`).
        `can_edit`: the caller runs the verdict's `args` when an approver edited the call."""
        effect = decision.get("effect")
        if effect == "PERMIT":
            return Verdict(True, decision)
        if effect == "DEFER":
            if self.on_defer == "block":
                approval = self.transport.wait_for_approval(decision, self.approval_timeout_seconds)
                if approval["status"] == "pending":
                    raise self._still_pending(decision)
                try:
                    resumed, edited = self._edited(call, decision, approval, can_edit)
                except ToolDeniedException as refusal:
                    return self._denied_by(refusal)
                verdict = self.settle(resumed, self.resume(resumed, decision))
                if edited is not None and verdict.run:
                    verdict.args = edited
                return verdict
            denial = ToolDeniedException.from_decision(decision)
            if callable(self.on_defer):
                return Verdict(False, decision, self.on_defer(denial.approval_id, denial))
            raise denial
        return self._denied(decision)

    async def asettle(self, call: dict[str, Any], decision: dict[str, Any], can_edit: bool = False) -> Verdict:
        effect = decision.get("effect")
        if effect == "DEFER" and self.on_defer == "block":
            approval = await self.transport.await_for_approval(decision, self.approval_timeout_seconds)
            if approval["status"] == "pending":
                raise self._still_pending(decision)
            try:
                resumed, edited = self._edited(call, decision, approval, can_edit)
            except ToolDeniedException as refusal:
                return self._denied_by(refusal)
            verdict = await self.asettle(resumed, await self.aresume(resumed, decision))
            if edited is not None and verdict.run:
                verdict.args = edited
            return verdict
        return self.settle(call, decision, can_edit)

    def checked(self, decision: Mapping[str, Any], result: Any) -> Any:
        """What the agent gets of a tool's `result`: when the decision says a `results:` rule reads
        it (`check_result`), the daemon's verdict decides: the result unchanged (`pass`, `flag`),
        redacted (`redact`), or a refusal (`deny`: raised, or `on_deny`'s value)."""
        action_id = decision.get("action_id")
        if not decision.get("check_result") or not action_id:
            return result
        answer = self.transport.check_result(str(action_id), jsonable(result))
        return self._after_check(decision, answer, result)

    async def achecked(self, decision: Mapping[str, Any], result: Any) -> Any:
        if not decision.get("check_result") or not decision.get("action_id"):
            return result
        answer = await asyncio.to_thread(self.transport.check_result, str(decision["action_id"]), jsonable(result))
        return self._after_check(decision, answer, result)

    def _after_check(self, decision: Mapping[str, Any], answer: Mapping[str, Any], result: Any) -> Any:
        verdict = answer.get("verdict")
        if verdict in ("pass", "flag"):
            return result
        if verdict == "redact":
            return answer.get("result")
        refusal = {
            "effect": "DENY",
            "reason_code": "RESULT_DENIED",
            "reason": f"the tool's result was withheld: {answer.get('reason') or 'a results rule refused it'}",
            "rule_id": answer.get("rule_id"),
            "rule_ref": answer.get("rule_ref"),
            "action_id": decision.get("action_id"),
        }
        return self._denied(refusal).value

    def _denied_by(self, denial: ToolDeniedException) -> Verdict:
        if callable(self.on_deny):
            return Verdict(False, denial.decision, self.on_deny(denial.approval_id, denial))
        raise denial

    def resume(self, call: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
        """Re-sends `call` with the approval id of a DEFER: PERMIT `APPROVAL_GRANTED` once
        approved (the daemon checks the request hash), DENY once denied or expired."""
        approval_id = decision.get("approval_id") or decision.get("defer_token")
        return self.ask({**call, "approval_id": approval_id})

    async def aresume(self, call: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
        approval_id = decision.get("approval_id") or decision.get("defer_token")
        return await self.aask({**call, "approval_id": approval_id})

    def gate(
        self,
        tool: str,
        args: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
        can_edit: bool = False,
    ) -> Verdict:
        """Asks about one call. With `can_edit`, a call approved with edits runs with the
        verdict's `args`; without, it is refused with the suggested call."""
        call = self.call(tool, args, metadata)
        return self.settle(call, self.ask(call), can_edit)

    async def agate(
        self,
        tool: str,
        args: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
        can_edit: bool = False,
    ) -> Verdict:
        call = self.call(tool, args, metadata)
        return await self.asettle(call, await self.aask(call), can_edit)


def call_arguments(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments of a call to `fn`, by parameter name (as the daemon sees them)."""
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}
    out: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        param = bound.signature.parameters[name]
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif param.kind is inspect.Parameter.VAR_POSITIONAL:
            out[name] = list(value)
        else:
            out[name] = value
    return out


def edited_arguments(fn: Callable[..., Any], edited: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional and keyword arguments that call `fn` with `edited` (arguments by parameter
    name, as :func:`call_arguments` names them)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return (), dict(edited)
    rest = dict(edited)
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    var_keyword = False
    for name, param in params.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = True
            continue
        if name not in rest:
            continue
        value = rest.pop(name)
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            positional.append(value)
        elif param.kind is inspect.Parameter.VAR_POSITIONAL:
            positional.extend(value if isinstance(value, (list, tuple)) else [value])
        else:
            keywords[name] = value
    if rest and not var_keyword:
        raise ToolDeniedException(
            "APPROVAL_DENIED",
            f"the approved edit names arguments {sorted(rest)} that `{getattr(fn, '__name__', fn)}` does not take",
        )
    keywords.update(rest)
    return tuple(positional), keywords


def govern_callable(fn: Callable[..., Any], governor: Governor, name: str | None = None) -> Callable[..., Any]:
    """A plain function (sync or async) governed under `name` (default: the function's name)."""
    tool = name or getattr(fn, "__name__", None) or type(fn).__name__
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def governed_async(*args: Any, **kwargs: Any) -> Any:
            verdict = await governor.agate(tool, call_arguments(fn, args, kwargs), can_edit=True)
            if not verdict.run:
                return verdict.value
            if verdict.args is not None:
                args, kwargs = edited_arguments(fn, verdict.args)
            result = fn(*args, **kwargs)
            result = await result if isinstance(result, Awaitable) else result
            return await governor.achecked(verdict.decision, result)

        governed_async.__faramesh_governed__ = True  # type: ignore[attr-defined]
        governed_async.__doc__ = fn.__doc__ or _default_doc(tool)
        return governed_async

    @functools.wraps(fn)
    def governed(*args: Any, **kwargs: Any) -> Any:
        verdict = governor.gate(tool, call_arguments(fn, args, kwargs), can_edit=True)
        if not verdict.run:
            return verdict.value
        if verdict.args is not None:
            args, kwargs = edited_arguments(fn, verdict.args)
        return governor.checked(verdict.decision, fn(*args, **kwargs))

    governed.__faramesh_governed__ = True  # type: ignore[attr-defined]
    governed.__doc__ = fn.__doc__ or _default_doc(tool)
    return governed


def _default_doc(tool: str) -> str:
    # Frameworks that turn functions into tools (LangGraph's ToolNode) require a description.
    return f"The `{tool}` tool."


def framework_of(tool: Any) -> str | None:
    """`langchain`, `openai_agents`, `crewai`, `autogen`, `anthropic`, or None (a plain callable), from the
    tool's class hierarchy, without importing any framework."""
    for cls in type(tool).__mro__:
        module, name = cls.__module__, cls.__name__
        if module.startswith("langchain_core.tools") and name == "BaseTool":
            return "langchain"
        if module.startswith("agents.tool") and name == "FunctionTool":
            return "openai_agents"
        if module.startswith("crewai.tools") and name == "BaseTool":
            return "crewai"
        if module.startswith("autogen_core.tools") and name == "BaseTool":
            return "autogen"
        if module.startswith("anthropic.lib.tools") and name in ("BetaFunctionTool", "BetaAsyncFunctionTool"):
            return "anthropic"
    return None


def wrap_tool(tool: Any, governor: Governor, framework: str | None = None) -> Any:
    """`tool` governed, as the same kind of object its framework expects."""
    kind = framework or framework_of(tool)
    if kind in ("langchain", "langgraph"):
        from ._frameworks import langchain

        return langchain.wrap(tool, governor)
    if kind in ("openai_agents", "openai-agents", "openai"):
        from ._frameworks import openai_agents

        return openai_agents.wrap(tool, governor)
    if kind == "crewai":
        from ._frameworks import crewai

        return crewai.wrap(tool, governor)
    if kind == "autogen":
        from ._frameworks import autogen

        if framework_of(tool) == "autogen":
            return autogen.wrap(tool, governor)
        return govern_callable(tool, governor)
    if kind == "anthropic":
        from ._frameworks import anthropic

        return anthropic.wrap(tool, governor)
    if kind == "mcp" or (kind is None and _is_mcp_session(tool)):
        from ._frameworks import mcp

        return mcp.wrap(tool, governor)
    if callable(tool):
        return govern_callable(tool, governor)
    raise TypeError(
        f"cannot govern {type(tool).__name__}: pass a LangChain, OpenAI Agents, CrewAI, AutoGen or Anthropic tool, "
        "an MCP client session, or a callable"
    )


def _is_mcp_session(obj: Any) -> bool:
    """An `mcp` client: `ClientSession` (mcp 1.x and 2.x) or `Client` (mcp 2.x)."""
    return any(
        cls.__module__.startswith("mcp.") and cls.__name__ in ("ClientSession", "Client") for cls in type(obj).__mro__
    )


class GovernedToolSet(list[Any]):
    """Your tools, each asking the daemon before it runs; the list your framework expects.

    Accepts LangChain `BaseTool`s and `@tool` functions, OpenAI Agents `function_tool`s, CrewAI
    `BaseTool`s, AutoGen `FunctionTool`s and plain callables (named after the function), sync
    and async. Each governed tool keeps the original's name, description and argument schema.
    """

    def __init__(
        self,
        tools: Iterable[Any],
        agent_id: str | None = None,
        transport: Transport | None = None,
        on_defer: OnDefer = "raise",
        on_deny: OnDeny = "raise",
        timeout_seconds: float | None = None,
        fail_open: bool = False,
        approval_timeout_seconds: float = 300.0,
    ) -> None:
        self.governor = Governor(
            agent_id,
            transport=transport,
            on_defer=on_defer,
            on_deny=on_deny,
            timeout_seconds=timeout_seconds,
            fail_open=fail_open,
            approval_timeout_seconds=approval_timeout_seconds,
        )
        super().__init__(wrap_tool(t, self.governor) for t in tools)

    @property
    def agent_id(self) -> str:
        return self.governor.agent_id

    def by_name(self, name: str) -> Any:
        """The governed tool called `name`."""
        for tool in self:
            tool_name = getattr(tool, "name", None) or getattr(tool, "__name__", None)
            if tool_name == name:
                return tool
        raise KeyError(name)
