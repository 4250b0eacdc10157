"""HTTP plumbing shared by the handlers: request ids, bounded body reading, response headers,
cancelling work when the client goes away, and the SSE response."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import BodyTooLarge, InvalidRequest
from gateway.http_headers import header
from gateway.limits.admission import rate_limit_headers
from gateway.pipeline import RequestContext, StreamResult

T = TypeVar("T")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_for(request: Request) -> str:
    """Echo a client's ``x-request-id`` when it is a sane token; otherwise make one."""
    offered = header(request.headers, "x-request-id")
    if offered and _REQUEST_ID.match(offered):
        return offered
    # 128 random bits from the (per-process, reseeded at fork) Mersenne Twister: an id, not a secret.
    # os.urandom would drop the GIL for a syscall on every request and wait to get it back while the
    # exporter or SQLite threads hold it.
    return f"req_{random.getrandbits(128):032x}"


def context_for(request: Request) -> RequestContext:
    ctx = RequestContext(request_id=request_id_for(request))
    # The telemetry middleware's clock, so that Server-Timing and the server span cover the same
    # time (routing and dependencies included), and the request's trace when tracing is on.
    ctx.started = getattr(request.state, "started", ctx.started)
    ctx.trace = getattr(request.state, "trace", None)
    request.state.ctx = ctx
    return ctx


async def read_json(request: Request, limit: int) -> Any:
    """The parsed body; 413 past ``limit`` bytes (checked before and while reading), 400 if not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the request body exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"the request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise InvalidRequest("the client closed the connection while sending the body") from None
    raw = b"".join(chunks)
    if not raw:
        raise InvalidRequest("the request body is empty; send a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"the request body is not valid JSON: {error.msg}") from None


def gateway_headers(ctx: RequestContext, *, finished: bool = True) -> dict[str, str]:
    """Headers that say what happened: request id, deployment, attempts and Server-Timing.

    For a stream, the timing covers the work until the first frame (headers leave before the body).
    """
    headers = {"x-request-id": ctx.request_id}
    if ctx.decision is not None:
        headers.update(rate_limit_headers(ctx.decision))
    if ctx.deployment is not None:
        headers["x-gateway-deployment"] = ctx.deployment.id
        headers["x-gateway-attempts"] = str(ctx.attempts)
        if ctx.events:
            headers["x-gateway-fallbacks"] = str(sum(e.action == "fallback" for e in ctx.events))
    if ctx.cache is not None:
        headers["x-gateway-cache"] = ctx.cache.outcome
        if ctx.cache.similarity is not None:
            headers["x-gateway-cache-similarity"] = f"{ctx.cache.similarity:.4f}"
    total_ms = (time.perf_counter() - ctx.started) * 1000
    upstream_ms = ctx.upstream_seconds * 1000
    cache_ms = sum(ctx.cache.lookup_seconds.values()) * 1000 if ctx.cache is not None else 0.0
    # gateway + upstream + cache = the whole request (docs/tracing.md: they match the spans).
    headers["server-timing"] = (
        f"gateway;dur={max(0.0, total_ms - upstream_ms - cache_ms):.2f}, upstream;dur={upstream_ms:.2f}"
        + ("" if finished else ";desc=\"until first chunk\"")
        + (f", cache;dur={cache_ms:.2f}" if ctx.cache is not None and ctx.cache.lookup_seconds else "")
    )
    return headers


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, but cancel it when the client disconnects, so the upstream call is dropped too.

    The body has been read already, so the next ASGI message can only be ``http.disconnect``. The
    work runs in this task and only the wait for that message gets one (a task less per request than
    racing two tasks with ``asyncio.wait``).
    """
    current = asyncio.current_task()
    assert current is not None, "called from a request's task"
    done = gone = False

    def on_message(watcher: asyncio.Future[Message]) -> None:
        # Runs on a later turn of the loop: by then the work may be over and this task elsewhere.
        nonlocal gone
        if done or watcher.cancelled() or watcher.exception() is not None:
            return
        if watcher.result()["type"] == "http.disconnect":
            gone = True
            current.cancel()

    watcher = asyncio.ensure_future(request.receive())
    watcher.add_done_callback(on_message)
    try:
        return await work
    except asyncio.CancelledError:
        if not gone:
            raise
        current.uncancel()
        raise ClientDisconnect() from None
    finally:
        done = True
        watcher.cancel()


class EventStreamResponse(Response):
    """Relays an opened upstream stream as SSE, and closes it exactly once however it ends.

    A watcher on ``receive`` notices a disconnected client and stops the relay, which closes the
    upstream connection.
    """

    media_type = "text/event-stream"

    def __init__(self, result: StreamResult, headers: dict[str, str],
                 on_closed: Callable[[], None] | None = None) -> None:
        # Not Response.__init__: it would set a body, and with it a content-length of 0.
        self.status_code = 200
        self.background = None
        self.init_headers({**headers, "cache-control": "no-cache", "x-accel-buffering": "no"})
        self.result = result
        self._on_closed = on_closed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def pump() -> None:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            async for frame in self.result.frames():
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def client_gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        relay = asyncio.ensure_future(pump())
        watcher = asyncio.ensure_future(client_gone())
        try:
            await asyncio.wait({relay, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if relay.done():
                relay.result()
            else:
                relay.cancel()
                await asyncio.gather(relay, return_exceptions=True)
        finally:
            watcher.cancel()
            if not relay.done():
                relay.cancel()
            await self.result.close()
            if self._on_closed is not None:
                self._on_closed()


def json_response(body: bytes, headers: dict[str, str], status: int = 200) -> Response:
    return Response(content=body, status_code=status, headers=headers, media_type="application/json")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)
