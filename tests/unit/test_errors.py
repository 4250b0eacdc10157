"""The error tree: provider statuses and litellm's exceptions map to our classes, secrets never leak."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from litellm import exceptions as litellm_errors

from gateway.config import parse_config
from gateway.errors import (
    AuthenticationFailed,
    BodyTooLarge,
    ContextWindowExceeded,
    GatewayError,
    InvalidRequest,
    RateLimited,
    ServiceUnavailable,
    UpstreamAuthFailed,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejectedRequest,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_from_upstream_status,
)
from gateway.routing.deployments import Deployment, build_deployments
from gateway.routing.litellm_engine import translate_litellm_errors
from gateway.routing.sse import MAX_RETRY_AFTER_SECONDS, error_frame, parse_retry_after, scrub

API_KEY = "sk-live-0123456789abcdefXYZ"
AWS_SECRET = "aws-secret-9876543210zyxw"
MODEL = "anthropic/claude-3-5-haiku-20241022"


def _deployment(**params: str) -> Deployment:
    config = parse_config({"model_list": [{
        "model_name": "claude", "litellm_params": {"model": MODEL, "api_key": API_KEY, **params},
        "model_info": {"id": "claude-eu"}}]}, environ={})
    return build_deployments(config)["claude"][0]


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("POST", "https://upstream.test/v1"))


# -- error_from_upstream_status -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "our_status"),
    [
        (400, UpstreamRejectedRequest, 400),
        (401, UpstreamAuthFailed, 502),
        (403, UpstreamAuthFailed, 502),
        (404, UpstreamError, 502),
        (408, UpstreamTimeout, 504),
        (413, UpstreamRejectedRequest, 400),
        (422, UpstreamRejectedRequest, 400),
        (429, UpstreamRateLimited, 429),
        (500, UpstreamError, 502),
        (502, UpstreamError, 502),
        (503, UpstreamUnavailable, 503),
        (504, UpstreamTimeout, 504),
    ],
)
def test_error_from_upstream_status(status: int, kind: type[GatewayError], our_status: int) -> None:
    error = error_from_upstream_status(status, "provider said no")
    assert type(error) is kind
    assert error.status == our_status


def test_upstream_client_errors_are_not_retried_and_server_errors_are() -> None:
    assert not error_from_upstream_status(400, "x").retryable
    assert not error_from_upstream_status(400, "x").deployment_fault
    assert not error_from_upstream_status(422, "x").retryable
    for status in (429, 500, 502, 503, 504, 401):
        error = error_from_upstream_status(status, "x")
        assert error.retryable, status
        assert error.deployment_fault, status


def test_upstream_auth_failure_hides_the_provider_message() -> None:
    error = error_from_upstream_status(401, f"Incorrect API key provided: {API_KEY}")
    assert API_KEY not in error.message
    assert error.code == "upstream_authentication_failed"


def test_upstream_rejection_keeps_message_and_param() -> None:
    error = error_from_upstream_status(400, "bad temperature", param="temperature")
    assert error.message == "bad temperature"
    assert error.param == "temperature"
    assert error.type == "invalid_request_error"


def test_rate_limit_keeps_retry_after() -> None:
    error = error_from_upstream_status(429, "slow down", retry_after=2.5)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 2.5
    assert error.code == "rate_limit_exceeded"


def test_unavailable_keeps_retry_after() -> None:
    assert error_from_upstream_status(503, "busy", retry_after=4).retry_after == 4


@pytest.mark.parametrize("status", [400, 413, 429, 500])
def test_context_length_code_wins_over_status(status: int) -> None:
    error = error_from_upstream_status(status, "too long", code="context_length_exceeded", param="messages")
    assert type(error) is ContextWindowExceeded
    assert error.status == 400
    assert error.code == "context_length_exceeded"
    assert error.param == "messages"
    assert not error.retryable


# -- envelope and headers -------------------------------------------------------------------------


def test_envelope_shape() -> None:
    error = InvalidRequest("bad field", param="messages.0.role")
    envelope = {"error": {"message": "bad field", "type": "invalid_request_error",
                          "param": "messages.0.role", "code": "invalid_request"}}
    assert error.envelope() == envelope
    assert orjson.loads(error.body()) == envelope
    assert error.status == 400


def test_envelope_of_the_base_class() -> None:
    error = GatewayError("boom")
    assert error.envelope() == {"error": {"message": "boom", "type": "api_error", "param": None,
                                          "code": "internal_error"}}
    assert error.status == 500


@pytest.mark.parametrize(
    ("kind", "status", "type_", "code"),
    [
        (AuthenticationFailed, 401, "invalid_request_error", "invalid_api_key"),
        (BodyTooLarge, 413, "invalid_request_error", "request_too_large"),
        (UpstreamTimeout, 504, "timeout_error", "upstream_timeout"),
        (ServiceUnavailable, 503, "api_error", "service_unavailable"),
        (UpstreamBadResponse, 502, "api_error", "upstream_bad_response"),
    ],
)
def test_class_attributes(kind: type[GatewayError], status: int, type_: str, code: str) -> None:
    error = kind("m")
    assert (error.status, error.envelope()["error"]["type"], error.code) == (status, type_, code)


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(0, "1"), (0.2, "1"), (0.9, "1"), (1.6, "2"), (7, "7"), (30.0, "30")],
)
def test_retry_after_header_is_rounded_and_at_least_one(retry_after: float, header: str) -> None:
    assert RateLimited("slow", retry_after=retry_after).headers() == {"retry-after": header}


def test_no_retry_after_header_without_a_hint() -> None:
    assert RateLimited("slow").headers() == {}


def test_extra_headers_are_kept_alongside_retry_after() -> None:
    error = ServiceUnavailable("down", retry_after=3, headers={"x-gateway-attempts": "3"})
    assert error.headers() == {"x-gateway-attempts": "3", "retry-after": "3"}
    # headers() returns a copy: rendering must not change the error.
    error.headers()["x-other"] = "1"
    assert "x-other" not in error.headers()


@pytest.mark.parametrize("value", ["inf", "1e999"])
def test_an_infinite_upstream_retry_after_still_renders(value: str) -> None:
    retry_after = parse_retry_after({"retry-after": value})
    error = error_from_upstream_status(429, "slow down", retry_after=retry_after)
    assert error.headers()["retry-after"].isdigit()


def test_error_frame_is_an_sse_event_with_the_envelope() -> None:
    error = UpstreamError("cut")
    frame = error_frame(error)
    assert frame.startswith(b"data: ")
    assert frame.endswith(b"\n\n")
    assert orjson.loads(frame[len(b"data: "):]) == error.envelope()


# -- parse_retry_after ----------------------------------------------------------------------------

NON_NEGATIVE = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False) | \
    st.integers(min_value=0, max_value=10**9)


def _is_garbage(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


@given(NON_NEGATIVE)
def test_retry_after_seconds_parse(value: float) -> None:
    assert parse_retry_after({"retry-after": str(value)}) == min(float(value), MAX_RETRY_AFTER_SECONDS)


@given(NON_NEGATIVE)
def test_retry_after_ms_parse(value: float) -> None:
    assert parse_retry_after({"retry-after-ms": str(value)}) == min(float(value) / 1000, MAX_RETRY_AFTER_SECONDS)


@given(st.text().filter(_is_garbage))
def test_garbage_retry_after_is_none(text: str) -> None:
    assert parse_retry_after({"retry-after": text}) is None


@given(st.text().filter(_is_garbage), NON_NEGATIVE)
def test_garbage_retry_after_ms_falls_back_to_seconds(text: str, seconds: float) -> None:
    assert parse_retry_after({"retry-after-ms": text, "retry-after": str(seconds)}) == min(
        float(seconds), MAX_RETRY_AFTER_SECONDS)


@given(NON_NEGATIVE, NON_NEGATIVE)
def test_retry_after_ms_wins(millis: float, seconds: float) -> None:
    headers = {"retry-after": str(seconds), "retry-after-ms": str(millis)}
    assert parse_retry_after(headers) == min(float(millis) / 1000, MAX_RETRY_AFTER_SECONDS)


def test_retry_after_edge_cases() -> None:
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": ""}) is None
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert parse_retry_after({"retry-after": "-3"}) == 0.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "4"})) == 4.0


# -- scrub ----------------------------------------------------------------------------------------


def test_scrub_removes_the_key_and_its_prefix() -> None:
    deployment = _deployment()
    message = f"Incorrect API key provided: {API_KEY}. Also seen: {API_KEY[:8]}…"
    scrubbed = scrub(message, deployment)
    assert API_KEY not in scrubbed
    assert API_KEY[:8] not in scrubbed
    assert scrubbed.startswith("Incorrect API key provided: ***")


def test_scrub_removes_cloud_credentials() -> None:
    deployment = _deployment(aws_secret_access_key=AWS_SECRET, aws_access_key_id="AKIAEXAMPLE1234")
    scrubbed = scrub(f"signature mismatch for {AWS_SECRET} / AKIAEXAMPLE1234", deployment)
    assert AWS_SECRET not in scrubbed
    assert "AKIAEXAMPLE1234" not in scrubbed


def test_scrub_leaves_other_text_alone() -> None:
    assert scrub("model overloaded, try later", _deployment()) == "model overloaded, try later"


# -- translate_litellm_errors with litellm's own exception types ----------------------------------


def _translate(error: Exception) -> GatewayError:
    with pytest.raises(GatewayError) as caught, translate_litellm_errors(_deployment()):
        raise error
    assert caught.value.__cause__ is error or isinstance(error, GatewayError)
    return caught.value


P = {"llm_provider": "anthropic", "model": MODEL}

CASES: list[tuple[str, Callable[[], Exception], type[GatewayError]]] = [
    ("rate-limit", lambda: litellm_errors.RateLimitError(message="x", **P), UpstreamRateLimited),
    ("context-window", lambda: litellm_errors.ContextWindowExceededError(message="too long", **P),
     ContextWindowExceeded),
    ("authentication", lambda: litellm_errors.AuthenticationError(message="bad key", **P),
     UpstreamAuthFailed),
    ("permission", lambda: litellm_errors.PermissionDeniedError(message="no", response=_response(403), **P),
     UpstreamAuthFailed),
    ("timeout", lambda: litellm_errors.Timeout(message="slow", **P), UpstreamTimeout),
    ("bad-request", lambda: litellm_errors.BadRequestError(message="bad", **P), UpstreamRejectedRequest),
    ("unprocessable", lambda: litellm_errors.UnprocessableEntityError(message="bad", response=_response(422),
                                                                     **P), UpstreamRejectedRequest),
    ("content-policy", lambda: litellm_errors.ContentPolicyViolationError(message="no", **P),
     UpstreamRejectedRequest),
    ("unavailable", lambda: litellm_errors.ServiceUnavailableError(message="busy", **P), UpstreamUnavailable),
    ("connection", lambda: litellm_errors.APIConnectionError(message="refused", **P), UpstreamUnavailable),
    ("not-found", lambda: litellm_errors.NotFoundError(message="no model", **P), UpstreamError),
    ("internal", lambda: litellm_errors.InternalServerError(message="oops", **P), UpstreamError),
    ("api-error-500", lambda: litellm_errors.APIError(status_code=500, message="oops", **P), UpstreamError),
    ("api-error-503", lambda: litellm_errors.APIError(status_code=503, message="oops", **P),
     UpstreamUnavailable),
    ("asyncio-timeout", lambda: TimeoutError(), UpstreamTimeout),
    ("unreadable", lambda: KeyError("choices"), UpstreamBadResponse),
]


@pytest.mark.parametrize(("make", "kind"), [(m, k) for _, m, k in CASES], ids=[c[0] for c in CASES])
def test_translate_litellm_errors(make: Callable[[], Exception], kind: type[GatewayError]) -> None:
    assert type(_translate(make())) is kind


def test_translate_bad_gateway() -> None:
    error = litellm_errors.BadGatewayError(message="bad gateway", **P)
    assert type(_translate(error)) is UpstreamError


def test_gateway_errors_pass_through_unchanged() -> None:
    original = UpstreamBadResponse("cut")
    assert _translate(original) is original


def test_rate_limit_retry_after_from_the_response() -> None:
    error = litellm_errors.RateLimitError(message="x", response=_response(429, {"retry-after": "7"}), **P)
    translated = _translate(error)
    assert translated.retry_after == 7.0
    assert translated.headers() == {"retry-after": "7"}


def test_rate_limit_retry_after_from_litellm_response_headers() -> None:
    error = litellm_errors.RateLimitError(message="x", **P)
    error.litellm_response_headers = httpx.Headers({"retry-after-ms": "1500"})  # type: ignore[attr-defined]
    assert _translate(error).retry_after == 1.5


def test_rate_limit_without_a_hint() -> None:
    assert _translate(litellm_errors.RateLimitError(message="x", **P)).retry_after is None


def test_unavailable_retry_after() -> None:
    error = litellm_errors.ServiceUnavailableError(message="x", response=_response(503, {"retry-after": "2"}),
                                                   **P)
    translated = _translate(error)
    assert type(translated) is UpstreamUnavailable
    assert translated.retry_after == 2.0


def test_context_window_points_at_messages() -> None:
    translated = _translate(litellm_errors.ContextWindowExceededError(message="too long", **P))
    assert translated.param == "messages"
    assert translated.code == "context_length_exceeded"


@pytest.mark.parametrize(
    "make",
    [
        lambda m: litellm_errors.RateLimitError(message=m, **P),
        lambda m: litellm_errors.BadRequestError(message=m, **P),
        lambda m: litellm_errors.ContextWindowExceededError(message=m, **P),
        lambda m: litellm_errors.ServiceUnavailableError(message=m, **P),
        lambda m: litellm_errors.InternalServerError(message=m, **P),
        lambda m: litellm_errors.NotFoundError(message=m, **P),
        lambda m: litellm_errors.AuthenticationError(message=m, **P),
        lambda m: litellm_errors.APIConnectionError(message=m, **P),
        lambda m: litellm_errors.Timeout(message=m, **P),
    ],
    ids=["rate-limit", "bad-request", "context-window", "unavailable", "internal", "not-found",
         "authentication", "connection", "timeout"],
)
def test_translated_messages_never_contain_the_key(make: Callable[[str], Exception]) -> None:
    translated = _translate(make(f"request with key {API_KEY} failed"))
    assert API_KEY not in translated.message
    assert API_KEY[:8] not in translated.message
    assert API_KEY not in translated.body().decode()


def test_provider_message_is_kept_after_scrubbing() -> None:
    translated = _translate(litellm_errors.BadRequestError(message=f"max_tokens too large ({API_KEY})", **P))
    assert "max_tokens too large" in translated.message
    assert "***" in translated.message
