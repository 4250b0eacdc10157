"""Key management as the admin API performs it: policy check, store write, audit entry, cache
invalidation on every replica — in that order, for every change."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.auth import Principal
from gateway.errors import InvalidRequest
from gateway.keys import policy
from gateway.keys.models import (
    AuditAction,
    AuditEntry,
    AuditPage,
    KeyCreate,
    KeyCreated,
    KeyPage,
    KeyRecord,
    KeyUpdate,
    KeyUsage,
    KeyView,
    UsageRow,
    utcnow,
)
from gateway.keys.secrets import display_prefix, hash_secret, new_key_id, new_secret
from gateway.keys.store import KeyStore
from gateway.limits.types import Limiter, Quota

MAX_GRACE_SECONDS = 7 * 24 * 3600


@contextmanager
def _cursor_errors() -> Iterator[None]:
    """Stores reject a cursor they did not issue with ValueError (or OverflowError from huge numbers)."""
    try:
        yield
    except (ValueError, OverflowError):
        raise InvalidRequest("invalid pagination cursor: pass back a next_cursor value unchanged",
                             param="cursor") from None


def _audit_value(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


class KeyAdmin:
    def __init__(self, store: KeyStore, limiter: Limiter) -> None:
        self._store = store
        self._limiter = limiter

    async def _audit(self, actor: Principal, action: AuditAction, record: KeyRecord | None,
                     changes: dict[str, Any], request_id: str | None, *, key_id: str | None = None,
                     team: str | None = None) -> None:
        """Filed under ``record``'s key and team, else under ``key_id`` and ``team``."""
        await self._store.append_audit(AuditEntry(
            id=uuid.uuid4().hex, at=utcnow(), actor=actor.key_id, actor_team=actor.team,
            action=action,
            key_id=record.id if record else key_id, team=record.team if record else team,
            changes={k: _audit_value(v) for k, v in changes.items()}, request_id=request_id,
        ))

    async def _visible(self, actor: Principal, key_id: str) -> KeyRecord:
        return policy.check_visible(actor, await self._store.get(key_id), key_id)

    async def create(self, actor: Principal, body: KeyCreate, request_id: str | None) -> KeyCreated:
        fields = policy.check_grant(actor, body.model_dump())
        secret = new_secret()
        record = KeyRecord(id=new_key_id(), key_prefix=display_prefix(secret), key_hash=hash_secret(secret),
                           **fields)
        await self._store.create(record)
        await self._audit(actor, "create", record, body.model_dump(exclude_unset=True), request_id)
        await self._store.publish_change(record.id)
        return KeyCreated(**record.public().model_dump(), key=secret)

    async def list_keys(self, actor: Principal, *, team: str | None, alias: str | None, limit: int,
                   cursor: str | None) -> KeyPage:
        team = policy.team_scope(actor, team)
        with _cursor_errors():
            records, next_cursor = await self._store.list_keys(team=team, alias=alias, limit=limit, cursor=cursor)
        return KeyPage(data=[r.public() for r in records], next_cursor=next_cursor)

    async def get(self, actor: Principal, key_id: str) -> KeyView:
        return (await self._visible(actor, key_id)).public()

    async def update(self, actor: Principal, key_id: str, body: KeyUpdate, request_id: str | None) -> KeyView:
        record = await self._visible(actor, key_id)
        if record.revoked_at is not None:
            raise InvalidRequest("a revoked key cannot be changed", param="id")
        changes = body.changes()
        current = record.model_dump(include=set(KeyCreate.model_fields))
        fields = policy.check_grant(actor, {**current, **changes})
        # Validated, not model_copy'd: a record that breaks the schema must never reach the store.
        updated = KeyRecord.model_validate({**record.model_dump(), **fields, "updated_at": utcnow()})
        await self._store.update(updated)
        await self._audit(actor, "update", updated, changes, request_id)
        await self._store.publish_change(key_id)
        return updated.public()

    async def revoke(self, actor: Principal, key_id: str, request_id: str | None) -> KeyView:
        record = await self._visible(actor, key_id)
        if record.revoked_at is not None:
            return record.public()
        now = utcnow()
        revoked = record.model_copy(update={"revoked_at": now, "enabled": False, "updated_at": now,
                                            "previous_hash": None, "previous_valid_until": None})
        await self._store.update(revoked)
        await self._audit(actor, "revoke", revoked, {}, request_id)
        await self._store.publish_change(key_id)
        return revoked.public()

    async def rotate(self, actor: Principal, key_id: str, grace_seconds: int, request_id: str | None) -> KeyCreated:
        if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
            raise InvalidRequest(f"grace_seconds must be between 0 and {MAX_GRACE_SECONDS}", param="grace_seconds")
        record = await self._visible(actor, key_id)
        if record.revoked_at is not None:
            raise InvalidRequest("a revoked key cannot be rotated", param="id")
        secret = new_secret()
        now = utcnow()
        rotated = record.model_copy(update={
            "key_hash": hash_secret(secret), "key_prefix": display_prefix(secret), "updated_at": now,
            "previous_hash": record.key_hash if grace_seconds else None,
            "previous_valid_until": now + timedelta(seconds=grace_seconds) if grace_seconds else None,
        })
        await self._store.update(rotated)
        await self._audit(actor, "rotate", rotated, {"grace_seconds": grace_seconds}, request_id)
        await self._store.publish_change(key_id)
        return KeyCreated(**rotated.public().model_dump(), key=secret)

    async def usage(self, actor: Principal, key_id: str) -> KeyUsage:
        record = await self._visible(actor, key_id)
        rows = [UsageRow(day=r.day, model=r.model, requests=r.requests, input_tokens=r.input_tokens,
                         output_tokens=r.output_tokens, cost_usd=r.cost_usd, saved_usd=r.saved_usd)
                for r in await self._limiter.ledger(record.id)]
        now = time.time()
        period = record.budget_period or "total"
        quota = Quota(key_id=record.id, rpm=record.rpm, tpm=record.tpm, max_parallel=record.max_parallel,
                      budget_usd=record.budget_usd, budget_period=period)
        window = await self._limiter.usage(quota, now)
        current = {"requests_last_minute": window.requests, "tokens_last_minute": window.tokens,
                   "in_flight": window.in_flight}
        if record.budget_usd is None:
            return KeyUsage(key_id=record.id, rows=rows, spent_usd=sum(r.cost_usd for r in rows), **current)
        status = await self._limiter.budget(quota, now)
        return KeyUsage(
            key_id=record.id, rows=rows, budget_usd=record.budget_usd, budget_period=period, **current,
            spent_usd=status.spent_usd, reserved_usd=status.reserved_usd,
            remaining_usd=max(0.0, record.budget_usd - status.spent_usd - status.reserved_usd),
            period_resets_at=datetime.fromtimestamp(status.resets_at, UTC) if status.resets_at else None,
        )

    async def audit(self, actor: Principal, *, key_id: str | None, limit: int, cursor: str | None) -> AuditPage:
        policy.require_admin(actor)
        team = None if actor.role == "master" else actor.team
        if key_id is not None:
            await self._visible(actor, key_id)
        with _cursor_errors():
            entries, next_cursor = await self._store.list_audit(team=team, key_id=key_id, limit=limit,
                                                                cursor=cursor)
        return AuditPage(data=entries, next_cursor=next_cursor)

    async def record_reload(self, actor: Principal, applied: bool, request_id: str | None) -> None:
        await self._audit(actor, "reload", None, {"applied": applied}, request_id)

    async def record_cache_purge(self, actor: Principal, *, key_id: str | None, team: str | None,
                                 alias: str | None, removed: dict[str, int], request_id: str | None) -> None:
        """A purge is audited under the key and team it was filtered by, so their audit views show it."""
        await self._audit(actor, "cache_purge", None, {"alias": alias, **removed}, request_id, key_id=key_id,
                          team=team)
