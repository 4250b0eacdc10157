"""The real gateway process exports real spans over OTLP/HTTP to a receiver (tests/otlp_receiver.py), configured
only by OTEL_* variables; the batch processor holds them until shutdown, which must flush them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.e2e.conftest import UPSTREAM_KEY, deployment
from tests.otlp_receiver import Receiver, attribute_value
from tests.processes import MASTER_KEY, Process, start_gateway

pytestmark = pytest.mark.e2e

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
CANARY = "sk-gw-CANARY" + "e" * 40


def _attrs(span: Span) -> dict[str, Any]:
    return {kv.key: attribute_value(kv.value) for kv in span.attributes}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture(scope="module")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def traced(workdir: Path, mock_upstream: Process, receiver: Receiver, run_id: str) -> Iterator[Process]:
    v1 = f"{mock_upstream.url}/v1"
    config = {"model_list": [deployment("echo", f"openai/mock+id=otlp-{run_id}", v1, model_info={"id": "echo-1"}),
                             deployment("retry-once", f"openai/mock+fail_first=1+id=otlp-{run_id}", v1)],
              "router_settings": {"num_retries": 1}}
    process = start_gateway(workdir, config, env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        # Nothing is exported until shutdown: the spans below arrive only if shutdown flushes them.
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
        "OTEL_SERVICE_NAME": "",
        "OTEL_SDK_DISABLED": "false",
        "OTEL_TRACES_EXPORTER": "",
        "GATEWAY_LOG_FORMAT": "json",
    })
    yield process
    process.stop()


def test_spans_reach_an_otlp_receiver_and_logs_are_json(traced: Process, receiver: Receiver,
                                                        mock_upstream: Process, run_id: str) -> None:
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    chat = {"model": "echo", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 30}
    continued = httpx.post(f"{traced.url}/v1/chat/completions", json=chat, timeout=30, headers={
        **auth, "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "x-request-id": f"otlp-{run_id}"})
    assert continued.status_code == 200
    sent = httpx.get(f"{mock_upstream.url}/mock/requests", params={"model": f"mock+id=otlp-{run_id}"}).json()
    upstream_traceparent = {k.lower(): v for k, v in sent["requests"][-1]["headers"].items()}["traceparent"]
    retried = httpx.post(f"{traced.url}/v1/chat/completions", json={**chat, "model": "retry-once"}, timeout=30,
                         headers=auth)
    assert retried.status_code == 200
    refused = httpx.post(f"{traced.url}/v1/chat/completions", json=chat, timeout=30,
                         headers={"authorization": f"Bearer {CANARY}"})
    assert refused.status_code == 401
    created = httpx.post(f"{traced.url}/admin/keys", headers=auth, json={"alias": "tracer", "team": "obs"},
                         timeout=30).json()
    virtual = httpx.post(f"{traced.url}/v1/chat/completions", json=chat, timeout=30,
                         headers={"authorization": f"Bearer {created['key']}"})
    assert virtual.status_code == 200
    time.sleep(0.5)
    assert receiver.requests == [], "the batch processor exported before shutdown; the flush is not tested"

    traced.stop()
    spans = receiver.spans()
    assert spans, "no span reached the receiver"
    assert {resource["service.name"] for resource, _ in spans} == {"llm-gateway"}
    by_trace: dict[str, list[Span]] = {}
    for _, span in spans:
        by_trace.setdefault(span.trace_id.hex(), []).append(span)

    server, client = sorted(by_trace[TRACE_ID], key=lambda s: s.kind)  # SERVER=2 < CLIENT=3
    assert server.kind == Span.SPAN_KIND_SERVER and server.parent_span_id.hex() == PARENT_ID
    assert server.name == "POST /v1/chat/completions"
    assert _attrs(server)["gateway.request_id"] == f"otlp-{run_id}"
    assert client.kind == Span.SPAN_KIND_CLIENT and client.parent_span_id == server.span_id
    assert client.name == f"chat mock+id=otlp-{run_id}"
    body = continued.json()
    assert _attrs(client)["gen_ai.request.max_tokens"] == 30
    assert _attrs(client)["gen_ai.response.id"] == body["id"]
    assert _attrs(client)["gen_ai.usage.output_tokens"] == body["usage"]["completion_tokens"]
    assert upstream_traceparent.split("-")[1:3] == [TRACE_ID, client.span_id.hex()]

    retried_trace = next(t for t, group in by_trace.items()
                         if any(_attrs(s).get("gateway.model_alias") == "retry-once" for s in group))
    retried_server = next(s for s in by_trace[retried_trace] if s.kind == Span.SPAN_KIND_SERVER)
    assert [e.name for e in retried_server.events] == ["gateway.retry"]
    assert len([s for s in by_trace[retried_trace] if s.kind == Span.SPAN_KIND_CLIENT]) == 2

    keyed = next(s for _, s in spans if _attrs(s).get("gateway.key.alias") == "tracer")
    assert _attrs(keyed)["gateway.key.id"] == created["id"]
    assert _attrs(keyed)["gateway.team"] == "obs"

    exported = b"".join(receiver.raw)
    for secret in (CANARY, MASTER_KEY, UPSTREAM_KEY, created["key"]):
        assert secret.encode() not in exported

    logs = traced.logs()
    for secret in (CANARY, MASTER_KEY, UPSTREAM_KEY, created["key"]):
        assert secret not in logs
    lines = [orjson.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any("Application startup complete" in line["msg"] for line in lines)  # uvicorn's, in JSON
    access = [line for line in lines if line["logger"] == "gateway.access"]
    assert [line["status"] for line in access if line["path"] == "/v1/chat/completions"] == [200, 200, 401, 200]
    assert next(line for line in access if line.get("key_alias") == "tracer")["team"] == "obs"
    first = next(line for line in access if line.get("request_id") == f"otlp-{run_id}")
    assert first["trace_id"] == TRACE_ID
    assert first["span_id"] == server.span_id.hex()
    assert first["deployment"] == "echo-1"
    assert first["completion_tokens"] == body["usage"]["completion_tokens"]
    # uvicorn's own access line ('127.0.0.1:5123 - "POST /v1/... HTTP/1.1" 200') would repeat ours.
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]
    assert "HTTP/1.1" not in logs
