"""Redis-only behaviour the contract cannot see: the key layout and resubscribing after a dropped connection."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import redis.asyncio as aioredis

from gateway.keys.redis_store import EVERY_KEY, RedisKeyStore
from gateway.keys.secrets import hash_secret
from tests.keys.builders import T0, audit, new_record, rotated
from tests.keys.conftest import REDIS_URL, Backend


async def test_layout_keeps_no_stale_index_entries(redis_backend: Backend) -> None:
    store = await redis_backend.open()
    prefix = redis_backend.location
    original = new_record(team="red")
    await store.create(original)
    once = rotated(original).model_copy(update={"team": "blue"})
    await store.update(once)
    twice = rotated(once)
    await store.update(twice)
    await store.touch(original.id, twice.created_at)
    await store.append_audit(audit(1))

    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        keys = {key async for key in client.scan_iter(match=f"{prefix}:*")}
        assert keys == {
            f"{prefix}:{{k:{original.id}}}:rec",
            f"{prefix}:keyhash:{twice.key_hash}",
            f"{prefix}:keyhash:{once.key_hash}",
            f"{prefix}:keys",
            f"{prefix}:team:blue",
            f"{prefix}:audit",
        }
        assert await client.get(f"{prefix}:keyhash:{twice.previous_hash}") == original.id
        assert await client.zcard(f"{prefix}:keys") == 1
    finally:
        await client.aclose()
    assert await store.find_by_hash(hash_secret("sk-gw-unknown")) is None


async def test_racing_updates_leave_no_stale_index_members(redis_backend: Backend) -> None:
    """Listing re-checks each record's team, so only the raw sets show a stale member."""
    store = await redis_backend.open()
    prefix = redis_backend.location
    record = new_record(team="t0")
    await store.create(record)
    versions = [rotated(record).model_copy(update={"team": f"t{i}", "created_at": T0 + timedelta(seconds=i)})
                for i in range(1, 6)]
    await asyncio.gather(*(store.ping() for _ in versions))  # one connection each: the reads interleave
    await asyncio.gather(*(store.update(v) for v in versions))
    final = await store.get(record.id)
    assert final is not None

    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        teams = {key async for key in client.scan_iter(match=f"{prefix}:team:*")}
        assert teams == {f"{prefix}:team:{final.team}"}
        assert await client.zcard(f"{prefix}:keys") == 1
        hashes = {key async for key in client.scan_iter(match=f"{prefix}:keyhash:*")}
        assert hashes == {f"{prefix}:keyhash:{final.key_hash}", f"{prefix}:keyhash:{record.key_hash}"}
    finally:
        await client.aclose()


async def test_changes_resubscribes_and_says_everything_may_have_changed(redis_backend: Backend) -> None:
    name = f"keys-test-{uuid.uuid4().hex[:8]}"
    store = RedisKeyStore(aioredis.from_url(REDIS_URL, client_name=name), prefix=redis_backend.location)
    admin = aioredis.from_url(REDIS_URL, decode_responses=True)
    channel = f"{redis_backend.location}:keys:changed"
    changes = store.changes()
    try:
        first = asyncio.ensure_future(anext(changes))
        async with asyncio.timeout(2.0):
            while await admin.pubsub_numsub(channel) != [(channel, 1)]:
                await asyncio.sleep(0.01)
            # Drop only this store's subscriber connection, never anyone else's.
            for client in await admin.client_list():
                if client.get("name") == name:
                    await admin.execute_command("CLIENT", "KILL", "ID", client["id"])
            assert await first == EVERY_KEY
            second = asyncio.ensure_future(anext(changes))
            while not second.done():
                await admin.publish(channel, "key_after")
                await asyncio.wait({second}, timeout=0.05)
            assert second.result() == "key_after"
    finally:
        await changes.aclose()  # type: ignore[attr-defined]
        await store.close()
        await admin.aclose()
