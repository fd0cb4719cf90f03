"""Every Python snippet of the upstream Faramesh documentation (the Python SDK's quick start and
GovernedToolSet pages, "govern your own tool", the README), run as written against the real
daemon's HTTPS listener with the env vars that documentation names
(`FARAMESH_URL`, `FARAMESH_API_KEY`; `FARAMESH_CA_CERT` trusts the self-signed certificate).

The copies of those pages lost their line breaks and indentation; the snippets below restore them and
change nothing else, except placeholders, each marked `# placeholder:` with what it stands for.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import textwrap
import threading
import time
from typing import Any

import pytest
from conftest import AGENT_TOKEN, APPROVER_TOKEN, POLICY, ROOT, Daemon, make_daemon

from faramesh import UnauthorizedError


@pytest.fixture
def env(https_daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> Daemon:
    assert https_daemon.url and https_daemon.cert
    monkeypatch.setenv("FARAMESH_URL", https_daemon.url)
    monkeypatch.setenv("FARAMESH_API_KEY", AGENT_TOKEN)
    monkeypatch.setenv("FARAMESH_CA_CERT", https_daemon.cert)
    return https_daemon


def run(snippet: str, **names: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = dict(names)
    exec(compile(textwrap.dedent(snippet), "<upstream snippet>", "exec"), namespace)
    return namespace


# ---- python-sdk-quick.txt -------------------------------------------------------------------

SUBMIT = """
from faramesh.sdk import submit_action
action = submit_action(
    agent_id="my-agent",
    tool="shell",
    operation="exec",
    params={"cmd": "ls -la"}
)
print(f"Status: {action['status']}, Decision: {action['decision']}")
"""

LIST_GET = """
from faramesh.sdk import list_actions, get_action
actions = list_actions(status="pending_approval", limit=10)
action = get_action(action_id=ACTION_ID)  # placeholder: "..." = an action id
"""

APPROVE_REJECT = """
from faramesh.sdk import approve_action, reject_action
approve_action(action_id=FIRST, token=TOKEN, reason="Approved")  # placeholder: ids and the approval_token
reject_action(action_id=SECOND, token=TOKEN2, reason="Rejected")
"""

GATE = """
from faramesh import gate_decide
decision = gate_decide(
    agent_id="my-agent",
    tool="shell",
    operation="exec",
    params={"cmd": "ls -la"},
    context={}
)
print(decision.outcome)
print(decision.reason_code, decision.reason)
"""

EXECUTE = """
from faramesh import execute_if_allowed
def my_executor(params):
    return {"result": "ok"}
