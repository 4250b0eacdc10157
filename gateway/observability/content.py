"""Prompt and completion text for spans, only when the operator opts in (GATEWAY_TRACE_CONTENT=true).

The shape is the GenAI semantic conventions' ``gen_ai.input.messages`` / ``gen_ai.output.messages``:
a JSON list of ``{"role", "parts": [...]}``, each text part cut at a configurable length. Binary parts
(images, audio) are recorded by type only, never their data.
"""

from __future__ import annotations

from typing import Any

import orjson

TRUNCATED = "…[truncated]"


def _text(value: object, limit: int) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= limit else text[:limit] + TRUNCATED


def _parts(content: object, limit: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": _text(content, limit)}]
    parts: list[dict[str, Any]] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append({"type": "text", "content": _text(part.get("text", ""), limit)})
            elif isinstance(part, dict):
                parts.append({"type": str(part.get("type") or "unknown")})
    return parts


def _tool_calls(message: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        return []
    parts = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            parts.append({"type": "tool_call", "id": call.get("id"), "name": function.get("name"),
                          "arguments": _text(function.get("arguments") or "", limit)})
    return parts


def input_messages(operation: str, body: dict[str, Any], limit: int) -> str | None:
    """``gen_ai.input.messages`` for a chat or completion body; None for embeddings."""
    messages: list[dict[str, Any]] = []
    if operation == "chat" and isinstance(body.get("messages"), list):
        for message in body["messages"]:
            if not isinstance(message, dict):
                continue
            role = str(message.get("role") or "user")
            if role == "tool":
                parts = [{"type": "tool_call_response", "id": message.get("tool_call_id"),
                          "response": _text(message.get("content") or "", limit)}]
            else:
                parts = _parts(message.get("content"), limit) + _tool_calls(message, limit)
            messages.append({"role": role, "parts": parts})
    elif operation == "completion" and "prompt" in body:
        messages.append({"role": "user", "parts": [{"type": "text", "content": _text(body["prompt"], limit)}]})
    else:
        return None
    return orjson.dumps(messages).decode()


def output_messages(operation: str, raw: bytes, limit: int) -> str | None:
    """``gen_ai.output.messages`` from a JSON response body (streams are not assembled)."""
    if operation == "embedding":
        return None
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    choices = parsed.get("choices") if isinstance(parsed, dict) else None
    if not isinstance(choices, list):
        return None
    messages = []
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            parts = _parts(message.get("content"), limit) + _tool_calls(message, limit)
        else:
            parts = _parts(choice.get("text"), limit)
        messages.append({"role": "assistant", "parts": parts, "finish_reason": choice.get("finish_reason")})
    return orjson.dumps(messages).decode()
