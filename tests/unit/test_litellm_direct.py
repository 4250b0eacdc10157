"""Parity of the direct translation path with ``litellm.acompletion`` (gateway/routing/litellm_direct.py).

Both paths of the real litellm engine call the real mock upstream (Anthropic Messages) over HTTP; for
every request shape the direct path accepts, the request the provider receives (body and
non-transport headers) and the OpenAI JSON the client gets must be the same, and so must the error
for every failure the provider can answer with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import orjson
import pytest

from gateway.config import parse_config
from gateway.errors import GatewayError, UpstreamUnavailable
from gateway.routing.deployments import Deployment, build_deployments
from gateway.routing.litellm_direct import DirectTranslation
from gateway.routing.litellm_engine import LitellmEngine
from gateway.routing.types import UpstreamCall
from tests.processes import Process

#: Headers that belong to the HTTP client, not to the translation.
TRANSPORT = {"user-agent", "accept-encoding", "connection", "content-length", "host", "accept"}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
HELLO = [{"role": "user", "content": "hello there"}]

BODIES: dict[str, dict[str, Any]] = {
    "text": {"messages": HELLO, "max_tokens": 20},
    "stream false": {"messages": HELLO, "stream": False},
    "system and sampling": {"messages": [{"role": "system", "content": "Be brief."}, *HELLO],
                            "temperature": 0.2, "top_p": 0.9, "stop": ["xyz"], "max_completion_tokens": 30},
    "text parts": {"messages": [{"role": "user", "content": [{"type": "text", "text": "one"},
                                                             {"type": "text", "text": "two"}]}]},
    "tools": {"messages": [{"role": "user", "content": "weather in Paris?"}], "tools": [WEATHER_TOOL],
              "tool_choice": "auto"},
    "forced tool": {"messages": [{"role": "user", "content": "weather in Oslo?"}], "tools": [WEATHER_TOOL],
                    "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
    "tool result turn": {"messages": [
        {"role": "user", "content": "weather in Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "toolu_01", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_01", "content": "sunny, 24 C"}], "tools": [WEATHER_TOOL]},
    "json mode": {"messages": [{"role": "user", "content": "a JSON object please"}],
                  "response_format": {"type": "json_object"}},
}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


def deployment(mock: Process, model: str) -> Deployment:
    config = parse_config({"model_list": [{"model_name": "claude", "litellm_params": {
        "model": f"anthropic/{model}", "api_base": mock.url, "api_key": "sk-upstream-parity"}}]}, environ={})
    return build_deployments(config)["claude"][0]


def anthropic_deployment(model: str = "anthropic/claude-mock") -> Deployment:
    """Nothing listens on its port (9, discard)."""
    config = parse_config({"model_list": [{"model_name": "claude", "litellm_params": {
        "model": model, "api_base": "http://127.0.0.1:9", "api_key": "x"}}]}, environ={})
    return build_deployments(config)["claude"][0]


def last_upstream_request(mock: Process) -> dict[str, Any]:
    entries: list[dict[str, Any]] = httpx.get(f"{mock.url}/mock/requests", params={"limit": 1}).json()["requests"]
    entry = entries[-1]
    headers = {k.lower(): v for k, v in entry["headers"].items() if k.lower() not in TRANSPORT}
    return {"path": entry["path"], "body": entry["body"], "headers": headers}


def comparable(body: bytes) -> dict[str, Any]:
    """The response minus what the mock makes up afresh per request (ids, timestamps)."""
    data: dict[str, Any] = orjson.loads(body)
    data.pop("id"), data.pop("created")
    for choice in data["choices"]:
        for tool_call in choice["message"].get("tool_calls") or []:
            tool_call.pop("id")
    return data


@pytest.mark.parametrize("shape", list(BODIES))
async def test_the_direct_path_sends_and_returns_what_acompletion_does(
        shape: str, mock_upstream: Process, session: aiohttp.ClientSession) -> None:
    body = {"model": "claude", **BODIES[shape]}
    target = deployment(mock_upstream, "claude-mock+tool" if "tool" in shape else "claude-mock")
    call = UpstreamCall(operation="chat", body=body, stream=False, client_wants_usage=False,
                        headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    assert DirectTranslation.handles(target, call)

    via_acompletion = await LitellmEngine().send(target, call)
    sent_by_acompletion = last_upstream_request(mock_upstream)
    direct = await LitellmEngine(session).send(target, call)
    sent_directly = last_upstream_request(mock_upstream)

    assert sent_directly == sent_by_acompletion
    assert sent_directly["headers"]["traceparent"] == call.headers["traceparent"]
    assert comparable(direct.body) == comparable(via_acompletion.body)
    assert (direct.usage, direct.response_model, direct.finish_reasons) == (
        via_acompletion.usage, via_acompletion.response_model, via_acompletion.finish_reasons)
    assert body == {"model": "claude", **BODIES[shape]}, "the client's body was changed"


async def test_the_base_url_from_the_environment_as_acompletion_finds_it(
        mock_upstream: Process, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", mock_upstream.url)
    config = parse_config({"model_list": [{"model_name": "claude", "litellm_params": {
        "model": "anthropic/claude-mock", "api_key": "x"}}]}, environ={})
    target = build_deployments(config)["claude"][0]
    assert target.api_base is None
    call = UpstreamCall(operation="chat", body={"model": "claude", "messages": HELLO})
    via_acompletion = await LitellmEngine().send(target, call)
    direct = await LitellmEngine(session).send(target, call)
    assert comparable(direct.body) == comparable(via_acompletion.body)
    assert last_upstream_request(mock_upstream)["path"] == "/v1/messages"


def test_a_base_url_without_the_route_suffix_stays_on_acompletion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_ANTHROPIC_DISABLE_URL_SUFFIX", "true")
    call = UpstreamCall(operation="chat", body={"model": "claude", "messages": HELLO})
    assert not DirectTranslation.handles(anthropic_deployment(), call)


async def failures_both_ways(target: Deployment, call: UpstreamCall, session: aiohttp.ClientSession
                             ) -> tuple[GatewayError, GatewayError]:
    """The error each path raises for ``call``: through acompletion, then direct."""
    errors: list[GatewayError] = []
    for engine in (LitellmEngine(), LitellmEngine(session)):
        with pytest.raises(GatewayError) as raised:
            await engine.send(target, call)
        errors.append(raised.value)
    return errors[0], errors[1]


@pytest.mark.parametrize("model", ["claude-mock+status=400", "claude-mock+status=401", "claude-mock+status=404",
                                   "claude-mock+status=429+retry_after=7", "claude-mock+status=500",
                                   "claude-mock+status=529", "claude-mock+context=5"])
async def test_failures_are_the_same_errors(model: str, mock_upstream: Process,
                                            session: aiohttp.ClientSession) -> None:
    target = deployment(mock_upstream, model)
    call = UpstreamCall(operation="chat", body={"model": "claude", "messages": [
        {"role": "user", "content": "a prompt that is longer than five tokens, surely"}]}, stream=False,
        client_wants_usage=False)
    via_acompletion, direct = await failures_both_ways(target, call, session)
    assert type(direct) is type(via_acompletion)
    assert (direct.status, direct.code, direct.retry_after) == (
        via_acompletion.status, via_acompletion.code, via_acompletion.retry_after)
    assert "sk-upstream-parity" not in str(direct)


async def test_an_unreachable_provider_fails_over_on_both_paths(session: aiohttp.ClientSession) -> None:
    """The one difference: acompletion reports a refused connection as the provider's HTTP 500 (502
    here); the direct path says what happened, 503 "cannot connect", as the native engine does."""
    target = anthropic_deployment()
    call = UpstreamCall(operation="chat", body={"model": "claude", "messages": HELLO}, stream=False,
                        client_wants_usage=False)
    via_acompletion, direct = await failures_both_ways(target, call, session)
    assert isinstance(direct, UpstreamUnavailable) and "cannot connect" in direct.message
    assert via_acompletion.status == 502
    assert all(error.retryable and error.deployment_fault for error in (via_acompletion, direct))


@pytest.mark.parametrize("body", [
    {"model": "claude", "messages": HELLO, "stream": True},
    {"model": "claude", "messages": HELLO, "user": "u-1"},
    {"model": "claude", "messages": HELLO, "metadata": {"a": "b"}},
    {"model": "claude", "messages": HELLO, "n": 1},
    {"model": "claude", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]},
    {"model": "claude", "messages": [{"role": "function", "name": "f", "content": "x"}]},
    {"model": "claude", "messages": "not a list"},
])
def test_anything_else_goes_through_acompletion(body: dict[str, Any]) -> None:
    call = UpstreamCall(operation="chat", body=body, stream=body.get("stream") is True)
    assert not DirectTranslation.handles(anthropic_deployment(), call)


def test_other_providers_and_operations_go_through_acompletion() -> None:
    body = {"model": "m", "messages": HELLO}
    assert DirectTranslation.handles(anthropic_deployment(), UpstreamCall(operation="chat", body=body))
    assert not DirectTranslation.handles(anthropic_deployment("bedrock/anthropic.claude-v2"),
                                         UpstreamCall(operation="chat", body=body))
    assert not DirectTranslation.handles(anthropic_deployment(),
                                         UpstreamCall(operation="completion", body={"model": "m", "prompt": "x"}))
