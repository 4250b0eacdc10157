"""One SQLite file of the embedded store: a single connection confined to one worker thread.

Every call runs on that thread, in call order, off the event loop: callers are serialized without a
lock, and a read queued after a write sees it. WAL journaling with synchronous=NORMAL; the schema is
created on first use and versioned with ``PRAGMA user_version`` (a newer file is refused).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def connect(path: Path, schema: str, version: int, what: str) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE where needed), never implicit.
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > version:
        conn.close()
        raise RuntimeError(f"{path} has {what} schema {found}; this gateway knows up to {version}")
    conn.executescript(schema)
    if found < version:
        # Later versions migrate here, one step per version, before the user_version is raised.
        conn.execute(f"PRAGMA user_version={version}")
    return conn


class SqliteFile:
    def __init__(self, path: Path, *, schema: str, version: int, what: str) -> None:
        self.path = path
        self._schema = schema
        self._version = version
        self._what = what
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{what}-sqlite")
        self._conn: sqlite3.Connection | None = None
        self.closed = False

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self.closed:
            raise RuntimeError(f"the {self._what} store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._in_thread, fn)

    def _in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = connect(self.path, self._schema, self._version, self._what)
        return fn(self._conn)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_in_thread)
        self._executor.shutdown(wait=False)

    def _close_in_thread(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
