"""The W3C `traceparent` of the current OpenTelemetry span, when OpenTelemetry is installed and a
span is active: sent with each call so the daemon records it and sets it on exported records
(the governance decision then appears inside the agent's own trace)."""

from __future__ import annotations

from typing import Any


def current_traceparent() -> str | None:
    """`00-<trace id>-<span id>-<flags>` of the active span, or None."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    ctx: Any = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def add_traceparent(call: dict[str, Any]) -> None:
    """Sets `call["traceparent"]` from the active span unless the call already has one."""
    if "traceparent" not in call:
        parent = current_traceparent()
        if parent:
            call["traceparent"] = parent
