"""The shared state behind the gateway, chosen once at start-up: Redis when GATEWAY_REDIS_URL is set
(many replicas), otherwise the embedded default (SQLite files and in-process limits, one process)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from gateway.cache.types import EntryStore
from gateway.embedded import claim_data_dir
from gateway.keys.store import KeyStore
from gateway.limits.types import Limiter
from gateway.settings import Settings

if TYPE_CHECKING:  # redis-py is loaded only when Redis is configured
    from redis.retry import Retry as SyncRetry

log = logging.getLogger("gateway.stores")
#: redis-py's synchronous or asyncio ``Retry``: the same policy, two client families.
R = TypeVar("R")
#: Connections per client and process; beyond it, callers wait up to the Redis timeout.
REDIS_MAX_CONNECTIONS = 512


@dataclass(frozen=True, slots=True)
class Stores:
    keys: KeyStore
    limiter: Limiter
    shared: bool
    #: Stored responses of the cache (both tiers).
    cache_entries: EntryStore


def _one_retry_on_a_broken_connection(retry: Callable[..., R]) -> R:
    """One immediate retry on a broken connection (a stale socket after Redis restarted), none on a
    timeout: redis-py's default (10 retries with backoff up to 1 s) would hold requests for seconds
    on a dead store, the retry storm this gateway promises not to have."""
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    return retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def redis_retry_policy() -> SyncRetry:
    """For synchronous clients (slowapi's limits storage)."""
    from redis.retry import Retry

    return _one_retry_on_a_broken_connection(Retry)


async def _open_redis(settings: Settings, url: str, stack: AsyncExitStack) -> Stores:
    import redis.asyncio as redis
    from redis.asyncio.retry import Retry as AsyncRetry

    from gateway.cache.entry_redis import RedisEntryStore
    from gateway.keys.redis_store import RedisKeyStore
    from gateway.limits.failover import FailoverLimiter
    from gateway.limits.local_limiter import LocalLimiter
    from gateway.limits.redis_limiter import RedisLimiter

    def client() -> redis.Redis:
        # Short timeouts: a slow Redis must cost a request milliseconds, never seconds. A blocking
        # pool waits (briefly) for a free connection under load instead of failing, which the
        # limiter would otherwise read as "Redis is down".
        timeout = settings.redis_timeout_seconds
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=REDIS_MAX_CONNECTIONS, timeout=timeout, socket_timeout=timeout,
            socket_connect_timeout=timeout, health_check_interval=10,
            retry=_one_retry_on_a_broken_connection(AsyncRetry))
        return redis.Redis(connection_pool=pool)

    keys = RedisKeyStore(client())
    stack.push_async_callback(keys.close)
    limiter = FailoverLimiter(RedisLimiter(client()), LocalLimiter(None))
    stack.push_async_callback(limiter.close)
    cache_entries = RedisEntryStore(client())
    stack.push_async_callback(cache_entries.close)
    return Stores(keys=keys, limiter=limiter, shared=True, cache_entries=cache_entries)


async def _open_embedded(settings: Settings, stack: AsyncExitStack) -> Stores:
    from gateway.cache.entry_sqlite import SqliteEntryStore
    from gateway.keys.sqlite_store import SqliteKeyStore
    from gateway.limits.local_limiter import LocalLimiter
    from gateway.limits.sqlite_spend import SqliteSpend

    stack.callback(claim_data_dir(settings.data_dir).close)
    keys = await SqliteKeyStore.open(settings.data_dir / "keys.sqlite3")
    stack.push_async_callback(keys.close)
    limiter = LocalLimiter(await SqliteSpend.open(settings.data_dir / "spend.sqlite3"))
    stack.push_async_callback(limiter.close)
    cache_entries = await SqliteEntryStore.open(settings.data_dir / "cache.sqlite3")
    stack.push_async_callback(cache_entries.close)
    log.info("embedded store in %s: one gateway process (set GATEWAY_REDIS_URL to share state across "
             "replicas)", settings.data_dir)
    return Stores(keys=keys, limiter=limiter, shared=False, cache_entries=cache_entries)


async def open_stores(settings: Settings, stack: AsyncExitStack) -> Stores:
    if settings.redis_url is not None:
        return await _open_redis(settings, settings.redis_url.get_secret_value(), stack)
    return await _open_embedded(settings, stack)
