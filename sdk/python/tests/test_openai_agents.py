"""OpenAI Agents `function_tool`s in a real `Runner` loop with a scripted model (no network),
governed by the real daemon, including the SDK's own tool-approval interruptions."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from agents import Agent, FunctionTool, Runner, function_tool, set_tracing_disabled
from agents.exceptions import UserError
from agents.items import ModelResponse, ToolCallOutputItem
from agents.models.interface import Model
from agents.usage import Usage
from conftest import Daemon
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText
from test_core import approve_when_pending

import faramesh
from faramesh import GovernedToolSet, ToolDeniedException
from faramesh.integrations.openai_agents import settle

set_tracing_disabled(True)

RAN: list[tuple[str, Any]] = []


@function_tool
def refund(order: str, amount: int) -> str:
    """Refund an order."""
    RAN.append(("refund", amount))
    return f"refunded {amount} on {order}"


@function_tool
def delete_file(path: str) -> str:
    """Delete a file."""
    RAN.append(("delete_file", path))
    return "deleted"


@function_tool
async def search_docs(query: str) -> str:
    """Search the docs."""
    RAN.append(("search_docs", query))
    return f"results for {query}"


class ScriptedModel(Model):
    """A model that answers from a script: each turn is a list of output items."""

    def __init__(self, turns: list[list[Any]]) -> None:
        self.turns = turns

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        return ModelResponse(output=self.turns.pop(0), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


def calling(name: str, args: dict[str, Any]) -> list[list[Any]]:
    call = ResponseFunctionToolCall(
        id=f"fc_{uuid.uuid4().hex[:8]}",
        call_id=f"call_{uuid.uuid4().hex[:8]}",
        name=name,
        arguments=json.dumps(args),
        type="function_call",
        status="completed",
    )
    done = ResponseOutputMessage(
        id="msg_1",
        role="assistant",
        status="completed",
        type="message",
        content=[ResponseOutputText(text="done", type="output_text", annotations=[])],
    )
    return [[call], [done]]


def agent(turns: list[list[Any]], **kwargs: Any) -> Agent[Any]:
    tools = GovernedToolSet([refund, delete_file, search_docs], agent_id="oa-agent", **kwargs)
    return Agent(name="billing", instructions="help", tools=tools, model=ScriptedModel(turns))


def outputs(result: Any) -> list[Any]:
    return [item.output for item in result.new_items if isinstance(item, ToolCallOutputItem)]


@pytest.fixture(autouse=True)
def fresh(sock_env: Daemon) -> None:
    RAN.clear()


def test_governed_function_tools_keep_name_description_and_schema() -> None:
    tools = GovernedToolSet([refund], agent_id="oa-agent")
    [governed] = tools
    assert isinstance(governed, FunctionTool)
    assert (governed.name, governed.description) == (refund.name, refund.description)
    assert governed.params_json_schema == refund.params_json_schema


def test_permitted_tool_runs_in_the_runner() -> None:
    result = asyncio.run(Runner.run(agent(calling("refund", {"order": "o-1", "amount": 20})), "refund"))
    assert result.final_output == "done"
    assert outputs(result) == ["refunded 20 on o-1"]
    assert RAN == [("refund", 20)]


def test_denied_tool_never_runs_and_the_model_sees_the_denial() -> None:
    result = asyncio.run(
        Runner.run(agent(calling("delete_file", {"path": "/"}), on_deny=faramesh.report_denial), "delete")
    )
    [out] = outputs(result)
    assert json.loads(out)["code"] == "POLICY_DENY"
    assert result.final_output == "done" and RAN == []


def test_denied_tool_raises_from_the_tool_by_default() -> None:
    # The runner wraps a tool's exception in its UserError; the denial is the cause.
    with pytest.raises(UserError) as err:
        asyncio.run(Runner.run(agent(calling("delete_file", {"path": "/"})), "delete"))
    denial = err.value.__cause__
    assert isinstance(denial, ToolDeniedException) and denial.code == "POLICY_DENY" and RAN == []


def test_block_runs_after_another_process_approves(sock_env: Daemon) -> None:
    approver = approve_when_pending(sock_env, "refund")
    result = asyncio.run(
        Runner.run(agent(calling("refund", {"order": "o-2", "amount": 900}), on_defer="block"), "refund")
    )
    approver.join()
    assert outputs(result) == ["refunded 900 on o-2"] and RAN == [("refund", 900)]


def test_defer_becomes_an_interruption_settled_by_faramesh_approve(sock_env: Daemon) -> None:
    a = agent(calling("refund", {"order": "o-3", "amount": 700}), on_defer="interrupt")

    async def run() -> tuple[Any, Any]:
        first = await Runner.run(a, "refund")
        assert first.interruptions and RAN == []
        [item] = first.interruptions
        pending = json.loads(sock_env.cli("pending", "--json").stdout)
        pending = pending.get("approvals", pending) if isinstance(pending, dict) else pending
        ours = [p for p in pending if p["tool"] == "refund" and p["agent_id"] == "oa-agent"]
        assert ours, "the interruption's call is pending in the daemon"
        sock_env.approve(ours[-1]["approval_id"])
        state = await settle(first, timeout_seconds=5)
        return item, await Runner.run(a, state)

    item, result = asyncio.run(run())
    assert item.tool_name == "refund"
    assert RAN == [("refund", 700)], "ran exactly once, after the approval"
    assert outputs(result) == ["refunded 700 on o-3"] and result.final_output == "done"
    reasons = [x["reason_code"] for x in sock_env.actions(agent="oa-agent", tool="refund")]
    assert "APPROVAL_GRANTED" in reasons and "POLICY_DEFER" in reasons


def test_interruption_rejected_after_faramesh_deny(sock_env: Daemon) -> None:
    a = agent(calling("refund", {"order": "o-4", "amount": 800}), on_defer="interrupt")

    async def run() -> Any:
        first = await Runner.run(a, "refund")
        pending = json.loads(sock_env.cli("pending", "--json").stdout)
        pending = pending.get("approvals", pending) if isinstance(pending, dict) else pending
        sock_env.deny([p for p in pending if p["tool"] == "refund" and p["agent_id"] == "oa-agent"][-1]["approval_id"])
        return await Runner.run(a, await settle(first, timeout_seconds=5))

    result = asyncio.run(run())
    assert RAN == [] and result.final_output == "done"
    assert any("was denied" in str(o) for o in outputs(result))


def test_async_function_tool() -> None:
    result = asyncio.run(Runner.run(agent(calling("search_docs", {"query": "q"})), "search"))
    assert outputs(result) == ["results for q"] and RAN == [("search_docs", "q")]


def test_run_context_metadata_is_forwarded(sock_env: Daemon) -> None:
    a = agent(calling("refund", {"order": "o-5", "amount": 1}))
    asyncio.run(Runner.run(a, "x", context={"session_id": "oa-s1", "api_key": "secret"}))
    record = sock_env.actions(agent="oa-agent", tool="refund")[0]
    assert record.get("session_id") == "oa-s1" and "secret" not in json.dumps(record)
