"""The production KeyStore: Redis, shared by every replica.

Layout, for ``prefix="gw"``::

    gw:{k:<id>}:rec       HASH    record (KeyRecord JSON), key_hash, previous_hash, team, sort,
                                  last_used (epoch µs, written only by touch)
    gw:keyhash:<sha256>   STRING  key id, for the current and the previous hash of every key
    gw:keys               ZSET    every key; all scores 0, member "<created_at µs, 20 digits>|<id>"
    gw:team:<team>        ZSET    the same members, for one team's keys
    gw:audit              STREAM  one entry per audit record: entry (JSON), team, key_id
    gw:keys:changed       pub/sub channel of changed key ids

The listing sets use lexicographic order rather than scores: members that share a score sort by
their bytes, so ``(created_at, id)`` order and an exact resume point (``ZRANGE BYLEX (<cursor> +``)
come from one command with no offset arithmetic, and ties on created_at cannot repeat or skip.

``create`` and ``update`` are Lua scripts, so the existence checks and every index move happen
atomically. They touch keys in several cluster slots (the record's ``{k:<id>}`` slot, the hash index,
the listing sets): on Redis Cluster they need those keys co-located under one hash tag.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.keys.models import AuditEntry, KeyRecord
from gateway.keys.store import EVERY_KEY, KeyExists

__all__ = ["EVERY_KEY", "RedisKeyStore"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KEY_CURSOR = re.compile(r"\d{20}\|.+", re.DOTALL)
_AUDIT_CURSOR = re.compile(r"(\d{1,20})-(\d{1,20})")
_BACKOFF_MIN, _BACKOFF_MAX = 0.05, 2.0

# KEYS: 1 record, 2 all-keys set, 3 team set (2 again when teamless), 4 key_hash index,
#       5 previous_hash index (4 again when there is none)
# ARGV: 1 id, 2 record JSON, 3 key_hash, 4 previous_hash or "", 5 team or "", 6 sort member
_CREATE_V1 = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'id' end
if redis.call('EXISTS', KEYS[4]) == 1 or redis.call('EXISTS', KEYS[5]) == 1 then return 'hash' end
redis.call('HSET', KEYS[1], 'record', ARGV[2], 'key_hash', ARGV[3], 'previous_hash', ARGV[4],
           'team', ARGV[5], 'sort', ARGV[6])
redis.call('SET', KEYS[4], ARGV[1])
if ARGV[4] ~= '' then redis.call('SET', KEYS[5], ARGV[1]) end
redis.call('ZADD', KEYS[2], 0, ARGV[6])
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[3], 0, ARGV[6]) end
return 'ok'
"""

# Compare-and-set on the indexed fields the caller read (ARGV 7-10): a concurrent update makes the
# caller re-read, a concurrent touch (another field) does not.
# KEYS: 1 record, 2 all-keys set, 3 old team set, 4 new team set, 5 new key_hash index,
#       6 new previous_hash index, 7 old key_hash index, 8 old previous_hash index
#       (an absent one repeats a neighbour; its ARGV is "")
# ARGV: 1 id, 2 record JSON, 3 key_hash, 4 previous_hash, 5 team, 6 sort,
#       7 old key_hash, 8 old previous_hash, 9 old team, 10 old sort
_UPDATE_V1 = """
local cur = redis.call('HMGET', KEYS[1], 'key_hash', 'previous_hash', 'team', 'sort')
if not cur[1] then return 'missing' end
if cur[1] ~= ARGV[7] or cur[2] ~= ARGV[8] or cur[3] ~= ARGV[9] or cur[4] ~= ARGV[10] then return 'retry' end
for i = 5, 6 do
  local owner = redis.call('GET', KEYS[i])
  if owner and owner ~= ARGV[1] then return 'hash' end
end
for i = 7, 8 do
  local old = ARGV[i]
  if old ~= '' and old ~= ARGV[3] and old ~= ARGV[4] and redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
  end
end
redis.call('SET', KEYS[5], ARGV[1])
if ARGV[4] ~= '' then redis.call('SET', KEYS[6], ARGV[1]) end
redis.call('HSET', KEYS[1], 'record', ARGV[2], 'key_hash', ARGV[3], 'previous_hash', ARGV[4],
           'team', ARGV[5], 'sort', ARGV[6])
redis.call('ZREM', KEYS[2], ARGV[10])
redis.call('ZADD', KEYS[2], 0, ARGV[6])
if ARGV[9] ~= '' then redis.call('ZREM', KEYS[3], ARGV[10]) end
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[4], 0, ARGV[6]) end
return 'ok'
"""

