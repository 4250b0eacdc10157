"""The KeyStore contract: every case runs against each backend (see ``backend`` in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.keys.models import AuditEntry, KeyRecord
from gateway.keys.secrets import hash_secret
from gateway.keys.store import KeyExists, KeyStore
from tests.keys.builders import T0, audit, new_record, rotated
from tests.keys.conftest import Backend


def ordered(records: list[KeyRecord]) -> list[str]:
    return [r.id for r in sorted(records, key=lambda r: (r.created_at, r.id))]


async def all_keys(store: KeyStore, page_size: int, *, after: str | None = None,
                   **filters: str | None) -> list[KeyRecord]:
    """Every page from ``after`` (or the start) on, concatenated."""
    pages: list[KeyRecord] = []
    cursor = after
    seen: set[str] = set()
    while True:
        page, cursor = await store.list_keys(limit=page_size, cursor=cursor, **filters)
        assert len(page) <= page_size
        pages.extend(page)
        if cursor is None:
            return pages
        assert page, "a cursor must not lead to an empty page"
        assert cursor not in seen, "the cursor must advance"
        seen.add(cursor)


async def all_audit(store: KeyStore, page_size: int, *, after: str | None = None,
                    **filters: str | None) -> list[AuditEntry]:
    pages: list[AuditEntry] = []
    cursor = after
    seen: set[str] = set()
    while True:
        page, cursor = await store.list_audit(limit=page_size, cursor=cursor, **filters)
        assert len(page) <= page_size
        pages.extend(page)
        if cursor is None:
            return pages
        assert page, "a cursor must not lead to an empty page"
        assert cursor not in seen, "the cursor must advance"
        seen.add(cursor)


async def test_create_get_find_by_hash(store: KeyStore) -> None:
    record = new_record(team="red", alias="ci")
    await store.create(record)
    assert await store.get(record.id) == record
    assert await store.find_by_hash(record.key_hash) == record
    assert await store.get("key_missing") is None
    assert await store.find_by_hash(hash_secret("sk-gw-nope")) is None


async def test_duplicate_id_or_hash_raises_key_exists(store: KeyStore) -> None:
    first = rotated(new_record())
    await store.create(first)
    same_id = new_record(key_id=first.id)
    with pytest.raises(KeyExists):
        await store.create(same_id)
    with pytest.raises(KeyExists):
        await store.create(new_record(key_hash=first.key_hash))
    with pytest.raises(KeyExists):
        await store.create(new_record(key_hash=first.previous_hash))
    assert await store.get(first.id) == first
    assert await store.find_by_hash(same_id.key_hash) is None


async def test_update_changes_fields_and_moves_the_hash_index(store: KeyStore) -> None:
    original = new_record(team="red", alias="old")
    await store.create(original)

    once = rotated(original).model_copy(update={"alias": "new", "team": "blue", "rpm": 10})
    await store.update(once)
    assert await store.get(original.id) == once
    assert await store.find_by_hash(once.key_hash) == once
    assert await store.find_by_hash(original.key_hash) == once, "the previous hash still finds the key"
    assert (await store.list_keys(team="red"))[0] == []
    assert [r.id for r in (await store.list_keys(team="blue"))[0]] == [original.id]

    twice = rotated(once)
    await store.update(twice)
    assert await store.find_by_hash(twice.key_hash) == twice
    assert await store.find_by_hash(once.key_hash) == twice
    assert await store.find_by_hash(original.key_hash) is None, "hashes older than the previous one are gone"


async def test_update_rejects_missing_keys_and_foreign_hashes(store: KeyStore) -> None:
    mine, theirs = new_record(), new_record()
    await store.create(mine)
    await store.create(theirs)
    with pytest.raises(KeyError):
        await store.update(new_record())
    with pytest.raises(KeyExists):
        await store.update(mine.model_copy(update={"key_hash": theirs.key_hash}))
    assert await store.get(mine.id) == mine
    assert await store.find_by_hash(theirs.key_hash) == theirs


async def test_revocation_keeps_the_record(store: KeyStore) -> None:
    record = new_record(team="red")
    await store.create(record)
    revoked = record.model_copy(update={"enabled": False, "revoked_at": T0})
    await store.update(revoked)
    assert await store.get(record.id) == revoked
    assert await store.find_by_hash(record.key_hash) == revoked, "the caller decides a revoked key is refused"
    assert (await store.list_keys(team="red"))[0] == [revoked]


async def test_list_order_and_filters(store: KeyStore) -> None:
    # Shared created_at values: ties must fall back to the id.
    records = [new_record(team=("red", "blue", None)[i % 3], alias=("a", "b")[i % 2],
                          created_at=T0 + timedelta(seconds=(7 * i) % 4)) for i in range(12)]
    await asyncio.gather(*(store.create(r) for r in records))

    page, cursor = await store.list_keys(limit=100)
    assert [r.id for r in page] == ordered(records)
    assert cursor is None
    assert [r.id for r in (await store.list_keys(team="red", limit=100))[0]] == ordered(
        [r for r in records if r.team == "red"])
    assert [r.id for r in (await store.list_keys(alias="b", limit=100))[0]] == ordered(
        [r for r in records if r.alias == "b"])
    assert [r.id for r in (await store.list_keys(team="blue", alias="a", limit=100))[0]] == ordered(
        [r for r in records if r.team == "blue" and r.alias == "a"])
    assert await store.list_keys(team="nobody") == ([], None)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 25), page_size=st.integers(1, 8), by_alias=st.booleans(),
       seconds=st.lists(st.integers(0, 5), min_size=25, max_size=25))
async def test_pages_neither_repeat_nor_skip(store: KeyStore, n: int, page_size: int, by_alias: bool,
                                             seconds: list[int]) -> None:
    # The store outlives the examples, so each example lists its own team.
    team = f"team-{uuid.uuid4().hex[:8]}"
    records = [new_record(team=team, alias=("a", "b")[i % 2], created_at=T0 + timedelta(seconds=seconds[i]))
               for i in range(n)]
    for record in records:
        await store.create(record)
    alias = "a" if by_alias else None
    expected = ordered([r for r in records if alias is None or r.alias == alias])
    assert [r.id for r in await all_keys(store, page_size, team=team, alias=alias)] == expected
    everything = await all_keys(store, 1000)
    assert [r.id for r in await all_keys(store, page_size)] == [r.id for r in everything]


async def test_a_cursor_survives_writes_between_pages(store: KeyStore) -> None:
    records = [new_record(created_at=T0 + timedelta(seconds=i)) for i in range(6)]
    for record in records:
        await store.create(record)
    first, cursor = await store.list_keys(limit=3)
    earlier, later = new_record(created_at=T0 - timedelta(days=1)), new_record(created_at=T0 + timedelta(days=1))
    await store.create(earlier)
    await store.create(later)
    rest = await all_keys(store, 2, after=cursor)
    assert [r.id for r in first + rest] == [*ordered(records), later.id]


@pytest.mark.parametrize("bad", ["", "nonsense", "12", "9" * 30 + ":key_x", "-" + "9" * 30 + "|key_x"])
async def test_forged_key_cursors_are_value_errors(store: KeyStore, bad: str) -> None:
    # The admin API turns ValueError into a 400; a backend error would read as "store down" (503).
    with pytest.raises(ValueError, match="cursor"):
        await store.list_keys(cursor=bad)


@pytest.mark.parametrize("bad", ["", "x", "12x", "9" * 30, "9" * 21 + "-1", "18446744073709551616-0", "0-0"])
async def test_forged_audit_cursors_are_value_errors(store: KeyStore, bad: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        await store.list_audit(cursor=bad)


async def test_limit_below_one_is_a_value_error(store: KeyStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.list_keys(limit=0)
    with pytest.raises(ValueError, match="limit"):
        await store.list_audit(limit=0)


async def test_audit_is_newest_first_filtered_and_paged(store: KeyStore) -> None:
    entries = [audit(i, team=("red", "blue", None)[i % 3], key_id=f"key_{i % 2}") for i in range(11)]
    for entry in entries:
        await store.append_audit(entry)
    newest_first = entries[::-1]

    assert (await store.list_audit(limit=100)) == (newest_first, None)
    assert await all_audit(store, 3) == newest_first
    red = [e for e in newest_first if e.team == "red"]
    assert await all_audit(store, 1, team="red") == red
    assert await all_audit(store, 2, key_id="key_1") == [e for e in newest_first if e.key_id == "key_1"]
    assert await all_audit(store, 2, team="red", key_id="key_0") == [e for e in red if e.key_id == "key_0"]

    page, cursor = await store.list_audit(limit=4)
    await store.append_audit(audit(99, team="red"))
    assert page + await all_audit(store, 3, after=cursor) == newest_first, "appends never shift older pages"
    assert (await store.list_audit(limit=1))[0] == [audit(99, team="red")]


async def test_touch_sets_last_used_without_losing_a_concurrent_update(store: KeyStore) -> None:
    record = new_record(alias="before")
    await store.create(record)
    stale = await store.get(record.id)
    assert stale is not None
    assert stale.last_used_at is None

    used = T0 + timedelta(hours=1)
    await asyncio.gather(store.touch(record.id, used), store.update(stale.model_copy(update={"alias": "after"})))
    current = await store.get(record.id)
    assert current is not None
    assert (current.alias, current.last_used_at) == ("after", used)

    await store.touch(record.id, T0)  # an older report never moves it back
    # A writer still holding the record from before the touch must not erase it either.
    await store.update(stale.model_copy(update={"rpm": 5}))
    current = await store.get(record.id)
    assert current is not None
    assert (current.rpm, current.last_used_at) == (5, used)
    assert await store.find_by_hash(record.key_hash) == current
    await store.touch("key_missing", used)
    assert await store.get("key_missing") is None


async def test_touches_and_updates_interleaved(store: KeyStore) -> None:
    record = new_record()
    await store.create(record)
    times = [T0 + timedelta(seconds=i) for i in range(20)]
    updates = [store.update(record.model_copy(update={"rpm": i + 1})) for i in range(5)]
    await asyncio.gather(*(store.touch(record.id, t) for t in times), *updates)
    current = await store.get(record.id)
    assert current is not None
    assert current.last_used_at == times[-1]
    assert current.rpm is not None


async def test_concurrent_updates_leave_one_consistent_index(store: KeyStore) -> None:
    record = new_record(team="t0")
    await store.create(record)
    versions = [rotated(record).model_copy(update={"team": f"t{i}"}) for i in range(1, 6)]
    # Open a few connections first, so every update reads the old record before any writes.
    await asyncio.gather(*(store.ping() for _ in range(len(versions))))
    await asyncio.gather(*(store.update(v) for v in versions))
    final = await store.get(record.id)
    assert final in versions
    assert await store.find_by_hash(final.key_hash) == final
    for team in ["t0", *(v.team for v in versions)]:
        listed = [r.id for r in (await store.list_keys(team=team))[0]]
        assert listed == ([record.id] if team == final.team else [])
    assert [r.id for r in (await store.list_keys())[0]] == [record.id]


async def next_change(source: KeyStore, publisher: KeyStore, key_id: str) -> float:
    """Seconds until ``key_id`` published by ``publisher`` reaches a ``changes()`` subscriber of ``source``.

    Publishes repeatedly: a subscription starts at the iterator's first step, not before.
    """
    changes = source.changes()
    loop = asyncio.get_running_loop()
    started = loop.time()
    waiter = asyncio.ensure_future(anext(changes))
    try:
        async with asyncio.timeout(1.0):
            while not waiter.done():
                await publisher.publish_change(key_id)
                await asyncio.wait({waiter}, timeout=0.05)
        assert waiter.result() == key_id
        return loop.time() - started
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await waiter
        await aclose(changes)


async def aclose(iterator: AsyncIterator[str]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


async def test_publish_change_reaches_a_subscriber(backend: Backend, store: KeyStore) -> None:
    # On Redis the publisher is another client, as another replica would be; SQLite is one process.
    publisher = await backend.open() if backend.name == "redis" else store
    assert await next_change(store, publisher, "key_changed") < 1.0


async def test_persistence_across_store_objects(backend: Backend, store: KeyStore) -> None:
    records = [new_record(team="red") for _ in range(3)]
    for record in records:
        await store.create(record)
    await store.touch(records[0].id, T0)
    await store.append_audit(audit(1, team="red"))
    await store.close()

    reopened = await backend.open()
    assert await reopened.get(records[0].id) == records[0].model_copy(update={"last_used_at": T0})
    assert await reopened.find_by_hash(records[1].key_hash) == records[1]
    assert [r.id for r in (await reopened.list_keys(team="red"))[0]] == ordered(records)
    assert (await reopened.list_audit())[0] == [audit(1, team="red")]


async def test_ping(store: KeyStore) -> None:
    assert await store.ping() is True
    assert store.name in {"redis", "sqlite"}


async def test_concurrent_creates_are_all_kept(store: KeyStore) -> None:
    records = [new_record(team="many") for _ in range(50)]
    await asyncio.gather(*(store.create(r) for r in records))
    found = await asyncio.gather(*(store.get(r.id) for r in records))
    assert found == records
    assert [r.id for r in await all_keys(store, 7, team="many")] == ordered(records)
