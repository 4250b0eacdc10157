"""The mock's Anthropic Messages endpoint, over raw HTTP (the anthropic SDK is not a dependency)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from .harness import Mock, Raw

HEADERS = {"x-api-key": "ak-test", "anthropic-version": "2023-06-01"}
TOOLS: list[dict[str, Any]] = [
    {"name": "get_weather", "description": "w", "input_schema": {"type": "object"}},
    {"name": "get_time", "description": "t", "input_schema": {"type": "object"}},
]


def request(model: str = "claude-mock", text: str = "Hello, Claude!", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": text}], **extra}


async def messages(mock: Mock, body: dict[str, Any]) -> Raw:
    return await mock.call("/v1/messages", body, headers=HEADERS)


def parsed_events(raw: Raw) -> list[tuple[str | None, dict[str, Any]]]:
    return [(name, json.loads(data)) for name, data in raw.events()]


async def test_non_stream_message_shape(mock: Mock) -> None:
    raw = await messages(mock, request(system=[{"type": "text", "text": "be nice"}]))

    assert raw.status == 200
    body = raw.json()
    assert body["id"].startswith("msg_")
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", "claude-mock")
    assert body["content"] == [{"type": "text", "text": "Hello, Claude!"}]
    assert body["stop_reason"] == "end_turn"
    assert body["stop_sequence"] is None
    # system (2 tokens) + user (4 tokens), 3 framing each, 3 priming.
    assert body["usage"]["input_tokens"] == 3 + (3 + 2) + (3 + 4)
    assert body["usage"]["output_tokens"] == 4


async def test_stream_events_come_in_the_documented_order(mock: Mock) -> None:
    plain = (await messages(mock, request())).json()
    raw = await messages(mock, request(stream=True))

    assert raw.headers["Content-Type"].startswith("text/event-stream")
    events = parsed_events(raw)
    names = [name for name, _ in events]
    assert all(name == data["type"] for name, data in events)
    deltas = names.count("content_block_delta")
    assert deltas == plain["usage"]["output_tokens"]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_")
    assert start["content"] == []
    assert start["usage"]["input_tokens"] == plain["usage"]["input_tokens"]
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text == plain["content"][0]["text"]
    final = events[-2][1]
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"]["output_tokens"] == plain["usage"]["output_tokens"]


async def test_tool_use_stream_reassembles_to_the_non_stream_input(mock: Mock) -> None:
    plain = (await messages(mock, request("claude+tool", "weather in Paris?", tools=TOOLS))).json()
    raw = await messages(mock, request("claude+tool", "weather in Paris?", tools=TOOLS, stream=True))

    assert plain["stop_reason"] == "tool_use"
    assert [(b["type"], b["name"], b["input"]) for b in plain["content"]] == [
        ("tool_use", "get_weather", {"query": "weather in Paris?"}),
        ("tool_use", "get_time", {"query": "weather in Paris?"}),
    ]
    assert all(b["id"].startswith("toolu_") for b in plain["content"])
    blocks: dict[int, dict[str, Any]] = {}
    for name, data in parsed_events(raw):
        if name == "content_block_start":
            assert data["content_block"]["input"] == {}
            blocks[data["index"]] = {**data["content_block"], "json": ""}
        elif name == "content_block_delta":
            assert data["delta"]["type"] == "input_json_delta"
            blocks[data["index"]]["json"] += data["delta"]["partial_json"]
        elif name == "message_delta":
            assert data["delta"]["stop_reason"] == "tool_use"
    assert [(b["name"], json.loads(b["json"])) for b in blocks.values()] == [
        (b["name"], b["input"]) for b in plain["content"]
    ]


@pytest.mark.parametrize(
    ("model", "choice", "names"),
    [
        ("claude", {"type": "any"}, ["get_weather"]),
        ("claude", {"type": "tool", "name": "get_time"}, ["get_time"]),
        ("claude", {"type": "auto"}, []),
        ("claude+tool", {"type": "auto", "disable_parallel_tool_use": True}, ["get_weather"]),
        ("claude+tool", {"type": "none"}, []),
    ],
)
async def test_tool_choice(mock: Mock, model: str, choice: dict[str, Any], names: list[str]) -> None:
    body = (await messages(mock, request(model, "q", tools=TOOLS, tool_choice=choice))).json()

    assert [b["name"] for b in body["content"] if b["type"] == "tool_use"] == names
    assert body["stop_reason"] == ("tool_use" if names else "end_turn")


async def test_tool_result_gets_a_text_reply(mock: Mock) -> None:
    body = request("claude+tool", tools=TOOLS)
    body["messages"] = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain"}]},
    ]
    reply = (await messages(mock, body)).json()

    assert reply["content"] == [{"type": "text", "text": "tool result received: rain"}]


async def test_max_tokens_and_stop_sequences(mock: Mock) -> None:
    short = (await messages(mock, {**request(text="one two three four"), "max_tokens": 2})).json()
    stopped = (await messages(mock, request(text="one two. three", stop_sequences=[".", "three"]))).json()

    assert short["content"][0]["text"] == "one two"
    assert short["stop_reason"] == "max_tokens"
    assert short["usage"]["output_tokens"] == 2
    assert stopped["content"][0]["text"] == "one two"
    assert stopped["stop_reason"] == "stop_sequence"
    assert stopped["stop_sequence"] == "."


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
    ],
)
async def test_errors_use_anthropic_envelope(mock: Mock, status: int, kind: str) -> None:
    raw = await messages(mock, request(f"claude+status={status}+retry_after=3"))

    assert raw.status == status
    body = raw.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == kind
    assert body["error"]["message"]
    assert raw.headers["Retry-After"] == "3"


async def test_missing_max_tokens_and_context_limit_are_invalid_requests(mock: Mock) -> None:
    missing = await messages(mock, {"model": "claude", "messages": [{"role": "user", "content": "x"}]})
    too_long = await messages(mock, request("claude+context=10", "word " * 20))

    assert missing.status == 400
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert too_long.status == 400
    error = too_long.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == "prompt is too long: 26 tokens > 10 maximum"


async def test_cut_stream_never_sends_message_stop(mock: Mock) -> None:
    async with mock.http.post(
        f"{mock.base}/v1/messages", json=request("claude+cut=1", stream=True), headers=HEADERS
    ) as response:
        received = bytearray()

        async def consume() -> None:
            async for block in response.content.iter_any():
                received.extend(block)

        with pytest.raises(aiohttp.ClientPayloadError):
            await consume()

    assert received.count(b"event: content_block_delta") == 1
    assert b"message_stop" not in received


async def test_headers_are_recorded_and_count_tokens_agrees(mock: Mock) -> None:
    body = request("claude-record")
    reply = (await messages(mock, body)).json()
    counted = (await mock.call("/v1/messages/count_tokens", body, headers=HEADERS)).json()

    assert counted == {"input_tokens": reply["usage"]["input_tokens"]}
    async with mock.http.get(f"{mock.base}/mock/requests", params={"model": "claude-record"}) as response:
        entries = (await response.json())["requests"]
    headers = {k.lower(): v for k, v in entries[0]["headers"].items()}
    assert headers["x-api-key"] == "ak-test"
    assert headers["anthropic-version"] == "2023-06-01"
