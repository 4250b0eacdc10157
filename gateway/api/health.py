"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from gateway.api.deps import ServicesDep
from gateway.api.http import dumps, json_response

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> Response:
    return json_response(dumps({"status": "ok"}), {})


@router.get("/readyz", summary="Config loaded and dependencies reachable")
async def readyz(services: ServicesDep) -> Response:
    router_ = services.table.router
    body = {
        "status": "ready",
        "config": services.source,
        "aliases": router_.aliases(),
        "cooling_down": services.table.health.cooling_down(),
        # One host only until shared stores are configured (see docs/deployment.md).
        "topology": "single-host",
    }
    return json_response(dumps(body), {})
