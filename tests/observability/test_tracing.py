"""Spans on an in-memory exporter: the gateway app in process, in front of the real mock upstream.

Each test builds its own app (its own TracerProvider): nothing global is set, so apps never share spans.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.auth import MASTER
from gateway.cache.types import CacheNote
from gateway.config import parse_config
from gateway.limits.types import Decision
from gateway.observability.tracing import RequestTrace, Tracing, tracing_wanted
from gateway.pipeline import RequestContext
from gateway.routing.deployments import build_deployments
from gateway.routing.types import UpstreamCall
from gateway.settings import Settings
from tests.processes import MASTER_KEY, Process

# litellm, imported lazily on the first call through its engine, warns about its own TypedDicts.
pytestmark = pytest.mark.filterwarnings("ignore:Items? .* `ReadOnly` qualifier:UserWarning")

UPSTREAM_KEY = "sk-upstream-secret-trace-0042"
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
HELLO = [{"role": "user", "content": "hello there"}]
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


def _deployment(alias: str, model: str, base: str, **params: Any) -> dict[str, Any]:
    info = params.pop("model_info", {"id": f"{alias}-1"})
    return {"model_name": alias, "litellm_params": {"model": model, "api_base": base, "api_key": UPSTREAM_KEY,
                                                    **params}, "model_info": info}


def _config(mock_url: str, run: str) -> dict[str, Any]:
    v1 = f"{mock_url}/v1"
    return {
        "model_list": [
            _deployment("echo", f"openai/mock+id={run}", v1),
            _deployment("echo-litellm", f"openai/mock+id={run}-litellm", v1, engine="litellm"),
            _deployment("embed", "openai/mock-embed", v1, model_info={"id": "embed-1", "mode": "embedding"}),
            _deployment("retry-once", f"openai/mock+fail_first=1+id={run}-retry", v1),
            _deployment("broken", "openai/mock+status=500", v1),
        ],
        "router_settings": {"num_retries": 2, "allowed_fails": 100000, "cooldown_time": 1},
    }


Client = httpx.AsyncClient


@asynccontextmanager
async def _gateway(tmp_path: Path, mock: Process, exporter: InMemorySpanExporter | None,
                   **settings: Any) -> AsyncIterator[tuple[Client, Any, str]]:
    run = uuid.uuid4().hex[:8]
    path = tmp_path / f"gateway-{run}.yaml"
    path.write_text(yaml.safe_dump(_config(mock.url, run)))
    app = create_app(Settings(config=path, master_key=MASTER_KEY, data_dir=tmp_path / f"data-{run}",
                              config_poll_seconds=0, **settings), span_exporter=exporter)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway.test", timeout=30) as client:
        yield client, app, run


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def gateway(tmp_path: Path, mock_upstream: Process,
                  exporter: InMemorySpanExporter) -> AsyncIterator[tuple[Client, Any, str]]:
    async with _gateway(tmp_path, mock_upstream, exporter) as running:
        yield running


def _spans(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The one server span and its client spans, oldest first."""
    spans = exporter.get_finished_spans()
    servers = [s for s in spans if s.kind == SpanKind.SERVER]
    assert len(servers) == 1, [s.name for s in spans]
    server = servers[0]
    clients = sorted((s for s in spans if s.kind == SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    for client in clients:
        assert client.parent is not None and client.parent.span_id == server.context.span_id
        assert client.context.trace_id == server.context.trace_id
    return server, clients


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _ms(span: ReadableSpan) -> float:
    assert span.start_time is not None and span.end_time is not None
    return (span.end_time - span.start_time) / 1e6


def _server_timing(header: str) -> dict[str, float]:
    timings = {}
    for entry in header.split(","):
        name, *params = entry.strip().split(";")
        timings[name] = next(float(p[4:]) for p in params if p.startswith("dur="))
    return timings


async def _chat(client: Client, alias: str = "echo", headers: dict[str, str] | None = None,
                **body: Any) -> httpx.Response:
    return await client.post("/v1/chat/completions", headers={**AUTH, **(headers or {})},
                             json={"model": alias, "messages": HELLO, **body})


async def test_chat_server_and_client_spans(gateway: tuple[Client, Any, str], exporter: InMemorySpanExporter,
                                            mock_upstream: Process) -> None:
    client, _, run = gateway
    response = await _chat(client, temperature=0.25, top_p=0.5, seed=7, max_tokens=50,
                           headers={"x-request-id": "trace-chat-1"})
    assert response.status_code == 200
    body = response.json()
    server, clients = _spans(exporter)
    assert server.name == "POST /v1/chat/completions"
    attrs = _attrs(server)
    assert attrs["http.request.method"] == "POST"
    assert attrs["url.path"] == "/v1/chat/completions"
    assert attrs["http.route"] == "/v1/chat/completions"
    assert attrs["http.response.status_code"] == 200
    assert attrs["gateway.request_id"] == "trace-chat-1"
    assert attrs["gateway.key.id"] == "master"
    assert attrs["gateway.model_alias"] == "echo"
    assert attrs["gateway.deployment"] == "echo-1"
    assert attrs["gateway.attempts"] == 1
    assert attrs["gateway.stream"] is False
    assert "error.type" not in attrs
    assert server.status.status_code == StatusCode.UNSET

    (upstream,) = clients
    assert upstream.name == f"chat mock+id={run}"
    assert upstream.status.status_code == StatusCode.UNSET
    port = int(mock_upstream.url.rsplit(":", 1)[1])
    assert _attrs(upstream) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": f"mock+id={run}",
        "gen_ai.request.stream": False,
        "gen_ai.request.temperature": 0.25,
        "gen_ai.request.top_p": 0.5,
        "gen_ai.request.seed": 7,
        "gen_ai.request.max_tokens": 50,
        "server.address": "127.0.0.1",
        "server.port": port,
        "gateway.deployment": "echo-1",
        "gateway.attempt": 1,
        "gen_ai.response.model": body["model"],
        "gen_ai.response.id": body["id"],
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": body["usage"]["prompt_tokens"],
        "gen_ai.usage.output_tokens": body["usage"]["completion_tokens"],
    }


async def test_stream_client_span_covers_the_whole_stream(gateway: tuple[Client, Any, str],
                                                          exporter: InMemorySpanExporter) -> None:
    client, _, _ = gateway
    async with client.stream("POST", "/v1/chat/completions", headers=AUTH,
                             json={"model": "echo", "messages": HELLO, "stream": True,
                                   "stream_options": {"include_usage": True}}) as response:
        assert response.status_code == 200
        frames = [line async for line in response.aiter_lines() if line.startswith("data: {")]
    chunks = [orjson.loads(line[6:]) for line in frames]
    usage = next(c["usage"] for c in chunks if c.get("usage"))
    server, (upstream,) = _spans(exporter)
    attrs = _attrs(upstream)
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.response.id"] == chunks[0]["id"]
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attrs["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert 0 < attrs["gen_ai.response.time_to_first_chunk"] <= _ms(upstream) / 1000
    assert _attrs(server)["gateway.stream"] is True
    # The client span ends when the stream is closed, within the server span.
    assert upstream.end_time is not None and server.end_time is not None
    assert upstream.end_time <= server.end_time


async def test_litellm_engine_gets_the_same_client_span(gateway: tuple[Client, Any, str],
                                                        exporter: InMemorySpanExporter) -> None:
    client, _, run = gateway
    response = await _chat(client, alias="echo-litellm", max_tokens=20)
    assert response.status_code == 200
    _, (upstream,) = _spans(exporter)
    attrs = _attrs(upstream)
    assert upstream.name == f"chat mock+id={run}-litellm"
    assert attrs["gen_ai.response.id"] == response.json()["id"]
    assert attrs["gen_ai.usage.output_tokens"] == response.json()["usage"]["completion_tokens"]
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)


async def test_embedding_span(gateway: tuple[Client, Any, str], exporter: InMemorySpanExporter) -> None:
    client, _, _ = gateway
    response = await client.post("/v1/embeddings", headers=AUTH,
                                 json={"model": "embed", "input": "hello", "dimensions": 16})
    assert response.status_code == 200
    server, (upstream,) = _spans(exporter)
    assert server.name == "POST /v1/embeddings"
    assert upstream.name == "embeddings mock-embed"
    attrs = _attrs(upstream)
    assert attrs["gen_ai.operation.name"] == "embeddings"
    assert attrs["gen_ai.embeddings.dimension.count"] == 16
    assert attrs["gen_ai.usage.input_tokens"] == response.json()["usage"]["prompt_tokens"]
    assert "gen_ai.usage.output_tokens" not in attrs
    assert "gen_ai.request.stream" not in attrs


async def test_a_retry_is_an_event_and_each_attempt_a_span(gateway: tuple[Client, Any, str],
                                                           exporter: InMemorySpanExporter) -> None:
    client, _, _ = gateway
    response = await _chat(client, alias="retry-once")
    assert response.status_code == 200
    server, (failed, succeeded) = _spans(exporter)
    assert failed.status.status_code == StatusCode.ERROR
    assert _attrs(failed)["error.type"] == "upstream_error"
    assert _attrs(failed)["gateway.attempt"] == 1
    assert succeeded.status.status_code == StatusCode.UNSET
    assert _attrs(succeeded)["gateway.attempt"] == 2
    assert [e.name for e in server.events] == ["gateway.retry"]
    assert dict(server.events[0].attributes or {}) == {"gateway.deployment": "retry-once-1",
                                                       "error.type": "upstream_error", "gateway.attempt": 1}
    assert _attrs(server)["gateway.attempts"] == 2


async def test_a_failed_request_keeps_its_attempts(gateway: tuple[Client, Any, str],
                                                   exporter: InMemorySpanExporter) -> None:
    client, app, _ = gateway
    response = await _chat(client, alias="broken")
    assert response.status_code == 502
    server, clients = _spans(exporter)
    assert len(clients) == 3
    assert all(_attrs(c)["error.type"] == "upstream_error" for c in clients)
    assert [e.name for e in server.events] == ["gateway.retry", "gateway.retry", "gateway.give_up"]
    attrs = _attrs(server)
    assert attrs["http.response.status_code"] == 502
    assert attrs["error.type"] == "upstream_error"
    assert attrs["gateway.attempts"] == 3
    assert server.status.status_code == StatusCode.ERROR
    # The failed request's events reached the context: metrics count each failed attempt once.
    registry: CollectorRegistry = app.state.metrics.registry
    assert registry.get_sample_value("gateway_upstream_errors_total",
                                     {"deployment": "broken-1", "code": "upstream_error"}) == 3
    assert registry.get_sample_value("gateway_retries_total", {"alias": "broken"}) == 2


async def test_errors_before_routing_have_a_server_span(gateway: tuple[Client, Any, str],
                                                        exporter: InMemorySpanExporter) -> None:
    client, _, _ = gateway
    response = await _chat(client, alias="no-such-model")
    assert response.status_code == 404
    server, clients = _spans(exporter)
    assert clients == []
    assert _attrs(server)["error.type"] == "model_not_found"
    assert _attrs(server)["http.response.status_code"] == 404
    assert server.status.status_code == StatusCode.UNSET  # a client error is not the server's


async def test_traceparent_is_continued_and_propagated(gateway: tuple[Client, Any, str],
                                                       exporter: InMemorySpanExporter,
                                                       mock_upstream: Process) -> None:
    client, _, run = gateway
    response = await _chat(client, headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert response.status_code == 200
    server, (upstream,) = _spans(exporter)
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert server.parent is not None and f"{server.parent.span_id:016x}" == PARENT_ID
    sent = httpx.get(f"{mock_upstream.url}/mock/requests", params={"model": f"mock+id={run}"}).json()["requests"]
    headers = {k.lower(): v for k, v in sent[-1]["headers"].items()}
    assert headers["traceparent"] == f"00-{TRACE_ID}-{upstream.context.span_id:016x}-01"


async def test_litellm_engine_propagates_the_client_span(gateway: tuple[Client, Any, str],
                                                         exporter: InMemorySpanExporter,
                                                         mock_upstream: Process) -> None:
    client, _, run = gateway
    assert (await _chat(client, alias="echo-litellm")).status_code == 200
    _, (upstream,) = _spans(exporter)
    sent = httpx.get(f"{mock_upstream.url}/mock/requests",
                     params={"model": f"mock+id={run}-litellm"}).json()["requests"]
    headers = {k.lower(): v for k, v in sent[-1]["headers"].items()}
    context = upstream.context
    assert headers["traceparent"] == f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


async def test_each_retry_sends_its_own_span_id(gateway: tuple[Client, Any, str], exporter: InMemorySpanExporter,
                                                mock_upstream: Process) -> None:
    client, _, run = gateway
    assert (await _chat(client, alias="retry-once")).status_code == 200
    _, clients = _spans(exporter)
    sent = httpx.get(f"{mock_upstream.url}/mock/requests",
                     params={"model": f"mock+fail_first=1+id={run}-retry"}).json()["requests"]
    parents = [{k.lower(): v for k, v in r["headers"].items()}["traceparent"].split("-")[2] for r in sent]
    assert parents == [f"{c.context.span_id:016x}" for c in clients]


async def test_server_timing_agrees_with_the_spans(gateway: tuple[Client, Any, str],
                                                   exporter: InMemorySpanExporter) -> None:
    client, _, _ = gateway
    await _chat(client)  # warm up
    for alias in ("echo", "retry-once", "echo-litellm"):
        exporter.clear()
        response = await _chat(client, alias=alias)
        assert response.status_code == 200
        timing = _server_timing(response.headers["server-timing"])
        server, clients = _spans(exporter)
        total = timing["gateway"] + timing["upstream"]
        # The header is written just before the body is sent; the span ends just after.
        assert total <= _ms(server) + 0.5
        assert _ms(server) - total < max(3.0, 0.1 * total), (alias, timing, _ms(server))
        upstream = sum(_ms(c) for c in clients)
        assert abs(upstream - timing["upstream"]) < max(1.0, 0.05 * upstream), (alias, timing, upstream)


async def test_no_secret_reaches_a_span(gateway: tuple[Client, Any, str], exporter: InMemorySpanExporter) -> None:
    client, _, _ = gateway
    canary = "sk-gw-CANARY" + "z" * 40
    refused = await _chat(client, headers={"authorization": f"Bearer {canary}"})
    assert refused.status_code == 401
    assert (await _chat(client)).status_code == 200
    assert (await _chat(client, alias="broken")).status_code == 502
    assert (await client.post("/v1/embeddings", headers={"api-key": MASTER_KEY},
                              json={"model": "embed", "input": "x"})).status_code == 200
    spans = exporter.get_finished_spans()
    assert len([s for s in spans if s.kind == SpanKind.SERVER]) == 4
    dumped = "\n".join(s.to_json() for s in spans)
    for secret in (canary, MASTER_KEY, UPSTREAM_KEY, "Bearer", "authorization"):
        assert secret not in dumped


async def test_content_is_captured_only_when_asked(tmp_path: Path, mock_upstream: Process,
                                                   exporter: InMemorySpanExporter) -> None:
    async with _gateway(tmp_path, mock_upstream, exporter) as (client, _, _):
        assert (await _chat(client)).status_code == 200
    _, (upstream,) = _spans(exporter)
    assert not [name for name in _attrs(upstream) if "messages" in name]
    exporter = InMemorySpanExporter()  # an app's shutdown shuts its exporter down
    long = "word " * 40
    async with _gateway(tmp_path, mock_upstream, exporter, trace_content=True,
                        trace_content_max_chars=32) as (client, _, _):
        response = await client.post("/v1/chat/completions", headers=AUTH, json={
            "model": "echo", "messages": [{"role": "system", "content": "be brief"},
                                          {"role": "user", "content": [{"type": "text", "text": long},
                                                                       {"type": "image_url",
                                                                        "image_url": {"url": "data:x"}}]}]})
        assert response.status_code == 200
    _, (upstream,) = _spans(exporter)
    inputs = orjson.loads(_attrs(upstream)["gen_ai.input.messages"])
    assert inputs == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "user", "parts": [{"type": "text", "content": long[:32] + "…[truncated]"},
                                   {"type": "image_url"}]},
    ]
    outputs = orjson.loads(_attrs(upstream)["gen_ai.output.messages"])
    reply = response.json()["choices"][0]["message"]["content"]
    assert outputs == [{"role": "assistant", "finish_reason": "stop",
                        "parts": [{"type": "text", "content": reply[:32] + ("…[truncated]" if len(reply) > 32
                                                                           else "")}]}]


