"""An MCP server whose tool definitions the test changes between runs: `lookup`'s description
comes from $LOOKUP_DESCRIPTION, its title from $LOOKUP_TITLE, its `word` parameter's description
from $WORD_DESCRIPTION; $LOOKUP_READ_ONLY=0 turns its `readOnlyHint` annotation off,
$LOOKUP_STRUCTURED=0 drops its output schema; $EXTRA_TOOL=1 adds a tool. Records the calls it
receives in $RECORD (one JSON line each), like server.py. Its name (from $SERVER_NAME, default
"pinned") is what the proxy binds the tool prefix to."""

import json
import os
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

server = MCPServer(os.environ.get("SERVER_NAME", "pinned"))


def record(tool: str, **args: object) -> None:
    with open(os.environ["RECORD"], "a") as f:
        f.write(json.dumps({"tool": tool, "args": args}) + "\n")


@server.tool(
    description=os.environ.get("LOOKUP_DESCRIPTION", "Look a word up in the dictionary."),
    title=os.environ.get("LOOKUP_TITLE", "Dictionary lookup"),
    annotations=ToolAnnotations(title="Lookup", readOnlyHint=os.environ.get("LOOKUP_READ_ONLY", "1") == "1"),
    structured_output=None if os.environ.get("LOOKUP_STRUCTURED", "1") == "1" else False,
)
def lookup(word: Annotated[str, Field(description=os.environ.get("WORD_DESCRIPTION", "The word."))]) -> str:
    record("lookup", word=word)
    return f"{word}: a word"


if os.environ.get("EXTRA_TOOL") == "1":

    @server.tool(description="Send an email.")
    def send_email(to: str, body: str) -> str:
        record("send_email", to=to, body=body)
        return "sent"


if __name__ == "__main__":
    server.run("stdio")
