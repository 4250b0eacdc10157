"""Latency of one cache entry read and write per EntryStore backend, on this machine.

    .venv/bin/python -m bench.cache_entries [--n 2000] [--size 2000]

Compares the embedded SQLite store (the default without Redis), the Redis store (127.0.0.1:6379,
scratch prefix, deleted after), and a plain in-process LRU (an OrderedDict: the alternative the
embedded store was measured against). Reports p50/p99 in microseconds of awaited calls, one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis

from gateway.cache.entry_redis import RedisEntryStore
from gateway.cache.entry_sqlite import SqliteEntryStore
from gateway.cache.types import EntryStore, EntryTags, PurgeFilter

TAGS = EntryTags(key_id="key_bench", team="bench", alias="bench")


class MemoryLru:
    """The in-process alternative: bounded, lost on restart."""

    name = "memory-lru"

    def __init__(self, capacity: int = 100_000) -> None:
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._capacity = capacity

    async def get(self, entry_id: str) -> bytes | None:
        item = self._items.get(entry_id)
        if item is None or item[0] <= time.time():
            return None
        self._items.move_to_end(entry_id)
        return item[1]

    async def put(self, entry_id: str, value: bytes, ttl_seconds: float, tags: EntryTags) -> None:
        self._items[entry_id] = (time.time() + ttl_seconds, value)
        self._items.move_to_end(entry_id)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)


async def timed(n: int, call: Callable[[int], Awaitable[object]]) -> tuple[float, float]:
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


async def measure(name: str, store: EntryStore | MemoryLru, n: int, value: bytes) -> None:
    put = await timed(n, lambda i: store.put(f"e{i}", value, 600, TAGS))
    hit = await timed(n, lambda i: store.get(f"e{i}"))
    miss = await timed(n, lambda i: store.get(f"absent{i}"))
    print(f"{name:11} put p50 {put[0]:7.0f} µs p99 {put[1]:7.0f} | get-hit p50 {hit[0]:6.0f} µs p99 {hit[1]:6.0f}"
          f" | get-miss p50 {miss[0]:6.0f} µs p99 {miss[1]:6.0f}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=2000, help="bytes per stored response")
    args = parser.parse_args()
    value = b"x" * args.size
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = await SqliteEntryStore.open(Path(tmp) / "cache.sqlite3")
        await measure("sqlite", sqlite, args.n, value)
        await sqlite.close()
    prefix = f"bench:{uuid.uuid4().hex}"
    redis_store = RedisEntryStore(aioredis.from_url("redis://127.0.0.1:6379/0"), prefix=prefix)
    await measure("redis", redis_store, args.n, value)
    await redis_store.purge(PurgeFilter())
    await redis_store.close()
    await measure("memory-lru", MemoryLru(), args.n, value)


if __name__ == "__main__":
    asyncio.run(main())
