"""A pure ASGI middleware around every HTTP request: the server span (when tracing is on) and the
access-log line, both written once the response is over (for a stream, once it has closed).

It reads what happened from the request's RequestContext (``request.state.ctx``) rather than being
threaded through the handlers, and wraps ``send`` only to learn the status code.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.observability.logs import ACCESS_LOGGER, QUIET_PATHS, log_access
from gateway.observability.tracing import RequestTrace, Tracing

access_log = logging.getLogger(ACCESS_LOGGER)


def _tracing(scope: Scope) -> Tracing | None:
    tracing: Tracing | None = getattr(scope["app"].state, "tracing", None)  # set by the lifespan
    return tracing


def _route(scope: Scope) -> str | None:
    """The matched route's template (``/v1/models/{model}``), never the raw path of an unknown URL."""
    route: Any = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else None


class TelemetryMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        state: dict[str, Any] = scope.setdefault("state", {})
        state["started"] = started
        tracing = _tracing(scope) if path not in QUIET_PATHS else None
        request_trace: RequestTrace | None = None
        if tracing is not None:
            request_trace = tracing.start_request(method, path, path, scope.get("scheme", "http"),
                                                  scope.get("headers") or [])
            state["trace"] = request_trace
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        error: BaseException | None = None
        try:
            await self.app(scope, receive, send_status)
        except BaseException as raised:
            error = raised
            raise
        finally:
            ctx = state.get("ctx")
            final = ctx.status if ctx is not None and ctx.status is not None else (status or 500)
            trace_ids = None
            if request_trace is not None:
                route = _route(scope)
                request_trace.finish(ctx, final, error, route, name=f"{method} {route}" if route else method)
                trace_ids = request_trace.ids
            log_access(access_log, ctx, method, path, final, time.perf_counter() - started, trace_ids)
