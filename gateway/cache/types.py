"""The cache's contracts: what each backend must do, and what a lookup tells the rest of the gateway.

Two tiers (docs/caching.md):
  exact     a hash of the canonical request → the stored response, in an ``EntryStore``
  semantic  a hard scope hash + an embedding of the last user message → candidate entries in a
            ``VectorIndex``; the response itself lives in the same ``EntryStore`` as exact entries.

Every backend has one contract suite under tests/cache/ that each implementation passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

#: What ``x-gateway-cache`` says about a request.
CacheOutcome = Literal["hit", "semantic-hit", "miss", "bypass"]
CacheTier = Literal["exact", "semantic"]


@dataclass(frozen=True, slots=True)
class EntryTags:
    """Who an entry belongs to, so operators can purge by key, team or alias."""

    key_id: str
    team: str | None
    alias: str


@dataclass(frozen=True, slots=True)
class PurgeFilter:
    """Purge entries matching every field that is set; nothing set purges everything."""

    key_id: str | None = None
    team: str | None = None
    alias: str | None = None

    def matches(self, tags: EntryTags) -> bool:
        return ((self.key_id is None or tags.key_id == self.key_id)
                and (self.team is None or tags.team == self.team)
                and (self.alias is None or tags.alias == self.alias))


class EntryStore(Protocol):
    """Stored responses by entry id, each with its own TTL. An expired entry reads as missing."""

    name: str

    async def get(self, entry_id: str) -> bytes | None: ...

    async def put(self, entry_id: str, value: bytes, ttl_seconds: float, tags: EntryTags) -> None: ...

    async def purge(self, which: PurgeFilter) -> int:
        """Delete matching live entries; returns how many."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class VectorMatch:
    entry_id: str
    score: float
    #: The cached request's last user message, for the lexical guards.
    text: str


class VectorIndex(Protocol):
    """Vectors filtered by an exact scope; ``search`` never returns another scope's points nor an
    expired one (``expires_at`` is a unix time in seconds)."""

    name: str

    async def search(self, scope: str, vector: Sequence[float], *, limit: int, min_score: float,
                     now: float) -> list[VectorMatch]:
        """Best first."""
        ...

    async def add(self, scope: str, vector: Sequence[float], *, entry_id: str, text: str,
                  expires_at: float, tags: EntryTags) -> None: ...

    async def purge(self, which: PurgeFilter) -> int: ...

    async def sweep(self, now: float) -> int:
        """Remove expired points; returns how many."""
        ...

    async def close(self) -> None: ...


class Embedder(Protocol):
    """Text → a unit-length vector. ``id`` names the model and its version: it is part of every
    semantic scope, so vectors of two models never meet, and thresholds are calibrated per id."""

    id: str
    dimensions: int
    #: The similarity threshold calibrated for this embedder (bench/semantic_cache_eval.py).
    default_threshold: float

    async def embed(self, text: str) -> list[float]: ...


@dataclass(slots=True)
class CacheNote:
    """What the cache did for one request: read by headers, metrics, traces and logs."""

    outcome: CacheOutcome = "bypass"
    #: The tier that answered (hits only).
    tier: CacheTier | None = None
    #: Cosine similarity of a semantic hit.
    similarity: float | None = None
    #: What the upstream call would have cost (hits only), at the alias's price.
    saved_cost_usd: float = 0.0
    #: Time spent looking up, per tier consulted.
    lookup_seconds: dict[CacheTier, float] = field(default_factory=dict)
    #: Why the semantic tier was skipped, e.g. "multimodal", "short", "tool-turn", "n>1".
    semantic_skipped: str | None = None
