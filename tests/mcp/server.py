"""An MCP server with three tools that records every call it receives (one JSON line each) in
the file named by $RECORD, so tests can tell what reached it."""

import json
import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("files")


def record(tool: str, **args: object) -> None:
    with open(os.environ["RECORD"], "a") as f:
        f.write(json.dumps({"tool": tool, "args": args}) + "\n")


@server.tool()
def read_file(path: str) -> str:
    """Read a file."""
    record("read_file", path=path)
    return f"contents of {path}"


@server.tool()
def delete_file(path: str) -> str:
    """Delete a file."""
    record("delete_file", path=path)
    return "deleted"


@server.tool()
def run_shell(cmd: str) -> str:
    """Run a shell command."""
    record("run_shell", cmd=cmd)
    return f"ran {cmd}"


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 2 and sys.argv[1] == "--http":
        # Streamable HTTP on 127.0.0.1:PORT/mcp.
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    elif len(sys.argv) > 4 and sys.argv[1] == "--https":
        # The same over TLS: `--https PORT CERT KEY`.
        import uvicorn

        uvicorn.run(
            server.streamable_http_app(),
            host="127.0.0.1",
            port=int(sys.argv[2]),
            ssl_certfile=sys.argv[3],
            ssl_keyfile=sys.argv[4],
            log_level="warning",
        )
    else:
        server.run("stdio")
