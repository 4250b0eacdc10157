"""Which limiters Admission may await without a shield (``admit_cancel_safe``), and the property that
makes the in-process one safe: cancelled while it waits (for its SQLite spend file), it took nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis

from gateway.limits.failover import FailoverLimiter
from gateway.limits.local_limiter import LocalLimiter
from gateway.limits.redis_limiter import RedisLimiter
from gateway.limits.sqlite_spend import SqliteSpend
from gateway.limits.types import Ask, Quota
from tests.redis_scratch import REDIS_URL

T0 = 1_700_000_000.0


async def test_a_local_admit_cancelled_while_it_waits_takes_nothing(tmp_path: Path) -> None:
    limiter = LocalLimiter(await SqliteSpend.open(tmp_path / "spend.db"))
    assert limiter.admit_cancel_safe
    quota = Quota(key_id="k", rpm=5, tpm=1_000, max_parallel=1, budget_usd=1.0, budget_period="daily")
    try:
        admitting = asyncio.ensure_future(limiter.admit(quota, Ask(reservation_id="a", tokens=10, cost_usd=0.5), T0))
        await asyncio.sleep(0)  # it runs to its first await: loading the day's spent from the file
        assert not admitting.done()
        admitting.cancel()
        await asyncio.gather(admitting, return_exceptions=True)
        assert admitting.cancelled()
        usage = await limiter.usage(quota, T0)
        assert (usage.requests, usage.tokens, usage.in_flight, usage.reserved_usd) == (0, 0, 0, 0)
        # The one concurrency slot is free: a new ask gets it.
        assert (await limiter.admit(quota, Ask(reservation_id="b", tokens=10, cost_usd=0.5), T0)).allowed
    finally:
        await limiter.close()


async def test_a_limiter_that_may_call_redis_is_shielded() -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        redis_limiter = RedisLimiter(client, prefix="test:cancel-safety")
        assert not redis_limiter.admit_cancel_safe
        assert not FailoverLimiter(redis_limiter, LocalLimiter(None)).admit_cancel_safe
    finally:
        await client.aclose()