async def test_tracing_off_without_otel_settings(tmp_path: Path, mock_upstream: Process,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    async with _gateway(tmp_path, mock_upstream, None) as (client, app, _):
        assert app.state.tracing is None
        response = await _chat(client)
        assert response.status_code == 200
        assert "server-timing" in response.headers
    # No app ever set the global provider.
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)


async def test_two_apps_keep_their_own_spans(tmp_path: Path, mock_upstream: Process) -> None:
    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    async with _gateway(tmp_path, mock_upstream, first) as (one, _, _), \
            _gateway(tmp_path, mock_upstream, second) as (two, _, _):
        await _chat(one, headers={"x-request-id": "from-one"})
        await _chat(two, headers={"x-request-id": "from-two"})
    assert [_attrs(s)["gateway.request_id"] for s in first.get_finished_spans() if s.kind == SpanKind.SERVER] \
        == ["from-one"]
    assert [_attrs(s)["gateway.request_id"] for s in second.get_finished_spans() if s.kind == SpanKind.SERVER] \
        == ["from-two"]


@pytest.mark.parametrize(("environ", "wanted"), [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
    ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
])
def test_tracing_is_on_only_when_otel_says_so(environ: dict[str, str], wanted: bool) -> None:
    assert tracing_wanted(environ) is wanted
    assert (Tracing.build(Settings(), environ) is not None) is wanted


