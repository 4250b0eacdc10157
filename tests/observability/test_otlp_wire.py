"""gateway.observability.otlp_wire writes exactly the bytes the SDK's OTLP encoder writes, for any span
the SDK can produce, and its exporter delivers them over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.trace.span import TraceState

from gateway.observability.otlp_wire import WireSpanExporter, encode_spans
from tests.otlp_receiver import Receiver

text = st.text(max_size=12)
scalar = st.one_of(text, st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False))
attribute_value = st.one_of(scalar, st.lists(text, max_size=3), st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3),
                            st.lists(st.floats(allow_nan=False), max_size=3), st.lists(st.booleans(), max_size=3))
attributes = st.dictionaries(text, attribute_value, max_size=6)
span_ids = st.integers(1, 2**64 - 1)
trace_ids = st.integers(1, 2**128 - 1)


@st.composite
def remote_contexts(draw: st.DrawFn) -> SpanContext:
    state = draw(st.dictionaries(st.from_regex(r"\A[a-z][a-z0-9_\-]{0,8}\Z"), st.from_regex(r"\A[a-z0-9]{1,8}\Z"),
                                 max_size=2))
    flags = TraceFlags(draw(st.sampled_from([0, 1])))
    return SpanContext(draw(trace_ids), draw(span_ids), is_remote=draw(st.booleans()), trace_flags=flags,
                       trace_state=TraceState(list(state.items())))


@st.composite
def span_recipes(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "name": draw(text),
        "kind": draw(st.sampled_from(list(SpanKind))),
        "attributes": draw(attributes),
        "parent": draw(st.none() | remote_contexts()),
        "events": draw(st.lists(st.tuples(text, attributes), max_size=2)),
        "links": draw(st.lists(st.tuples(remote_contexts(), attributes), max_size=2)),
        "status": draw(st.sampled_from([None, (StatusCode.OK, None), (StatusCode.ERROR, "boom"),
                                        (StatusCode.ERROR, None)])),
        "scope": draw(st.sampled_from(["gateway", "other"])),
    }


def _recipe(**overrides: Any) -> dict[str, Any]:
    """One plain client span's recipe for _spans_from, with ``overrides``."""
    return {"name": "s", "kind": SpanKind.CLIENT, "attributes": {}, "parent": None, "events": [], "links": [],
            "status": None, "scope": "gateway", **overrides}


def _spans_from(recipes: list[dict[str, Any]], resource: Resource) -> tuple[ReadableSpan, ...]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for recipe in recipes:
        tracer = provider.get_tracer(recipe["scope"], "1.2.3" if recipe["scope"] == "gateway" else None)
        parent = recipe["parent"]
        context = set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
        span = tracer.start_span(recipe["name"], context=context, kind=recipe["kind"],
                                 attributes=recipe["attributes"],
                                 links=[Link(c, a) for c, a in recipe["links"]])
        for name, event_attributes in recipe["events"]:
            span.add_event(name, event_attributes)
        if recipe["status"] is not None:
            span.set_status(Status(*recipe["status"]))
        span.end()
    provider.shutdown()
    return exporter.get_finished_spans()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(span_recipes(), min_size=1, max_size=4), attributes)
def test_same_bytes_as_the_sdk_encoder(recipes: list[dict[str, Any]], resource_attributes: dict[str, Any]) -> None:
    spans = _spans_from(recipes, Resource.create({**resource_attributes, "service.name": "t"}))
    assert encode_spans(spans) == sdk_encode_spans(spans).SerializePartialToString()


def test_values_repeated_across_a_batch_are_encoded_as_the_sdk_does() -> None:
    """The encoder reuses a batch's repeated attributes: equal values of other types (True, 1, 1.0),
    the same pair in events and links, and more distinct values than it keeps must not mix."""
    shared = {"k": True, "n": 1, "f": 1.0, "s": "1", "t": ("1",)}
    twins = [{"k": 1, "n": True, "f": 1, "s": "1", "t": ("1",)}, shared]
    recipes = [_recipe(attributes=attrs, events=[("e", attrs)], links=[(_remote(), attrs)]) for attrs in twins * 3]
    recipes += [_recipe(attributes={"id": f"value-{index}", "n": index}) for index in range(5000)]
    spans = _spans_from(recipes, Resource.create({"k": True, "service.name": "t"}))
    assert encode_spans(spans) == sdk_encode_spans(spans).SerializePartialToString()


def _remote() -> SpanContext:
    return SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True)


def test_a_value_the_encoders_cannot_write_is_left_out_by_both() -> None:
    (span,) = _spans_from([_recipe(attributes={"ok": 1})], Resource.create({}))
    context = span.get_span_context()
    assert context is not None
    # Not through the SDK's Span, which would refuse these values when they are set.
    unencodable: dict[str, Any] = {"too.big": 2**70, "fine": "yes", "object": object()}
    odd = ReadableSpan(name="odd", context=context, resource=span.resource, attributes=unencodable,
                       instrumentation_scope=InstrumentationScope("gateway"), start_time=1, end_time=2)
    ours = encode_spans([odd])
    assert ours == sdk_encode_spans([odd]).SerializePartialToString()
    decoded = ExportTraceServiceRequest.FromString(ours)
    kept = decoded.resource_spans[0].scope_spans[0].spans[0].attributes
    assert [kv.key for kv in kept] == ["fine"]


def test_an_empty_batch_is_an_empty_request() -> None:
    assert encode_spans([]) == b""
    assert ExportTraceServiceRequest.FromString(b"") == ExportTraceServiceRequest()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_the_exporter_posts_the_encoded_batch(receiver: Receiver, compression: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", compression)
    spans = _spans_from([_recipe(name="chat gpt-4o-mini", attributes={"gen_ai.request.model": "m"})],
                        Resource.create({"service.name": "t"}))
    exporter = WireSpanExporter(endpoint=f"{receiver.url}/v1/traces")  # any other path is answered 404
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert receiver.raw == [sdk_encode_spans(spans).SerializePartialToString()]
    exporter.shutdown()  # type: ignore[no-untyped-call]
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert len(receiver.raw) == 1


def test_the_exporter_reports_a_refused_batch(receiver: Receiver) -> None:
    spans = _spans_from([_recipe()], Resource.create({}))
    exporter = WireSpanExporter(endpoint=f"{receiver.url}/v1/traces", max_request_size=10)
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert receiver.raw == []
    unreachable = WireSpanExporter(endpoint="http://127.0.0.1:9/v1/traces", timeout=0.5)
    assert unreachable.export(spans) is SpanExportResult.FAILURE
