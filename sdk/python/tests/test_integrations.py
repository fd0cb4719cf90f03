"""`faramesh.integrations.govern` for one tool: AutoGen `FunctionTool`s and functions, an MCP
client (a real `MCPServer` connected in-process by the mcp package's `Client`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import Daemon

from faramesh import ToolDeniedException
from faramesh.integrations import govern

RAN: list[str] = []


@pytest.fixture(autouse=True)
def fresh(sock_env: Daemon) -> None:
    RAN.clear()


def test_autogen_function_tool() -> None:
    from autogen_core import CancellationToken
    from autogen_core.tools import BaseTool, FunctionTool

    async def read_file(path: str) -> str:
        RAN.append("read_file")
        return f"contents of {path}"

    async def delete_file(path: str) -> str:
        RAN.append("delete_file")
        return "deleted"

    reader = govern(FunctionTool(read_file, description="Read a file."), agent_id="ag-agent")
    deleter = govern(FunctionTool(delete_file, description="Delete a file."), agent_id="ag-agent")
    assert isinstance(reader, BaseTool) and reader.name == "read_file" and reader.description == "Read a file."
    assert reader.schema == FunctionTool(read_file, description="Read a file.").schema

    async def run() -> None:
        token = CancellationToken()
        assert await reader.run_json({"path": "/a"}, token) == "contents of /a"
        with pytest.raises(ToolDeniedException):
            await deleter.run_json({"path": "/a"}, token)

    asyncio.run(run())
    assert RAN == ["read_file"]


def test_autogen_plain_function_stays_a_function() -> None:
    def delete_file(path: str) -> str:
        RAN.append("delete_file")
        return "deleted"

    governed = govern(delete_file, agent_id="ag-agent", framework="autogen")
    assert callable(governed) and governed.__name__ == "delete_file"
    with pytest.raises(ToolDeniedException):
        governed("/x")
    assert RAN == []


def test_mcp_client(sock_env: Daemon) -> None:
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("files")

    @server.tool()
    def read_file(path: str) -> str:
        RAN.append("read_file")
        return f"contents of {path}"

    @server.tool()
    def delete_file(path: str) -> str:
        RAN.append("delete_file")
        return "deleted"

    async def run() -> Any:
        async with Client(server) as client:
            governed = govern(client, agent_id="mcp-agent")
            listed = await governed.list_tools()
            assert {t.name for t in listed.tools} == {"read_file", "delete_file"}
            result = await governed.call_tool("read_file", {"path": "/b"})
            with pytest.raises(ToolDeniedException) as err:
                await governed.call_tool("delete_file", {"path": "/b"})
            return result, err.value

    result, denial = asyncio.run(run())
    assert result.content[0].text == "contents of /b"
    assert denial.code == "POLICY_DENY" and RAN == ["read_file"]
    assert sock_env.actions(agent="mcp-agent")[0]["tool"] == "delete_file"
