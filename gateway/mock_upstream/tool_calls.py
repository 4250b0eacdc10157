"""Decide which tools the mock calls, for OpenAI ``tools`` and Anthropic ``tools``.

A call is made when the request offers tools and either the model has the ``tool`` directive or
the request forces one (``tool_choice`` "required"/named, Anthropic ``any``/``tool``). The
directive alone does not call a tool when the conversation ends with a tool result, so an agent
loop driven by the mock terminates after one round. Every call's arguments are
``{"query": <last user text>}``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One tool call the mock will emit."""

    name: str
    arguments: dict[str, Any]
    id_suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:24])

    @property
    def arguments_json(self) -> str:
        return orjson.dumps(self.arguments).decode()


def _openai_names(tools: Any) -> list[str]:
    names: list[str] = []
    if not isinstance(tools, list):
        return names
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names


def plan_openai(
    body: dict[str, Any], directive: bool, ends_with_result: bool, query: str
) -> list[PlannedCall]:
    """Calls for an OpenAI chat request; empty means answer with text."""
    names = _openai_names(body.get("tools"))
    choice = body.get("tool_choice")
    if not names or choice == "none":
        return []
    arguments = {"query": query}
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str):
            return [PlannedCall(name, arguments)]
    if choice == "required":
        chosen = names[:2] if directive and body.get("parallel_tool_calls") is not False else names[:1]
        return [PlannedCall(name, arguments) for name in chosen]
    if not directive or ends_with_result:
        return []
    chosen = names[:2] if body.get("parallel_tool_calls") is not False else names[:1]
    return [PlannedCall(name, arguments) for name in chosen]


def plan_anthropic(
    body: dict[str, Any], directive: bool, ends_with_result: bool, query: str
) -> list[PlannedCall]:
    """Calls for an Anthropic Messages request; empty means answer with text."""
    tools = body.get("tools")
    names = (
        [t["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]
        if isinstance(tools, list)
        else []
    )
    choice = body.get("tool_choice")
    choice = choice if isinstance(choice, dict) else {}
    kind = choice.get("type", "auto")
    if not names or kind == "none":
        return []
    arguments = {"query": query}
    if kind == "tool" and isinstance(choice.get("name"), str):
        return [PlannedCall(choice["name"], arguments)]
    parallel = not choice.get("disable_parallel_tool_use", False)
    if kind == "any":
        chosen = names[:2] if directive and parallel else names[:1]
        return [PlannedCall(name, arguments) for name in chosen]
    if not directive or ends_with_result:
        return []
    chosen = names[:2] if parallel else names[:1]
    return [PlannedCall(name, arguments) for name in chosen]
