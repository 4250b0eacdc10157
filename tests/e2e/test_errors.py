"""Bad input and every mock fault, mapped to its documented status and OpenAI error envelope."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import UPSTREAM_KEY
from tests.processes import MASTER_KEY, Process

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
HELLO = [{"role": "user", "content": "hello"}]


def _post(gateway: Process, body: Any, headers: dict[str, str] | None = None, *,
          raw: bytes | None = None, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", headers={**AUTH, **(headers or {})},
                      content=raw, json=None if raw is not None else body, timeout=30)


def _error(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "x-request-id" in response.headers
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize(("raw", "param"), [
    (b"{not json", None),
    (b"", None),
    (b"[1, 2]", None),
    (b'{"model": "echo"}', "messages"),
    (b'{"model": "echo", "messages": []}', "messages"),
    (b'{"model": "echo", "messages": [{"role": "robot", "content": "x"}]}', "messages.0.role"),
    (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "temperature": 5}', "temperature"),
    (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "n": 0}', "n"),
    (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
])
def test_bad_bodies_are_400_naming_the_field(gateway: Process, raw: bytes, param: str | None) -> None:
    response = _post(gateway, None, {"content-type": "application/json"}, raw=raw)
    assert response.status_code == 400
    error = _error(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if param:
        assert param in error["message"]


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-nope", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.code == "model_not_found"


def test_body_over_limit_is_413(gateway: Process) -> None:
    huge = {"model": "echo", "messages": [{"role": "user", "content": "x" * 300_000}]}
    response = _post(gateway, huge)
    assert response.status_code == 413
    assert _error(response)["code"] == "request_too_large"


def test_missing_and_wrong_keys_are_401(gateway: Process) -> None:
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "echo", "messages": HELLO})
    assert response.status_code == 401
    assert _error(response)["code"] == "invalid_api_key"
    wrong = _post(gateway, {"model": "echo", "messages": HELLO}, {"authorization": "Bearer sk-wrong-canary-key"})
    assert wrong.status_code == 401
    assert "sk-wrong-canary-key" not in wrong.text
    assert "sk-wrong-canary-key" not in gateway.logs()


def test_unknown_route_and_method(gateway: Process) -> None:
    assert _post(gateway, {}, path="/v1/nothing").status_code == 404
    response = httpx.get(f"{gateway.url}/v1/chat/completions", headers=AUTH)
    assert response.status_code == 405
    assert _error(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize(("alias", "status", "code"), [
    ("status-400", 400, "upstream_bad_request"),
    ("status-401", 502, "upstream_authentication_failed"),
    ("status-404", 502, "upstream_error"),
    ("status-500", 502, "upstream_error"),
    ("status-500-litellm", 502, "upstream_error"),
    ("status-503", 503, "upstream_unavailable"),
    ("hang", 504, "upstream_timeout"),
    ("malformed", 502, "upstream_bad_response"),
])
def test_provider_faults_keep_their_meaning(gateway: Process, alias: str, status: int, code: str) -> None:
    response = _post(gateway, {"model": alias, "messages": HELLO})
    assert response.status_code == status, response.text
    error = _error(response)
    assert error["code"] == code
    assert "sk-upstream-secret-abc123" not in response.text


def test_provider_429_passes_retry_after(gateway: Process) -> None:
    started = time.monotonic()
    response = _post(gateway, {"model": "status-429", "messages": HELLO})
    assert response.status_code == 429
    assert _error(response)["type"] == "rate_limit_error"
    assert response.headers["retry-after"] == "30"
    # A Retry-After longer than max_retry_wait fails over at once instead of sleeping.
    assert time.monotonic() - started < 5


def test_anthropic_429_through_litellm(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="claude-429", messages=HELLO)
    assert caught.value.response.headers.get("retry-after") == "7"


def test_retryable_failures_are_retried(gateway: Process) -> None:
    response = _post(gateway, {"model": "status-500", "messages": HELLO})
    assert response.status_code == 502
    assert response.headers.get("x-gateway-attempts") is None  # errors carry no deployment headers
    stats = httpx.get(f"{gateway.url}/readyz").json()
    assert "status-500#1" not in stats["cooling_down"]  # allowed_fails is huge on this gateway


@pytest.mark.parametrize("alias", ["cut", "cut-litellm"])
def test_stream_cut_ends_with_an_error_event_not_done(gateway: Process, alias: str) -> None:
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", headers=AUTH, timeout=30,
                      json={"model": alias, "stream": True,
                            "messages": [{"role": "user", "content": "one two three four five six seven"}]}) as r:
        assert r.status_code == 200
        body = r.read().decode()
    events = [e for e in body.split("\n\n") if e]
    assert events[-1] != "data: [DONE]"
    assert '"error"' in events[-1]
    assert "upstream_bad_response" in events[-1]


def test_stream_cut_raises_in_the_sdk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="cut", stream=True, messages=[{"role": "user", "content": "one two three four five six"}])
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_stream_fault_before_first_byte_is_a_normal_error(gateway: Process) -> None:
    response = _post(gateway, {"model": "status-503", "stream": True, "messages": HELLO})
    assert response.status_code == 503
    assert _error(response)["code"] == "upstream_unavailable"


def test_secrets_never_reach_logs_or_bodies(gateway: Process) -> None:
    """Runs after the fault tests above: none of them may have logged a credential."""
    for alias in ("status-401", "status-500", "claude-429", "malformed"):
        response = _post(gateway, {"model": alias, "messages": HELLO})
        assert UPSTREAM_KEY not in response.text
        assert MASTER_KEY not in response.text
    logs = gateway.logs()
    assert UPSTREAM_KEY not in logs
    assert MASTER_KEY not in logs
