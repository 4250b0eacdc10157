"""The mock's OpenAI chat endpoint, driven by the real ``openai`` SDK and raw HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai import AsyncOpenAI

from .harness import Mock, user

TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
]


async def test_echoes_last_user_message_with_openai_shape(client: AsyncOpenAI) -> None:
    messages: list[Any] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world!"}],
        },
    ]
    result = await client.chat.completions.create(model="mock", messages=messages)

    assert result.object == "chat.completion"
    assert result.id.startswith("chatcmpl-")
    assert result.model == "mock"
    assert result.system_fingerprint
    assert len(result.choices) == 1
    choice = result.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello, world!"
    assert choice.finish_reason == "stop"
    assert result.usage is not None
    # 4 messages x 3 framing + 3 priming + tokens (2 + 2 + 2 + 4).
    assert result.usage.prompt_tokens == 4 * 3 + 3 + 10
    assert result.usage.completion_tokens == 4
    assert result.usage.total_tokens == result.usage.prompt_tokens + 4


async def test_replies_to_a_tool_result(client: AsyncOpenAI) -> None:
    messages: list[Any] = [
        *user("weather?"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"},
    ]
    result = await client.chat.completions.create(model="mock+tool", messages=messages, tools=TOOLS)

    assert result.choices[0].message.content == "tool result received: sunny, 21C"
    assert result.choices[0].message.tool_calls is None
    assert result.choices[0].finish_reason == "stop"


async def test_stream_with_usage_matches_non_stream(client: AsyncOpenAI) -> None:
    text = "The quick brown fox, it jumps over the lazy dog."
    plain = await client.chat.completions.create(model="mock", messages=user(text))
    stream = await client.chat.completions.create(
        model="mock", messages=user(text), stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({(c.id, c.created, c.model) for c in chunks}) == 1
    assert chunks[0].model == "mock"
    first = chunks[0].choices[0].delta
    assert (first.role, first.content) == ("assistant", "")
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == plain.usage.completion_tokens
    assert "".join(c.choices[0].delta.content or "" for c in content_chunks) == text
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["stop"]
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.model_dump() == plain.usage.model_dump()


async def test_stream_without_include_usage_has_no_usage_and_ends_with_done(mock: Mock) -> None:
    raw = await mock.call(
        "/v1/chat/completions", {"model": "mock", "messages": user("hi there"), "stream": True}
    )

    assert raw.status == 200
    assert raw.headers["Content-Type"].startswith("text/event-stream")
    events = [data for _, data in raw.events()]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(data) for data in events[:-1]]
    assert all("usage" not in chunk for chunk in chunks)
    assert all(len(chunk["choices"]) == 1 for chunk in chunks)


async def test_streamed_tool_calls_reassemble_to_the_non_stream_calls(client: AsyncOpenAI) -> None:
    plain = await client.chat.completions.create(model="mock+tool", messages=user("find cats"), tools=TOOLS)
    stream = await client.chat.completions.create(
        model="mock+tool", messages=user("find cats"), tools=TOOLS, stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    argument_deltas = 0
    finish = None
    async for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            if delta.id is not None:
                assert delta.type == "function"
                assert delta.function is not None
                assert delta.function.arguments == ""
                calls[delta.index] = {"id": delta.id, "name": delta.function.name or "", "arguments": ""}
            else:
                assert delta.function is not None
                assert delta.function.name is None
                calls[delta.index]["arguments"] += delta.function.arguments or ""
                argument_deltas += 1

    expected = plain.choices[0].message.tool_calls
    assert plain.choices[0].finish_reason == "tool_calls"
    assert plain.choices[0].message.content is None
    assert expected is not None
    assert [(c.function.name, json.loads(c.function.arguments)) for c in expected] == [
        ("search", {"query": "find cats"}),
        ("lookup", {"query": "find cats"}),
    ]
    assert finish == "tool_calls"
    assert argument_deltas > 2 * len(expected)
    assert [(c["name"], c["arguments"]) for c in calls.values()] == [
        (c.function.name, c.function.arguments) for c in expected
    ]
    assert all(c["id"].startswith("call_") for c in calls.values())


@pytest.mark.parametrize(
    ("model", "extra", "names"),
    [
        ("mock+tool", {"parallel_tool_calls": False}, ["search"]),
        ("mock", {}, []),
        ("mock", {"tool_choice": "required"}, ["search"]),
        ("mock", {"tool_choice": {"type": "function", "function": {"name": "lookup"}}}, ["lookup"]),
        ("mock+tool", {"tool_choice": "none"}, []),
    ],
)
async def test_tool_choice_decides_which_tools_are_called(
    client: AsyncOpenAI, model: str, extra: dict[str, Any], names: list[str]
) -> None:
    result = await client.chat.completions.create(model=model, messages=user("q"), tools=TOOLS, **extra)

    calls = result.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == names
    assert result.choices[0].finish_reason == ("tool_calls" if names else "stop")


async def test_n_choices_are_indexed_and_counted(client: AsyncOpenAI) -> None:
    result = await client.chat.completions.create(model="mock", messages=user("one two"), n=3)

    assert [c.index for c in result.choices] == [0, 1, 2]
    assert {c.message.content for c in result.choices} == {"one two"}
    assert result.usage is not None
    assert result.usage.completion_tokens == 3 * 2


async def test_n_choices_stream_by_index(mock: Mock) -> None:
    raw = await mock.call(
        "/v1/chat/completions", {"model": "mock", "messages": user("x y"), "n": 2, "stream": True}
    )

    chunks = [json.loads(data) for _, data in raw.events() if data != "[DONE]"]
    texts = {0: "", 1: ""}
    finishes = {}
    for chunk in chunks:
        (choice,) = chunk["choices"]
        texts[choice["index"]] += choice["delta"].get("content") or ""
        if choice["finish_reason"]:
            finishes[choice["index"]] = choice["finish_reason"]
    assert texts == {0: "x y", 1: "x y"}
    assert finishes == {0: "stop", 1: "stop"}


async def test_stop_truncates_at_the_earliest_sequence(client: AsyncOpenAI) -> None:
    one = await client.chat.completions.create(model="mock", messages=user("alpha beta. gamma"), stop=".")
    many = await client.chat.completions.create(
        model="mock", messages=user("alpha beta. gamma; delta"), stop=["; ", "beta"]
    )

    assert one.choices[0].message.content == "alpha beta"
    assert one.choices[0].finish_reason == "stop"
    assert many.choices[0].message.content == "alpha "


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens_truncates_with_length(client: AsyncOpenAI, mock: Mock, field: str) -> None:
    text = "one two three four five six"
    result = await client.chat.completions.create(model="mock", messages=user(text), **{field: 4})
    raw = await mock.call(
        "/v1/chat/completions", {"model": "mock", "messages": user(text), "stream": True, field: 4}
    )

    assert result.choices[0].message.content == "one two three four"
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None
    assert result.usage.completion_tokens == 4
    chunks = [json.loads(data) for _, data in raw.events() if data != "[DONE]"]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "one two three four"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


async def test_max_tokens_above_the_reply_length_keeps_stop(client: AsyncOpenAI) -> None:
    result = await client.chat.completions.create(model="mock", messages=user("short"), max_tokens=50)

    assert result.choices[0].finish_reason == "stop"
    assert result.choices[0].message.content == "short"


async def test_json_object_response_format(client: AsyncOpenAI) -> None:
    result = await client.chat.completions.create(
        model="mock", messages=user('say "hi"'), response_format={"type": "json_object"}
    )

    assert json.loads(result.choices[0].message.content or "") == {"echo": 'say "hi"'}


async def test_json_schema_response_format_fills_required_properties(client: AsyncOpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "score": {"type": "number"},
            "count": {"type": "integer"},
            "ok": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "meta": {"type": "object"},
            "kind": {"enum": ["a", "b"]},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer"}]},
            "owner": {"$ref": "#/$defs/Owner"},
            "optional": {"type": "string"},
        },
        "required": ["name", "score", "count", "ok", "tags", "meta", "kind", "maybe", "owner"],
        "$defs": {"Owner": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}},
    }
    result = await client.chat.completions.create(
        model="mock",
        messages=user("x"),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "r", "schema": schema, "strict": True},
        },
    )

    value = json.loads(result.choices[0].message.content or "")
    assert value == {
        "name": "x",
        "score": 0,
        "count": 0,
        "ok": False,
        "tags": [],
        "meta": {},
        "kind": "a",
        "maybe": 0,
        "owner": {"id": 0},
    }


async def test_logprobs_cover_every_completion_token(client: AsyncOpenAI) -> None:
    result = await client.chat.completions.create(
        model="mock", messages=user("Hello there, world"), logprobs=True, top_logprobs=3
    )

    logprobs = result.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content is not None
    assert result.usage is not None
    assert len(logprobs.content) == result.usage.completion_tokens
    assert "".join(e.token for e in logprobs.content) == result.choices[0].message.content
    for entry in logprobs.content:
        assert entry.logprob < 0
        assert bytes(entry.bytes or []) == entry.token.encode()
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token


async def test_streamed_logprobs_follow_the_chunks(mock: Mock) -> None:
    body = {"model": "mock", "messages": user("a b c"), "stream": True, "logprobs": True, "top_logprobs": 1}
    raw = await mock.call("/v1/chat/completions", body)

    chunks = [json.loads(data) for _, data in raw.events() if data != "[DONE]"]
    content = [c["choices"][0] for c in chunks if c["choices"][0]["delta"].get("content")]
    assert [[e["token"] for e in c["logprobs"]["content"]] for c in content] == [["a "], ["b "], ["c"]]


async def test_seed_user_and_unknown_fields_are_accepted_and_recorded(
    client: AsyncOpenAI, mock: Mock
) -> None:
    await client.chat.completions.create(
        model="mock+record",
        messages=user("hi"),
        seed=7,
        user="u-1",
        extra_body={"x_custom": {"a": 1}},
        extra_headers={"X-Trace": "t-1"},
    )

    async with mock.http.get(f"{mock.base}/mock/requests", params={"model": "mock+record"}) as response:
        recorded = (await response.json())["requests"]
    assert len(recorded) == 1
    entry = recorded[0]
    assert (entry["method"], entry["path"]) == ("POST", "/v1/chat/completions")
    assert entry["body"]["seed"] == 7
    assert entry["body"]["user"] == "u-1"
    assert entry["body"]["x_custom"] == {"a": 1}
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    assert headers["authorization"] == "Bearer sk-test"
    assert headers["x-trace"] == "t-1"


async def test_bad_requests_get_openai_errors(mock: Mock) -> None:
    no_messages = await mock.call("/v1/chat/completions", {"model": "mock"})
    bad_n = await mock.call("/v1/chat/completions", {"model": "mock", "messages": user("x"), "n": 0})
    not_json = await mock.call("/v1/chat/completions", None, data=b"{not json", headers={"Content-Type": "x"})

    assert no_messages.status == 400
    assert no_messages.json()["error"]["param"] == "messages"
    assert bad_n.status == 400
    assert bad_n.json()["error"]["param"] == "n"
    assert not_json.status == 400
    assert not_json.json()["error"]["type"] == "invalid_request_error"
