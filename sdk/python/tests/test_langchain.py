"""LangChain tools and LangGraph's prebuilt ReAct agent, driven by a scripted chat model (no
network), governed by the real daemon."""

from __future__ import annotations

import asyncio
import json
import uuid
import warnings
from typing import Any

import pytest
from conftest import Daemon
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from test_core import approve_when_pending

import faramesh
from faramesh import GovernedToolSet, ToolDeniedException
from faramesh.integrations.langgraph import approvals, resume_command

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from langgraph.prebuilt import create_react_agent


class ScriptedModel(GenericFakeChatModel):
    """A chat model that answers from a script; tools are bound by name only."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedModel:
        return self


def calling(name: str, args: dict[str, Any]) -> list[AIMessage]:
    """A script: call `name` with `args`, then finish."""
    call_id = f"call_{uuid.uuid4().hex[:8]}"
    return [
        AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id, "type": "tool_call"}]),
        AIMessage(content="done"),
    ]


RAN: list[tuple[str, Any]] = []


@tool
def read_file(path: str) -> str:
    """Read a file."""
    RAN.append(("read_file", path))
    return f"contents of {path}"


@tool
def delete_file(path: str) -> str:
    """Delete a file."""
    RAN.append(("delete_file", path))
    return "deleted"


@tool
def shell(cmd: str) -> str:
    """Run a shell command."""
    RAN.append(("shell", cmd))
    return f"ran {cmd}"


class RefundTool(BaseTool):
    name: str = "refund"
    description: str = "Refund an order."

    def _run(self, order: str, amount: int) -> str:
        RAN.append(("refund", amount))
        return f"refunded {amount} on {order}"


@tool
async def search_docs(query: str) -> str:
    """Search the docs."""
    RAN.append(("search_docs", query))
    return f"results for {query}"


def agent(script: list[AIMessage], **kwargs: Any) -> Any:
    tools = GovernedToolSet([read_file, delete_file, shell, RefundTool(), search_docs], agent_id="lc-agent", **kwargs)
    return create_react_agent(ScriptedModel(messages=iter(script)), tools, checkpointer=InMemorySaver())


def config() -> dict[str, Any]:
    return {"configurable": {"thread_id": uuid.uuid4().hex}}


@pytest.fixture(autouse=True)
def fresh(sock_env: Daemon) -> None:
    RAN.clear()


def test_governed_tools_keep_name_description_and_schema() -> None:
    tools = GovernedToolSet([read_file, RefundTool()], agent_id="lc-agent")
    assert all(isinstance(t, BaseTool) for t in tools)
    for governed, original in zip(tools, [read_file, RefundTool()], strict=True):
        assert governed.name == original.name
        assert governed.description == original.description
        assert governed.tool_call_schema.model_json_schema() == original.tool_call_schema.model_json_schema()


def test_permitted_tool_runs_in_the_agent_loop() -> None:
    out = agent(calling("read_file", {"path": "/etc/hosts"})).invoke({"messages": [("user", "read")]}, config())
    tool_msg = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert tool_msg.content == "contents of /etc/hosts"
    assert out["messages"][-1].content == "done"
    assert RAN == [("read_file", "/etc/hosts")]


def test_class_tool_and_amount_rule() -> None:
    out = agent(calling("refund", {"order": "o-1", "amount": 50})).invoke({"messages": [("user", "x")]}, config())
    assert any(isinstance(m, ToolMessage) and m.content == "refunded 50 on o-1" for m in out["messages"])


def test_denied_tool_never_runs_and_the_model_sees_the_denial() -> None:
    out = agent(calling("delete_file", {"path": "/"}), on_deny=faramesh.report_denial).invoke(
        {"messages": [("user", "x")]}, config()
    )
    tool_msg = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    denial = json.loads(str(tool_msg.content))
    assert denial["code"] == "POLICY_DENY" and denial["rule_id"] == "no-delete"
    assert tool_msg.status == "error"
    assert out["messages"][-1].content == "done"
    assert RAN == []


def test_denied_tool_raises_by_default() -> None:
    with pytest.raises(ToolDeniedException) as err:
        agent(calling("delete_file", {"path": "/"})).invoke({"messages": [("user", "x")]}, config())
    assert err.value.code == "POLICY_DENY"
    assert RAN == []


def test_block_runs_after_another_process_approves(sock_env: Daemon) -> None:
    approver = approve_when_pending(sock_env, "shell")
    out = agent(calling("shell", {"cmd": "uptime"}), on_defer="block").invoke({"messages": [("user", "x")]}, config())
    approver.join()
    assert any(isinstance(m, ToolMessage) and m.content == "ran uptime" for m in out["messages"])
    assert RAN == [("shell", "uptime")]


def test_interrupt_pauses_and_resumes_after_approve(sock_env: Daemon) -> None:
    graph = agent(calling("refund", {"order": "o-9", "amount": 500}), on_defer="interrupt")
    cfg = config()
    out = graph.invoke({"messages": [("user", "refund")]}, cfg)
    assert "__interrupt__" in out and RAN == []
    waiting = approvals(graph, cfg)
    assert (
        len(waiting) == 1 and waiting[0]["tool"] == "refund" and waiting[0]["args"] == {"order": "o-9", "amount": 500}
    )
    approval_id = waiting[0]["approval_id"]
    assert resume_command(graph, cfg, timeout_seconds=0.2) is None, "nothing decided yet"
    sock_env.approve(approval_id)
    command = resume_command(graph, cfg, timeout_seconds=5)
    assert command is not None
    out = graph.invoke(command, cfg)
    assert RAN == [("refund", 500)], "the tool ran exactly once, after the approval"
    assert any(isinstance(m, ToolMessage) and m.content == "refunded 500 on o-9" for m in out["messages"])
    assert out["messages"][-1].content == "done"
    granted = [a for a in sock_env.actions(tool="refund") if a.get("approval_id") == approval_id]
    assert {a["reason_code"] for a in granted} >= {"POLICY_DEFER", "APPROVAL_GRANTED"}


def test_interrupt_then_deny_ends_without_running(sock_env: Daemon) -> None:
    graph = agent(calling("shell", {"cmd": "rm -rf /"}), on_defer="interrupt", on_deny=faramesh.report_denial)
    cfg = config()
    graph.invoke({"messages": [("user", "x")]}, cfg)
    [waiting] = approvals(graph, cfg)
    sock_env.deny(waiting["approval_id"])
    out = graph.invoke(resume_command(graph, cfg, timeout_seconds=5), cfg)
    tool_msg = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert json.loads(str(tool_msg.content))["code"] == "APPROVAL_DENIED"
    assert out["messages"][-1].content == "done"
    assert RAN == []


def test_async_tool_in_an_async_graph() -> None:
    graph = agent(calling("search_docs", {"query": "budgets"}))
    out = asyncio.run(graph.ainvoke({"messages": [("user", "x")]}, config()))
    assert any(isinstance(m, ToolMessage) and m.content == "results for budgets" for m in out["messages"])
    assert RAN == [("search_docs", "budgets")]


def test_run_config_metadata_reaches_the_daemon_and_nothing_else(sock_env: Daemon) -> None:
    tools = GovernedToolSet([read_file], agent_id="lc-meta")
    tools[0].invoke(
        {"path": "/m"},
        {"configurable": {"session_id": "sess-1"}, "metadata": {"request_id": "req-9", "password": "hunter2"}},
    )
    record = sock_env.actions(agent="lc-meta")[0]
    assert record.get("session_id") == "sess-1" and record.get("request_id") == "req-9"
    assert "hunter2" not in json.dumps(record)
