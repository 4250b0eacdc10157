"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.deps import ServicesDep
from gateway.api.http import dumps, json_response
from gateway.keys.store import store_errors
from gateway.observability.metrics import PrometheusObserver

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> Response:
    return json_response(dumps({"status": "ok"}), {})


@router.get("/readyz", summary="Config loaded and dependencies reachable")
async def readyz(request: Request, services: ServicesDep) -> Response:
    router_ = services.table.router
    try:
        store_ok = await services.key_store.ping()
    except store_errors():
        store_ok = False
    # gateway_store_up: refreshed whenever something probes readiness (the orchestrator, compose).
    metrics: PrometheusObserver | None = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.store_checked(services.key_store.name, store_ok)
    body = {
        "status": "ready" if store_ok else "degraded",
        "config": services.source,
        "aliases": router_.aliases(),
        "cooling_down": services.table.health.cooling_down(),
        "key_store": {"backend": services.key_store.name, "reachable": store_ok},
        # The embedded store serves one host; Redis lets replicas share keys and limits.
        "topology": "shared" if services.settings.redis_url else "single-host",
    }
    return json_response(dumps(body), {}, status=200 if store_ok else 503)
