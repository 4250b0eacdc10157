"""Read the text out of OpenAI and Anthropic message lists.

Both APIs allow a message's content to be a string or a list of typed parts; only text parts
matter to the mock. Functions here never raise on odd shapes: a field of the wrong type reads as
empty text, and request validation is left to the routes.
"""

from __future__ import annotations

from typing import Any

from gateway.mock_upstream import tokens


def text_of(content: Any) -> str:
    """Text of a content value: a string, or the concatenated ``text`` of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, dict)]


def last_user_text(messages: Any) -> str:
    """Text of the last ``user`` message, or ``""``."""
    for message in reversed(_messages(messages)):
        if message.get("role") == "user":
            return text_of(message.get("content"))
    return ""


def openai_tool_result(messages: Any) -> str | None:
    """Content of the final message if it is a ``tool`` result, else ``None``."""
    listed = _messages(messages)
    if listed and listed[-1].get("role") == "tool":
        return text_of(listed[-1].get("content"))
    return None


def anthropic_tool_result(messages: Any) -> str | None:
    """Content of the ``tool_result`` blocks of the final user message, else ``None``."""
    listed = _messages(messages)
    if not listed or listed[-1].get("role") != "user":
        return None
    content = listed[-1].get("content")
    if not isinstance(content, list):
        return None
    results = [
        text_of(block.get("content"))
        for block in content
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    return "\n".join(results) if results else None


def openai_prompt_tokens(messages: Any) -> int:
    """Prompt tokens of an OpenAI chat request (content, names and earlier tool calls)."""
    texts: list[str] = []
    for message in _messages(messages):
        text = text_of(message.get("content"))
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    text += f" {function.get('name', '')} {function.get('arguments', '')}"
        texts.append(text)
    return tokens.prompt_tokens(texts)


def _anthropic_block_text(block: Any) -> str:
    if not isinstance(block, dict):
        return ""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_result":
        return text_of(block.get("content"))
    if kind == "tool_use":
        return f"{block.get('name', '')} {block.get('input', '')}"
    return ""


def anthropic_prompt_tokens(system: Any, messages: Any) -> int:
    """Input tokens of an Anthropic Messages request, counted like an OpenAI chat prompt."""
    texts = [text_of(system)] if system else []
    for message in _messages(messages):
        content = message.get("content")
        if isinstance(content, list):
            texts.append(" ".join(_anthropic_block_text(block) for block in content))
        else:
            texts.append(text_of(content))
    return tokens.prompt_tokens(texts)
