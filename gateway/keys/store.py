"""The KeyStore protocol. Every backend (Redis, embedded SQLite) passes tests/keys/test_store_contract.py.

Invariants every backend keeps:
- a hash lookup finds a record by its current ``key_hash`` and by its ``previous_hash`` (the caller
  decides whether a rotation's grace period still holds);
- records are never deleted: revocation sets ``revoked_at`` and ``enabled=False``, so audit entries
  and usage keep pointing at something;
- the audit log is append-only; listing is newest first;
- pagination cursors are opaque strings; a page never repeats or skips a record that existed when
  the first page was read.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Protocol

from gateway.keys.models import AuditEntry, KeyRecord

#: Yielded by ``changes()`` when notifications may have been missed (a lost subscription came back):
#: caches fetch every key again before its next use.
EVERY_KEY = "*"

#: What any backend raises when it cannot answer (down, slow, locked), Redis's errors aside.
BASE_STORE_ERRORS: tuple[type[Exception], ...] = (OSError, TimeoutError, sqlite3.Error)


def store_errors() -> tuple[type[Exception], ...]:
    """What a backend raises when it cannot answer; callers decide the policy (``except store_errors():``).

    Redis's errors are included once redis-py is loaded: a process that never loaded it cannot
    raise them, and the embedded default never loads it (about 16 MB of RSS and 0.7 s of start-up).
    """
    redis_exceptions = sys.modules.get("redis.exceptions")
    if redis_exceptions is None:
        return BASE_STORE_ERRORS
    return (*BASE_STORE_ERRORS, redis_exceptions.RedisError)


class KeyExists(Exception):
    """``create`` was given an id or hash that is already stored."""


class KeyStore(Protocol):
    #: Human-readable backend name for /readyz and logs ("redis", "sqlite").
    name: str

    async def create(self, record: KeyRecord) -> None: ...

    async def get(self, key_id: str) -> KeyRecord | None: ...

    async def find_by_hash(self, key_hash: str) -> KeyRecord | None: ...

    async def list_keys(self, *, team: str | None = None, alias: str | None = None, limit: int = 50,
                   cursor: str | None = None) -> tuple[list[KeyRecord], str | None]:
        """Records oldest first (by created_at, then id), filtered by team and alias when given."""
        ...

    async def update(self, record: KeyRecord) -> None:
        """Replace the stored record (same id); the hash index follows key_hash/previous_hash."""
        ...

    async def touch(self, key_id: str, at: datetime) -> None:
        """Best-effort last_used_at; must not clobber a concurrent update of other fields."""
        ...

    async def append_audit(self, entry: AuditEntry) -> None: ...

    async def list_audit(self, *, team: str | None = None, key_id: str | None = None, limit: int = 50,
                         cursor: str | None = None) -> tuple[list[AuditEntry], str | None]:
        """Entries newest first, filtered by the team they concern and by key id when given."""
        ...

    async def publish_change(self, key_id: str) -> None:
        """Tell every replica's key cache that this key changed."""
        ...

    def changes(self) -> AsyncIterator[str]:
        """Key ids changed by any replica, for cache invalidation (runs until cancelled)."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
