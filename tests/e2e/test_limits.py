"""Limits and budgets hold exactly across two gateway processes sharing Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.e2e.conftest import deployment
from tests.processes import MASTER_KEY, Process, start_gateway

REDIS_URL = "redis://127.0.0.1:6379/8"
MASTER = {"authorization": f"Bearer {MASTER_KEY}"}
#: $0.01 per output token, prompts free: a request with max_tokens=2 costs exactly $0.02.
OUTPUT_PER_MILLION = 10_000.0
REQUEST_COST = 0.02


def routing(mock: Process) -> dict[str, Any]:
    v1 = f"{mock.url}/v1"
    return {
        "model_list": [
            deployment("priced", "openai/mock", v1),
            deployment("slow", "openai/mock+latency=700", v1),
            deployment("slow-stream", "openai/mock+chunks=40+chunk_delay=25+id=limits", v1),
        ],
        "prices": {alias: {"input_per_million": 0, "output_per_million": OUTPUT_PER_MILLION}
                   for alias in ("priced", "slow", "slow-stream")},
    }


@pytest.fixture(scope="module")
def replicas(workdir: Path, mock_upstream: Process) -> Iterator[tuple[Process, Process]]:
    with redis.Redis.from_url(REDIS_URL) as client:
        client.flushdb()
    env = {"GATEWAY_REDIS_URL": REDIS_URL, "GATEWAY_ADMIN_RATE_LIMIT": "10000/minute"}
    first = start_gateway(workdir, routing(mock_upstream), env=env)
    second = start_gateway(workdir, routing(mock_upstream), env=env)
    yield first, second
    first.stop()
    second.stop()


def create_key(gateway: Process, **fields: Any) -> dict[str, Any]:
    response = httpx.post(f"{gateway.url}/admin/keys", headers=MASTER, json=fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        yield client


async def fire(http: httpx.AsyncClient, replicas: tuple[Process, Process], key: str, count: int,
               model: str = "priced", **extra: Any) -> list[httpx.Response]:
    """``count`` requests at once, alternating between the two replicas."""
    body = {"model": model, "messages": [{"role": "user", "content": "one two three four"}], "max_tokens": 2,
            **extra}

    async def one(index: int) -> httpx.Response:
        url = f"{replicas[index % 2].url}/v1/chat/completions"
        return await http.post(url, headers={"authorization": f"Bearer {key}"}, json=body)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def usage(gateway: Process, key_id: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{gateway.url}/admin/keys/{key_id}/usage", headers=MASTER).json()
    return body


def statuses(responses: list[httpx.Response]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for response in responses:
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
    return counts


async def test_rpm_is_exact_across_replicas(replicas: tuple[Process, Process], http: httpx.AsyncClient) -> None:
    key = create_key(replicas[0], rpm=10)
    responses = await fire(http, replicas, key["key"], 40)
    assert statuses(responses) == {200: 10, 429: 30}
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    admitted = next(r for r in responses if r.status_code == 200)
    assert admitted.headers["x-ratelimit-limit-requests"] == "10"
    assert int(admitted.headers["x-ratelimit-remaining-requests"]) < 10
    assert admitted.headers["x-ratelimit-reset-requests"].endswith("s")


async def test_max_parallel_is_exact_across_replicas(replicas: tuple[Process, Process],
                                                     http: httpx.AsyncClient) -> None:
    key = create_key(replicas[0], max_parallel=3)
    responses = await fire(http, replicas, key["key"], 12, model="slow")
    assert statuses(responses) == {200: 3, 429: 9}
    await asyncio.sleep(0.3)
    assert usage(replicas[1], key["id"])["in_flight"] == 0
    # The slots came back: the next wave is admitted again.
    again = await fire(http, replicas, key["key"], 3, model="slow")
    assert statuses(again) == {200: 3}


async def test_budget_is_never_overspent_nor_refused_while_it_remains(
        replicas: tuple[Process, Process], http: httpx.AsyncClient) -> None:
    key = create_key(replicas[0], budget_usd=0.5, budget_period="daily")
    responses = await fire(http, replicas, key["key"], 60)
    assert statuses(responses) == {200: 25, 429: 35}
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert refused.json()["error"]["type"] == "insufficient_quota"
    await asyncio.sleep(0.3)  # settlement runs just after each response
    report = usage(replicas[1], key["id"])
    assert report["spent_usd"] == pytest.approx(0.5)
    assert report["reserved_usd"] == pytest.approx(0.0)
    assert report["remaining_usd"] == pytest.approx(0.0)
    assert report["period_resets_at"] is not None
    rows = report["rows"]
    assert len(rows) == 1
    assert rows[0]["model"] == "priced"
    assert rows[0]["requests"] == 25
    assert rows[0]["output_tokens"] == 50
    assert rows[0]["cost_usd"] == pytest.approx(0.5)


async def test_tpm_with_streams_and_disconnects_leaks_nothing(replicas: tuple[Process, Process],
                                                              http: httpx.AsyncClient) -> None:
    key = create_key(replicas[0], tpm=100_000, max_parallel=50, budget_usd=100)
    auth = {"authorization": f"Bearer {key['key']}"}
    body = {"model": "slow-stream", "stream": True, "max_tokens": 40,
            "messages": [{"role": "user", "content": "stream to me"}]}

    async def read_all(index: int) -> int:
        async with http.stream("POST", f"{replicas[index % 2].url}/v1/chat/completions", headers=auth,
                               json=body) as response:
            return len([line async for line in response.aiter_lines() if line.startswith("data:")])

    async def leave_early(index: int) -> None:
        async with http.stream("POST", f"{replicas[index % 2].url}/v1/chat/completions", headers=auth,
                               json=body) as response:
            async for _ in response.aiter_lines():
                break

    complete = await asyncio.gather(*(read_all(i) for i in range(6)))
    assert all(count > 40 for count in complete)
    await asyncio.gather(*(leave_early(i) for i in range(6)))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        report = usage(replicas[0], key["id"])
        if report["in_flight"] == 0 and report["reserved_usd"] == 0:
            break
        await asyncio.sleep(0.1)
    assert report["in_flight"] == 0
    assert report["reserved_usd"] == pytest.approx(0.0)
    # The complete streams were charged their real output; the abandoned ones only what was sent.
    assert report["rows"][0]["requests"] == 12
    assert report["spent_usd"] > 0
    assert report["tokens_last_minute"] >= 6 * 40


async def test_keys_without_limits_skip_admission(replicas: tuple[Process, Process],
                                                   http: httpx.AsyncClient) -> None:
    key = create_key(replicas[0])
    responses = await fire(http, replicas, key["key"], 4)
    assert statuses(responses) == {200: 4}
    assert "x-ratelimit-limit-requests" not in responses[0].headers


async def test_a_repeated_client_request_id_keeps_reservations_apart(replicas: tuple[Process, Process],
                                                                    http: httpx.AsyncClient) -> None:
    """Reservations are keyed by the gateway's own id, never the client's x-request-id."""
    key = create_key(replicas[0], max_parallel=50, tpm=1_000_000, budget_usd=10.0)
    body = {"model": "priced", "messages": [{"role": "user", "content": "one two three four"}], "max_tokens": 2}
    headers = {"authorization": f"Bearer {key['key']}", "x-request-id": "same-id-every-time"}
    responses = await asyncio.gather(*(http.post(f"{replicas[i % 2].url}/v1/chat/completions", headers=headers,
                                                 json=body) for i in range(20)))
    assert statuses(list(responses)) == {200: 20}
    assert {r.headers["x-request-id"] for r in responses} == {"same-id-every-time"}
    await asyncio.sleep(0.3)  # settlement runs just after each response
    report = usage(replicas[1], key["id"])
    assert report["in_flight"] == 0 and report["reserved_usd"] == pytest.approx(0.0)
    assert report["rows"][0]["requests"] == 20 and report["rows"][0]["output_tokens"] == 40
