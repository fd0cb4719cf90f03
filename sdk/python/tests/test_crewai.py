"""CrewAI `BaseTool`s in a real Crew run with a scripted LLM (no network), governed by the real
daemon."""

from __future__ import annotations

import json
import os
from typing import Any

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("CREWAI_TESTING", "true")  # no first-run "view your traces?" prompt

import pytest
from conftest import Daemon
from crewai import Agent, Crew, Task
from crewai.llms.base_llm import BaseLLM
from crewai.tools import BaseTool
from pydantic import BaseModel
from test_core import approve_when_pending

import faramesh
from faramesh import GovernedToolSet

RAN: list[tuple[str, Any]] = []


class RefundArgs(BaseModel):
    order: str
    amount: int


class RefundTool(BaseTool):
    name: str = "refund"
    description: str = "Refund an order."
    args_schema: type[BaseModel] = RefundArgs

    def _run(self, order: str, amount: int) -> str:
        RAN.append(("refund", amount))
        return f"refunded {amount} on {order}"


class DeleteArgs(BaseModel):
    path: str


class DeleteTool(BaseTool):
    name: str = "delete_file"
    description: str = "Delete a file."
    args_schema: type[BaseModel] = DeleteArgs

    def _run(self, path: str) -> str:
        RAN.append(("delete_file", path))
        return "deleted"


class ScriptedLLM(BaseLLM):
    """Answers in CrewAI's ReAct text format from a script; records what the agent was shown."""

    def __init__(self, turns: list[str]) -> None:
        super().__init__(model="scripted")
        self.turns = turns
        self.seen: list[str] = []

    def call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
        self.seen.append(json.dumps(messages, default=str))
        return self.turns.pop(0)

    def supports_function_calling(self) -> bool:
        return False

    def supports_stop_words(self) -> bool:
        return False

    def get_context_window_size(self) -> int:
        return 8192


def script(tool: str, args: dict[str, Any]) -> list[str]:
    return [
        f"Thought: I should use the tool.\nAction: {tool}\nAction Input: {json.dumps(args)}",
        "Thought: I now know the final answer\nFinal Answer: done",
    ]


def crew(llm: ScriptedLLM, **kwargs: Any) -> Crew:
    tools = GovernedToolSet([RefundTool(), DeleteTool()], agent_id="crew-agent", **kwargs)
    worker = Agent(role="clerk", goal="handle refunds", backstory="a clerk", llm=llm, tools=tools, max_iter=3)
    task = Task(description="handle the request", expected_output="done", agent=worker)
    return Crew(agents=[worker], tasks=[task])


@pytest.fixture(autouse=True)
def fresh(sock_env: Daemon) -> None:
    RAN.clear()


def test_governed_crew_tools_keep_name_description_and_schema() -> None:
    original = RefundTool()
    [governed] = GovernedToolSet([original], agent_id="crew-agent")
    assert isinstance(governed, BaseTool)
    assert (governed.name, governed.description) == (original.name, original.description)
    assert governed.args_schema is RefundArgs


def test_permitted_tool_runs_in_a_crew() -> None:
    llm = ScriptedLLM(script("refund", {"order": "o-1", "amount": 30}))
    result = crew(llm).kickoff()
    assert str(result) == "done"
    assert RAN == [("refund", 30)]
    assert "refunded 30 on o-1" in llm.seen[-1]


def test_denied_tool_never_runs_and_the_agent_sees_the_denial() -> None:
    llm = ScriptedLLM(script("delete_file", {"path": "/"}))
    result = crew(llm, on_deny=faramesh.report_denial).kickoff()
    assert str(result) == "done" and RAN == []
    assert "POLICY_DENY" in llm.seen[-1] and "no-delete" in llm.seen[-1]


def test_block_runs_after_another_process_approves(sock_env: Daemon) -> None:
    approver = approve_when_pending(sock_env, "refund")
    llm = ScriptedLLM(script("refund", {"order": "o-2", "amount": 500}))
    crew(llm, on_defer="block").kickoff()
    approver.join()
    assert RAN == [("refund", 500)]
    assert "refunded 500 on o-2" in llm.seen[-1]
