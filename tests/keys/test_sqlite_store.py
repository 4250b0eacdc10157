"""SQLite-only behaviour: pragmas, schema versioning, and the database itself refusing deletions."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.keys.sqlite_store import SCHEMA_VERSION, SqliteKeyStore
from tests.keys.builders import audit, new_record


async def test_wal_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "data" / "keys.sqlite3"
    store = await SqliteKeyStore.open(path)
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="schema"):
        await SqliteKeyStore.open(path)


async def test_audit_rows_and_key_records_cannot_be_deleted(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    store = await SqliteKeyStore.open(path)
    await store.create(new_record())
    await store.append_audit(audit(1))
    await store.close()
    conn = sqlite3.connect(path)
    try:
        for sql in ("DELETE FROM audit", "UPDATE audit SET team = 'x'", "DELETE FROM keys"):
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(sql)
    finally:
        conn.close()


async def test_closing_ends_subscribers_and_ping_reports_down(tmp_path: Path) -> None:
    store = await SqliteKeyStore.open(tmp_path / "keys.sqlite3")
    changes = store.changes()
    await store.publish_change("nobody listens yet")
    waiter = asyncio.ensure_future(anext(changes))
    await asyncio.sleep(0)
    await store.publish_change("key_a")
    assert await waiter == "key_a"
    ending = asyncio.ensure_future(anext(changes))
    await asyncio.sleep(0)
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await ending
    assert await store.ping() is False
