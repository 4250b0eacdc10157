"""Error responses in OpenAI's and Anthropic's envelopes.

A :class:`Fault` says what went wrong in protocol-neutral terms; ``openai_response`` and
``anthropic_response`` render it the way each real API would, including the ``Retry-After`` /
``retry-after-ms`` headers that SDK retry logic reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import orjson
from aiohttp import web

_OPENAI: Mapping[int, tuple[str, str | None, str]] = MappingProxyType(
    {
        400: ("invalid_request_error", None, "Invalid request (injected by the mock upstream)."),
        401: ("authentication_error", "invalid_api_key", "Incorrect API key provided."),
        403: ("permission_error", "permission_denied", "You are not allowed to use this model."),
        404: ("invalid_request_error", "model_not_found", "The model does not exist."),
        408: ("timeout_error", "request_timeout", "The request timed out."),
        409: ("invalid_request_error", "conflict", "Conflict."),
        422: ("invalid_request_error", None, "Unprocessable request."),
        429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
        500: ("server_error", "server_error", "The server had an error while processing your request."),
        502: ("server_error", "bad_gateway", "Bad gateway."),
        503: ("server_error", "service_unavailable", "The engine is currently overloaded."),
        504: ("timeout_error", "gateway_timeout", "The upstream timed out."),
    }
)

_ANTHROPIC: Mapping[int, str] = MappingProxyType(
    {
        400: "invalid_request_error",
        401: "authentication_error",
        402: "billing_error",
        403: "permission_error",
        404: "not_found_error",
        408: "timeout_error",
        413: "request_too_large",
        429: "rate_limit_error",
        500: "api_error",
        503: "overloaded_error",
        504: "timeout_error",
        529: "overloaded_error",
    }
)


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure to report: HTTP status plus the details an error body carries."""

    status: int
    message: str | None = None
    """Overrides the default message for the status."""
    param: str | None = None
    code: str | None = None
    """OpenAI ``code``; overrides the default for the status."""
    retry_after: float | None = None


def _headers(fault: Fault) -> dict[str, str]:
    if fault.retry_after is None:
        return {}
    seconds = fault.retry_after
    text = str(int(seconds)) if seconds == int(seconds) else f"{seconds:g}"
    return {"Retry-After": text, "retry-after-ms": str(round(seconds * 1000))}


def openai_response(fault: Fault) -> web.Response:
    """``{"error": {"message", "type", "param", "code"}}`` with the status's usual type and code."""
    kind, code, message = _OPENAI.get(
        fault.status,
        ("server_error", None, "Server error.")
        if fault.status >= 500
        else ("invalid_request_error", None, "Request failed."),
    )
    body = {
        "error": {
            "message": fault.message or message,
            "type": kind,
            "param": fault.param,
            "code": fault.code if fault.code is not None else code,
        }
    }
    return web.Response(
        status=fault.status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers=_headers(fault),
    )


def anthropic_response(fault: Fault) -> web.Response:
    """``{"type": "error", "error": {"type", "message"}}`` as the Messages API returns it."""
    kind = _ANTHROPIC.get(fault.status, "api_error" if fault.status >= 500 else "invalid_request_error")
    body = {
        "type": "error",
        "error": {"type": kind, "message": fault.message or f"{kind} (injected by the mock upstream)"},
    }
    return web.Response(
        status=fault.status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers=_headers(fault),
    )
