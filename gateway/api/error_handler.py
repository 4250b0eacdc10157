"""The one place errors become HTTP responses, always in OpenAI's envelope."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from gateway.api.http import request_id_for
from gateway.errors import GatewayError, InvalidRequest, MethodNotAllowed, NotFound, ServiceUnavailable
from gateway.keys.store import BASE_STORE_ERRORS
from gateway.pipeline import RequestContext

log = logging.getLogger("gateway.errors")

#: nginx's "client closed request": logged, never seen by the (gone) client.
CLIENT_CLOSED = 499

_BY_STATUS: dict[int, type[GatewayError]] = {400: InvalidRequest, 404: NotFound, 405: MethodNotAllowed}


def _request_id(request: Request) -> str:
    ctx: RequestContext | None = getattr(request.state, "ctx", None)
    return ctx.request_id if ctx else request_id_for(request)


def render(request: Request, error: GatewayError) -> Response:
    headers = error.headers()
    request_id = _request_id(request)
    headers["x-request-id"] = request_id
    log.log(error.log_level, "%s %s -> %d %s: %s", request.method, request.url.path, error.status,
            error.code, error.message, extra={"request_id": request_id})
    ctx: RequestContext | None = getattr(request.state, "ctx", None)
    services = getattr(request.app.state, "services", None)
    if ctx is not None and ctx.operation is not None and services is not None:
        services.observe(ctx, error.status, error.code)
    return Response(error.body(), status_code=error.status, headers=headers, media_type="application/json")


async def _gateway_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, GatewayError)
    return render(request, error)


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    parts = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    location = ".".join(parts) or None
    message = f"invalid value for '{location}': {first['msg']}" if location else str(first["msg"])
    return render(request, InvalidRequest(message, param=location))


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    kind = _BY_STATUS.get(error.status_code)
    if kind is not None:
        response = render(request, kind(str(error.detail)))
        response.headers.update(error.headers or {})
        return response
    generic = GatewayError(str(error.detail))
    response = render(request, generic)
    response.status_code = error.status_code
    if error.headers:
        response.headers.update(error.headers)
    return response


async def _client_gone(request: Request, error: Exception) -> Response:
    log.info("%s %s: client disconnected", request.method, request.url.path)
    ctx: RequestContext | None = getattr(request.state, "ctx", None)
    services = getattr(request.app.state, "services", None)
    if ctx is not None and ctx.operation is not None and services is not None:
        services.observe(ctx, CLIENT_CLOSED, "client_closed")
    return Response(status_code=CLIENT_CLOSED)


async def _store_down(request: Request, error: Exception) -> Response:
    log.warning("store unreachable on %s %s: %s", request.method, request.url.path, type(error).__name__)
    return render(request, ServiceUnavailable("a store the gateway depends on is unreachable; try again shortly",
                                              retry_after=1))


async def _unexpected(request: Request, error: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return render(request, GatewayError("internal error in the gateway"))


def install_error_handlers(app: FastAPI, *, redis: bool) -> None:
    """``redis``: the stores are on Redis, so its errors are store errors too (503, not 500)."""
    store_error_types = list(BASE_STORE_ERRORS)
    if redis:
        from redis.exceptions import RedisError

        store_error_types.append(RedisError)
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    for store_error in store_error_types:
        app.add_exception_handler(store_error, _store_down)
    app.add_exception_handler(Exception, _unexpected)
