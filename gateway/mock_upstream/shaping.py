"""Turn the mock's base reply into the final text: JSON modes, padding, stop sequences, limits.

The same function shapes streamed and non-streamed replies, so a stream's concatenated deltas
always equal the non-streamed content for the same request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import orjson

from gateway.mock_upstream import tokens

Finish = Literal["stop", "length", "stop_sequence"]

_SCALAR_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {"string": "x", "number": 0, "integer": 0, "boolean": False, "null": None}
)
_MAX_SCHEMA_DEPTH = 8


@dataclass(frozen=True, slots=True)
class Shaped:
    """A reply text and why it ended."""

    text: str
    finish: Finish
    stop_sequence: str | None = None
    """The stop sequence that cut the text, when ``finish == "stop_sequence"``."""


def stop_list(stop: Any) -> list[str]:
    """Stop sequences from a ``stop``/``stop_sequences`` field (string or list of strings)."""
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list):
        return [s for s in stop if isinstance(s, str) and s]
    return []


def shape(text: str, *, stops: list[str], max_tokens: int | None, chunks: int | None) -> Shaped:
    """Pad to ``chunks`` tokens, cut at the earliest stop sequence, then at ``max_tokens``."""
    if chunks is not None:
        text = tokens.pad(text, chunks)
    earliest: tuple[int, str] | None = None
    for stop in stops:
        at = text.find(stop)
        if at >= 0 and (earliest is None or at < earliest[0]):
            earliest = (at, stop)
    if earliest is not None:
        text = text[: earliest[0]]
    if max_tokens is not None:
        text, cut = tokens.truncate(text, max_tokens)
        if cut:
            return Shaped(text, "length")
    if earliest is not None:
        return Shaped(text, "stop_sequence", earliest[1])
    return Shaped(text, "stop")


def json_reply(response_format: Any, echo: str) -> str | None:
    """The content an OpenAI ``response_format`` asks for, or ``None`` for plain text."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return orjson.dumps({"echo": echo}).decode()
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        root = schema if isinstance(schema, dict) else {}
        value = example_for(root, root, 0)
        if not isinstance(value, dict):
            value = {}
        return orjson.dumps(value).decode()
    return None


def example_for(schema: Any, root: dict[str, Any], depth: int) -> Any:
    """A minimal value satisfying ``schema``: every required property, each of its declared type.

    Local ``$ref`` pointers (``#/$defs/...``, as pydantic emits) are followed; ``enum`` and
    ``const`` win over ``type``; ``anyOf``/``oneOf`` take their first non-null branch.
    """
    if not isinstance(schema, dict) or depth > _MAX_SCHEMA_DEPTH:
        return {}
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return example_for(_resolve(ref, root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options:
            chosen = next((o for o in options if not _is_null(o)), options[0])
            return example_for(chosen, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = schema.get("required")
        names = required if isinstance(required, list) else []
        return {
            name: example_for(properties.get(name, {}), root, depth + 1)
            for name in names
            if isinstance(name, str)
        }
    if kind == "array":
        return []
    if isinstance(kind, str) and kind in _SCALAR_DEFAULTS:
        return _SCALAR_DEFAULTS[kind]
    return {}


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    if not ref.startswith("#/"):
        return {}
    node: Any = root
    for part in ref[2:].split("/"):
        if not isinstance(node, dict):
            return {}
        node = node.get(part.replace("~1", "/").replace("~0", "~"))
    return node
