"""The Anthropic SDK's tool runner (`client.beta.messages.tool_runner`) with `@beta_tool`
functions governed by the real daemon. The model is scripted: the client's HTTP transport
answers the Messages API with a `tool_use` turn, then a final text (no network)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anthropic
import httpx2
from anthropic import beta_async_tool, beta_tool
from conftest import Daemon

from faramesh import GovernedToolSet

RAN: list[tuple[str, Any]] = []


@beta_tool
def refund(order: str, amount: int) -> str:
    """Refund an order."""
    RAN.append(("refund", amount))
    return f"refunded {amount} on {order}"


@beta_tool
def delete_file(path: str) -> str:
    """Delete a file."""
    RAN.append(("delete_file", path))
    return "deleted"


@beta_async_tool
async def read_file(path: str) -> str:
    """Read a file."""
    RAN.append(("read_file", path))
    return f"contents of {path}"


@beta_async_tool(name="refund")
async def refund_async(order: str, amount: int) -> str:
    """Refund an order."""
    RAN.append(("refund", amount))
    return f"refunded {amount} on {order}"


class ScriptedModel:
    """The Messages API, scripted: each request gets the next turn; the requests are kept."""

    def __init__(self, turns: list[list[dict[str, Any]]]) -> None:
        self.turns = list(turns)
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(json.loads(request.content))
        content = self.turns.pop(0)
        stop = "tool_use" if any(c["type"] == "tool_use" for c in content) else "end_turn"
        return httpx2.Response(
            200,
            json={
                "id": f"msg_{len(self.requests)}",
                "type": "message",
                "role": "assistant",
                "model": "claude-test",
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            },
        )

    def tool_results(self) -> list[dict[str, Any]]:
        return [
            c
            for r in self.requests
            for m in r["messages"]
            if m["role"] == "user" and isinstance(m["content"], list)
            for c in m["content"]
            if c.get("type") == "tool_result"
        ]


def use(name: str, args: dict[str, Any], n: int) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{n}", "name": name, "input": args}


def client(model: ScriptedModel) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="test", http_client=httpx2.Client(transport=httpx2.MockTransport(model)))


def test_governed_tools_in_the_tool_runner(sock_env: Daemon) -> None:
    RAN.clear()
    tools = GovernedToolSet([refund, delete_file], agent_id="claude-agent")
    assert [t.name for t in tools] == ["refund", "delete_file"]
    assert tools[0].to_dict()["input_schema"] == refund.to_dict()["input_schema"], "the model sees the same tool"
    model = ScriptedModel(
        [
            [use("refund", {"order": "o-1", "amount": 50}, 1), use("delete_file", {"path": "/etc"}, 2)],
            [{"type": "text", "text": "Refunded o-1; I may not delete /etc."}],
        ]
    )
    runner = client(model).beta.messages.tool_runner(
        model="claude-test", max_tokens=256, tools=list(tools), messages=[{"role": "user", "content": "refund o-1"}]
    )
    final = runner.until_done()
    assert final.content[0].text == "Refunded o-1; I may not delete /etc."
    assert RAN == [("refund", 50)], "the denied tool never ran"
    results = {r["tool_use_id"]: r for r in model.tool_results()}
    assert not results["toolu_1"].get("is_error") and "refunded 50 on o-1" in json.dumps(results["toolu_1"])
    assert results["toolu_2"]["is_error"] is True
    assert "Deleting files is not allowed" in json.dumps(results["toolu_2"]), "the model is told why"
    ops = {(a["tool"], a["effect"]) for a in sock_env.actions(agent="claude-agent")}
    assert ops == {("refund", "PERMIT"), ("delete_file", "DENY")}


def test_async_tools_and_a_deferred_call(sock_env: Daemon) -> None:
    RAN.clear()
    tools = GovernedToolSet([read_file, refund_async], agent_id="claude-async")
    model = ScriptedModel(
        [
            [use("read_file", {"path": "/a"}, 1), use("refund", {"order": "o-2", "amount": 500}, 2)],
            [{"type": "text", "text": "done"}],
        ]
    )
    aclient = anthropic.AsyncAnthropic(
        api_key="test", http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(model))
    )
    runner = aclient.beta.messages.tool_runner(
        model="claude-test", max_tokens=256, tools=list(tools), messages=[{"role": "user", "content": "go"}]
    )
    final = asyncio.run(runner.until_done())
    assert final.content[0].text == "done"
    assert RAN == [("read_file", "/a")], "the deferred refund did not run"
    results = {r["tool_use_id"]: r for r in model.tool_results()}
    assert results["toolu_2"]["is_error"] is True and "pending approval" in json.dumps(results["toolu_2"]).lower()
