"""The production semantic index: a Qdrant server through qdrant-client's ``AsyncQdrantClient``.

One collection holds every scope; ``scope`` has a keyword payload index marked ``is_tenant`` (Qdrant
then keeps each scope's points together), ``expires_at`` a float index, and the purge tags keyword
indexes. The same adapter runs against qdrant-client's ``:memory:`` mode in the contract tests.

Invariants: as in vector_edge.py, a search never returns another scope's point nor an expired one;
point ids are uuid5(scope, entry id), so re-adding an entry replaces it.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Sequence

from qdrant_client import AsyncQdrantClient, models

from gateway.cache.types import EntryTags, PurgeFilter, VectorMatch
from gateway.cache.vector_edge import payload_for, point_id
from gateway.cache.vector_points import live_matches

DEFAULT_COLLECTION = "llm_gateway_cache"


def _tag_conditions(which: PurgeFilter) -> list[models.Condition]:
    fields = {"key_id": which.key_id, "team": which.team, "alias": which.alias}
    return [models.FieldCondition(key=k, match=models.MatchValue(value=v)) for k, v in fields.items() if v is not None]


class QdrantVectorIndex:
    name = "qdrant"

    def __init__(self, client: AsyncQdrantClient, dimensions: int, collection: str = DEFAULT_COLLECTION) -> None:
        self._client = client
        self.dimensions = dimensions
        self.collection = collection
        self._ready = False
        self._ready_lock = asyncio.Lock()

    @classmethod
    async def connect(cls, url: str, dimensions: int, *, collection: str = DEFAULT_COLLECTION,
                      api_key: str | None = None) -> QdrantVectorIndex:
        """Connect, and create the collection and its payload indexes if they are missing."""
        index = cls(AsyncQdrantClient(url=url, api_key=api_key, timeout=5), dimensions, collection)
        await index.ensure_collection()
        return index

    async def ensure_collection(self) -> None:
        """Create the collection and indexes once; refuse a collection of other dimensions (another
        embedder wrote it: its vectors are not comparable with ours)."""
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            if await self._client.collection_exists(self.collection):
                info = await self._client.get_collection(self.collection)
                params = info.config.params.vectors
                size = params.size if isinstance(params, models.VectorParams) else None
                if size != self.dimensions:
                    raise RuntimeError(f"Qdrant collection {self.collection!r} holds vectors of size {size}, "
                                       f"the embedder makes {self.dimensions}: use another collection")
            else:
                await self._client.create_collection(
                    self.collection,
                    vectors_config=models.VectorParams(size=self.dimensions, distance=models.Distance.COSINE))
            schemas: dict[str, models.PayloadSchemaType | models.KeywordIndexParams] = {
                "scope": models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
                "expires_at": models.PayloadSchemaType.FLOAT,
                "key_id": models.PayloadSchemaType.KEYWORD,
                "team": models.PayloadSchemaType.KEYWORD,
                "alias": models.PayloadSchemaType.KEYWORD,
            }
            with warnings.catch_warnings():
                # qdrant-client's local mode (tests) warns that it ignores payload indexes.
                warnings.filterwarnings("ignore", message="Payload indexes have no effect in the local Qdrant")
                for field, schema in schemas.items():
                    await self._client.create_payload_index(self.collection, field, field_schema=schema)
            self._ready = True

    async def search(self, scope: str, vector: Sequence[float], *, limit: int, min_score: float,
                     now: float) -> list[VectorMatch]:
        await self.ensure_collection()
        response = await self._client.query_points(
            self.collection,
            query=list(vector),
            query_filter=models.Filter(must=[
                models.FieldCondition(key="scope", match=models.MatchValue(value=scope)),
                models.FieldCondition(key="expires_at", range=models.Range(gt=now)),
            ]),
            limit=limit,
            score_threshold=min_score,
            with_payload=["entry_id", "text", "expires_at", "scope"],
            with_vectors=False,
        )
        return live_matches(response.points, scope, now)

    async def add(self, scope: str, vector: Sequence[float], *, entry_id: str, text: str,
                  expires_at: float, tags: EntryTags) -> None:
        if len(vector) != self.dimensions:
            raise ValueError(f"vector has {len(vector)} dimensions, the index {self.dimensions}")
        await self.ensure_collection()
        point = models.PointStruct(id=point_id(scope, entry_id), vector=list(vector),
                                   payload=payload_for(scope, entry_id, text, expires_at, tags))
        await self._client.upsert(self.collection, points=[point], wait=True)

    async def purge(self, which: PurgeFilter) -> int:
        return await self._delete(models.Filter(must=_tag_conditions(which)))

    async def sweep(self, now: float) -> int:
        return await self._delete(models.Filter(must=[
            models.FieldCondition(key="expires_at", range=models.Range(lte=now))]))

    async def _delete(self, which: models.Filter) -> int:
        """Count, then delete by the same filter. Not atomic on a server: a point added in between that
        matches is deleted but not counted, which only makes the returned number low."""
        await self.ensure_collection()
        counted = await self._client.count(self.collection, count_filter=which, exact=True)
        if counted.count:
            await self._client.delete(self.collection, points_selector=models.FilterSelector(filter=which),
                                      wait=True)
        return counted.count

    async def close(self) -> None:
        await self._client.close()