result = execute_if_allowed(
    agent_id="my-agent",
    tool=TOOL,  # placeholder: the documentation's "shell" (deferred here), and "http" (permitted)
    operation=OPERATION,
    params={"cmd": "ls -la"},
    executor=my_executor
)
"""


def test_quick_submit_list_get(env: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    ns = run(SUBMIT)
    assert capsys.readouterr().out.strip() == "Status: pending_approval, Decision: require_approval"
    action = ns["action"]
    assert action["approval_token"] is None, "an agent token is not shown the approval token"
    ns = run(LIST_GET, ACTION_ID=action["id"])
    assert any(a["id"] == action["id"] for a in ns["actions"])
    assert all(a["status"] == "pending_approval" for a in ns["actions"]) and len(ns["actions"]) <= 10
    assert ns["action"]["id"] == action["id"] and ns["action"]["status"] == "pending_approval"


def test_quick_approve_and_reject_need_an_approver(env: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = run(SUBMIT)["action"], run(SUBMIT)["action"]
    with pytest.raises(UnauthorizedError, match="approver"):
        run(APPROVE_REJECT, FIRST=first["id"], SECOND=second["id"], TOKEN=None, TOKEN2=None)
    monkeypatch.setenv("FARAMESH_API_KEY", APPROVER_TOKEN)
    from faramesh.sdk import get_action

    tokens = [get_action(a["id"])["approval_token"] for a in (first, second)]
    assert all(tokens), "an approver sees the approval token"
    run(APPROVE_REJECT, FIRST=first["id"], SECOND=second["id"], TOKEN=tokens[0], TOKEN2=tokens[1])
    assert get_action(first["id"])["status"] == "approved"
    assert get_action(second["id"])["status"] == "denied"


def test_quick_gate_decide(env: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    before = len(env.actions())
    run(GATE)
    out = capsys.readouterr().out.splitlines()
    assert out == ["ABSTAIN", "POLICY_DEFER Shell commands need a human"]
    assert len(env.actions()) == before, "gate_decide records nothing"


def test_quick_execute_if_allowed(env: Daemon) -> None:
    deferred = run(EXECUTE, TOOL="shell", OPERATION="exec")["result"]
    assert deferred["outcome"] == "ABSTAIN" and deferred["executed"] is False
    permitted = run(EXECUTE, TOOL="http", OPERATION="get")["result"]
    assert permitted["outcome"] == "EXECUTE" and permitted["executed"] is True
    assert permitted["execution_result"] == {"result": "ok"}
    from faramesh.sdk import get_action

    assert get_action(permitted["action_id"])["status"] == "succeeded"


# ---- python-sdk-governedtoolset.txt ---------------------------------------------------------

RAN: list[str] = []


def search_docs(query: str) -> str:
    RAN.append("search_docs")
    return f"docs about {query}"


def send_email(to: str, body: str) -> str:
    RAN.append("send_email")
    return "sent"


def charge_card(amount: int) -> str:
    RAN.append("charge_card")
    return "charged"


TOOLSET = """
from faramesh import GovernedToolSet
tools = GovernedToolSet(
    [search_docs, send_email, charge_card],
    agent_id="payments-bot",
)
"""

CONSTRUCTOR = """
GovernedToolSet(
    tools,                  # iterable of tools
    agent_id="my-agent",    # required, must match an agent in governance.fms
    transport=None,         # auto-selected (see Transport)
    on_defer="raise",       # "raise" | "block" | callback
    on_deny="raise",
    timeout_seconds=10.0,
    fail_open=False,        # only ever True for explicit dev paths
)
"""

DENIAL = """
from faramesh import ToolDeniedException
try:
    result = tool.invoke(args)
except ToolDeniedException as denial:
    denial.code             # "POLICY_DENY", "POLICY_DEFER", "RATE_EXCEEDED", ...
    denial.human_message    # free-form message
    denial.rule_ref         # "governance.fms:12"
    denial.resolution       # structured hint (retry_after, pending_approval, ...)
    denial.approval_id      # convenience for POLICY_DEFER
    denial.action_id        # the DPR id for this denial
    caught = denial
"""

ASYNC_TOOLS = """
async def my_tool(query: str) -> str:
    return "found " + query
