"""The embedded KeyStore: one SQLite file under GATEWAY_DATA_DIR, for a gateway without Redis.

Every statement runs on one connection owned by one worker thread, so async callers are serialised
without a lock and the event loop never waits on disk. WAL lets a second process (``llm-gateway
keys …``) read while the server writes. Change notifications stay in this process: the embedded
store serves one host, and this is the process whose key cache must forget.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from gateway.keys.models import AuditEntry, KeyRecord
from gateway.keys.store import KeyExists
from gateway.sqlite_file import SqliteFile

T = TypeVar("T")

SCHEMA_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id            TEXT PRIMARY KEY,
    key_hash      TEXT NOT NULL UNIQUE,
    previous_hash TEXT,
    team          TEXT,
    alias         TEXT,
    created_us    INTEGER NOT NULL,
    -- touch() writes only this column, so it never races an update of the record.
    last_used_us  INTEGER,
    record        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS keys_previous_hash ON keys (previous_hash) WHERE previous_hash IS NOT NULL;
CREATE INDEX IF NOT EXISTS keys_order ON keys (created_us, id);
CREATE INDEX IF NOT EXISTS keys_team_order ON keys (team, created_us, id);
CREATE TRIGGER IF NOT EXISTS keys_never_deleted BEFORE DELETE ON keys
BEGIN SELECT RAISE(ABORT, 'key records are never deleted; revoke them'); END;

CREATE TABLE IF NOT EXISTS audit (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    team   TEXT,
    key_id TEXT,
    entry  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_team ON audit (team, seq);
CREATE INDEX IF NOT EXISTS audit_key ON audit (key_id, seq);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


def _micros(at: datetime) -> int:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - _EPOCH) // timedelta(microseconds=1)


def _from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _key_cursor(created_us: int, key_id: str) -> str:
    return f"{created_us}:{key_id}"


def _parse_key_cursor(cursor: str) -> tuple[int, str]:
    micros, sep, key_id = cursor.partition(":")
    if not (sep and key_id and micros.lstrip("-").isdigit()):
        raise ValueError(f"invalid cursor: {cursor!r}")
    return _sqlite_int(micros), key_id


def _sqlite_int(text: str) -> int:
    """An int SQLite can bind: a forged cursor is a ValueError, never an OverflowError from the driver."""
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise ValueError("invalid cursor: out of range")
    return value


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError("limit must be at least 1")


def _write(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn`` in one write transaction; IMMEDIATE so a check-then-insert cannot interleave."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _row_record(record_json: str, last_used_us: int | None) -> KeyRecord:
    record = KeyRecord.model_validate_json(record_json)
    if last_used_us is not None:
        touched = _from_micros(last_used_us)
        if record.last_used_at is None or touched > record.last_used_at:
            record = record.model_copy(update={"last_used_at": touched})
    return record


def _hashes(record: KeyRecord) -> list[str]:
    return [h for h in (record.key_hash, record.previous_hash) if h]


def _hash_taken(conn: sqlite3.Connection, hashes: Sequence[str], other_than: str | None) -> bool:
    marks = ",".join("?" * len(hashes))
    sql = f"SELECT 1 FROM keys WHERE (key_hash IN ({marks}) OR previous_hash IN ({marks}))"  # noqa: S608
    params: list[Any] = [*hashes, *hashes]
    if other_than is not None:
        sql += " AND id != ?"
        params.append(other_than)
    return conn.execute(sql + " LIMIT 1", params).fetchone() is not None


class SqliteKeyStore:
    """KeyStore on a local SQLite file. Opens lazily; use ``await SqliteKeyStore.open(path)`` to fail early."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = SqliteFile(path, schema=_SCHEMA, version=SCHEMA_VERSION, what="key")
        self._subscribers: set[asyncio.Queue[str | None]] = set()

    @classmethod
    async def open(cls, path: Path) -> SqliteKeyStore:
        store = cls(path)
        await store._file.run(lambda conn: None)
        return store

    async def create(self, record: KeyRecord) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            exists = conn.execute("SELECT 1 FROM keys WHERE id = ?", (record.id,)).fetchone()
            if exists or _hash_taken(conn, _hashes(record), None):
                raise KeyExists(record.id)
            last_used = _micros(record.last_used_at) if record.last_used_at else None
            conn.execute(
                "INSERT INTO keys (id, key_hash, previous_hash, team, alias, created_us, last_used_us, record)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.key_hash, record.previous_hash, record.team, record.alias,
                 _micros(record.created_at), last_used, record.model_dump_json()),
            )

        await self._file.run(lambda conn: _write(conn, insert))

    async def get(self, key_id: str) -> KeyRecord | None:
        row = await self._file.run(
            lambda conn: conn.execute("SELECT record, last_used_us FROM keys WHERE id = ?", (key_id,)).fetchone()
        )
        return _row_record(*row) if row else None

    async def find_by_hash(self, key_hash: str) -> KeyRecord | None:
        row = await self._file.run(
            lambda conn: conn.execute(
                "SELECT record, last_used_us FROM keys WHERE key_hash = ? OR previous_hash = ?"
                " ORDER BY key_hash = ? DESC LIMIT 1",
                (key_hash, key_hash, key_hash),
            ).fetchone()
        )
        return _row_record(*row) if row else None

    async def list_keys(self, *, team: str | None = None, alias: str | None = None, limit: int = 50,
                        cursor: str | None = None) -> tuple[list[KeyRecord], str | None]:
        _check_limit(limit)
        where: list[str] = ["1"]
        params: list[Any] = []
        if team is not None:
            where.append("team = ?")
            params.append(team)
        if alias is not None:
            where.append("alias = ?")
            params.append(alias)
        if cursor is not None:
            where.append("(created_us, id) > (?, ?)")
            params.extend(_parse_key_cursor(cursor))
        sql = (f"SELECT record, last_used_us, created_us, id FROM keys WHERE {' AND '.join(where)}"  # noqa: S608
               " ORDER BY created_us, id LIMIT ?")
        rows = await self._file.run(lambda conn: conn.execute(sql, [*params, limit + 1]).fetchall())
        page = rows[:limit]
        next_cursor = _key_cursor(page[-1][2], page[-1][3]) if len(rows) > limit else None
        return [_row_record(r[0], r[1]) for r in page], next_cursor

    async def update(self, record: KeyRecord) -> None:
        """Replace the record; raises KeyError if it does not exist, KeyExists if a hash is another key's."""

        def replace(conn: sqlite3.Connection) -> None:
            if _hash_taken(conn, _hashes(record), record.id):
                raise KeyExists(record.id)
            last_used = _micros(record.last_used_at) if record.last_used_at else None
            cur = conn.execute(
                "UPDATE keys SET key_hash = ?, previous_hash = ?, team = ?, alias = ?, created_us = ?, record = ?,"
                " last_used_us = max(coalesce(last_used_us, ?), coalesce(?, last_used_us)) WHERE id = ?",
                (record.key_hash, record.previous_hash, record.team, record.alias, _micros(record.created_at),
                 record.model_dump_json(), last_used, last_used, record.id),
            )
            if cur.rowcount == 0:
                raise KeyError(record.id)

        await self._file.run(lambda conn: _write(conn, replace))

    async def touch(self, key_id: str, at: datetime) -> None:
        micros = _micros(at)
        await self._file.run(lambda conn: conn.execute(
            "UPDATE keys SET last_used_us = max(coalesce(last_used_us, ?), ?) WHERE id = ?", (micros, micros, key_id)
        ))

    async def append_audit(self, entry: AuditEntry) -> None:
        await self._file.run(lambda conn: conn.execute(
            "INSERT INTO audit (team, key_id, entry) VALUES (?, ?, ?)",
            (entry.team, entry.key_id, entry.model_dump_json()),
        ))

    async def list_audit(self, *, team: str | None = None, key_id: str | None = None, limit: int = 50,
                         cursor: str | None = None) -> tuple[list[AuditEntry], str | None]:
        _check_limit(limit)
        where: list[str] = ["1"]
        params: list[Any] = []
        if team is not None:
            where.append("team = ?")
            params.append(team)
        if key_id is not None:
            where.append("key_id = ?")
            params.append(key_id)
        if cursor is not None:
            if not cursor.isdigit():
                raise ValueError(f"invalid cursor: {cursor!r}")
            where.append("seq < ?")
            params.append(_sqlite_int(cursor))
        sql = f"SELECT seq, entry FROM audit WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?"  # noqa: S608
        rows = await self._file.run(lambda conn: conn.execute(sql, [*params, limit + 1]).fetchall())
        page = rows[:limit]
        next_cursor = str(page[-1][0]) if len(rows) > limit else None
        return [AuditEntry.model_validate_json(r[1]) for r in page], next_cursor

    async def publish_change(self, key_id: str) -> None:
        for queue in self._subscribers:
            queue.put_nowait(key_id)

    async def changes(self) -> AsyncIterator[str]:
        """Ids passed to ``publish_change`` in this process after the first ``__anext__``."""
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            while (key_id := await queue.get()) is not None:
                yield key_id
        finally:
            self._subscribers.discard(queue)

    async def ping(self) -> bool:
        try:
            return bool(await self._file.run(lambda conn: conn.execute("SELECT 1").fetchone()))
        except (sqlite3.Error, RuntimeError):
            return False

    async def close(self) -> None:
        if self._file.closed:
            return
        for queue in self._subscribers:
            queue.put_nowait(None)
        await self._file.close()
