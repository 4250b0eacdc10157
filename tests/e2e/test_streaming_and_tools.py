"""SSE streaming (with usage), tool calls streamed and not, and the two engines agreeing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.processes import MASTER_KEY, Process

ENGINES = ["echo", "echo-litellm", "claude"]
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "search", "description": "search the web",
                                      "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                                                     "required": ["query"]}}},
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}},
]


@pytest.mark.parametrize("alias", ENGINES)
def test_stream_with_usage(client: openai.OpenAI, alias: str) -> None:
    stream = client.chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "the quick brown fox jumps"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "the quick brown fox jumps"
    assert chunks[-1].usage is not None
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens > 0
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert len({c.id for c in chunks}) == 1


@pytest.mark.parametrize("alias", ENGINES)
def test_stream_without_usage_has_no_usage_chunk(client: openai.OpenAI, alias: str) -> None:
    stream = client.chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "no usage please"}], stream=True)
    chunks = list(stream)
    assert all(c.choices for c in chunks), "the gateway asked upstream for usage; the client must not see it"
    assert all(c.usage is None for c in chunks)


@pytest.mark.parametrize("alias", ["echo", "echo-litellm"])
async def test_async_stream(aclient: openai.AsyncOpenAI, alias: str) -> None:
    stream = await aclient.chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "async streaming works"}], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "async streaming works"


def test_stream_is_server_sent_events(gateway: Process) -> None:
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions",
                      headers={"authorization": f"Bearer {MASTER_KEY}"},
                      json={"model": "echo", "stream": True, "messages": [{"role": "user", "content": "x y"}]}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert "content-length" not in r.headers
        assert r.headers["x-gateway-deployment"] == "echo-native"
        body = r.read().decode()
    events = [e for e in body.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"


def _assemble(chunks: list[Any]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            if delta.id:
                call["id"] = delta.id
            if delta.function and delta.function.name:
                call["name"] += delta.function.name
            if delta.function and delta.function.arguments:
                call["arguments"] += delta.function.arguments
    return calls


@pytest.mark.parametrize("alias", ["tools", "tools-litellm", "claude-tools"])
def test_tool_call_round_trip(client: openai.OpenAI, alias: str) -> None:
    messages: list[Any] = [{"role": "user", "content": "weather in Paris"}]
    first = client.chat.completions.create(model=alias, messages=messages, tools=TOOLS, tool_choice="auto",
                                           parallel_tool_calls=False)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert calls
    assert calls[0].function.name == "search"
    assert json.loads(calls[0].function.arguments) == {"query": "weather in Paris"}  # type: ignore[union-attr]
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": calls[0].id, "content": "sunny, 21C"})
    second = client.chat.completions.create(model=alias, messages=messages, tools=TOOLS)
    assert "sunny, 21C" in (second.choices[0].message.content or "")


@pytest.mark.parametrize("alias", ["tools", "tools-litellm", "claude-tools"])
def test_streamed_tool_calls_match_non_streamed(client: openai.OpenAI, alias: str) -> None:
    messages: list[Any] = [{"role": "user", "content": "find cats"}]
    plain = client.chat.completions.create(model=alias, messages=messages, tools=TOOLS)
    # Compare parsed arguments: litellm re-serialises Anthropic's tool input with other spacing.
    expected = sorted((c.function.name, json.loads(c.function.arguments))  # type: ignore[union-attr]
                      for c in plain.choices[0].message.tool_calls or [])
    chunks = list(client.chat.completions.create(model=alias, messages=messages, tools=TOOLS, stream=True))
    streamed = _assemble(chunks)
    assert sorted((c["name"], json.loads(c["arguments"])) for c in streamed.values()) == expected
    assert all(c["id"] for c in streamed.values())
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["tool_calls"]


def test_parallel_tool_calls_native(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="tools", messages=[{"role": "user", "content": "both"}],
                                                tools=TOOLS)
    names = [c.function.name for c in completion.choices[0].message.tool_calls or []]  # type: ignore[union-attr]
    assert names == ["search", "lookup"]
    chunks = list(client.chat.completions.create(model="tools", messages=[{"role": "user", "content": "both"}],
                                                 tools=TOOLS, stream=True))
    assert sorted(c["name"] for c in _assemble(chunks).values()) == ["lookup", "search"]


def test_engines_give_the_same_openai_shape(gateway: Process) -> None:
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    bodies = {}
    for alias in ("echo", "echo-litellm"):
        response = httpx.post(f"{gateway.url}/v1/chat/completions", headers=headers,
                              json={"model": alias, "messages": [{"role": "user", "content": "same shape"}]})
        bodies[alias] = response.json()
    native, translated = bodies["echo"], bodies["echo-litellm"]
    assert set(native) == set(translated)
    assert set(native["choices"][0]) == set(translated["choices"][0])
    assert set(native["choices"][0]["message"]) == set(translated["choices"][0]["message"])
    assert native["choices"][0]["message"] == translated["choices"][0]["message"]
    assert native["usage"] == translated["usage"]


def _events(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> list[str]:
    with httpx.stream("POST", url, headers=headers, json=body) as response:
        assert response.status_code == 200
        return [e for e in response.read().decode().split("\n\n") if e]


def _comparable(event: str) -> Any:
    if event == "data: [DONE]":
        return event
    chunk = json.loads(event.removeprefix("data: "))
    chunk.pop("id"), chunk.pop("created"), chunk.pop("model")
    return chunk


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_stream_sent_in_one_write_is_relayed_event_for_event(gateway: Process, mock_upstream: Process,
                                                              include_usage: bool) -> None:
    """The mock writes an unpaced stream in one go, so the gateway reads many events at once and
    relays them together: the client must still get every event, in order, and [DONE] last."""
    words = " ".join(f"word{i}" for i in range(20))
    body: dict[str, Any] = {"stream": True, "messages": [{"role": "user", "content": words}],
                            "stream_options": {"include_usage": True}}
    # What the gateway's "echo" deployment receives (it always asks for usage).
    direct = _events(f"{mock_upstream.url}/v1/chat/completions", {**body, "model": "mock"})
    if not include_usage:
        del body["stream_options"]
    relayed = _events(f"{gateway.url}/v1/chat/completions", {**body, "model": "echo"},
                      headers={"authorization": f"Bearer {MASTER_KEY}"})
    expected = direct if include_usage else [e for e in direct if '"choices":[]' not in e]
    assert len(expected) == len(direct) - (0 if include_usage else 1) > 20
    assert [_comparable(e) for e in relayed] == [_comparable(e) for e in expected]
    assert relayed[-1] == "data: [DONE]" and relayed.count("data: [DONE]") == 1