graph = create_react_agent(model, GovernedToolSet([my_tool], agent_id="my-agent"))  # placeholder: agent_id="..."
out = await_(graph.ainvoke({"messages": [("user", "search")]}))  # placeholder: {...}; await outside a coroutine
"""

TRANSPORT = """
from faramesh.transport import HttpTransport, SocketTransport
tools = GovernedToolSet(
    [search_docs],  # placeholder: [...]
    agent_id="payments-bot",
    transport=HttpTransport("https://eval.internal", token="..."),
)
"""

LOGGING = """
import logging
logging.getLogger("faramesh").setLevel(logging.INFO)
"""

STUB = """
from faramesh.testing import StubTransport
tools = GovernedToolSet(
    [search_docs],
    agent_id="my-agent",
    transport=StubTransport({
        "search_docs": "permit",
    }),
)
# Now run your agent against the stub
"""


def test_governedtoolset_snippets(env: Daemon) -> None:
    RAN.clear()
    ns = run(TOOLSET, search_docs=search_docs, send_email=send_email, charge_card=charge_card)
    tools = ns["tools"]
    assert [t.__name__ for t in tools] == ["search_docs", "send_email", "charge_card"]
    assert tools[0]("budgets") == "docs about budgets"
    ns = run(CONSTRUCTOR, GovernedToolSet=ns["GovernedToolSet"], tools=[search_docs])

    from langchain_core.tools import tool as lc_tool

    from faramesh import GovernedToolSet

    @lc_tool
    def delete_file(path: str) -> str:
        """Delete a file."""
        RAN.append("delete_file")
        return "deleted"

    governed = GovernedToolSet([delete_file], agent_id="payments-bot")[0]
    caught = run(DENIAL, tool=governed, args={"path": "/"})["caught"]
    line = POLICY.splitlines().index("  - id: no-delete") + 1
    assert caught.code == "POLICY_DENY" and caught.rule_ref == f"{env.policy}:{line}" and caught.action_id
    assert "delete_file" not in RAN

    ns = run(TRANSPORT, GovernedToolSet=GovernedToolSet, search_docs=search_docs)
    assert ns["tools"].governor.transport.target == "https://eval.internal"
    run(LOGGING)
    import logging

    assert logging.getLogger("faramesh").level == logging.INFO
    stubbed = run(STUB, GovernedToolSet=GovernedToolSet, search_docs=search_docs)["tools"]
    assert stubbed[0]("x") == "docs about x"


def test_governedtoolset_snippet_under_the_shipped_functions_policy(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README points newcomers at this page's snippet and at `policies/examples/functions.yaml`
    (the policy of its first governed function): under that file, as shipped, over the socket,
    `search_docs` runs, `send_email` waits for a person and `charge_card` is denied."""
    from faramesh import ToolDeniedException

    d = make_daemon(tmp_path, policy=(ROOT / "policies" / "examples" / "functions.yaml").read_text())
    try:
        monkeypatch.setenv("FARAMESH_SOCKET", d.socket)
        RAN.clear()
        search, email, charge = run(TOOLSET, search_docs=search_docs, send_email=send_email, charge_card=charge_card)[
            "tools"
        ]
        assert search("refunds") == "docs about refunds"
        with pytest.raises(ToolDeniedException) as deferred:
            email(to="a@example.com", body="hi")
        assert deferred.value.code == "POLICY_DEFER" and deferred.value.approval_id
        with pytest.raises(ToolDeniedException) as denied:
            charge(amount=50)
        assert denied.value.code == "DEFAULT_DENY_NO_MATCH"
        assert RAN == ["search_docs"]
    finally:
        d.stop()


