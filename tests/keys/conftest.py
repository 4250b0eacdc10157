"""Key-store fixtures: each contract test runs once on real Redis and once on a SQLite file.

Redis tests share one server, so each test gets its own prefix (``test:<uuid>``) and deletes only
the keys under it afterwards; nothing else on the server is touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.keys.redis_store import RedisKeyStore
from gateway.keys.sqlite_store import SqliteKeyStore
from gateway.keys.store import KeyStore
from tests.redis_scratch import REDIS_URL, delete_prefix, scratch_prefix


@dataclass
class Backend:
    """One storage location; ``open()`` gives another store object on it (a restart, or a replica)."""

    name: str
    open: Callable[[], Awaitable[KeyStore]]
    #: The Redis prefix, or the SQLite file.
    location: str


@contextlib.asynccontextmanager
async def sqlite_backend(path: Path) -> AsyncIterator[Backend]:
    opened: list[KeyStore] = []

    async def open_store() -> KeyStore:
        store = await SqliteKeyStore.open(path)
        opened.append(store)
        return store

    try:
        yield Backend("sqlite", open_store, str(path))
    finally:
        for store in opened:
            await store.close()


@contextlib.asynccontextmanager
async def redis_backend_on_prefix() -> AsyncIterator[Backend]:
    prefix = await scratch_prefix()
    opened: list[KeyStore] = []

    async def open_store() -> KeyStore:
        # Alternate response decoding so both of redis-py's modes go through the store.
        client = aioredis.from_url(REDIS_URL, decode_responses=len(opened) % 2 == 1)
        store = RedisKeyStore(client, prefix=prefix)
        opened.append(store)
        return store

    try:
        yield Backend("redis", open_store, prefix)
    finally:
        for store in opened:
            await store.close()
        await delete_prefix(prefix)


@pytest.fixture(params=["sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each backend in turn: the contract suite runs once per parameter."""
    location = sqlite_backend(tmp_path / "keys.sqlite3") if request.param == "sqlite" else redis_backend_on_prefix()
    async with location as backend:
        yield backend


@pytest.fixture
async def redis_backend() -> AsyncIterator[Backend]:
    async with redis_backend_on_prefix() as backend:
        yield backend


@pytest.fixture
async def store(backend: Backend) -> KeyStore:
    return await backend.open()