# last_used only moves forward, and only on a record that exists. KEYS: 1 record; ARGV: 1 epoch µs
_TOUCH_V1 = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local cur = redis.call('HGET', KEYS[1], 'last_used')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'last_used', ARGV[1])
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _micros(at: datetime) -> int:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - _EPOCH) // timedelta(microseconds=1)


def _sort_member(record: KeyRecord) -> str:
    # Clamped at the epoch so the fixed width keeps lexicographic order equal to numeric order.
    return f"{max(_micros(record.created_at), 0):020d}|{record.id}"


def _decode(record_json: Any, last_used: Any) -> KeyRecord | None:
    if record_json is None:
        return None
    record = KeyRecord.model_validate_json(record_json)
    if last_used is not None:
        touched = _EPOCH + timedelta(microseconds=int(last_used))
        if record.last_used_at is None or touched > record.last_used_at:
            record = record.model_copy(update={"last_used_at": touched})
    return record


def _check_stream_id(cursor: str) -> None:
    """Refuse what XREVRANGE would: a forged cursor is a ValueError, not a RedisError (which means "down")."""
    match = _AUDIT_CURSOR.fullmatch(cursor)
    if match is None:
        raise ValueError(f"invalid cursor: {cursor!r}")
    ms, seq = int(match[1]), int(match[2])
    if ms >= 2**64 or seq >= 2**64 or ms == seq == 0:
        raise ValueError(f"invalid cursor: {cursor!r}")


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError("limit must be at least 1")


