"""`GovernedTool(tool=..., client=..., agent_id=...)`: the upstream Faramesh documentation's
LangChain wrapper. Every run is submitted as a v1 action (tool = the LangChain tool's name,
operation `invoke`, params = its arguments) through an `ExecutionGovernorClient`; the wrapped
tool runs only when the action is allowed (or approved), with its start and result reported.
A denied or pending action raises :class:`faramesh.ToolDeniedException` (for a pending one,
`approval_id` and `action_id` name what to approve: `faramesh approve <action id>`).

For LangGraph interrupts, typed transports and more, see `faramesh.GovernedToolSet`."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool
from pydantic import PrivateAttr

from ...errors import ToolDeniedException
from ...sdk.client import ExecutionGovernorClient


class GovernedTool(BaseTool):
    """A LangChain tool that runs the wrapped tool only when Faramesh allows the call."""

    _inner: BaseTool = PrivateAttr()
    _client: ExecutionGovernorClient = PrivateAttr()
    _agent_id: str = PrivateAttr()

    def __init__(
        self,
        tool: BaseTool,
        client: ExecutionGovernorClient | None = None,
        agent_id: str = "langchain-agent",
    ) -> None:
        super().__init__(
            name=tool.name,
            description=tool.description,
            args_schema=tool.args_schema,
            return_direct=tool.return_direct,
        )
        self._inner = tool
        self._client = client if client is not None else ExecutionGovernorClient()
        self._agent_id = agent_id

    @property
    def inner(self) -> BaseTool:
        """The tool being governed."""
        return self._inner

    def _run(self, *args: Any, run_manager: Any = None, **kwargs: Any) -> Any:
        params: dict[str, Any] = dict(kwargs) if kwargs else {"input": args[0] if args else ""}
        action = self._client.submit_action(
            self.name, "invoke", params, {"agent_id": self._agent_id}, agent_id=self._agent_id
        )
        status = action.get("status")
        if status not in ("allowed", "approved"):
            pending = status == "pending_approval"
            raise ToolDeniedException(
                str(action.get("reason_code") or ("POLICY_DEFER" if pending else "POLICY_DENY")),
                str(action.get("reason") or ""),
                effect="DEFER" if pending else "DENY",
                rule_id=action.get("rule_id"),
                rule_ref=action.get("rule_ref"),
                approval_id=action.get("approval_id") if pending else None,
                action_id=action.get("id"),
                decision=action,
            )
        action_id = str(action["id"])
        self._client.start_action(action_id)
        tool_input: Any = kwargs if kwargs else (args[0] if args else "")
        try:
            result = self._inner.run(tool_input)
        except Exception as e:
            self._client.report_result(action_id, False, error=str(e))
            raise
        self._client.report_result(action_id, True, result=result)
        return result
