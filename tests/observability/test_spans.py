"""SpanRecorder: spans as plain data, with the SDK's sampler, id generator, limits and processors."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

from gateway.observability.spans import SpanRecorder

TRACE_ID, PARENT_ID = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331


def _recorder(sampler: Sampler | None = None, limits: SpanLimits | None = None,
              ) -> tuple[SpanRecorder, InMemorySpanExporter]:
    sampler = sampler or ParentBased(ALWAYS_ON)  # the SDK's default
    exporter = InMemorySpanExporter()
    recorder = SpanRecorder(resource=Resource({"service.name": "test"}), sampler=sampler, ids=RandomIdGenerator(),
                            scope=InstrumentationScope("gateway", "1"), processors=[SimpleSpanProcessor(exporter)],
                            limits=limits)
    return recorder, exporter


def _remote(flags: int) -> trace.Context:
    context = SpanContext(TRACE_ID, PARENT_ID, is_remote=True, trace_flags=TraceFlags(flags))
    return trace.set_span_in_context(NonRecordingSpan(context))


def test_a_root_span_and_its_child_are_exported_as_the_sdk_would() -> None:
    recorder, exporter = _recorder()
    server = recorder.start("POST /v1/chat/completions", SpanKind.SERVER, {"http.request.method": "POST"})
    client = recorder.start("chat mock", SpanKind.CLIENT, {"gen_ai.request.model": "mock"}, parent=server)
    client.attributes["gen_ai.usage.input_tokens"] = 3
    recorder.end(client)
    server.add_event("gateway.retry", {"gateway.attempt": 1})
    server.fail("upstream_timeout")
    recorder.end(server)
    child, root = exporter.get_finished_spans()
    assert root.parent is None and root.kind is SpanKind.SERVER
    assert child.parent == root.context and child.context.trace_id == root.context.trace_id
    assert child.context.span_id != root.context.span_id
    assert dict(child.attributes or {}) == {"gen_ai.request.model": "mock", "gen_ai.usage.input_tokens": 3}
    assert [event.name for event in root.events] == ["gateway.retry"]
    assert root.status.status_code is StatusCode.ERROR and root.status.description == "upstream_timeout"
    assert root.resource.attributes["service.name"] == "test"
    assert root.instrumentation_scope is not None and root.instrumentation_scope.name == "gateway"
    assert root.start_time is not None and root.end_time is not None and root.start_time <= root.end_time
    assert root.context.trace_flags.sampled


def test_a_callers_sampled_trace_is_continued() -> None:
    recorder, exporter = _recorder()
    server = recorder.start("POST", SpanKind.SERVER, {}, remote_parent=_remote(0x01))
    recorder.end(server)
    (span,) = exporter.get_finished_spans()
    assert span.context.trace_id == TRACE_ID and span.parent is not None and span.parent.span_id == PARENT_ID


def test_a_callers_unsampled_flag_is_honoured_down_to_the_child() -> None:
    recorder, exporter = _recorder()
    server = recorder.start("POST", SpanKind.SERVER, {}, remote_parent=_remote(0x00))
    client = recorder.start("chat mock", SpanKind.CLIENT, {}, parent=server)
    assert not server.recording and not client.recording
    assert client.context.trace_id == TRACE_ID and not client.context.trace_flags.sampled
    recorder.end(client)
    recorder.end(server)
    assert exporter.get_finished_spans() == ()


def test_the_configured_sampler_decides() -> None:
    recorder, exporter = _recorder(ALWAYS_OFF)
    recorder.end(recorder.start("POST", SpanKind.SERVER, {}))
    assert exporter.get_finished_spans() == ()
    half, exported = _recorder(ParentBased(TraceIdRatioBased(0.5)))
    kept = 0
    for _ in range(400):
        span = half.start("POST", SpanKind.SERVER, {})
        half.end(span)
        kept += span.recording
    assert len(exported.get_finished_spans()) == kept and 120 < kept < 280


def test_a_span_ends_once_and_takes_no_event_after() -> None:
    recorder, exporter = _recorder()
    span = recorder.start("POST", SpanKind.SERVER, {})
    recorder.end(span)
    span.add_event("late", {})
    recorder.end(span)
    (finished,) = exporter.get_finished_spans()
    assert finished.events == ()


def test_span_limits_apply_when_they_are_set() -> None:
    recorder, exporter = _recorder(limits=SpanLimits(max_span_attribute_length=4, max_span_attributes=2))
    recorder.end(recorder.start("POST", SpanKind.SERVER, {"a": "abcdefgh", "b": 1}))
    span = recorder.start("POST", SpanKind.SERVER, {"a": "x", "b": 1})
    span.attributes["c"] = True
    recorder.end(span)
    truncated, counted = exporter.get_finished_spans()
    assert dict(truncated.attributes or {}) == {"a": "abcd", "b": 1}
    assert len(counted.attributes or {}) == 2 and counted.dropped_attributes == 1
    unbounded, exported = _recorder(limits=SpanLimits())
    unbounded.end(unbounded.start("POST", SpanKind.SERVER, {"a": "abcdefgh" * 100}))
    assert dict(exported.get_finished_spans()[0].attributes or {}) == {"a": "abcdefgh" * 100}
