"""LangChain, as the upstream Faramesh documentation imports it:
`from faramesh.integrations.langchain.governed_tool import GovernedTool`."""

from .governed_tool import GovernedTool

__all__ = ["GovernedTool"]
