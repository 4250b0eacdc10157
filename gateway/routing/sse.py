"""Small pieces shared by both engines: error frames, Retry-After parsing, secret scrubbing."""

from __future__ import annotations

import math
from collections.abc import Mapping

import orjson

from gateway.errors import GatewayError
from gateway.routing.deployments import Deployment


def error_frame(error: GatewayError) -> bytes:
    """The SSE event that ends a failed stream; OpenAI's SDKs raise on an ``error`` event."""
    return b"data: " + orjson.dumps(error.envelope()) + b"\n\n"


#: A provider's Retry-After beyond this is treated as this: no deployment rests for days on one header.
MAX_RETRY_AFTER_SECONDS = 3600.0


def _seconds(value: str | None, scale: float) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value) / scale
    except ValueError:
        return None
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``retry-after`` (seconds); dates are ignored."""
    millis = _seconds(headers.get("retry-after-ms"), 1000)
    return millis if millis is not None else _seconds(headers.get("retry-after"), 1)


def scrub(message: str, deployment: Deployment) -> str:
    """Remove the deployment's credentials from a provider's message before it is passed on."""
    for secret in (deployment.api_key, deployment.params.aws_secret_access_key,
                   deployment.params.aws_access_key_id):
        if secret is not None:
            value = secret.get_secret_value()
            if len(value) >= 4:
                message = message.replace(value, "***")
                message = message.replace(value[:8], "***") if len(value) > 12 else message
    return message
