"""Build the response cache at start-up: the entry store comes from ``gateway/stores.py``; the
semantic tier (embedder + vector index) is built here only when some alias asks for it.

Vector index: a Qdrant server when GATEWAY_QDRANT_URL is set; otherwise Qdrant's in-process engine,
kept under the data dir with the embedded store, or in memory (one per process) next to Redis,
where several processes may share the data dir.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import cast

from gateway.cache.service import ResponseCache, SemanticTier
from gateway.cache.types import CacheTier, Embedder, EntryStore, VectorIndex
from gateway.config import RoutingConfig
from gateway.limits.admission import BackgroundWork
from gateway.runtime import RoutingTable
from gateway.settings import Settings

log = logging.getLogger("gateway.cache")

VECTOR_DIR = "cache-vectors"


def wants_semantic(config: RoutingConfig) -> bool:
    cache = config.cache_settings
    return cache.default.mode == "semantic" or any(a.mode == "semantic" for a in cache.aliases.values())


async def _open_embedder(config: RoutingConfig, table: RoutingTable, stack: AsyncExitStack) -> Embedder:
    from gateway.cache.embedders import LocalEmbedder, UpstreamEmbedder

    name = config.cache_settings.embedder
    if name == "local":
        local = await asyncio.to_thread(LocalEmbedder.load)
        stack.callback(local.close)
        return local
    upstream = UpstreamEmbedder(lambda: table.router, name)
    await upstream.probe()
    # ``dimensions`` is a read-only property there (known after the probe); nothing here assigns it.
    return cast(Embedder, upstream)


async def _open_index(settings: Settings, dimensions: int, *, shared: bool, stack: AsyncExitStack) -> VectorIndex:
    index: VectorIndex
    if settings.qdrant_url is not None:
        from gateway.cache.vector_qdrant import QdrantVectorIndex

        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        index = await QdrantVectorIndex.connect(settings.qdrant_url, dimensions, api_key=api_key)
    else:
        from gateway.cache.vector_edge import EdgeVectorIndex

        path = None if shared else settings.data_dir / VECTOR_DIR
        if shared:
            log.info("semantic cache: in-process vector index per gateway process (set GATEWAY_QDRANT_URL to "
                     "share semantic entries across replicas)")
        index = await asyncio.to_thread(EdgeVectorIndex.open, path, dimensions)
    stack.push_async_callback(index.close)
    return index


async def open_cache(settings: Settings, table: RoutingTable, entries: EntryStore, background: BackgroundWork,
                     stack: AsyncExitStack, *, shared: bool,
                     on_backend_error: Callable[[CacheTier], None] | None = None) -> ResponseCache:
    """The cache for this app. A semantic tier that cannot be built (the embeddings alias is down, Qdrant is
    unreachable) is logged and left out: the exact tier still works. Switching an alias to ``semantic``
    by a reload needs a restart when no alias used it at start-up."""
    config = table.router.config
    semantic: SemanticTier | None = None
    if wants_semantic(config):
        try:
            embedder = await _open_embedder(config, table, stack)
            index = await _open_index(settings, embedder.dimensions, shared=shared, stack=stack)
            semantic = SemanticTier(index=index, embedder=embedder)
            log.info("semantic cache: embedder %s, vector index %s", embedder.id, index.name)
        except Exception:
            log.exception("semantic cache unavailable; exact caching only")
    return ResponseCache(table, entries, semantic, background, on_backend_error=on_backend_error)
