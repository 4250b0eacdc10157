"""The embedded semantic index: Qdrant's in-process engine (qdrant-edge-py), no server.

One shard holds every scope. The scope is a keyword payload with a tenant index and every search
filters on it, plus a float index on ``expires_at`` so expired points are filtered in the engine too
(docs/caching.md, "Choosing the embedded vector engine", measures this against the alternatives).

Invariants: a search never returns another scope's point nor one whose ``expires_at`` is ≤ ``now``;
a point's id is derived from (scope, entry id), so re-adding an entry replaces it.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from gateway.cache.types import EntryTags, PurgeFilter, VectorMatch
from gateway.cache.vector_points import live_matches

#: Namespace of point ids: uuid5(namespace, scope + NUL + entry id).
POINT_NAMESPACE = uuid.UUID("5b0c6c8e-1f1e-4f55-9a53-0f6a3c1f2e71")


def point_id(scope: str, entry_id: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{scope}\0{entry_id}"))


def payload_for(scope: str, entry_id: str, text: str, expires_at: float, tags: EntryTags) -> dict[str, Any]:
    return {"scope": scope, "entry_id": entry_id, "text": text, "expires_at": expires_at,
            "key_id": tags.key_id, "team": tags.team, "alias": tags.alias}


def _tag_conditions(which: PurgeFilter) -> list[Any]:
    fields = {"key_id": which.key_id, "team": which.team, "alias": which.alias}
    return [qe.FieldCondition(key=k, match=qe.MatchValue(v)) for k, v in fields.items() if v is not None]


class EdgeVectorIndex:
    name = "qdrant-edge"

    def __init__(self, shard: qe.EdgeShard, path: Path, dimensions: int, *, temporary: bool) -> None:
        self._shard = shard
        self._path = path
        self._temporary = temporary
        self._closed = False
        #: Writes (update, flush) are serialised; searches run concurrently with them in the engine.
        self._write_lock = threading.Lock()
        self.dimensions = dimensions

    @classmethod
    def open(cls, path: Path | None, dimensions: int) -> EdgeVectorIndex:
        """Open (or create) the shard under ``path``; ``None`` makes a temporary one removed on close."""
        temporary = path is None
        where = Path(tempfile.mkdtemp(prefix="gw-vectors-")) if path is None else path
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dimensions, distance=qe.Distance.Cosine))
        if (where / "edge_config.json").exists() or any(where.glob("segments*")):
            shard = qe.EdgeShard.load(str(where), config)
        else:
            where.mkdir(parents=True, exist_ok=True)
            shard = qe.EdgeShard.create(str(where), config)
        indexed = shard.info().payload_schema
        wanted: dict[str, Any] = {
            "scope": qe.KeywordIndexParams(is_tenant=True),
            "expires_at": qe.PayloadSchemaType.Float,
            "key_id": qe.PayloadSchemaType.Keyword,
            "team": qe.PayloadSchemaType.Keyword,
            "alias": qe.PayloadSchemaType.Keyword,
        }
        for field, schema in wanted.items():
            if field not in indexed:
                shard.update(qe.UpdateOperation.create_field_index(field, schema))
        return cls(shard, where, dimensions, temporary=temporary)

    # -- the protocol ---------------------------------------------------------------------------

    async def search(self, scope: str, vector: Sequence[float], *, limit: int, min_score: float,
                     now: float) -> list[VectorMatch]:
        # Measured at ~0.3-1 ms with 50k points (bench/cache_speed.py): cheaper inline than a thread hop.
        return self.search_sync(scope, vector, limit=limit, min_score=min_score, now=now)

    def search_sync(self, scope: str, vector: Sequence[float], *, limit: int, min_score: float,
                    now: float) -> list[VectorMatch]:
        self._check_open()
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(list(vector)),
            filter=qe.Filter(must=[qe.FieldCondition(key="scope", match=qe.MatchValue(scope)),
                                   qe.FieldCondition(key="expires_at", range=qe.RangeFloat(gt=now))]),
            with_payload=qe.PayloadSelector.Include(["entry_id", "text", "expires_at", "scope"]),
            with_vector=False,
            score_threshold=min_score,
        )
        return live_matches(self._shard.query(request), scope, now)

    async def add(self, scope: str, vector: Sequence[float], *, entry_id: str, text: str,
                  expires_at: float, tags: EntryTags) -> None:
        self.add_sync(scope, vector, entry_id=entry_id, text=text, expires_at=expires_at, tags=tags)

    def add_sync(self, scope: str, vector: Sequence[float], *, entry_id: str, text: str,
                 expires_at: float, tags: EntryTags) -> None:
        self.add_many_sync([(scope, vector, entry_id, text, expires_at, tags)])

    def add_many_sync(self, rows: Sequence[tuple[str, Sequence[float], str, str, float, EntryTags]]) -> None:
        """Bulk load (benchmarks and warm-up): one update for many points."""
        self._check_open()
        points = []
        for scope, vector, entry_id, text, expires_at, tags in rows:
            if len(vector) != self.dimensions:
                raise ValueError(f"vector has {len(vector)} dimensions, the index {self.dimensions}")
            points.append(qe.Point(point_id(scope, entry_id), list(vector),
                                   payload_for(scope, entry_id, text, expires_at, tags)))
        with self._write_lock:
            self._shard.update(qe.UpdateOperation.upsert_points(points))

    async def purge(self, which: PurgeFilter) -> int:
        return await asyncio.to_thread(self._delete, qe.Filter(must=_tag_conditions(which)))

    async def sweep(self, now: float) -> int:
        expired = qe.Filter(must=[qe.FieldCondition(key="expires_at", range=qe.RangeFloat(lte=now))])
        return await asyncio.to_thread(self._delete, expired)

    def _delete(self, which: qe.Filter) -> int:
        self._check_open()
        with self._write_lock:
            count = self._shard.count(qe.CountRequest(exact=True, filter=which))
            if count:
                self._shard.update(qe.UpdateOperation.delete_points_by_filter(which))
            return count

    def count(self) -> int:
        self._check_open()
        return self._shard.count(qe.CountRequest(exact=True))

    def optimize(self) -> None:
        """Build the HNSW graph and merge segments now instead of on the engine's schedule."""
        with self._write_lock:
            self._shard.optimize()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._write_lock:
            if not self._temporary:
                self._shard.flush()
            self._shard.close()
        if self._temporary:
            shutil.rmtree(self._path, ignore_errors=True)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the vector index is closed")
