"""Fixtures for the cache suites (entry stores, vector indexes, embedders, the cache service)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.cache.entry_redis import RedisEntryStore
from gateway.cache.entry_sqlite import SqliteEntryStore
from gateway.cache.types import EntryStore
from tests.redis_scratch import REDIS_URL, delete_prefix, scratch_prefix


@pytest.fixture(params=["redis", "sqlite"])
async def entry_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EntryStore]:
    """Every EntryStore backend: Redis under a scratch prefix, SQLite in a fresh file."""
    store: EntryStore
    if request.param == "redis":
        prefix = await scratch_prefix()
        store = RedisEntryStore(aioredis.from_url(REDIS_URL), prefix=prefix)
        yield store
        await store.close()
        await delete_prefix(prefix)
    else:
        store = await SqliteEntryStore.open(tmp_path / "cache.sqlite3")
        yield store
        await store.close()
