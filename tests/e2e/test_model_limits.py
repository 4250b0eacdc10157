"""Per-model limits of a key hold exactly end to end: a key with ``model_limits`` for one alias is
refused past that alias's rpm, with OpenAI's rate-limit error, while its other aliases are unaffected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import deployment
from tests.processes import MASTER_KEY, Process, start_gateway

MASTER = {"authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture(scope="module")
def gateway(workdir: Path, mock_upstream: Process) -> Iterator[Process]:
    v1 = f"{mock_upstream.url}/v1"
    config = {"model_list": [deployment("a", "openai/mock", v1), deployment("b", "openai/mock", v1)]}
    process = start_gateway(workdir, config, env={"GATEWAY_ADMIN_RATE_LIMIT": "10000/minute"})
    yield process
    process.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        yield client


def create_key(gateway: Process, **fields: Any) -> dict[str, Any]:
    response = httpx.post(f"{gateway.url}/admin/keys", headers=MASTER, json=fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def fire(http: httpx.AsyncClient, gateway: Process, key: str, model: str, count: int) -> list[httpx.Response]:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2}
    url = f"{gateway.url}/v1/chat/completions"
    return list(await asyncio.gather(*(http.post(url, headers={"authorization": f"Bearer {key}"}, json=body)
                                       for _ in range(count))))


def statuses(responses: list[httpx.Response]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for response in responses:
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
    return counts


async def test_model_rpm_is_exact_and_other_aliases_are_unaffected(gateway: Process,
                                                                   http: httpx.AsyncClient) -> None:
    key = create_key(gateway, model_limits={"a": {"rpm": 3}})
    responses = await fire(http, gateway, key["key"], "a", 8)
    assert statuses(responses) == {200: 3, 429: 5}
    refused = next(r for r in responses if r.status_code == 429)
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "model" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # The key has no key-wide rpm: the request headers report the model's.
    admitted = next(r for r in responses if r.status_code == 200)
    assert admitted.headers["x-ratelimit-limit-requests"] == "3"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    # Alias b of the same key has no model limit, and a's refusals took nothing from it.
    others = await fire(http, gateway, key["key"], "b", 8)
    assert statuses(others) == {200: 8}
    assert "x-ratelimit-limit-requests" not in others[0].headers
    # Alias a stays refused.
    again = await fire(http, gateway, key["key"], "a", 1)
    assert statuses(again) == {429: 1}


async def test_key_rpm_binds_across_aliases_on_top_of_model_rpm(gateway: Process,
                                                                http: httpx.AsyncClient) -> None:
    key = create_key(gateway, rpm=5, model_limits={"a": {"rpm": 2}})
    first = await fire(http, gateway, key["key"], "a", 6)
    assert statuses(first) == {200: 2, 429: 4}
    # The key-wide trio is reported when the key has a key-wide rpm.
    assert next(r for r in first if r.status_code == 200).headers["x-ratelimit-limit-requests"] == "5"
    # a's refusals took nothing from the key: exactly 3 of the key's 5 remain, for any alias.
    second = await fire(http, gateway, key["key"], "b", 6)
    assert statuses(second) == {200: 3, 429: 3}
    usage = httpx.get(f"{gateway.url}/admin/keys/{key['id']}/usage", headers=MASTER).json()
    assert usage["requests_last_minute"] == 5  # key-wide: both aliases
