"""Test-facing endpoints: ``/mock/stats``, ``/mock/requests``, ``/mock/reset`` and ``/health``."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.mock_upstream.stats import LOG_LIMIT, STATE


def _json(obj: object) -> web.Response:
    return web.Response(body=orjson.dumps(obj), content_type="application/json")


async def stats(request: web.Request) -> web.Response:
    """Counters: requests per model name, in flight, completed, cancelled, aborted, per route."""
    return _json(request.app[STATE].snapshot())


async def recent_requests(request: web.Request) -> web.Response:
    """The newest recorded requests (``?model=`` filters, ``?limit=`` bounds), oldest first."""
    raw_limit = request.query.get("limit", str(LOG_LIMIT))
    try:
        limit = int(raw_limit)
    except ValueError:
        return web.Response(status=400, text="limit must be an integer")
    model = request.query.get("model")
    return _json({"requests": request.app[STATE].recent(model, limit)})


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return _json({"reset": True})


async def health(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/mock/stats", stats)
    app.router.add_get("/mock/requests", recent_requests)
    app.router.add_post("/mock/reset", reset)
    app.router.add_get("/health", health)
