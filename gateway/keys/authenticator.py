"""Bearer token → Principal for virtual keys, with an in-process cache in front of the store.

A cached record is fresh for ``ttl`` seconds (GATEWAY_KEY_CACHE_SECONDS, 0.5 s). The first request
that finds it older starts a lookup and, like every request until the answer lands, is served the
cached record, for at most another ``ttl``: no request waits for the store while a key is in steady
use, and no record is used more than ``2 * ttl`` after it was read. Every replica also drops a record
as soon as the store announces a change, so a revocation takes effect everywhere within a second
even if a change notification is lost. While the store is unreachable,
a record seen in the last ``stale_grace`` seconds keeps working (availability over freshness,
logged), and unknown keys are refused with 503 rather than 401, since the gateway cannot tell.

One store lookup per key is in flight at a time: requests that must wait for a record (none cached,
or older than ``2 * ttl``) share the lookup instead of each queueing its own (a wave of 256
concurrent requests made 256 lookups, each a thread hop on the embedded store).

Why refresh ahead rather than wait: a lookup is a thread hop (embedded store) or a round trip
(Redis), answered only once the event loop gets to it. Every request that arrived meanwhile waited
for it and then resumed in the same turn of the loop, so twice a second a key's traffic was gathered
into one wave: with 256 concurrent requests on a 500 ms upstream the waves then never spread out
again (added p50 +210-290 ms in 5 of 12 windows of one test; docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from gateway.auth import MASTER, MasterKeyAuthenticator, Principal
from gateway.errors import AuthenticationFailed, ServiceUnavailable
from gateway.keys.models import KeyRecord, utcnow
from gateway.keys.secrets import hash_secret
from gateway.keys.store import EVERY_KEY, KeyStore, store_errors

log = logging.getLogger("gateway.keys")

#: last_used_at is written at most this often per key (seconds): it is a hint, not a ledger.
TOUCH_INTERVAL_SECONDS = 60.0
#: After a failed lookup, the store is left alone this long before the next probe.
STORE_PROBE_SECONDS = 1.0


@dataclass(slots=True)
class _Cached:
    record: KeyRecord | None
    fetched_at: float
    #: Fetch again before use, but still good as a stale answer while the store is unreachable.
    expired: bool = False


def principal_for(record: KeyRecord) -> Principal:
    return Principal(key_id=record.id, alias=record.alias or record.id, role=record.role, team=record.team,
                     allowed_models=frozenset(record.allowed_models), record=record)


def check_usable(record: KeyRecord | None, key_hash: str, now: datetime) -> KeyRecord:
    if record is None:
        raise AuthenticationFailed("invalid API key")
    if record.revoked_at is not None:
        raise AuthenticationFailed("this API key has been revoked")
    if not record.enabled:
        raise AuthenticationFailed("this API key is disabled")
    if record.expires_at is not None and record.expires_at <= now:
        raise AuthenticationFailed("this API key has expired")
    if key_hash != record.key_hash:
        # Only the previous secret of a rotation matches otherwise, and only during its grace period.
        until = record.previous_valid_until
        if key_hash != record.previous_hash or until is None or until <= now:
            raise AuthenticationFailed("this API key was rotated; use the new key")
    return record


class KeyAuthenticator:
    def __init__(self, store: KeyStore, master: MasterKeyAuthenticator, *, ttl: float = 0.5,
                 stale_grace: float = 60.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._master = master
        self._ttl = ttl
        self._stale_grace = stale_grace
        self._monotonic = monotonic
        self._cache: dict[str, _Cached] = {}
        self._store_down_until = 0.0
        self._touched: dict[str, float] = {}
        self._background: set[asyncio.Task[None]] = set()
        #: Key hash -> its store lookup in flight, shared by every request that needs it meanwhile.
        self._fetching: dict[str, asyncio.Future[KeyRecord | None]] = {}
        #: Bumped by ``invalidate``: a lookup that started before a change does not cache its answer.
        self._generation = 0

    async def authenticate(self, token: str) -> Principal:
        if self._master.is_master(token):
            return MASTER
        key_hash = hash_secret(token)
        record = check_usable(await self._lookup(key_hash), key_hash, utcnow())
        self._touch(record.id)
        return principal_for(record)

    async def _lookup(self, key_hash: str) -> KeyRecord | None:
        now = self._monotonic()
        cached = self._cache.get(key_hash)
        if cached is not None and not cached.expired:
            age = now - cached.fetched_at
            if age < self._ttl:
                return cached.record
            if age < 2 * self._ttl:
                if now >= self._store_down_until:
                    self._lookup_once(key_hash, cached, now)  # refresh ahead; this request does not wait
                return cached.record
        if now < self._store_down_until:
            # Within a second of a failed lookup the store is not asked again: no request queues
            # behind a dead or frozen store, and the warning is logged once per outage second.
            return self._stale(cached, now)
        # Shielded: a request that leaves does not cancel the lookup the others are waiting for.
        return await asyncio.shield(self._lookup_once(key_hash, cached, now))

    def _lookup_once(self, key_hash: str, cached: _Cached | None, now: float) -> asyncio.Future[KeyRecord | None]:
        """The key's lookup in flight, started if there is none."""
        fetch = self._fetching.get(key_hash)
        if fetch is None:
            fetch = asyncio.ensure_future(self._fetch(key_hash, cached, now))
            self._fetching[key_hash] = fetch
            fetch.add_done_callback(partial(self._fetched, key_hash))
        return fetch

    async def _fetch(self, key_hash: str, cached: _Cached | None, now: float) -> KeyRecord | None:
        generation = self._generation
        try:
            record = await self._store.find_by_hash(key_hash)
        except store_errors() as error:
            log.warning("key store unreachable (%s); serving cached key records for up to %.0f s",
                        type(error).__name__, self._stale_grace)
            self._store_down_until = now + STORE_PROBE_SECONDS
            return self._stale(cached, now)
        if generation == self._generation:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key_hash] = _Cached(record, now)
        return record

    def _fetched(self, key_hash: str, fetch: asyncio.Future[KeyRecord | None]) -> None:
        if self._fetching.get(key_hash) is fetch:
            del self._fetching[key_hash]
        if not fetch.cancelled():
            fetch.exception()  # retrieved here: every request that waited for it may have gone

    def _stale(self, cached: _Cached | None, now: float) -> KeyRecord | None:
        if cached is not None and cached.record is not None and now - cached.fetched_at < self._stale_grace:
            return cached.record
        raise ServiceUnavailable("the key store is unreachable; try again shortly", retry_after=1)

    def invalidate(self, key_id: str) -> None:
        """Forget everything cached about a key (and every unknown-key answer, which it may now match).

        ``EVERY_KEY`` (the change feed reconnected and may have missed changes) makes every record
        fetch again before its next use, but keeps it as the stale answer should the store be
        unreachable again by then: a flapping store must not turn every key away."""
        # Lookups in flight may have read the record before the change: later requests start anew.
        self._generation += 1
        self._fetching.clear()
        if key_id == EVERY_KEY:
            for key_hash in [h for h, c in self._cache.items() if c.record is None]:
                del self._cache[key_hash]
            for cached in self._cache.values():
                cached.expired = True
            return
        stale = [h for h, c in self._cache.items() if c.record is None or c.record.id == key_id]
        for key_hash in stale:
            del self._cache[key_hash]

    async def follow_changes(self) -> None:
        """Drop cache entries as the store announces changes; runs for the app's lifetime."""
        async for key_id in self._store.changes():
            self.invalidate(key_id)

    def _touch(self, key_id: str) -> None:
        now = self._monotonic()
        if now - self._touched.get(key_id, -TOUCH_INTERVAL_SECONDS) < TOUCH_INTERVAL_SECONDS:
            return
        self._touched[key_id] = now
        task = asyncio.create_task(self._write_touch(key_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _write_touch(self, key_id: str) -> None:
        try:
            await self._store.touch(key_id, utcnow())
        except store_errors():
            log.info("could not record last_used_at for %s", key_id)