def test_governedtoolset_async_snippet(env: Daemon) -> None:
    import warnings

    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, ToolMessage

    from faramesh import GovernedToolSet

    class Scripted(GenericFakeChatModel):
        def bind_tools(self, tools: Any, **kwargs: Any) -> Scripted:
            return self

    model = Scripted(
        messages=iter(
            [
                AIMessage(content="", tool_calls=[{"name": "my_tool", "args": {"query": "q"}, "id": "c1"}]),
                AIMessage(content="done"),
            ]
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langgraph.prebuilt import create_react_agent
    ns = run(
        ASYNC_TOOLS,
        create_react_agent=create_react_agent,
        model=model,
        GovernedToolSet=GovernedToolSet,
        await_=asyncio.run,
    )
    [reply] = [m for m in ns["out"]["messages"] if isinstance(m, ToolMessage)]
    assert reply.content == "found q" and ns["out"]["messages"][-1].content == "done"
    assert env.actions(tool="my_tool")[0]["effect"] == "PERMIT"


# ---- govern-your-own-tool.txt ---------------------------------------------------------------

REFUND = """
from faramesh.sdk.client import ExecutionGovernorClient

client = ExecutionGovernorClient()  # Uses FARAMESH_URL and FARAMESH_API_KEY

def refund_customer(amount: float, customer_id: str) -> dict:
    # 1. Submit to Faramesh
    action = client.submit_action(
        tool="refund",
        operation="process",
        params={"amount": amount, "customer_id": customer_id},
        context={"agent_id": "billing-bot"}
    )
    # 2. Check status
    if action["status"] == "denied":
        raise PermissionError(f"Refund denied: {action.get('reason')}")
    if action["status"] == "pending_approval":
        print(f"Refund needs approval. Action ID: {action['id']}")
        print("Open the dashboard to approve or deny.")
        # Option: poll until approved, or exit and let user approve
        import time
        for _ in range(150):  # 5 minutes
            time.sleep(2)
            updated = client.get_action(action["id"])
            if updated["status"] in ("approved", "allowed"):
                break
            if updated["status"] == "denied":
                raise PermissionError("Refund was denied")
        else:
            raise TimeoutError("Approval timeout")
    # 3. Execute only if allowed
    if action["status"] not in ("allowed", "approved"):
        raise PermissionError(f"Refund not approved. Status: {action['status']}")
    # 4. Do the actual refund
    try:
        result = your_refund_logic(amount, customer_id)
        client.report_result(action["id"], success=True, result=result)
        return result
    except Exception as e:
        client.report_result(action["id"], success=False, error=str(e))
        raise

def delete_user(user_id: str) -> bool:
    action = client.submit_action(
        tool="user_management",
        operation="delete",
        params={"user_id": user_id},
        context={"agent_id": "admin-bot"}
    )
    if action["status"] == "denied":
        raise PermissionError(f"Delete denied: {action.get('reason')}")
    if action["status"] == "pending_approval":
        print(f"Delete needs approval: {action['id']}")
        # Same polling logic as above...
    # Execute deletion
    try:
        your_delete_logic(user_id)
        client.report_result(action["id"], success=True)
        return True
    except Exception as e:
        client.report_result(action["id"], success=False, error=str(e))
        raise
"""


def test_govern_your_own_tool(env: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    refunded: list[tuple[float, str]] = []

    def your_refund_logic(amount: float, customer_id: str) -> dict[str, Any]:
        refunded.append((amount, customer_id))
        return {"refund_id": "r-1", "amount": amount}

    ns = run(REFUND, your_refund_logic=your_refund_logic, your_delete_logic=lambda user_id: None)
    assert ns["refund_customer"](50, "c-1") == {"refund_id": "r-1", "amount": 50}
    from faramesh.sdk import list_actions

    [small] = list_actions(agent_id="billing-bot", tool="refund", limit=1)
    assert small["status"] == "succeeded" and small["params"] == {"amount": 50, "customer_id": "c-1"}
    from faramesh.sdk.client import ExecutionGovernorClient

    timeline = [e["event_type"] for e in ExecutionGovernorClient().get_events(small["id"])]
    assert timeline == ["created", "decision_made", "started", "succeeded"], timeline

    # A large refund waits for a human; a denial (by an approver, another client) ends it.
    approver = {"FARAMESH_API_KEY": APPROVER_TOKEN}

    def deny_when_pending() -> None:
        from faramesh.sdk.client import ExecutionGovernorClient

        admin = ExecutionGovernorClient(api_key=approver["FARAMESH_API_KEY"])
        deadline = time.time() + 20
        while time.time() < deadline:
            pending = admin.list_actions(status="pending_approval", agent_id="billing-bot")
            if pending:
                admin.reject_action(pending[0]["id"], reason="too large")
                return
            time.sleep(0.1)

    t = threading.Thread(target=deny_when_pending)
    t.start()
    with pytest.raises(PermissionError, match="Refund was denied"):
        ns["refund_customer"](150, "c-2")
    t.join()
    assert "Refund needs approval. Action ID: " in capsys.readouterr().out
    assert refunded == [(50, "c-1")]
    with pytest.raises(PermissionError, match="Delete denied: "):
        ns["delete_user"]("u-1")


def test_govern_your_own_tool_curl_body(env: Daemon) -> None:
    """The documentation's curl: agent_id inside context, the v1 route, then a result report."""
    assert env.url and env.cert
    host, port = env.url.removeprefix("https://").split(":")
    conn = http.client.HTTPSConnection(host, int(port), context=ssl.create_default_context(cafile=env.cert))
    body = '{"tool":"refund","operation":"process","params":{"amount":150},"context":{"agent_id":"billing-bot"}}'
    headers = {"Authorization": f"Bearer {AGENT_TOKEN}", "Content-Type": "application/json"}
    conn.request("POST", "/v1/actions", body=body, headers=headers)
    action = json.loads(conn.getresponse().read())
    assert action["agent_id"] == "billing-bot" and action["status"] == "pending_approval"


# ---- faramesh-readme.txt --------------------------------------------------------------------

README = """
from faramesh.integrations import govern

# LangChain
tool = govern(ShellTool(), agent_id="my-agent")
lc = tool

# CrewAI
tool = govern(FileReadTool(), agent_id="my-agent")
crew = tool

# AutoGen
governed_fn = govern(my_function, agent_id="my-agent", framework="autogen")

# Any custom tool or MCP server
tool = govern(my_tool, agent_id="my-agent")
"""


def test_readme_govern_lines(env: Daemon) -> None:
    """`ShellTool` (now in langchain-community) and `FileReadTool` (crewai-tools, which pins an
    openai release openai-agents cannot use) stand as tools of the same base classes."""
    from crewai.tools import BaseTool as CrewBaseTool
    from langchain_core.tools import BaseTool as LcBaseTool

    ran: list[str] = []

    class ShellTool(LcBaseTool):
        name: str = "shell"
        description: str = "Run shell commands."

        def _run(self, commands: str) -> str:
            ran.append("shell")
            return "ran"

    class FileReadTool(CrewBaseTool):
        name: str = "read_file"
        description: str = "Read a file."

        def _run(self, file_path: str) -> str:
            ran.append("read_file")
            return "contents"

    def my_function(path: str) -> str:
        ran.append("delete_file")
        return "deleted"

    my_function.__name__ = "delete_file"

    def my_tool(url: str) -> str:
        ran.append("http")
        return "fetched"

    ns = run(README, ShellTool=ShellTool, FileReadTool=FileReadTool, my_function=my_function, my_tool=my_tool)
    assert isinstance(ns["lc"], LcBaseTool) and isinstance(ns["crew"], CrewBaseTool)
    from faramesh import ToolDeniedException

    with pytest.raises(ToolDeniedException) as err:
        ns["lc"].invoke({"commands": "ls"})
    assert err.value.code == "POLICY_DEFER"
    assert ns["crew"].run(file_path="/etc/hosts") == "contents"
    with pytest.raises(ToolDeniedException):
        ns["governed_fn"]("/")
    assert ran == ["read_file"]


# ---- faramesh-core-readme-long.txt: the LangChain integration and the top-level imports ------

LANGCHAIN = """
from faramesh.sdk.client import ExecutionGovernorClient
from faramesh.integrations.langchain.governed_tool import GovernedTool

# Create Faramesh client
client = ExecutionGovernorClient(URL)  # placeholder: "http://127.0.0.1:8000" = the daemon's URL

# Wrap LangChain tool
shell_tool = ShellTool()
governed = GovernedTool(
    tool=shell_tool,
    client=client,
    agent_id="my-langchain-agent"
)
"""


def test_langchain_governed_tool_snippet(env: Daemon) -> None:
    """`GovernedTool(tool=, client=, agent_id=)`: the wrapped tool runs only when allowed, and its
    start and result are reported; a pending call raises and names its action."""
    from langchain_core.tools import BaseTool as LcBaseTool

    from faramesh import ToolDeniedException, approve_action, get_action, list_actions

    ran: list[str] = []

    class ShellTool(LcBaseTool):
        name: str = "shell"
        description: str = "Run shell commands."

        def _run(self, commands: str) -> str:
            ran.append(commands)
            return f"ran {commands}"

    class SearchDocs(LcBaseTool):
        name: str = "search_docs"
        description: str = "Search."

        def _run(self, query: str) -> str:
            ran.append(query)
            return f"found {query}"

    ns = run(LANGCHAIN, ShellTool=ShellTool, URL=env.url)
    governed = ns["governed"]
    assert isinstance(governed, LcBaseTool) and governed.name == "shell"
    with pytest.raises(ToolDeniedException) as err:
        governed.run("ls -la")  # the snippet's call: shell needs approval under this policy
    assert err.value.code == "POLICY_DEFER" and err.value.action_id and ran == []
    searched = ns["GovernedTool"](tool=SearchDocs(), client=ns["client"], agent_id="my-langchain-agent")
    assert searched.run("faramesh") == "found faramesh"
    done = [a for a in list_actions(limit=10) if a["tool"] == "search_docs"]
    assert done and get_action(done[0]["id"])["status"] == "succeeded"
    # The top-level functional imports of the upstream quickstart exist and are the SDK's.
    assert callable(approve_action)
