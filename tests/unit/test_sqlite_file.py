"""SqliteFile's group commit: writes queued while a batch commits share the next transaction; reads
wait for the writes queued before them; a failed batch fails every write in it; close drains."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway import sqlite_file
from gateway.sqlite_file import SqliteFile

SCHEMA = "CREATE TABLE IF NOT EXISTS t (n INTEGER NOT NULL CHECK (n >= 0));"


@pytest.fixture
async def file(tmp_path: Path) -> AsyncIterator[SqliteFile]:
    f = SqliteFile(tmp_path / "t.sqlite3", schema=SCHEMA, version=1, what="test")
    yield f
    await f.close()


def insert(n: int) -> sqlite_file.Write:
    def write(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (?)", (n,))

    return write


def rows(conn: sqlite3.Connection) -> list[int]:
    return [n for (n,) in conn.execute("SELECT n FROM t ORDER BY n")]


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch committed."""
    sizes: list[int] = []
    commit = sqlite_file._commit_batch

    def counting(conn: sqlite3.Connection, writes: list[sqlite_file.Write]) -> None:
        sizes.append(len(writes))
        commit(conn, writes)

    monkeypatch.setattr(sqlite_file, "_commit_batch", counting)
    return sizes


async def test_concurrent_writes_all_land_in_few_transactions(file: SqliteFile, batches: list[int]) -> None:
    await asyncio.gather(*(file.write(insert(n)) for n in range(300)))
    assert await file.run(rows) == list(range(300))
    assert sum(batches) == 300
    assert len(batches) <= 2  # the first turn of the loop queues them all: one batch (two at most)


async def test_a_read_after_a_write_sees_it(file: SqliteFile) -> None:
    pending = asyncio.ensure_future(file.write(insert(1)))
    await asyncio.sleep(0)  # queued, not committed
    assert await file.run(rows) == [1]
    await pending
    # Also when the write is queued while another batch is on the thread.
    first = asyncio.ensure_future(file.write(insert(2)))
    await asyncio.sleep(sqlite_file.GROUP_COMMIT_SECONDS * 1.2)  # the first batch is on the thread (or done)
    second = asyncio.ensure_future(file.write(insert(3)))
    await asyncio.sleep(0)
    assert await file.run(rows) == [1, 2, 3]
    await asyncio.gather(first, second)


async def test_a_failing_batch_fails_each_waiter_and_lands_nothing(file: SqliteFile, batches: list[int]) -> None:
    results = await asyncio.gather(file.write(insert(1)), file.write(insert(-1)), file.write(insert(2)),
                                   return_exceptions=True)
    assert batches == [3]
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results)
    assert await file.run(rows) == []
    await file.write(insert(4))  # the next batch is unaffected
    assert await file.run(rows) == [4]


async def test_flush_waits_for_queued_writes_and_not_for_their_failure(file: SqliteFile) -> None:
    await file.flush()  # nothing queued: returns at once
    failing = asyncio.ensure_future(file.write(insert(-1)))
    other = asyncio.ensure_future(file.write(insert(5)))
    await asyncio.sleep(0)
    await file.flush()  # does not raise the batch's error
    results = await asyncio.gather(failing, other, return_exceptions=True)
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results)  # same batch, same fate
    landed = asyncio.ensure_future(file.write(insert(6)))
    await asyncio.sleep(0)
    await file.flush()
    await landed
    assert await file.run(rows) == [6]


async def test_a_cancelled_waiter_does_not_cancel_its_write(file: SqliteFile) -> None:
    pending = asyncio.ensure_future(file.write(insert(7)))
    await asyncio.sleep(0)
    pending.cancel()
    assert await file.run(rows) == [7]


async def test_close_drains_queued_writes(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    f = SqliteFile(path, schema=SCHEMA, version=1, what="test")
    waiters = [asyncio.ensure_future(f.write(insert(n))) for n in range(50)]
    await asyncio.sleep(0)  # every write queued, none committed yet
    await f.close()
    assert all(w.done() and w.exception() is None for w in waiters)
    with pytest.raises(RuntimeError, match="closed"):
        await f.write(insert(1))
    with sqlite3.connect(path) as conn:
        assert rows(conn) == list(range(50))
