"""Chat completions through both engines, with the real openai SDK (sync and async)."""

from __future__ import annotations

import json

import openai
import pytest

ENGINES = ["echo", "echo-litellm"]


@pytest.mark.parametrize("alias", ENGINES)
def test_chat_round_trip(client: openai.OpenAI, alias: str) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=alias, messages=[{"role": "user", "content": "hello from the test"}], seed=7, user="u-1",
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "hello from the test"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert completion.usage.completion_tokens > 0
    assert raw.headers["x-gateway-attempts"] == "1"
    assert raw.headers["x-gateway-deployment"] == ("echo-native" if alias == "echo" else "echo-litellm")
    assert raw.headers["x-request-id"].startswith("req_")
    timing = raw.headers["server-timing"]
    assert "gateway;dur=" in timing
    assert "upstream;dur=" in timing


def test_request_id_is_echoed(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-request-id": "abc-123"},
    )
    assert raw.headers["x-request-id"] == "abc-123"


def test_server_timing_splits_gateway_and_upstream(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": "timing"}])
    parts = dict(part.strip().split(";dur=") for part in raw.headers["server-timing"].split(",")
                 if ";dur=" in part)
    gateway_ms, upstream_ms = float(parts["gateway"]), float(parts["upstream"])
    assert upstream_ms > 0
    assert 0 <= gateway_ms < 1000


@pytest.mark.parametrize("alias", ENGINES)
async def test_async_client_and_parameters(aclient: openai.AsyncOpenAI, alias: str) -> None:
    completion = await aclient.chat.completions.create(
        model=alias,
        messages=[{"role": "system", "content": "be brief"},
                  {"role": "user", "content": "one two three four five six"}],
        n=2, stop=["four"], temperature=0.2, top_p=0.9,
    )
    assert len(completion.choices) == 2
    assert {c.index for c in completion.choices} == {0, 1}
    for choice in completion.choices:
        assert choice.message.content is not None
        assert "four" not in choice.message.content
        assert choice.message.content.startswith("one two three")


@pytest.mark.parametrize("alias", ENGINES)
def test_max_tokens_truncates_with_length(client: openai.OpenAI, alias: str) -> None:
    completion = client.chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "a b c d e f g h i j k l"}], max_tokens=3)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3
    completion = client.chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "a b c d e f g h i j k l"}],
        max_completion_tokens=2)
    assert completion.choices[0].finish_reason == "length"


@pytest.mark.parametrize("alias", ENGINES)
def test_response_format_json_object_and_schema(client: openai.OpenAI, alias: str) -> None:
    completion = client.chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "give json"}],
        response_format={"type": "json_object"})
    assert json.loads(completion.choices[0].message.content or "") == {"echo": "give json"}
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["city", "n"], "additionalProperties": False}
    completion = client.chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "give json"}],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}})
    parsed = json.loads(completion.choices[0].message.content or "")
    assert set(parsed) == {"city", "n"}
    assert isinstance(parsed["n"], int)


@pytest.mark.parametrize("alias", ENGINES)
def test_logprobs(client: openai.OpenAI, alias: str) -> None:
    completion = client.chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "alpha beta"}], logprobs=True, top_logprobs=2)
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content
    assert all(entry.logprob <= 0 for entry in logprobs.content)


def test_unknown_extra_fields_reach_the_provider(client: openai.OpenAI, mock_upstream) -> None:  # type: ignore[no-untyped-def]
    import httpx

    client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "extra"}],
        extra_body={"my_custom_flag": {"nested": [1, 2]}}, user="end-user-9")
    recent = httpx.get(f"{mock_upstream.url}/mock/requests", params={"model": "mock", "limit": 1}).json()
    body = recent[-1]["body"] if isinstance(recent, list) else recent["requests"][-1]["body"]
    assert body["my_custom_flag"] == {"nested": [1, 2]}
    assert body["user"] == "end-user-9"
    assert body["model"] == "mock"
