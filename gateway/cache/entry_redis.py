"""The EntryStore on Redis: each response under its own key with a PX expiry, and tag sets so an
operator can purge by key, team or alias.

Layout (``prefix`` defaults to ``gw:cache``):

    {prefix}:e:{entry_id}                  the stored response (SET … PX ttl)
    {prefix}:{{tags}}:k:{key_id}           sorted sets of entry ids, scored by expiry (unix ms),
    {prefix}:{{tags}}:t:{team}             trimmed of expired ids on every write and expiring
    {prefix}:{{tags}}:a:{alias}            with their last entry
    {prefix}:{{tags}}:all

The tag sets share one hash tag, so a purge by several filters is one ZINTER on Redis Cluster too;
responses spread over the cluster. A purge deletes exactly the ids in the intersection of the
filters' sets: another tenant's entries are never in it. Counts are of live entries (DEL's count).
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as redis

from gateway.cache.types import EntryTags, PurgeFilter

#: Entry ids deleted per pipeline in a purge.
PURGE_BATCH = 500


class RedisEntryStore:
    name = "redis"

    def __init__(self, client: redis.Redis, *, prefix: str = "gw:cache") -> None:
        self._client = client
        self._entry = f"{prefix}:e:"
        self._tags = f"{prefix}:{{tags}}:"

    def _tag_keys(self, tags: EntryTags) -> list[str]:
        keys = [f"{self._tags}k:{tags.key_id}", f"{self._tags}a:{tags.alias}", f"{self._tags}all"]
        if tags.team is not None:
            keys.append(f"{self._tags}t:{tags.team}")
        return keys

    async def get(self, entry_id: str) -> bytes | None:
        value = await self._client.get(self._entry + entry_id)
        return value.encode() if isinstance(value, str) else value

    async def put(self, entry_id: str, value: bytes, ttl_seconds: float, tags: EntryTags) -> None:
        ttl_ms = max(1, int(ttl_seconds * 1000))
        now_ms = int(time.time() * 1000)
        pipe = self._client.pipeline(transaction=False)
        pipe.set(self._entry + entry_id, value, px=ttl_ms)
        for key in self._tag_keys(tags):
            pipe.zadd(key, {entry_id: now_ms + ttl_ms})
            pipe.zremrangebyscore(key, "-inf", now_ms)
            pipe.pexpire(key, ttl_ms, nx=True)
            pipe.pexpire(key, ttl_ms, gt=True)
        await pipe.execute()

    async def purge(self, which: PurgeFilter) -> int:
        sets = [f"{self._tags}{kind}:{value}" for kind, value in
                (("k", which.key_id), ("t", which.team), ("a", which.alias)) if value is not None]
        if not sets:
            sets = [f"{self._tags}all"]
        ids: list[Any]
        if len(sets) == 1:
            ids = await self._client.zrange(sets[0], 0, -1)
        else:
            ids = await self._client.zinter(sets)
        purged = 0
        for start in range(0, len(ids), PURGE_BATCH):
            batch = [i.decode() if isinstance(i, bytes) else str(i) for i in ids[start:start + PURGE_BATCH]]
            pipe = self._client.pipeline(transaction=False)
            for entry_id in batch:
                pipe.delete(self._entry + entry_id)
            purged += sum(int(n) for n in await pipe.execute())
            pipe = self._client.pipeline(transaction=False)
            for key in sets:
                pipe.zrem(key, *batch)
            await pipe.execute()
        return purged

    async def close(self) -> None:
        await self._client.aclose()
