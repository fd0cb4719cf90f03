"""Google ADK agents governed by the real daemon: an `Agent` run by ADK's `InMemoryRunner` with
a scripted model (a `BaseLlm` answering from a script: no network). The plugin governs every
tool of the runner; `before_tool_callback` one agent's. A denied or deferred tool never runs and
the model reads why."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.adk.agents import Agent
from google.adk.apps import App
from google.adk.models import BaseLlm, LlmRequest, LlmResponse
from google.adk.runners import InMemoryRunner
from google.genai import types

from faramesh.integrations.adk import FarameshPlugin, before_tool_callback

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pylib"))
from faramesh_testd import Daemon  # noqa: E402

POLICY = """
version: 1
rules:
  - id: refund-small
    match: { tool: refund, amount_lte: 100 }
    allow: true
  - id: refund-large
    match: { tool: refund, amount_gt: 100 }
    require_approval: true
    description: Large refunds need a person
  - id: no-delete
    match: { tool: delete_account }
    deny: true
    description: Accounts are never deleted by an agent
"""

RAN: list[tuple[str, Any]] = []


def refund(order: str, amount: int) -> dict[str, Any]:
    """Refund an order."""
    RAN.append(("refund", amount))
    return {"refunded": amount, "order": order}


def delete_account(account: str) -> dict[str, Any]:
    """Delete an account."""
    RAN.append(("delete_account", account))
    return {"deleted": account}


class ScriptedModel(BaseLlm):
    """Answers each request with the next turn of a script; keeps what the agent sent back."""

    script: list[list[types.Part]] = []
    seen: list[LlmRequest] = []

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        self.seen.append(llm_request)
        parts = self.script.pop(0)
        yield LlmResponse(content=types.Content(role="model", parts=parts))

    def function_responses(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for req in self.seen:
            for content in req.contents:
                for part in content.parts or []:
                    if part.function_response is not None:
                        out[str(part.function_response.name)] = dict(part.function_response.response or {})
        return out


def call(name: str, **args: Any) -> types.Part:
    return types.Part(function_call=types.FunctionCall(name=name, args=args))


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with tempfile.TemporaryDirectory(prefix="fm-adk-") as tmp:
        d = Daemon.serve(Path(tmp), POLICY)
        try:
            yield d
        finally:
            d.stop()


def run(agent: Agent, plugins: list[Any] | None = None) -> str:
    async def go() -> str:
        runner = InMemoryRunner(app=App(name="faramesh_test", root_agent=agent, plugins=plugins or []))
        session = await runner.session_service.create_session(app_name="faramesh_test", user_id="u")
        text = ""
        async for event in runner.run_async(
            user_id="u", session_id=session.id, new_message=types.Content(role="user", parts=[types.Part(text="go")])
        ):
            for part in (event.content.parts if event.content else None) or []:
                if part.text:
                    text = part.text
        return text

    return asyncio.run(go())


def test_the_plugin_governs_every_tool(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARAMESH_SOCKET", daemon.socket)
    RAN.clear()
    model = ScriptedModel(model="scripted")
    model.script = [
        [call("refund", order="o-1", amount=40), call("delete_account", account="a-9")],
        [types.Part(text="Refunded o-1; the account stays.")],
    ]
    model.seen = []
    agent = Agent(name="support", model=model, instruction="help", tools=[refund, delete_account])
    final = run(agent, plugins=[FarameshPlugin(agent_id="adk-support")])
    assert final == "Refunded o-1; the account stays."
    assert RAN == [("refund", 40)], "the denied tool never ran"
    responses = model.function_responses()
    assert responses["refund"] == {"refunded": 40, "order": "o-1"}
    assert "Accounts are never deleted by an agent" in responses["delete_account"]["error"]
    listed = {(a["tool"], a["effect"]) for a in daemon.actions(agent="adk-support")}
    assert listed == {("refund", "PERMIT"), ("delete_account", "DENY")}


def test_before_tool_callback_defers_a_large_refund(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARAMESH_SOCKET", daemon.socket)
    RAN.clear()
    model = ScriptedModel(model="scripted")
    model.script = [[call("refund", order="o-2", amount=500)], [types.Part(text="I asked for approval.")]]
    model.seen = []
    agent = Agent(
        name="billing",
        model=model,
        instruction="help",
        tools=[refund],
        before_tool_callback=before_tool_callback(agent_id="adk-billing"),
    )
    assert run(agent) == "I asked for approval."
    assert RAN == [], "deferred: not run"
    error = model.function_responses()["refund"]["error"]
    assert "pending approval" in error and "Large refunds need a person" in error
    [pending] = daemon.actions(agent="adk-billing")
    assert (pending["effect"], pending["rule_id"]) == ("DEFER", "refund-large")
