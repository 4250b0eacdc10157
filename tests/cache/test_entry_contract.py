"""The EntryStore contract, run against every backend (Redis and SQLite)."""

from __future__ import annotations

import asyncio

from gateway.cache.types import EntryStore, EntryTags, PurgeFilter

A1 = EntryTags(key_id="key_a1", team="alpha", alias="m1")
A2 = EntryTags(key_id="key_a2", team="alpha", alias="m2")
B1 = EntryTags(key_id="key_b1", team="beta", alias="m1")
SOLO = EntryTags(key_id="key_solo", team=None, alias="m1")
ALL_TAGS = {"a1": A1, "a2": A2, "b1": B1, "solo": SOLO}


async def _fill(store: EntryStore, per_tag: int = 3) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {}
    for name, tags in ALL_TAGS.items():
        ids[name] = [f"{name}-{i}" for i in range(per_tag)]
        for entry_id in ids[name]:
            await store.put(entry_id, entry_id.encode(), 60, tags)
    return ids


async def _alive(store: EntryStore, ids: dict[str, list[str]]) -> dict[str, int]:
    return {name: sum([await store.get(i) is not None for i in group]) for name, group in ids.items()}


async def test_put_then_get_returns_the_bytes(entry_store: EntryStore) -> None:
    value = b'{"id": "chatcmpl-1", "choices": []}' + bytes(range(256))
    await entry_store.put("e1", value, 60, A1)
    assert await entry_store.get("e1") == value
    assert await entry_store.get("never-stored") is None


async def test_put_replaces_an_entry(entry_store: EntryStore) -> None:
    await entry_store.put("e1", b"old", 60, A1)
    await entry_store.put("e1", b"new", 60, A1)
    assert await entry_store.get("e1") == b"new"


async def test_an_expired_entry_reads_as_missing_and_is_not_counted_by_purge(entry_store: EntryStore) -> None:
    await entry_store.put("short", b"x", 0.2, A1)
    await entry_store.put("long", b"y", 60, A1)
    assert await entry_store.get("short") == b"x"
    await asyncio.sleep(0.35)
    assert await entry_store.get("short") is None
    assert await entry_store.get("long") == b"y"
    assert await entry_store.purge(PurgeFilter(key_id="key_a1")) == 1


async def test_purge_by_key_leaves_every_other_key(entry_store: EntryStore) -> None:
    ids = await _fill(entry_store)
    assert await entry_store.purge(PurgeFilter(key_id="key_a1")) == 3
    assert await _alive(entry_store, ids) == {"a1": 0, "a2": 3, "b1": 3, "solo": 3}


async def test_purge_by_team_leaves_other_teams_and_teamless_keys(entry_store: EntryStore) -> None:
    ids = await _fill(entry_store)
    assert await entry_store.purge(PurgeFilter(team="alpha")) == 6
    assert await _alive(entry_store, ids) == {"a1": 0, "a2": 0, "b1": 3, "solo": 3}


async def test_purge_by_alias_leaves_other_aliases(entry_store: EntryStore) -> None:
    ids = await _fill(entry_store)
    assert await entry_store.purge(PurgeFilter(alias="m1")) == 9
    assert await _alive(entry_store, ids) == {"a1": 0, "a2": 3, "b1": 0, "solo": 0}


async def test_purge_with_several_filters_takes_their_intersection(entry_store: EntryStore) -> None:
    ids = await _fill(entry_store)
    assert await entry_store.purge(PurgeFilter(team="alpha", alias="m2")) == 3
    assert await entry_store.purge(PurgeFilter(key_id="key_b1", team="alpha")) == 0
    assert await _alive(entry_store, ids) == {"a1": 3, "a2": 0, "b1": 3, "solo": 3}


async def test_purge_everything_and_counts_are_not_repeated(entry_store: EntryStore) -> None:
    ids = await _fill(entry_store)
    assert await entry_store.purge(PurgeFilter(key_id="key_a1")) == 3
    assert await entry_store.purge(PurgeFilter()) == 9
    assert await entry_store.purge(PurgeFilter()) == 0
    assert await _alive(entry_store, ids) == {"a1": 0, "a2": 0, "b1": 0, "solo": 0}


async def test_an_entry_stored_again_after_a_purge_is_readable(entry_store: EntryStore) -> None:
    await entry_store.put("e1", b"one", 60, A1)
    assert await entry_store.purge(PurgeFilter(alias="m1")) == 1
    await entry_store.put("e1", b"two", 60, A1)
    assert await entry_store.get("e1") == b"two"
    assert await entry_store.purge(PurgeFilter(key_id="key_a1")) == 1


async def test_concurrent_writes_and_reads(entry_store: EntryStore) -> None:
    await asyncio.gather(*(entry_store.put(f"c{i}", str(i).encode(), 60, B1) for i in range(100)))
    values = await asyncio.gather(*(entry_store.get(f"c{i}") for i in range(100)))
    assert values == [str(i).encode() for i in range(100)]
    assert await entry_store.purge(PurgeFilter(team="beta")) == 100
