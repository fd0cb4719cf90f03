"""Canonical JSON and `request_hash`, byte for byte what the daemon computes.

Rules (docs/decision-log.md): object keys sorted by code point, no whitespace, text unescaped
except `\\" \\\\ \\b \\f \\n \\r \\t` and `\\u00XX` for other control characters, integers with all
their digits, floats positional without exponent or trailing zeros (`1.0` -> `1`, `-0.0` -> `0`),
NaN and infinities refused.
"""

from __future__ import annotations

import hashlib
import math
from decimal import Decimal
from typing import Any

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _string(text: str) -> str:
    out = ['"']
    for ch in text:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"number {value!r} is not finite: NaN and infinities are not allowed")
    if value == 0.0:
        return "0"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def canonical_json(value: Any) -> str:
    """The canonical JSON text of `value` (dicts, lists, str, int, float, bool, None)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ",".join(_string(k) + ":" + canonical_json(v) for k, v in items) + "}"
    raise TypeError(f"{type(value).__name__} is not JSON")


def request_hash(agent_id: str, tool: str, operation: str, params: dict[str, Any], context: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical `{agent_id, context, operation, params, tool}`: the call's
    identity, equal to the daemon's `request_hash`."""
    body = {"agent_id": agent_id, "context": context, "operation": operation, "params": params, "tool": tool}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()
