"""What only the Redis backend promises: replicas on separate connections share limits exactly, and
every key it writes lies in the key's cluster slot and goes away when it is no longer needed."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.limits import redis_limiter
from gateway.limits.local_limiter import SETTLED_SECONDS
from gateway.limits.types import Limiter
from tests.limits.conftest import REDIS_URL, Backend
from tests.limits.test_limiter_contract import T0, admitted, ask, at, quota, spend


async def replicas(backend: Backend, n: int = 2) -> list[Limiter]:
    return [await backend.open() for _ in range(n)]


async def test_two_replicas_admit_exactly_the_rpm(redis_backend: Backend) -> None:
    one, two = await replicas(redis_backend)
    q = quota(rpm=50)
    decisions = await asyncio.gather(*((one, two)[i % 2].admit(q, ask(), T0 + i / 1000) for i in range(200)))
    assert sum(d.allowed for d in decisions) == 50
    # Both replicas won some: the count is shared, not per replica.
    assert sum(d.allowed for d in decisions[0::2]) and sum(d.allowed for d in decisions[1::2])


async def test_two_replicas_never_overspend_a_budget(redis_backend: Backend) -> None:
    one, two = await replicas(redis_backend)
    q = quota(budget_usd=0.5, budget_period="monthly", max_parallel=80)
    asks = [ask(cost=0.01) for _ in range(100)]
    decisions = await asyncio.gather(*((one, two)[i % 2].admit(q, a, T0) for i, a in enumerate(asks)))
    winners = [(i, a) for i, (a, d) in enumerate(zip(asks, decisions, strict=True)) if d.allowed]
    assert len(winners) == 50
    assert {d.reason for d in decisions if not d.allowed} == {"budget"}
    # Each settles on the other replica than it was admitted on: state is in Redis only.
    await asyncio.gather(*((two, one)[i % 2].settle(q, a, spend(cost=0.01), T0 + 1) for i, a in winners))
    status = await one.budget(q, T0 + 1)
    assert (status.spent_usd, status.reserved_usd) == (pytest.approx(0.5), 0)
    assert (await two.usage(q, T0 + 1)).in_flight == 0


async def test_every_key_is_in_the_key_slot_and_expires_when_done(redis_backend: Backend) -> None:
    limiter = await redis_backend.open()
    q = quota(rpm=10, tpm=1000, max_parallel=3, budget_usd=1.0, budget_period="daily")
    a = ask(100, 0.1)
    assert await admitted(limiter, q, a, T0)
    await limiter.settle(q, a, spend(10, 20, 0.05), T0 + 1)
    assert await admitted(limiter, q, ask(100, 0.1), T0 + 2)  # one still in flight

    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        names = sorted([key async for key in client.scan_iter(match=f"{redis_backend.location}:*")])
        ttls = {name.removeprefix(f"{redis_backend.location}:{{k:{q.key_id}}}:"): await client.ttl(name)
                for name in names}
    finally:
        await client.aclose()
    tag = re.escape(f"{redis_backend.location}:{{k:{q.key_id}}}:")
    assert all(re.match(tag, name) for name in names), names
    midnight = at(2024, 3, 14)
    assert set(ttls) == {"rpm", "tpm", "tpm:tokens", "tpm:total", "leases", "reserved", "budget:d2024-03-13",
                         "settled", "ledger:2024-03-13", "ledger:days"}
    for window in ("rpm", "tpm", "tpm:tokens", "tpm:total"):
        assert 0 < ttls[window] <= 61
    # The bucket lives until a day after its period ends, counted from the caller's clock (T0 lies
    # in the past for Redis's clock, and the bucket is still there).
    assert ttls["budget:d2024-03-13"] == pytest.approx(midnight - T0 + redis_limiter.BUCKET_GRACE_SECONDS, abs=5)
    assert 0 < ttls["settled"] <= SETTLED_SECONDS + 60
    # Leases wait for an admit to return a dead gateway's budget; the ledger is kept.
    assert ttls["leases"] == ttls["reserved"] == ttls["ledger:2024-03-13"] == ttls["ledger:days"] == -1


async def test_total_budget_bucket_never_expires(redis_backend: Backend) -> None:
    limiter = await redis_backend.open()
    q = quota(budget_usd=1.0, budget_period="total")
    a = ask(cost=0.1)
    assert await admitted(limiter, q, a, T0)
    await limiter.settle(q, a, spend(cost=0.1), T0 + 1)
    client = aioredis.from_url(REDIS_URL)
    try:
        assert await client.ttl(f"{redis_backend.location}:{{k:{q.key_id}}}:budget:total") == -1
    finally:
        await client.aclose()


def test_scripts_carry_their_version_in_the_file_name() -> None:
    folder = Path(redis_limiter.__file__).parent
    # The KEYS/ARGV contract changed with model limits: v2, and v1 is gone.
    assert {p.name for p in folder.glob("limits_*.lua")} == {"limits_admit_v2.lua", "limits_settle_v2.lua"}


async def test_model_keys_are_in_the_key_slot_and_expire_with_their_window(redis_backend: Backend) -> None:
    limiter = await redis_backend.open()
    q = quota(rpm=10, model="gpt:x", model_rpm=5, model_tpm=1000)
    a = ask(100)
    assert await admitted(limiter, q, a, T0)
    await limiter.settle(q, a, spend(10, 20), T0 + 1)
    # Another alias of the key without model limits touches no model structure.
    assert await admitted(limiter, replace(q, model="other", model_rpm=None, model_tpm=None), ask(100), T0 + 2)
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        names = sorted([key async for key in client.scan_iter(match=f"{redis_backend.location}:*")])
        tag = f"{redis_backend.location}:{{k:{q.key_id}}}:"
        ttls = {name.removeprefix(tag): await client.ttl(name) for name in names}
        assert all(name.startswith(tag) for name in names), names
        assert await client.hget(f"{tag}m:gpt:x:tpm:tokens", a.reservation_id) == "30"
    finally:
        await client.aclose()
    model = {"m:gpt:x:rpm", "m:gpt:x:tpm", "m:gpt:x:tpm:tokens", "m:gpt:x:tpm:total"}
    assert set(ttls) == {"rpm", "settled", "ledger:2024-03-13", "ledger:days"} | model
    for window in model:
        assert 0 < ttls[window] <= 61
