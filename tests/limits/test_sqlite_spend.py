"""The embedded spend file on its own: WAL, a schema version it refuses to downgrade, and writes that
land in call order."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.limits.sqlite_spend import FILENAME, SCHEMA_VERSION, SpendRecord, SqliteSpend


def record(cost_micros: int, *, period_id: str | None = "d2024-03-13", model: str = "m") -> SpendRecord:
    return SpendRecord(key_id="k", period_id=period_id, day="2024-03-13", model=model, input_tokens=1,
                       output_tokens=2, cost_micros=cost_micros, saved_micros=0)


async def test_concurrent_writes_all_land(tmp_path: Path) -> None:
    spend = await SqliteSpend.in_dir(tmp_path)
    try:
        await asyncio.gather(*(spend.record(record(10)) for _ in range(200)))
        await spend.record(record(5, period_id=None, model="cache"))  # no budget: ledger only
        assert await spend.spent_micros("k", "d2024-03-13") == 2000
        rows = [(r.model, r.requests, r.input_tokens, r.output_tokens, r.cost_usd) for r in await spend.ledger("k")]
        assert rows == [("cache", 1, 1, 2, pytest.approx(5e-06)), ("m", 200, 200, 400, pytest.approx(0.002))]
    finally:
        await spend.close()


async def test_reads_see_records_still_waiting_for_their_commit(tmp_path: Path) -> None:
    spend = await SqliteSpend.in_dir(tmp_path)
    try:
        pending = [asyncio.ensure_future(spend.record(record(10))) for _ in range(3)]
        await asyncio.sleep(0)  # queued for the next group commit, not committed yet
        assert await spend.spent_micros("k", "d2024-03-13") == 30
        more = asyncio.ensure_future(spend.record(record(1)))
        await asyncio.sleep(0)
        assert [r.requests for r in await spend.ledger("k")] == [4]
        await asyncio.gather(*pending, more)
    finally:
        await spend.close()


async def test_close_commits_queued_records(tmp_path: Path) -> None:
    spend = await SqliteSpend.in_dir(tmp_path)
    pending = [asyncio.ensure_future(spend.record(record(10))) for _ in range(5)]
    await asyncio.sleep(0)
    await spend.close()
    await asyncio.gather(*pending)
    reopened = await SqliteSpend.in_dir(tmp_path)
    try:
        assert await reopened.spent_micros("k", "d2024-03-13") == 50
    finally:
        await reopened.close()


async def test_file_is_wal_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    spend = await SqliteSpend.open(path)
    await spend.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="spend schema"):
        await SqliteSpend.open(path)


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    spend = await SqliteSpend.open(tmp_path / FILENAME)
    await spend.close()
    await spend.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await spend.record(record(1))
