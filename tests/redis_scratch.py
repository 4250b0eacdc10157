"""Scratch space on the shared test Redis: a unique prefix per test, deleted afterwards, so suites
never FLUSH data they do not own."""

from __future__ import annotations

import os
import uuid

import pytest
import redis.asyncio as aioredis

REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def delete_prefix(prefix: str) -> None:
    client = aioredis.from_url(REDIS_URL)
    try:
        batch = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
        for start in range(0, len(batch), 500):
            await client.delete(*batch[start:start + 500])
    finally:
        await client.aclose()


async def scratch_prefix() -> str:
    """A fresh prefix on the test Redis, failing the test (never skipping it) when Redis is down."""
    probe = aioredis.from_url(REDIS_URL)
    try:
        await probe.ping()
    except (aioredis.ConnectionError, OSError) as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({exc}); start it or set GATEWAY_TEST_REDIS_URL")
    finally:
        await probe.aclose()
    return f"test:{uuid.uuid4().hex}"