def test_service_name_defaults_to_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    tracing = Tracing.build(Settings(), {"OTEL_TRACES_EXPORTER": "console"})
    assert tracing is not None
    assert tracing.provider.resource.attributes["service.name"] == "llm-gateway"
    tracing.shutdown()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-eu")
    named = Tracing.build(Settings(), {"OTEL_TRACES_EXPORTER": "console"})
    assert named is not None and named.provider.resource.attributes["service.name"] == "gateway-eu"
    named.shutdown()


def _finish(ctx: RequestContext, status: int, error_code: str | None = None) -> dict[str, Any]:
    exporter = InMemorySpanExporter()
    tracing = Tracing.build(Settings(), {}, exporter)
    assert tracing is not None
    request_trace: RequestTrace = tracing.start_request("POST", "/v1/chat/completions", "/v1/chat/completions",
                                                        "http", [])
    ctx.status, ctx.error_code = status, error_code
    request_trace.finish(ctx, status, None)
    (span,) = exporter.get_finished_spans()
    return _attrs(span)


@pytest.mark.parametrize(("note", "expected"), [
    (CacheNote(outcome="semantic-hit", tier="semantic", similarity=0.93),
     {"gateway.cache.outcome": "semantic-hit", "gateway.cache.tier": "semantic", "gateway.cache.similarity": 0.93}),
    (CacheNote(outcome="hit", tier="exact"), {"gateway.cache.outcome": "hit", "gateway.cache.tier": "exact"}),
    (CacheNote(outcome="miss"), {"gateway.cache.outcome": "miss"}),
])
def test_cache_decision_attributes(note: CacheNote, expected: dict[str, Any]) -> None:
    """The cache stage fills ctx.cache (issue #5); the span reports it as it is."""
    ctx = RequestContext(request_id="r", principal=MASTER, alias="echo", operation="chat", cache=note)
    attrs = _finish(ctx, 200)
    assert {k: v for k, v in attrs.items() if k.startswith("gateway.cache.")} == expected


