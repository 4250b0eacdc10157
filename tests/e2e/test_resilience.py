"""Retries, fallbacks, cooldowns, load spreading, and cancelling the upstream when a client leaves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import deployment
from tests.processes import MASTER_KEY, Process, start_gateway

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
HELLO: list[Any] = [{"role": "user", "content": "hello"}]


def _mock_stats(mock: Process) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{mock.url}/mock/stats").json()
    return stats


def test_retry_then_success(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="retry-once", messages=HELLO)
    assert raw.parse().choices[0].message.content == "hello"
    assert raw.headers["x-gateway-attempts"] == "2"


def test_stream_retried_before_its_first_byte(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="retry-once-stream", messages=HELLO,
                                                           stream=True)
    assert raw.headers["x-gateway-attempts"] == "2"
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "hello"


def test_retry_honours_retry_after(client: openai.OpenAI) -> None:
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model="ratelimited-once", messages=HELLO)
    elapsed = time.monotonic() - started
    assert raw.headers["x-gateway-attempts"] == "2"
    assert elapsed >= 1.0, "the mock said Retry-After: 1"


def test_fallback_to_another_alias(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="primary-down", messages=HELLO)
    assert raw.parse().choices[0].message.content == "hello"
    assert raw.headers["x-gateway-deployment"] == "echo-native"
    assert raw.headers["x-gateway-attempts"] == "4"  # 1 try + 2 retries on primary, then the fallback
    assert raw.headers["x-gateway-fallbacks"] == "1"


def test_context_window_fallback(client: openai.OpenAI) -> None:
    short = client.chat.completions.with_raw_response.create(model="ctx-small", messages=HELLO)
    assert short.headers["x-gateway-deployment"] == "ctx-small#1"
    long_prompt = [{"role": "user", "content": " ".join(["word"] * 80)}]
    raw = client.chat.completions.with_raw_response.create(model="ctx-small", messages=long_prompt)
    assert raw.headers["x-gateway-deployment"] == "ctx-large#1"
    assert raw.headers["x-gateway-attempts"] == "2"


def test_load_spreads_over_deployments(client: openai.OpenAI) -> None:
    seen: dict[str, int] = {}
    for _ in range(60):
        raw = client.chat.completions.with_raw_response.create(model="spread", messages=HELLO)
        name = raw.headers["x-gateway-deployment"]
        seen[name] = seen.get(name, 0) + 1
    assert set(seen) == {"spread-a", "spread-b"}
    assert min(seen.values()) >= 12, seen  # 60 draws at p=0.5: below 12 is a ~1e-6 event


def test_order_tries_the_first_tier_first(client: openai.OpenAI, mock_upstream: Process) -> None:
    before = _mock_stats(mock_upstream)["requests"].get("mock+status=500+id=ordered-1", 0)
    raw = client.chat.completions.with_raw_response.create(model="ordered", messages=HELLO)
    # order 1 is tried first (and fails), then the retry moves to the untried order-2 deployment.
    assert raw.headers["x-gateway-deployment"] == "ordered-2"
    assert raw.headers["x-gateway-attempts"] == "2"
    assert _mock_stats(mock_upstream)["requests"]["mock+status=500+id=ordered-1"] == before + 1


async def test_client_disconnect_cancels_a_non_streaming_upstream(gateway: Process, mock_upstream: Process) -> None:
    before = _mock_stats(mock_upstream)
    async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, max_retries=0,
                                  timeout=1.0) as short_lived:
        with pytest.raises(openai.APITimeoutError):
            await short_lived.chat.completions.create(model="hang-long", messages=HELLO)
    for _ in range(50):
        after = _mock_stats(mock_upstream)
        if after["cancelled"] > before["cancelled"]:
            break
        await asyncio.sleep(0.1)
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["in_flight"] == 0


async def test_client_disconnect_cancels_a_stream(gateway: Process, mock_upstream: Process) -> None:
    before = _mock_stats(mock_upstream)
    async with httpx.AsyncClient(timeout=30) as http, http.stream(
        "POST", f"{gateway.url}/v1/chat/completions", headers=AUTH,
        json={"model": "slow-stream", "stream": True, "messages": HELLO},
    ) as response:
        received = 0
        async for _ in response.aiter_bytes():
            received += 1
            if received >= 2:
                break
    for _ in range(50):
        after = _mock_stats(mock_upstream)
        if after["cancelled"] > before["cancelled"]:
            break
        await asyncio.sleep(0.1)
    assert after["cancelled"] == before["cancelled"] + 1, "the upstream stream must be dropped, not drained"
    assert after["in_flight"] == 0


@pytest.fixture(scope="module")
def fragile_gateway(workdir: Path, mock_upstream: Process) -> Iterator[Process]:
    """A gateway with a hair-trigger cooldown policy, so cooldowns can be observed."""
    v1 = f"{mock_upstream.url}/v1"
    config = {
        "model_list": [
            deployment("flaky", "openai/mock+status=500+id=flaky-bad", v1, model_info={"id": "flaky-bad"}),
            deployment("flaky", "openai/mock+id=flaky-good", v1, model_info={"id": "flaky-good"}),
            deployment("lonely", "openai/mock+status=500+id=lonely", v1, model_info={"id": "lonely"}),
        ],
        "router_settings": {"num_retries": 1, "allowed_fails": 1, "cooldown_time": 60,
                            "routing_strategy": "least-busy"},
    }
    process = start_gateway(workdir, config)
    yield process
    process.stop()


def test_failing_deployment_is_cooled_down(fragile_gateway: Process, mock_upstream: Process) -> None:
    def cooling_down() -> list[str]:
        found: list[str] = httpx.get(f"{fragile_gateway.url}/readyz").json()["cooling_down"]
        return found

    with openai.OpenAI(base_url=f"{fragile_gateway.url}/v1", api_key=MASTER_KEY, max_retries=0) as client:
        # least-busy picks either deployment at random; the second failure (allowed_fails=1) cools the
        # bad one down. 60 requests leave a chance of 2**-59 that it is never picked twice.
        for _ in range(60):
            raw = client.chat.completions.with_raw_response.create(model="flaky", messages=HELLO)
            assert raw.headers["x-gateway-deployment"] == "flaky-good"  # retries always land on good
            if "flaky-bad" in cooling_down():
                break
        bad_calls = _mock_stats(mock_upstream)["requests"].get("mock+status=500+id=flaky-bad", 0)
        assert bad_calls == 2, "allowed_fails=1: the second failure starts the cooldown"
        for _ in range(10):
            client.chat.completions.create(model="flaky", messages=HELLO)
        assert _mock_stats(mock_upstream)["requests"].get("mock+status=500+id=flaky-bad", 0) == bad_calls
    assert "flaky-bad" in httpx.get(f"{fragile_gateway.url}/readyz").json()["cooling_down"]


def test_alias_with_every_deployment_cooling_down_is_503(fragile_gateway: Process) -> None:
    url = f"{fragile_gateway.url}/v1/chat/completions"
    first = httpx.post(url, headers=AUTH, json={"model": "lonely", "messages": HELLO})
    assert first.status_code == 502
    response = httpx.post(url, headers=AUTH, json={"model": "lonely", "messages": HELLO})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert int(response.headers["retry-after"]) > 0
