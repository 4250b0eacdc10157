"""``GET /metrics``: the Prometheus exposition. Unauthenticated, like /healthz: keep it on a
network only the scraper reaches (see docs/metrics.md)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from gateway.observability.metrics import PrometheusObserver

router = APIRouter(tags=["health"])


@router.get("/metrics", summary="Prometheus metrics (do not expose publicly)", include_in_schema=True)
async def metrics(request: Request) -> Response:
    observer: PrometheusObserver = request.app.state.metrics
    return Response(observer.scrape(), media_type=CONTENT_TYPE_LATEST)
