"""The cache stage: look a request up (exact, then semantic), and store what a miss brought back.

Policy per request, in order (docs/caching.md):
  1. header controls are checked first: a bad value is a 400 whatever the alias's mode;
  2. bypass (no lookup, no write) when the alias's mode is off, the temperature is above
     ``max_temperature``, a completion is streamed, or the client sent no-cache and no-store;
  3. the exact tier, keyed by tenant + endpoint + alias + every output-changing field;
  4. the semantic tier (mode ``semantic`` only, chat only, when the request is eligible), in a hard
     scope; a vector whose response is gone (expired, purged) is a miss.

A backend that fails (Redis, Qdrant, the embedder) is a miss with a log line, never a failed
request; after a failure that backend is left alone for ``BREAKER_SECONDS``. Writes run in the
background after the response, and their failures are logged only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from gateway.auth import Principal
from gateway.cache import semantic
from gateway.cache.controls import parse_controls
from gateway.cache.replay import refreshed
from gateway.cache.request_key import (
    Endpoint,
    SemanticQuery,
    SemanticSkip,
    exact_key,
    semantic_query,
    temperature_of,
    tenant_of,
)
from gateway.cache.types import CacheNote, CacheTier, Embedder, EntryStore, EntryTags, PurgeFilter, VectorIndex
from gateway.errors import ServiceUnavailable
from gateway.limits.admission import BackgroundWork
from gateway.routing.types import Usage
from gateway.runtime import RoutingTable

if TYPE_CHECKING:
    from gateway.pipeline import RequestContext

log = logging.getLogger("gateway.cache")
T = TypeVar("T")

#: A lookup that takes longer is abandoned as a miss (a hung Qdrant must not hold requests).
LOOKUP_TIMEOUT_SECONDS = 2.0
#: After a backend call failed, that backend is skipped (a miss) for this long.
BREAKER_SECONDS = 1.0
#: Responses larger than this are not stored.
MAX_ENTRY_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class SemanticTier:
    index: VectorIndex
    embedder: Embedder


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A stored response ready to send again (``created`` refreshed, the cached ``id`` kept)."""

    body: dict[str, Any]
    tier: CacheTier
    saved_cost_usd: float
    similarity: float | None = None


@dataclass(slots=True)
class PendingWrite:
    """What a miss may store once the upstream answered."""

    entry_id: str
    tags: EntryTags
    ttl_seconds: float
    semantic: SemanticQuery | None = None
    #: The last user message's embedding, when the lookup computed it already.
    vector: list[float] | None = None


@dataclass(frozen=True, slots=True)
class CacheLookup:
    answer: CachedAnswer | None = None
    write: PendingWrite | None = None


NOTHING = CacheLookup()


