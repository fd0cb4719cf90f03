"""Not an MCP server: for every request line it first writes a line that is not JSON and a line
over the proxy's 16 MiB limit, then a valid JSON-RPC answer. The proxy must drop the garbage and
keep relaying."""

import json
import sys

for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if "id" not in msg:
        continue
    sys.stdout.write("this is not json\n")
    sys.stdout.write("x" * (17 << 20) + "\n")
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {"echo": msg.get("method")}}) + "\n")
    sys.stdout.flush()
