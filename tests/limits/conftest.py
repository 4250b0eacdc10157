"""Limiter fixtures: each contract test runs on Redis, on LocalLimiter with a SQLite spend file, and on
LocalLimiter in memory (the Redis-down fallback).

Redis tests share one server, so each test gets its own prefix (``test:<uuid>``) and deletes only the
keys under it afterwards (SCAN + DEL); nothing else on the server is touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.limits.local_limiter import LocalLimiter
from gateway.limits.redis_limiter import RedisLimiter
from gateway.limits.sqlite_spend import FILENAME, SqliteSpend
from gateway.limits.types import Limiter
from tests.redis_scratch import REDIS_URL, delete_prefix, scratch_prefix


@dataclass
class Backend:
    """One storage location; ``open()`` gives another limiter on it (a restart, or for Redis a replica)."""

    name: str
    open: Callable[[], Awaitable[Limiter]]
    #: Spent and the ledger outlive the limiter object.
    persistent: bool
    #: The Redis prefix, or the SQLite file, or "" in memory.
    location: str


@contextlib.asynccontextmanager
async def redis_location() -> AsyncIterator[Backend]:
    prefix = await scratch_prefix()
    clients: list[aioredis.Redis] = []

    async def open_limiter() -> Limiter:
        # A client of its own per limiter, as on separate replicas; both response decodings are used.
        # A blocking pool queues callers beyond its size, as a gateway under load must.
        pool = aioredis.BlockingConnectionPool.from_url(REDIS_URL, max_connections=32, timeout=10,
                                                        decode_responses=len(clients) % 2 == 1)
        client = aioredis.Redis.from_pool(pool)
        clients.append(client)
        return RedisLimiter(client, prefix=prefix)

    try:
        yield Backend("redis", open_limiter, True, prefix)
    finally:
        for client in clients:
            await client.aclose()
        await delete_prefix(prefix)


@contextlib.asynccontextmanager
async def local_location(path: Path | None) -> AsyncIterator[Backend]:
    opened: list[Limiter] = []

    async def open_limiter() -> Limiter:
        limiter = LocalLimiter(None if path is None else await SqliteSpend.open(path))
        opened.append(limiter)
        return limiter

    try:
        yield Backend("sqlite" if path else "memory", open_limiter, path is not None, str(path or ""))
    finally:
        for limiter in opened:
            await limiter.close()


@pytest.fixture(params=["redis", "sqlite", "memory"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each backend in turn: the contract suite runs once per parameter."""
    if request.param == "redis":
        location = redis_location()
    else:
        location = local_location(tmp_path / FILENAME if request.param == "sqlite" else None)
    async with location as backend:
        yield backend


@pytest.fixture
async def limiter(backend: Backend) -> Limiter:
    return await backend.open()


@pytest.fixture
async def redis_backend() -> AsyncIterator[Backend]:
    async with redis_location() as backend:
        yield backend
