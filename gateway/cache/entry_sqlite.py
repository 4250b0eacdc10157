"""The embedded EntryStore: stored responses in ``cache.sqlite3`` under the data dir.

Chosen over an in-process LRU because the embedded vector index keeps its points across restarts:
responses that vanished with the process would leave every one of them dangling. Writes go to one
connection on one worker thread (``SqliteFile``), group-committed; expired rows read as missing and
are deleted every ``CLEAN_EVERY`` writes.

Reads run inline on the event loop, on a read-only connection of their own: a primary-key lookup
in a WAL file takes 3-4 µs of CPU, where handing it to the worker thread and back costs 25-35 µs
(and a wake-up of two threads), and WAL readers never wait for the writer. A busy file (a rare
WAL reset) is given ``READ_BUSY_SECONDS`` before the read fails, which the cache counts as a miss.
A read does not wait for writes still queued: an entry is visible once its batch committed, about
10 ms after the response that produced it.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from gateway.cache.types import EntryTags, PurgeFilter
from gateway.sqlite_file import SqliteFile

FILENAME = "cache.sqlite3"
SCHEMA_VERSION = 1
#: Expired rows are deleted after this many writes.
CLEAN_EVERY = 256
#: How long an inline read may wait for a busy file: it holds the event loop meanwhile.
READ_BUSY_SECONDS = 0.01

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id         TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    expires_at REAL NOT NULL,
    key_id     TEXT NOT NULL,
    team       TEXT,
    alias      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_expiry ON entries (expires_at);
CREATE INDEX IF NOT EXISTS entries_key ON entries (key_id);
CREATE INDEX IF NOT EXISTS entries_team ON entries (team) WHERE team IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_alias ON entries (alias);
"""


class SqliteEntryStore:
    name = "sqlite"

    def __init__(self, file: SqliteFile) -> None:
        self._file = file
        self._writes = 0
        self._reader: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: Path) -> SqliteEntryStore:
        file = SqliteFile(path, schema=_SCHEMA, version=SCHEMA_VERSION, what="cache")
        await file.run(lambda conn: None)  # create the schema now: a bad file fails start-up, not a request
        return cls(file)

    async def get(self, entry_id: str) -> bytes | None:
        if self._file.closed:
            raise RuntimeError("the cache store is closed")
        reader = self._reader
        if reader is None:
            # Used only from the event loop's thread, one statement at a time; the check is off so a
            # test may drive the store from a fresh loop.
            reader = self._reader = sqlite3.connect(f"{self._file.path.resolve().as_uri()}?mode=ro", uri=True,
                                                    isolation_level=None, timeout=READ_BUSY_SECONDS,
                                                    check_same_thread=False)
        row = reader.execute("SELECT value FROM entries WHERE id = ? AND expires_at > ?",
                             (entry_id, time.time())).fetchone()
        return None if row is None else bytes(row[0])

    async def put(self, entry_id: str, value: bytes, ttl_seconds: float, tags: EntryTags) -> None:
        now = time.time()
        self._writes += 1
        clean = self._writes % CLEAN_EVERY == 0

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO entries (id, value, expires_at, key_id, team, alias) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (entry_id, value, now + ttl_seconds, tags.key_id, tags.team, tags.alias))
            if clean:
                conn.execute("DELETE FROM entries WHERE expires_at <= ?", (now,))

        await self._file.write(write)

    async def purge(self, which: PurgeFilter) -> int:
        now = time.time()
        clauses, params = [], []
        for column, value in (("key_id", which.key_id), ("team", which.team), ("alias", which.alias)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = " AND ".join(clauses) or "1"

        def purge(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                live = conn.execute(f"DELETE FROM entries WHERE {where} AND expires_at > ?",  # noqa: S608
                                    (*params, now)).rowcount
                conn.execute(f"DELETE FROM entries WHERE {where}", params)  # noqa: S608  # the expired rest
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return int(live)

        return await self._file.run(purge)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        await self._file.close()
