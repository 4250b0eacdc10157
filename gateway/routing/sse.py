"""Small pieces shared by both engines: error frames, Retry-After parsing, secret scrubbing."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from gateway.errors import GatewayError
from gateway.routing.deployments import Deployment


def error_frame(error: GatewayError) -> bytes:
    """The SSE event that ends a failed stream; OpenAI's SDKs raise on an ``error`` event."""
    return b"data: " + orjson.dumps(error.envelope()) + b"\n\n"


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``retry-after`` (seconds); dates are ignored."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    seconds = headers.get("retry-after")
    if seconds:
        try:
            return max(0.0, float(seconds))
        except ValueError:
            return None
    return None


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