class ResponseCache:
    def __init__(self, table: RoutingTable, entries: EntryStore, semantic_tier: SemanticTier | None,
                 background: BackgroundWork, *, on_backend_error: Callable[[CacheTier], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self.entries = entries
        self.semantic = semantic_tier
        self._background = background
        self._on_backend_error = on_backend_error
        self._clock = clock
        self._down_until: dict[str, float] = {}

    # --- lookup -------------------------------------------------------------------------------

    async def lookup(self, ctx: RequestContext, principal: Principal, alias: str, operation: Endpoint,
                     body: Mapping[str, Any], headers: Mapping[str, str]) -> CacheLookup:
        """Fills ``ctx.cache``; raises InvalidRequest (400) for unusable cache headers."""
        config = self._table.router.config
        settings = config.cache_settings
        controls = parse_controls(headers, settings)
        note = ctx.cache = CacheNote(outcome="bypass")
        policy = config.cache_for(alias)
        temperature = temperature_of(body)
        if (policy.mode == "off" or (temperature is not None and temperature > settings.max_temperature)
                or (operation != "chat" and body.get("stream") is True) or (controls.no_cache and controls.no_store)):
            return NOTHING
        tenant = tenant_of(principal, settings.share_across_keys)
        try:
            entry_id = exact_key(tenant, operation, alias, body)
        except ValueError:
            return NOTHING
        query: SemanticQuery | None = None
        if policy.mode == "semantic":
            if self.semantic is None:
                note.semantic_skipped = "unavailable"
            else:
                found = semantic_query(tenant, operation, alias, body, self.semantic.embedder.id,
                                       min_words=settings.min_semantic_words)
                if isinstance(found, SemanticSkip):
                    note.semantic_skipped = found.reason
                else:
                    query = found
        write = None if controls.no_store else PendingWrite(
            entry_id=entry_id, tags=EntryTags(key_id=principal.key_id, team=principal.team, alias=alias),
            ttl_seconds=controls.ttl_seconds or policy.ttl_seconds or 3600, semantic=query)
        if controls.no_cache:
            return CacheLookup(write=write)
        note.outcome = "miss"
        started = time.perf_counter()
        raw = await self._guarded("exact", "entries", lambda: self.entries.get(entry_id))
        note.lookup_seconds["exact"] = time.perf_counter() - started
        answer = self._answer(raw, alias, "exact")
        if answer is None and query is not None and self.semantic is not None:
            answer = await self._semantic(query, controls.threshold or policy.threshold, write, alias, note)
        if answer is None:
            return CacheLookup(write=write)
        note.outcome = "hit" if answer.tier == "exact" else "semantic-hit"
        note.tier, note.similarity, note.saved_cost_usd = answer.tier, answer.similarity, answer.saved_cost_usd
        return CacheLookup(answer=answer)

    async def _semantic(self, query: SemanticQuery, threshold: float | None, write: PendingWrite | None, alias: str,
                        note: CacheNote) -> CachedAnswer | None:
        tier = self.semantic
        assert tier is not None
        started = time.perf_counter()
        try:
            found = await self._guarded("semantic", "semantic", lambda: semantic.lookup(
                tier.index, tier.embedder, query.scope, query.text, threshold or tier.embedder.default_threshold,
                self._clock()))
            if found is None:
                return None
            if write is not None:
                write.vector = found.vector
            if found.match is None:
                return None
            entry_id = found.match.entry_id
            raw = await self._guarded("semantic", "entries", lambda: self.entries.get(entry_id))
            answer = self._answer(raw, alias, "semantic")  # None: a dangling vector, a miss
            if answer is None:
                return None
            return CachedAnswer(body=answer.body, tier="semantic", saved_cost_usd=answer.saved_cost_usd,
                                similarity=found.match.score)
        finally:
            note.lookup_seconds["semantic"] = time.perf_counter() - started

    def _answer(self, raw: bytes | None, alias: str, tier: CacheTier) -> CachedAnswer | None:
        if raw is None:
            return None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("unreadable cache entry ignored")
            return None
        if not isinstance(body, dict):
            return None
        usage = Usage.from_openai(body.get("usage"))
        router = self._table.router
        saved = 0.0
        if usage is not None and router.knows(alias):
            saved = router.price(router.deployments_in_chain(alias)[0]).cost(usage)
        return CachedAnswer(body=refreshed(body), tier=tier, saved_cost_usd=saved)

    async def _guarded(self, tier: CacheTier, backend: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """``call()``, or None when the backend failed, timed out or is resting after a failure."""
        if self._down_until.get(backend, 0.0) > time.monotonic():
            return None
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_SECONDS):
                return await call()
        except Exception as error:
            self._down_until[backend] = time.monotonic() + BREAKER_SECONDS
            log.warning("cache %s backend failed, treating the lookup as a miss for %.0f s: %r",
                        backend, BREAKER_SECONDS, error)
            if self._on_backend_error is not None:
                self._on_backend_error(tier)
            return None

    # --- store --------------------------------------------------------------------------------

    def store_later(self, write: PendingWrite, body: bytes | dict[str, Any]) -> None:
        """Store a successful response off the response's path."""
        self._background.spawn(self._store_quietly(write, body))

    async def _store_quietly(self, write: PendingWrite, body: bytes | dict[str, Any]) -> None:
        try:
            await self.store(write, body)
        except Exception as error:
            log.warning("could not store a cache entry: %r", error)

    async def store(self, write: PendingWrite, body: bytes | dict[str, Any]) -> None:
        value = body if isinstance(body, bytes) else orjson.dumps(body)
        if len(value) > MAX_ENTRY_BYTES:
            return
        now = self._clock()
        await self.entries.put(write.entry_id, value, write.ttl_seconds, write.tags)
        tier, query = self.semantic, write.semantic
        if tier is None or query is None:
            return
        vector = write.vector if write.vector is not None else await tier.embedder.embed(query.text)
        await semantic.remember(tier.index, query.scope, vector, query.text, entry_id=write.entry_id,
                                expires_at=now + write.ttl_seconds, tags=write.tags)

    # --- operations ---------------------------------------------------------------------------

    async def purge(self, which: PurgeFilter) -> dict[str, int]:
        """Delete matching entries (both tiers); counts per tier. The vectors go first, so no
        semantic lookup meets a vector whose response is already gone for longer than needed."""
        try:
            vectors = await self.semantic.index.purge(which) if self.semantic is not None else 0
            entries = await self.entries.purge(which)
        except Exception as error:
            log.warning("cache purge failed: %r", error)
            raise ServiceUnavailable("the cache store is unreachable; nothing or only part was purged") from None
        return {"exact": entries, "semantic": vectors}

    async def sweep_forever(self) -> None:
        """Remove expired vectors every ``cache_settings.sweep_seconds`` (entries expire by themselves)."""
        while True:
            await asyncio.sleep(self._table.router.config.cache_settings.sweep_seconds)
            if self.semantic is None:
                continue
            try:
                swept = await self.semantic.index.sweep(self._clock())
                if swept:
                    log.info("cache sweep removed %d expired vectors", swept)
            except Exception as error:
                log.warning("cache sweep failed: %r", error)
