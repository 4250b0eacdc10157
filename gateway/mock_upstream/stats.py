"""Per-app counters and request log, and the middleware that fills them.

State lives on the application (``app[STATE]``), so two mock servers in one process never share
counters. The middleware parses each API request's JSON body once (handlers read it from
``request[BODY]``), records it, and classifies how the request ended:

* ``completed`` - the handler returned (including injected errors and ``cut`` aborts);
* ``cancelled`` - the client went away first (aiohttp cancelled the handler, or a write hit a
  closed connection);
* ``aborted`` - the subset of completed requests whose connection the mock cut on purpose.

``in_flight`` is incremented and decremented exactly once per tracked request.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

LOG_LIMIT = 1000
"""Most requests kept in the log; older ones are dropped first."""

Body = dict[str, Any] | None
"""A parsed JSON object body; ``None`` when the body is missing or not a JSON object."""


@dataclass
class MockState:
    """Everything the mock counts; reset by ``POST /mock/reset``."""

    requests: Counter[str] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    completed: int = 0
    cancelled: int = 0
    aborted: int = 0
    log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LOG_LIMIT))

    def record(self, request: web.Request, body: Any) -> int:
        """Log a request and count it; returns how many requests its model has now seen (0 if none)."""
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str):
            model = None
        self.by_route[request.path] += 1
        if model is not None:
            self.requests[model] += 1
        self.log.append(
            {
                "time": time.time(),
                "method": request.method,
                "path": request.path,
                # multidict keys are ``istr``, which orjson refuses; plain ``str`` copies serialise.
                "query": {str(k): v for k, v in request.query.items()},
                "headers": {str(k): v for k, v in request.headers.items()},
                "model": model,
                "body": body,
            }
        )
        return self.requests[model] if model is not None else 0

    def reset(self) -> None:
        """Forget counts and the log; ``in_flight`` stays true to the requests still running."""
        self.requests.clear()
        self.by_route.clear()
        self.completed = self.cancelled = self.aborted = 0
        self.log.clear()

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "in_flight": self.in_flight,
            "completed": self.completed,
            "cancelled": self.cancelled,
            "aborted": self.aborted,
            "by_route": dict(self.by_route),
        }

    def recent(self, model: str | None, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` log entries (for ``model`` if given), oldest first."""
        entries = [e for e in self.log if model is None or e["model"] == model]
        return entries[-limit:] if limit > 0 else []


STATE = web.AppKey("mock_state", MockState)
BODY = web.RequestKey[Body]("mock_body")
"""The request's JSON object body, or ``None`` if it had none or it was not a JSON object."""
ATTEMPT = web.RequestKey("mock_attempt", int)
"""How many requests the model of this request has seen, this one included."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


@web.middleware
async def track(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record and classify every ``/v1/`` request; other paths pass straight through."""
    if not request.path.startswith("/v1/"):
        return await handler(request)
    state = request.app[STATE]
    body = await _read_json(request) if request.method == "POST" else None
    request[BODY] = body if isinstance(body, dict) else None
    request[ATTEMPT] = state.record(request, body)
    state.in_flight += 1
    try:
        response = await handler(request)
    except asyncio.CancelledError:
        state.cancelled += 1
        raise
    except ConnectionResetError:
        # The peer closed while we wrote; aiohttp would log this as a handler error and try to
        # send a 500 on the dead connection. A fresh response fails quietly on prepare instead.
        state.cancelled += 1
        return web.Response(status=499)
    finally:
        state.in_flight -= 1
    state.completed += 1
    return response