@pytest.mark.parametrize(("decision", "status", "code", "expected"), [
    (Decision(allowed=True), 200, None, {"gateway.limiter.decision": "allowed"}),
    (Decision(allowed=False, reason="tpm"), 429, "rate_limit_exceeded",
     {"gateway.limiter.decision": "refused", "gateway.limiter.reason": "tpm"}),
    (None, 429, "insufficient_quota", {"gateway.limiter.decision": "refused"}),
    (None, 200, None, {}),
])
def test_limiter_decision_attributes(decision: Decision | None, status: int, code: str | None,
                                     expected: dict[str, Any]) -> None:
    ctx = RequestContext(request_id="r", principal=MASTER, alias="echo", operation="chat", decision=decision,
                         cost_usd=0.0125)
    attrs = _finish(ctx, status, code)
    assert {k: v for k, v in attrs.items() if k.startswith("gateway.limiter.")} == expected
    assert attrs["gateway.cost_usd"] == 0.0125
    if code is not None:
        assert attrs["error.type"] == code


def test_an_attempt_that_fails_after_the_response_is_over_touches_no_ended_span(
        caplog: pytest.LogCaptureFixture) -> None:
    """A client that leaves mid-attempt: the middleware ends the server span, then the router
    reports the cancelled attempt. That must close the client span and add nothing to the ended one."""
    exporter = InMemorySpanExporter()
    tracing = Tracing.build(Settings(), {}, exporter)
    assert tracing is not None
    request_trace = tracing.start_request("POST", "/v1/chat/completions", "/v1/chat/completions", "http", [])
    config = parse_config({"model_list": [_deployment("echo", "openai/mock", "http://127.0.0.1:9/v1")]})
    (deployment,) = build_deployments(config)["echo"]
    request_trace.attempt_started(deployment, UpstreamCall(operation="chat", body={"model": "echo"}))
    request_trace.finish(None, 499, None)
    with caplog.at_level(logging.WARNING):
        request_trace.attempt_failed(deployment, TimeoutError(), "give-up")
    assert "ended span" not in caplog.text
    server = next(s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    assert list(server.events) == []
    tracing.shutdown()
