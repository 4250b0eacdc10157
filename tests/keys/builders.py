"""Records and audit entries for key-store tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.keys.models import AuditEntry, KeyRecord
from gateway.keys.secrets import display_prefix, hash_secret, new_key_id, new_secret

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def new_record(*, team: str | None = None, alias: str | None = None, created_at: datetime | None = None,
               key_id: str | None = None, key_hash: str | None = None) -> KeyRecord:
    secret = new_secret()
    fields = {} if created_at is None else {"created_at": created_at, "updated_at": created_at}
    return KeyRecord(id=key_id or new_key_id(), key_prefix=display_prefix(secret),
                     key_hash=key_hash or hash_secret(secret), team=team, alias=alias, **fields)


def rotated(record: KeyRecord) -> KeyRecord:
    """The record after a rotation: a new secret, the old hash kept for a grace period."""
    return record.model_copy(update={"key_hash": hash_secret(new_secret()), "previous_hash": record.key_hash,
                                     "previous_valid_until": T0 + timedelta(minutes=5)})


def audit(n: int, *, team: str | None = None, key_id: str | None = None) -> AuditEntry:
    return AuditEntry(id=f"audit-{n}", at=T0 + timedelta(seconds=n), actor="master", action="update",
                      key_id=key_id, team=team, changes={"n": n})
