"""Fixtures for the cache suites (entry stores, vector indexes, embedders, the cache service)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.cache.embedders import LocalEmbedder
from gateway.cache.entry_redis import RedisEntryStore
from gateway.cache.entry_sqlite import SqliteEntryStore
from gateway.cache.types import EntryStore
from gateway.cache.vector_edge import EdgeVectorIndex
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


# --- the cache service (tests/cache/test_service.py) --------------------------------------------

@pytest.fixture(scope="session")
def local_embedder() -> LocalEmbedder:
    """The packaged local model, loaded once per session (about 2 s)."""
    return LocalEmbedder.load()


class MemoEmbedder:
    """The real local embedder, remembering vectors of texts it has seen: the adversarial suites
    send the same texts from many tenants, and the vectors are identical anyway."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self._inner = inner
        self.id = inner.id
        self.dimensions = inner.dimensions
        self.default_threshold = inner.default_threshold
        self._seen: dict[str, list[float]] = {}

    async def embed(self, text: str) -> list[float]:
        if text not in self._seen:
            self._seen[text] = await self._inner.embed(text)
        return self._seen[text]


@pytest.fixture
async def edge_index() -> AsyncIterator[EdgeVectorIndex]:
    index = EdgeVectorIndex.open(None, 384)
    yield index
    await index.close()
