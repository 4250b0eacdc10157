"""Admin routes (/admin/*): the master key or admin-role keys; objects are checked against the caller
(see gateway/keys/policy.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status

from gateway.api.deps import ServicesDep
from gateway.api.http import context_for
from gateway.api.openapi import ERROR_RESPONSES
from gateway.auth import Principal
from gateway.errors import ConfigRejected, PermissionDenied
from gateway.keys import policy
from gateway.keys.admin import KeyAdmin
from gateway.keys.models import AuditPage, KeyCreate, KeyCreated, KeyPage, KeyUpdate, KeyUsage, KeyView

router = APIRouter(prefix="/admin", tags=["admin"], responses=ERROR_RESPONSES)


async def admin_caller(request: Request, response: Response, services: ServicesDep) -> Principal:
    services.abuse.admin_request(request)
    ctx = context_for(request)
    response.headers["x-request-id"] = ctx.request_id
    principal = await services.authenticate(request, ctx)
    policy.require_admin(principal)
    return principal


async def key_admin(services: ServicesDep) -> KeyAdmin:  # async: no thread-pool hop (see deps.py)
    return services.key_admin


Caller = Annotated[Principal, Depends(admin_caller)]
AdminDep = Annotated[KeyAdmin, Depends(key_admin)]
KeyId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def request_id_of(request: Request) -> str:
    ctx = getattr(request.state, "ctx", None)
    return ctx.request_id if ctx else ""


@router.post("/keys", status_code=status.HTTP_201_CREATED, response_model=KeyCreated,
             summary="Create a key; the response is the only place its secret appears")
async def create_key(body: KeyCreate, caller: Caller, admin: AdminDep, request: Request) -> KeyCreated:
    return await admin.create(caller, body, request_id_of(request))


@router.get("/keys", response_model=KeyPage, summary="List keys (one team for team admins), oldest first")
async def list_keys(caller: Caller, admin: AdminDep,
                    team: Annotated[str | None, Query(max_length=128)] = None,
                    alias: Annotated[str | None, Query(max_length=128)] = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50,
                    cursor: Annotated[str | None, Query(max_length=256)] = None) -> KeyPage:
    return await admin.list_keys(caller, team=team, alias=alias, limit=limit, cursor=cursor)


@router.get("/keys/{key_id}", response_model=KeyView, summary="Show one key")
async def get_key(key_id: KeyId, caller: Caller, admin: AdminDep) -> KeyView:
    return await admin.get(caller, key_id)


@router.patch("/keys/{key_id}", response_model=KeyView, summary="Change any field but the secret")
async def update_key(key_id: KeyId, body: KeyUpdate, caller: Caller, admin: AdminDep, request: Request) -> KeyView:
    return await admin.update(caller, key_id, body, request_id_of(request))


@router.delete("/keys/{key_id}", response_model=KeyView, summary="Revoke a key (the record stays, for audit)")
async def revoke_key(key_id: KeyId, caller: Caller, admin: AdminDep, request: Request) -> KeyView:
    return await admin.revoke(caller, key_id, request_id_of(request))


@router.post("/keys/{key_id}/rotate", response_model=KeyCreated,
             summary="Issue a new secret; the old one keeps working for grace_seconds")
async def rotate_key(key_id: KeyId, caller: Caller, admin: AdminDep, request: Request,
                     grace_seconds: Annotated[int, Body(embed=True, ge=0, le=7 * 24 * 3600)] = 0) -> KeyCreated:
    return await admin.rotate(caller, key_id, grace_seconds, request_id_of(request))


@router.get("/keys/{key_id}/usage", response_model=KeyUsage,
            summary="Requests, tokens and cost by model and UTC day, and budget status")
async def key_usage(key_id: KeyId, caller: Caller, admin: AdminDep) -> KeyUsage:
    return await admin.usage(caller, key_id)


@router.get("/audit", response_model=AuditPage, summary="Who changed what and when, newest first")
async def audit_log(caller: Caller, admin: AdminDep,
                    key_id: Annotated[str | None, Query(max_length=64)] = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50,
                    cursor: Annotated[str | None, Query(max_length=256)] = None) -> AuditPage:
    return await admin.audit(caller, key_id=key_id, limit=limit, cursor=cursor)


@router.post("/reload", summary="Validate the routing file and apply it if valid (master key only)")
async def reload_config(caller: Caller, services: ServicesDep, request: Request) -> dict[str, object]:
    if caller.role != "master":
        raise PermissionDenied("reloading the routing file needs the master key")
    result = services.table.reload()
    await services.key_admin.record_reload(caller, result.applied, request_id_of(request))
    if not result.applied:
        raise ConfigRejected("the routing file was not applied: " + "; ".join(result.problems))
    return {"status": "applied", "aliases": list(result.aliases)}