class RedisKeyStore:
    """KeyStore on Redis. Owns ``client``: ``close()`` closes it."""

    name = "redis"

    def __init__(self, client: aioredis.Redis, prefix: str = "gw") -> None:
        self._client = client
        self.prefix = prefix
        self._all = f"{prefix}:keys"
        self._audit = f"{prefix}:audit"
        self._channel = f"{prefix}:keys:changed"
        self._create = client.register_script(_CREATE_V1)
        self._update = client.register_script(_UPDATE_V1)
        self._touch = client.register_script(_TOUCH_V1)

    def _rec(self, key_id: str) -> str:
        return f"{self.prefix}:{{k:{key_id}}}:rec"

    def _hash(self, key_hash: str) -> str:
        return f"{self.prefix}:keyhash:{key_hash}"

    def _team(self, team: str) -> str:
        return f"{self.prefix}:team:{team}"

    async def create(self, record: KeyRecord) -> None:
        hash_key = self._hash(record.key_hash)
        team_key = self._team(record.team) if record.team else self._all
        prev_key = self._hash(record.previous_hash) if record.previous_hash else hash_key
        result = await self._create(
            keys=[self._rec(record.id), self._all, team_key, hash_key, prev_key],
            args=[record.id, record.model_dump_json(), record.key_hash, record.previous_hash or "",
                  record.team or "", _sort_member(record)],
        )
        if _text(result) != "ok":
            raise KeyExists(record.id)

    async def get(self, key_id: str) -> KeyRecord | None:
        record_json, last_used = await self._client.hmget(self._rec(key_id), ["record", "last_used"])
        return _decode(record_json, last_used)

    async def _get_many(self, key_ids: Sequence[str]) -> list[KeyRecord | None]:
        async with self._client.pipeline(transaction=False) as pipe:
            for key_id in key_ids:
                pipe.hmget(self._rec(key_id), ["record", "last_used"])
            rows = await pipe.execute()
        return [_decode(*row) for row in rows]

    async def find_by_hash(self, key_hash: str) -> KeyRecord | None:
        key_id = await self._client.get(self._hash(key_hash))
        if key_id is None:
            return None
        record = await self.get(_text(key_id))
        # The index is moved atomically with the record, but check anyway: a hash must never
        # authenticate a key it does not belong to.
        if record is None or key_hash not in (record.key_hash, record.previous_hash):
            return None
        return record

    async def list_keys(self, *, team: str | None = None, alias: str | None = None, limit: int = 50,
                        cursor: str | None = None) -> tuple[list[KeyRecord], str | None]:
        _check_limit(limit)
        if cursor is not None and not _KEY_CURSOR.fullmatch(cursor):
            raise ValueError(f"invalid cursor: {cursor!r}")
        index = self._team(team) if team is not None else self._all
        # Without an alias filter every member is a hit, so fetch exactly one more than a page.
        batch = limit + 1 if alias is None else max(limit + 1, 200)
        start = "-" if cursor is None else "(" + cursor
        found: list[tuple[str, KeyRecord]] = []
        while len(found) <= limit:
            members = [_text(m) for m in await self._client.zrange(index, start, "+", bylex=True,
                                                                    offset=0, num=batch)]
            records = await self._get_many([m.split("|", 1)[1] for m in members])
            for member, record in zip(members, records, strict=True):
                if record is None or (team is not None and record.team != team):
                    continue
                if alias is None or record.alias == alias:
                    found.append((member, record))
                    if len(found) > limit:
                        break
            if len(members) < batch:
                break
            start = "(" + members[-1]
        page = found[:limit]
        return [record for _, record in page], page[-1][0] if len(found) > limit else None

    async def update(self, record: KeyRecord) -> None:
        """Replace the record; raises KeyError if it does not exist, KeyExists if a hash is another key's."""
        rec_key = self._rec(record.id)
        new_hash = self._hash(record.key_hash)
        new_prev = self._hash(record.previous_hash) if record.previous_hash else new_hash
        while True:
            fields = await self._client.hmget(rec_key, ["key_hash", "previous_hash", "team", "sort"])
            if fields[0] is None:
                raise KeyError(record.id)
            old_hash, old_prev, old_team, old_sort = (_text(f) if f is not None else "" for f in fields)
            old_hash_key = self._hash(old_hash)
            result = await self._update(
                keys=[rec_key, self._all, self._team(old_team) if old_team else self._all,
                      self._team(record.team) if record.team else self._all, new_hash, new_prev,
                      old_hash_key, self._hash(old_prev) if old_prev else old_hash_key],
                args=[record.id, record.model_dump_json(), record.key_hash, record.previous_hash or "",
                      record.team or "", _sort_member(record), old_hash, old_prev, old_team, old_sort],
            )
            outcome = _text(result)
            if outcome == "ok":
                return
            if outcome == "missing":
                raise KeyError(record.id)
            if outcome == "hash":
                raise KeyExists(record.id)

    async def touch(self, key_id: str, at: datetime) -> None:
        await self._touch(keys=[self._rec(key_id)], args=[_micros(at)])

    async def append_audit(self, entry: AuditEntry) -> None:
        await self._client.xadd(self._audit, {"entry": entry.model_dump_json(), "team": entry.team or "",
                                              "key_id": entry.key_id or ""})

    async def list_audit(self, *, team: str | None = None, key_id: str | None = None, limit: int = 50,
                         cursor: str | None = None) -> tuple[list[AuditEntry], str | None]:
        _check_limit(limit)
        if cursor is not None:
            _check_stream_id(cursor)
        batch = limit + 1 if team is None and key_id is None else max(limit + 1, 200)
        end = "+" if cursor is None else "(" + cursor
        found: list[tuple[str, AuditEntry]] = []
        while len(found) <= limit:
            rows = await self._client.xrevrange(self._audit, max=end, min="-", count=batch) or []
            for stream_id, raw in rows:
                if raw is None:
                    continue
                fields = {_text(k): _text(v) for k, v in raw.items()}
                if (team is None or fields["team"] == team) and (key_id is None or fields["key_id"] == key_id):
                    found.append((_text(stream_id), AuditEntry.model_validate_json(fields["entry"])))
                    if len(found) > limit:
                        break
            if len(rows) < batch:
                break
            end = "(" + _text(rows[-1][0])
        page = found[:limit]
        return [entry for _, entry in page], page[-1][0] if len(found) > limit else None

    async def publish_change(self, key_id: str) -> None:
        await self._client.publish(self._channel, key_id)

    async def changes(self) -> AsyncIterator[str]:
        """Ids published by any replica; resubscribes with backoff and then yields EVERY_KEY."""
        backoff = _BACKOFF_MIN
        lost = False
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                if lost:
                    lost = False
                    yield EVERY_KEY
                backoff = _BACKOFF_MIN
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if message is not None and message["type"] == "message":
                        yield _text(message["data"])
            except (RedisConnectionError, RedisTimeoutError, OSError):
                lost = True
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._client.aclose()
