"""Admin routes (/admin/*): master key only until admin-role keys exist."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.deps import ServicesDep
from gateway.api.http import context_for, dumps, json_response
from gateway.api.openapi import ERROR_RESPONSES
from gateway.auth import bearer_token
from gateway.errors import AuthenticationFailed, ConfigRejected

router = APIRouter(prefix="/admin", tags=["admin"], responses=ERROR_RESPONSES)


@router.post("/reload", summary="Validate the routing file and apply it if valid")
async def reload_config(request: Request, services: ServicesDep) -> Response:
    ctx = context_for(request)
    token = bearer_token(request.headers.get("authorization"))
    if not services.master.is_master(token):
        raise AuthenticationFailed("the admin API needs the master key")
    result = services.table.reload()
    if not result.applied:
        raise ConfigRejected("the routing file was not applied: " + "; ".join(result.problems))
    return json_response(dumps({"status": "applied", "aliases": list(result.aliases)}),
                         {"x-request-id": ctx.request_id})
