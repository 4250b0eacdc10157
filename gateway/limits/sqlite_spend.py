"""Spend that must survive a restart of the embedded gateway: budget spent per (key, period) and the
ledger per (key, day, model), in ``spend.sqlite3`` under the data dir.

Only settled money is here; windows and reservations live in the LocalLimiter's memory (they are
at most a lease old). Every statement runs on one connection owned by one worker thread, so the event
loop never waits on disk. Records are group-committed (``SqliteFile.write``: one transaction per
burst of settlements, not per request); a read (``spent_micros``, ``ledger``) waits for the records
queued before it, so it sees them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from gateway.limits.types import LedgerRow
from gateway.sqlite_file import SqliteFile

T = TypeVar("T")

FILENAME = "spend.sqlite3"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS budget_spent (
    key_id       TEXT NOT NULL,
    period_id    TEXT NOT NULL,
    spent_micros INTEGER NOT NULL,
    PRIMARY KEY (key_id, period_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger (
    key_id        TEXT NOT NULL,
    day           TEXT NOT NULL,
    model         TEXT NOT NULL,
    requests      INTEGER NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_micros   INTEGER NOT NULL,
    saved_micros  INTEGER NOT NULL,
    PRIMARY KEY (key_id, day, model)
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class SpendRecord:
    """One settled request; money in micro-dollars."""

    key_id: str
    #: The budget bucket charged, or None when the key has no budget (a cache hit charges nothing).
    period_id: str | None
    day: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_micros: int
    saved_micros: int


def _record(conn: sqlite3.Connection, r: SpendRecord) -> None:
    """Runs inside a group commit (``SqliteFile.write``): the ledger row and the bucket land together."""
    conn.execute(
        "INSERT INTO ledger VALUES (?, ?, ?, 1, ?, ?, ?, ?) ON CONFLICT (key_id, day, model) DO UPDATE SET"
        " requests = requests + 1, input_tokens = input_tokens + excluded.input_tokens,"
        " output_tokens = output_tokens + excluded.output_tokens,"
        " cost_micros = cost_micros + excluded.cost_micros, saved_micros = saved_micros + excluded.saved_micros",
        (r.key_id, r.day, r.model, r.input_tokens, r.output_tokens, r.cost_micros, r.saved_micros),
    )
    if r.period_id is not None:
        conn.execute(
            "INSERT INTO budget_spent VALUES (?, ?, ?) ON CONFLICT (key_id, period_id) DO UPDATE SET"
            " spent_micros = spent_micros + excluded.spent_micros",
            (r.key_id, r.period_id, r.cost_micros),
        )


class SqliteSpend:
    """Budget spent and the ledger on a local SQLite file. Opens lazily; ``await open(path)`` fails early."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = SqliteFile(path, schema=_SCHEMA, version=SCHEMA_VERSION, what="spend")

    @classmethod
    async def open(cls, path: Path) -> SqliteSpend:
        spend = cls(path)
        await spend._file.run(lambda conn: None)
        return spend

    @classmethod
    async def in_dir(cls, data_dir: Path) -> SqliteSpend:
        return await cls.open(data_dir / FILENAME)

    async def spent_micros(self, key_id: str, period_id: str) -> int:
        row = await self._file.run(lambda conn: conn.execute(
            "SELECT spent_micros FROM budget_spent WHERE key_id = ? AND period_id = ?", (key_id, period_id)
        ).fetchone())
        return int(row[0]) if row else 0

    async def record(self, record: SpendRecord) -> None:
        """Add one settled request to the ledger and, with a period, to that budget bucket, in the next
        group commit (the records settled meanwhile share its transaction); returns once committed."""
        await self._file.write(lambda conn: _record(conn, record))

    async def ledger(self, key_id: str) -> list[LedgerRow]:
        rows = await self._file.run(lambda conn: conn.execute(
            "SELECT day, model, requests, input_tokens, output_tokens, cost_micros, saved_micros FROM ledger"
            " WHERE key_id = ? ORDER BY day, model", (key_id,)
        ).fetchall())
        return [LedgerRow(day=day, model=model, requests=requests, input_tokens=inp, output_tokens=out,
                          cost_usd=cost / 1_000_000, saved_usd=saved / 1_000_000)
                for day, model, requests, inp, out, cost, saved in rows]

    async def close(self) -> None:
        await self._file.close()
