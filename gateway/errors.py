"""The gateway's one error tree, rendered by one handler as OpenAI's error envelope.

    GatewayError                      (500 api_error)
    ├── InvalidRequest                (400 invalid_request_error)
    │   ├── ConfigRejected            (400 invalid_config: a reload that was refused)
    │   ├── ContextWindowExceeded     (400 context_length_exceeded)
    │   └── UpstreamRejectedRequest   (400: the provider refused the body)
    ├── BodyTooLarge                  (413)
    ├── AuthenticationFailed          (401 invalid_api_key)
    ├── PermissionDenied              (403)
    ├── ModelNotFound                 (404 model_not_found)
    ├── NotFound                      (404)
    ├── MethodNotAllowed              (405)
    ├── RateLimited                   (429 rate_limit_exceeded, Retry-After)
    │   ├── QuotaExceeded             (429 insufficient_quota: the key's budget is spent)
    │   └── UpstreamRateLimited       (429, the provider's Retry-After kept)
    ├── UpstreamError                 (502 upstream_error)
    │   ├── UpstreamAuthFailed        (502: the provider rejected *our* credentials)
    │   ├── UpstreamBadResponse       (502: unparseable or cut response)
    │   ├── UpstreamUnavailable       (503)
    │   └── UpstreamTimeout           (504)
    └── ServiceUnavailable            (503: no deployment available, store down)

Every class carries its status, OpenAI ``type`` and ``code``, and whether the router may retry it on
another attempt. Messages are written by us: they never contain a secret, and upstream messages are
passed on only after the provider's credentials have been scrubbed from them.
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

import orjson


class GatewayError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    code: ClassVar[str | None] = "internal_error"
    log_level: ClassVar[int] = logging.ERROR
    #: May the router try this request again (same or another deployment)?
    retryable: ClassVar[bool] = False
    #: Does this failure count against the deployment's health (cooldowns)?
    deployment_fault: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after
        self.extra_headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body(self) -> bytes:
        return orjson.dumps(self.envelope())

    def headers(self) -> dict[str, str]:
        headers = dict(self.extra_headers)
        if self.retry_after is not None:
            # Rounded up: a client told "1" for 1.4 s would come back too early.
            headers["retry-after"] = str(max(1, math.ceil(min(self.retry_after, 86400.0))))
        return headers


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"
    log_level = logging.INFO


class ConfigRejected(InvalidRequest):
    code = "invalid_config"


class ContextWindowExceeded(InvalidRequest):
    code = "context_length_exceeded"


class UpstreamRejectedRequest(InvalidRequest):
    code = "upstream_bad_request"


class BodyTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"
    log_level = logging.INFO


class AuthenticationFailed(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"
    log_level = logging.INFO


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "permission_denied"
    log_level = logging.INFO


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"
    log_level = logging.INFO


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"
    log_level = logging.INFO


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"
    log_level = logging.INFO


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    log_level = logging.INFO


class QuotaExceeded(RateLimited):
    """The key's budget is spent for this period (OpenAI's answer to an exhausted balance)."""

    type = "insufficient_quota"
    code = "insufficient_quota"


class UpstreamRateLimited(RateLimited):
    retryable = True
    deployment_fault = True
    log_level = logging.WARNING


class UpstreamError(GatewayError):
    status = 502
    type = "api_error"
    code = "upstream_error"
    retryable = True
    deployment_fault = True
    log_level = logging.WARNING


class UpstreamAuthFailed(UpstreamError):
    code = "upstream_authentication_failed"


class UpstreamBadResponse(UpstreamError):
    code = "upstream_bad_response"


class UpstreamUnavailable(UpstreamError):
    status = 503
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "api_error"
    code = "service_unavailable"
    log_level = logging.WARNING


def error_from_upstream_status(status: int, message: str, *, code: str | None = None,
                               param: str | None = None,
                               retry_after: float | None = None) -> GatewayError:
    """Map a provider's HTTP status (and structured error code) to our error, keeping its meaning.

    The provider's 401/403 means *our* upstream credentials are wrong, so the client gets 502: its
    own key was fine.
    """
    if code == "context_length_exceeded":
        return ContextWindowExceeded(message, param=param)
    if status == 429:
        return UpstreamRateLimited(message, retry_after=retry_after)
    if status in (401, 403):
        return UpstreamAuthFailed("the upstream provider rejected the gateway's credentials")
    if status in (408, 504):
        return UpstreamTimeout(message)
    if status == 404:
        return UpstreamError(message)
    if 400 <= status < 500:
        return UpstreamRejectedRequest(message, param=param)
    if status == 503:
        return UpstreamUnavailable(message, retry_after=retry_after)
    return UpstreamError(message)
