"""Failure and timing directives: status, retry_after, fail_first, cut, malformed, context, hang, delays."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from .harness import Mock, user


@pytest.mark.parametrize(
    ("status", "error_class", "kind", "code"),
    [
        (400, openai.BadRequestError, "invalid_request_error", None),
        (401, openai.AuthenticationError, "authentication_error", "invalid_api_key"),
        (403, openai.PermissionDeniedError, "permission_error", "permission_denied"),
        (404, openai.NotFoundError, "invalid_request_error", "model_not_found"),
        (429, openai.RateLimitError, "requests", "rate_limit_exceeded"),
        (500, openai.InternalServerError, "server_error", "server_error"),
        (503, openai.InternalServerError, "server_error", "service_unavailable"),
    ],
)
async def test_status_directive_fails_with_openai_error(
    client: AsyncOpenAI, status: int, error_class: type[openai.APIStatusError], kind: str, code: str | None
) -> None:
    with pytest.raises(error_class) as caught:
        await client.chat.completions.create(model=f"mock+status={status}", messages=user("x"))

    assert caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == kind
    assert body["code"] == code
    assert set(body) == {"message", "type", "param", "code"}


async def test_retry_after_sets_both_headers(mock: Mock) -> None:
    raw = await mock.call(
        "/v1/chat/completions", {"model": "p/mock+status=429+retry_after=2", "messages": user("x")}
    )
    fraction = await mock.call("/v1/embeddings", {"model": "mock+status=503+retry_after=0.25", "input": "x"})

    assert raw.status == 429
    assert raw.headers["Retry-After"] == "2"
    assert raw.headers["retry-after-ms"] == "2000"
    assert raw.json()["error"]["code"] == "rate_limit_exceeded"
    assert fraction.status == 503
    assert fraction.headers["retry-after-ms"] == "250"


async def test_fail_first_fails_then_succeeds_per_model_name(mock: Mock) -> None:
    body = {"model": "mock+fail_first=2+status=429", "messages": user("x")}
    statuses = [(await mock.call("/v1/chat/completions", body)).status for _ in range(4)]
    other = await mock.call("/v1/chat/completions", {"model": "mock+fail_first=1", "messages": user("x")})

    assert statuses == [429, 429, 200, 200]
    assert other.status == 500
    stats = await mock.stats()
    assert stats["requests"]["mock+fail_first=2+status=429"] == 4


async def test_sdk_retries_through_fail_first(mock: Mock) -> None:
    async with AsyncOpenAI(base_url=f"{mock.base}/v1", api_key="k", max_retries=2) as retrying:
        result = await retrying.chat.completions.create(
            model="mock+fail_first=1+status=503+retry_after=0.01", messages=user("again")
        )

    assert result.choices[0].message.content == "again"
    assert (await mock.stats())["requests"]["mock+fail_first=1+status=503+retry_after=0.01"] == 2


async def test_cut_stream_aborts_after_n_content_chunks(client: AsyncOpenAI, mock: Mock) -> None:
    stream = await client.chat.completions.create(
        model="mock+cut=2", messages=user("one two three four five"), stream=True
    )
    received: list[str] = []

    async def consume() -> None:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIConnectionError):
        await consume()

    assert "".join(received) == "one two "
    async with mock.http.post(
        f"{mock.base}/v1/chat/completions",
        json={"model": "mock+cut=2", "messages": user("one two three"), "stream": True},
    ) as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    assert (await mock.wait_for_stats("aborted", 2))["aborted"] == 2


async def test_cut_non_stream_sends_a_truncated_body(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="mock+cut=1", messages=user("hello"))


async def test_malformed_returns_invalid_json(mock: Mock) -> None:
    plain = await mock.call("/v1/chat/completions", {"model": "mock+malformed", "messages": user("x")})
    streamed = await mock.call(
        "/v1/chat/completions", {"model": "mock+malformed", "messages": user("x"), "stream": True}
    )

    assert plain.status == 200
    assert plain.headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(plain.body)
    assert streamed.status == 200
    data = [d for _, d in streamed.events() if d != "[DONE]"]
    assert data
    with pytest.raises(json.JSONDecodeError):
        json.loads(data[0])


async def test_context_limit_rejects_long_prompts(client: AsyncOpenAI) -> None:
    fits = await client.chat.completions.create(model="mock+context=20", messages=user("a b c"))
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="mock+context=20", messages=user("word " * 30))

    assert fits.choices[0].message.content == "a b c"
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["code"] == "context_length_exceeded"
    assert body["type"] == "invalid_request_error"
    assert body["param"] == "messages"
    assert "maximum context length is 20 tokens" in body["message"]
    assert "36 tokens" in body["message"]


async def test_hang_is_cancelled_when_the_client_gives_up(client: AsyncOpenAI, mock: Mock) -> None:
    with pytest.raises(openai.APITimeoutError):
        await client.with_options(timeout=0.3).chat.completions.create(model="mock+hang", messages=user("x"))

    stats = await mock.wait_for_stats("cancelled", 1)
    assert stats["cancelled"] == 1
    assert stats["in_flight"] == 0
    assert stats["completed"] == 0


async def test_client_abandoning_a_stream_counts_as_cancelled(client: AsyncOpenAI, mock: Mock) -> None:
    stream = await client.chat.completions.create(
        model="mock+chunk_delay=50", messages=user("a b c d e f g h"), stream=True
    )
    async for _chunk in stream:
        break
    await stream.close()

    stats = await mock.wait_for_stats("cancelled", 1)
    assert stats["cancelled"] == 1
    assert stats["in_flight"] == 0


async def test_latency_delays_the_response(client: AsyncOpenAI) -> None:
    started = time.perf_counter()
    await client.chat.completions.create(model="mock+latency=200", messages=user("x"))

    assert time.perf_counter() - started >= 0.2


async def test_ttft_and_chunk_delay_pace_the_stream(client: AsyncOpenAI) -> None:
    started = time.perf_counter()
    stream = await client.chat.completions.create(
        model="mock+ttft=150+chunk_delay=40", messages=user("a b c d"), stream=True
    )
    arrivals = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter() - started)

    # Lower bounds only: the server cannot send earlier, while a busy client may read later.
    assert len(arrivals) == 4
    assert arrivals[0] >= 0.15
    assert arrivals[-1] >= 0.15 + 3 * 0.04


@pytest.mark.parametrize(("chunks", "text"), [(8, "alpha beta"), (2, "one two three four five")])
async def test_chunks_fixes_the_number_of_content_chunks(client: AsyncOpenAI, chunks: int, text: str) -> None:
    plain = await client.chat.completions.create(model=f"mock+chunks={chunks}", messages=user(text))
    stream = await client.chat.completions.create(
        model=f"mock+chunks={chunks}", messages=user(text), stream=True
    )
    pieces = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]

    assert len(pieces) == chunks
    assert "".join(pieces) == plain.choices[0].message.content
    assert (plain.choices[0].message.content or "").startswith(text)


async def test_stats_count_routes_and_reset_clears(mock: Mock) -> None:
    await mock.call("/v1/chat/completions", {"model": "mock", "messages": user("x")})
    await mock.call("/v1/embeddings", {"model": "emb", "input": "x"})
    async with mock.http.get(f"{mock.base}/v1/models") as response:
        assert response.status == 200
    before = await mock.stats()
    async with mock.http.post(f"{mock.base}/mock/reset") as response:
        assert response.status == 200
    after = await mock.stats()

    assert before["requests"] == {"mock": 1, "emb": 1}
    assert before["by_route"] == {"/v1/chat/completions": 1, "/v1/embeddings": 1, "/v1/models": 1}
    assert before["completed"] == 3
    assert after["requests"] == {}
    assert after["completed"] == 0
    async with mock.http.get(f"{mock.base}/mock/requests") as response:
        assert (await response.json())["requests"] == []


async def test_request_log_filters_and_limits(mock: Mock) -> None:
    for i in range(5):
        await mock.call("/v1/chat/completions", {"model": "a" if i % 2 else "b", "messages": user(str(i))})

    async with mock.http.get(f"{mock.base}/mock/requests", params={"model": "b", "limit": "2"}) as response:
        entries = (await response.json())["requests"]
    assert [e["body"]["messages"][0]["content"] for e in entries] == ["2", "4"]


async def test_health(mock: Mock) -> None:
    async with mock.http.get(f"{mock.base}/health") as response:
        assert response.status == 200


async def test_many_concurrent_requests_are_all_served(mock: Mock) -> None:
    body = {"model": "mock+latency=20", "messages": user("x")}
    results = await asyncio.gather(*(mock.call("/v1/chat/completions", body) for _ in range(50)))

    assert {r.status for r in results} == {200}
    assert (await mock.stats())["completed"] == 50
