"""Who may do what to which key. Pure functions over the caller and the records; no I/O.

- The master key crosses teams and may do anything.
- An admin-role key acts only inside its own team: it sees, changes, rotates and revokes keys of
  that team, and mints keys into it.
- Nobody below the master grants more than they hold: models outside the caller's allow-list, a
  higher RPM/TPM/concurrency/budget than the caller's own, or an expiry after the caller's.
- A user-role key has no admin rights at all.
Objects of another team answer 404, so a team admin cannot learn that they exist.
"""

from __future__ import annotations

from typing import Any

from gateway.auth import Principal
from gateway.errors import InvalidRequest, NotFound, PermissionDenied
from gateway.keys.models import KeyRecord

LIMIT_FIELDS = ("rpm", "tpm", "max_parallel", "budget_usd")


def require_admin(actor: Principal) -> None:
    if actor.role not in ("master", "admin"):
        raise PermissionDenied("the admin API needs the master key or an admin-role key")


def check_visible(actor: Principal, record: KeyRecord | None, key_id: str) -> KeyRecord:
    """The record if the caller may see it; 404 otherwise (never reveal another team's keys)."""
    if record is None or (actor.role != "master" and record.team != actor.team):
        raise NotFound(f"no key with id '{key_id}'", param="id")
    return record


def team_scope(actor: Principal, requested: str | None) -> str | None:
    """The team filter a listing may use: the caller's own team unless it is the master."""
    if actor.role == "master":
        return requested
    if requested is not None and requested != actor.team:
        raise PermissionDenied("an admin key can only list keys of its own team", param="team")
    return actor.team


def check_grant(actor: Principal, fields: dict[str, Any]) -> dict[str, Any]:
    """Validate the resulting fields of a key an actor creates or changes; returns them completed.

    ``fields`` is the full set of values the key will have (after a PATCH is applied).
    """
    result = dict(fields)
    if result.get("role") == "admin" and not result.get("team"):
        raise InvalidRequest("an admin-role key must belong to a team", param="team")
    if actor.role == "master":
        return result
    if result.get("team") is None:
        result["team"] = actor.team
    if result["team"] != actor.team:
        raise PermissionDenied("an admin key can only manage keys of its own team", param="team")
    own = actor.record
    if own is None:
        return result
    if own.allowed_models:
        wanted = result.get("allowed_models") or []
        if not wanted:
            raise PermissionDenied("an admin key restricted to some models cannot grant every model",
                                   param="allowed_models")
        extra = sorted(set(wanted) - set(own.allowed_models))
        if extra:
            raise PermissionDenied(f"cannot grant models this admin key may not use: {', '.join(extra)}",
                                   param="allowed_models")
    for name in LIMIT_FIELDS:
        mine = getattr(own, name)
        if mine is None:
            continue
        theirs = result.get(name)
        if theirs is None or theirs > mine:
            raise PermissionDenied(f"cannot grant {name} above this admin key's own ({mine})", param=name)
    if own.expires_at is not None:
        expires = result.get("expires_at")
        if expires is None or expires > own.expires_at:
            raise PermissionDenied("cannot grant an expiry after this admin key's own", param="expires_at")
    return result
