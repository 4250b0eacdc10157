"""The key cache in front of a real (SQLite) key store: what it serves when the store goes away, and
what a change announcement does to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from gateway.auth import MasterKeyAuthenticator
from gateway.errors import AuthenticationFailed, ServiceUnavailable
from gateway.keys.authenticator import KeyAuthenticator
from gateway.keys.models import KeyRecord
from gateway.keys.secrets import display_prefix, hash_secret, new_key_id, new_secret
from gateway.keys.sqlite_store import SqliteKeyStore
from gateway.keys.store import EVERY_KEY


class Unplugged:
    """The real store, with its lookups failing while ``down`` (as a dead Redis fails them)."""

    def __init__(self, store: SqliteKeyStore) -> None:
        self.store = store
        self.down = False
        self.lookups = 0
        #: Set: lookups wait for it before asking the store (a slow store).
        self.gate: asyncio.Event | None = None
        #: Each lookup takes the first of these, if any, and waits for it after reading (a slow reply).
        self.holds: list[asyncio.Event] = []

    async def find_by_hash(self, key_hash: str) -> KeyRecord | None:
        self.lookups += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise ConnectionRefusedError("store unplugged")
        found = await self.store.find_by_hash(key_hash)
        if self.holds:
            await self.holds.pop(0).wait()
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Unplugged]:
    opened = await SqliteKeyStore.open(tmp_path / "keys.db")
    yield Unplugged(opened)
    await opened.close()


async def new_key(store: Unplugged) -> tuple[str, KeyRecord]:
    secret = new_secret()
    record = KeyRecord(id=new_key_id(), key_prefix=display_prefix(secret), key_hash=hash_secret(secret))
    await store.store.create(record)
    return secret, record


async def lookups_landed(auth: KeyAuthenticator) -> None:
    """Wait (up to 0.5 s) until no store lookup is in flight: a refresh ahead runs unawaited."""
    for _ in range(50):
        if not auth._fetching:
            return
        await asyncio.sleep(0.01)


def authenticator(store: Unplugged, clock: Clock) -> KeyAuthenticator:
    master = MasterKeyAuthenticator(SecretStr("sk-master-0123456789abcdef"))
    return KeyAuthenticator(store, master, ttl=0.5, stale_grace=60, monotonic=clock)  # type: ignore[arg-type]


async def test_a_cached_record_answers_while_the_store_is_down(store: Unplugged) -> None:
    clock = Clock()
    auth = authenticator(store, clock)
    secret, record = await new_key(store)
    assert (await auth.authenticate(secret)).key_id == record.id
    store.down = True
    clock.now += 5  # well past the TTL, within the stale grace
    assert (await auth.authenticate(secret)).key_id == record.id
    clock.now += 60
    with pytest.raises(ServiceUnavailable):
        await auth.authenticate(secret)


async def test_every_key_changed_refetches_but_keeps_the_stale_answer(store: Unplugged) -> None:
    """The change feed says EVERY_KEY when it reconnects (changes may have been missed). Seen in CI:
    forgetting every record then turned every key away while the store was still flapping."""
    clock = Clock()
    auth = authenticator(store, clock)
    secret, record = await new_key(store)
    await auth.authenticate(secret)

    await store.store.update(record.model_copy(update={"enabled": False}))
    auth.invalidate(EVERY_KEY)
    with pytest.raises(AuthenticationFailed, match="disabled"):
        await auth.authenticate(secret)  # fetched again at once, within the TTL

    await store.store.update(record)
    auth.invalidate(EVERY_KEY)
    assert (await auth.authenticate(secret)).key_id == record.id
    store.down = True
    auth.invalidate(EVERY_KEY)
    lookups = store.lookups
    assert (await auth.authenticate(secret)).key_id == record.id
    assert store.lookups == lookups + 1, "the store was asked first"


async def test_a_key_announced_as_changed_is_not_served_stale(store: Unplugged) -> None:
    """A revocation is announced by key id: that record is dropped, never kept as a stale answer."""
    clock = Clock()
    auth = authenticator(store, clock)
    secret, record = await new_key(store)
    await auth.authenticate(secret)
    store.down = True
    auth.invalidate(record.id)
    with pytest.raises(ServiceUnavailable):
        await auth.authenticate(secret)


async def test_unknown_key_answers_are_dropped_on_every_key_changed(store: Unplugged) -> None:
    clock = Clock()
    auth = authenticator(store, clock)
    secret = new_secret()
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate(secret)
    record = KeyRecord(id=new_key_id(), key_prefix=display_prefix(secret), key_hash=hash_secret(secret))
    await store.store.create(record)
    auth.invalidate(EVERY_KEY)
    assert (await auth.authenticate(secret)).key_id == record.id


async def test_concurrent_requests_share_one_lookup_and_one_leaving_does_not_cancel_it(store: Unplugged) -> None:
    clock = Clock()
    auth = authenticator(store, clock)
    secret, record = await new_key(store)
    await auth.authenticate(secret)
    clock.now += 5  # past twice the TTL: the next requests must wait for the store
    store.gate = asyncio.Event()
    before = store.lookups
    waiting = [asyncio.create_task(auth.authenticate(secret)) for _ in range(50)]
    await asyncio.sleep(0.01)
    waiting[0].cancel()
    store.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert {r.key_id for r in results[1:] if not isinstance(r, BaseException)} == {record.id}
    assert store.lookups == before + 1
    assert (await auth.authenticate(secret)).key_id == record.id and store.lookups == before + 1  # cached


async def test_a_change_during_a_lookup_starts_a_new_one_and_the_old_answer_is_not_cached(store: Unplugged) -> None:
    clock = Clock()
    auth = authenticator(store, clock)
    secret, record = await new_key(store)
    early_reply, late_reply = asyncio.Event(), asyncio.Event()
    store.holds = [early_reply, late_reply]
    early = asyncio.create_task(auth.authenticate(secret))
    await asyncio.sleep(0.01)  # it has read the record as it was, and its reply is on the way
    await store.store.update(record.model_copy(update={"enabled": False}))
    auth.invalidate(record.id)
    late = asyncio.create_task(auth.authenticate(secret))
    await asyncio.sleep(0.01)
    assert store.lookups == 2, "a request after the change does not join the lookup from before it"
    late_reply.set()
    with pytest.raises(AuthenticationFailed, match="disabled"):
        await late
    early_reply.set()
    assert (await early).key_id == record.id  # it started before the change
    with pytest.raises(AuthenticationFailed, match="disabled"):
        await auth.authenticate(secret)  # from the cache: the early answer did not replace the late one
    assert store.lookups == 2


async def test_a_record_past_its_ttl_answers_at_once_while_one_lookup_refreshes_it(store: Unplugged) -> None:
    clock = Clock()
    auth = authenticator(store, clock)
    secret, record = await new_key(store)
    await auth.authenticate(secret)
    await store.store.update(record.model_copy(update={"enabled": False}))  # a change nobody announced
    clock.now += 0.7  # past the TTL (0.5 s), within twice it
    store.gate = asyncio.Event()  # the store is slow to answer
    before = store.lookups
    served = await asyncio.wait_for(asyncio.gather(*(auth.authenticate(secret) for _ in range(50))), timeout=1)
    assert {p.key_id for p in served} == {record.id}, "served the cached record without waiting"
    await asyncio.sleep(0)
    assert store.lookups == before + 1, "one lookup refreshes it"
    store.gate.set()
    await lookups_landed(auth)
    with pytest.raises(AuthenticationFailed, match="disabled"):
        await auth.authenticate(secret)  # the refreshed record, from the cache
    assert store.lookups == before + 1


async def test_a_record_twice_its_ttl_old_is_not_used_before_the_store_answers(store: Unplugged) -> None:
    """The bound on staleness: a record read more than 2 * ttl ago waits for the store."""
    clock = Clock()
    auth = authenticator(store, clock)
    secret, record = await new_key(store)
    await auth.authenticate(secret)
    await store.store.update(record.model_copy(update={"enabled": False}))
    clock.now += 1.0
    store.gate = asyncio.Event()
    waiting = asyncio.create_task(auth.authenticate(secret))
    await asyncio.sleep(0.05)
    assert not waiting.done(), "it waits for the lookup"
    store.gate.set()
    with pytest.raises(AuthenticationFailed, match="disabled"):
        await waiting


async def test_a_refresh_that_fails_keeps_the_record_and_the_store_is_not_asked_again_at_once(
        store: Unplugged) -> None:
    clock = Clock()
    auth = authenticator(store, clock)
    secret, record = await new_key(store)
    await auth.authenticate(secret)
    store.down = True
    clock.now += 0.7
    before = store.lookups
    assert (await auth.authenticate(secret)).key_id == record.id
    await lookups_landed(auth)
    assert store.lookups == before + 1
    clock.now += 0.1
    assert (await auth.authenticate(secret)).key_id == record.id  # stale grace, no new lookup yet
    assert store.lookups == before + 1
