"""Spans recorded as plain data and handed to the SDK's span processors once, when they end.

A request's two spans are fully known only at its end, and only this request's task touches them, so
the SDK's live ``Span`` (a lock per attribute write, every value re-validated into BoundedAttributes,
a Context per parent) buys the gateway nothing but its cost: ~45 µs of a ~55 µs traced request in a
loop, and about a sixth of the gateway's CPU per request under load (docs/tracing.md, "Recording").

What the SDK's Tracer decides is still decided by the SDK's parts: ids by the provider's id generator,
sampling by its sampler (``OTEL_TRACES_SAMPLER``, a caller's sampled flag), the resource and the
processors and exporters are the provider's and ours as before. A finished span is the SDK's own
``ReadableSpan``, so the exporters (the OTLP wire encoder, the console and in-memory exporters) see
what they always saw. Attribute values are typed by construction here (str, bool, int, float, tuples
of str); span limits from ``OTEL_SPAN_ATTRIBUTE_*`` are applied when they are set.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, SpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

_UNSET = Status(StatusCode.UNSET)
_SAMPLED, _NOT_SAMPLED = TraceFlags(TraceFlags.SAMPLED), TraceFlags(TraceFlags.DEFAULT)
#: More attributes than any span of ours carries: below this, the count limit cannot bind.
_MOST_ATTRIBUTES = 64


class OpenSpan:
    """A span between its start and its end: mutable, owned by one request."""

    __slots__ = ("_child_parent", "attributes", "context", "ended", "events", "kind", "name", "parent",
                 "recording", "start_ns", "status")

    def __init__(self, name: str, kind: SpanKind, context: SpanContext, parent: SpanContext | None,
                 attributes: dict[str, Any], recording: bool) -> None:
        self.name = name
        self.kind = kind
        self.context = context
        self.parent = parent
        self.attributes = attributes
        self.recording = recording
        self.start_ns = time.time_ns()
        self.events: list[Event] = []
        self.status = _UNSET
        self.ended = False
        self._child_parent: Context | None = None

    def as_parent(self) -> Context:
        """This span as a sampler sees a parent (built once per span, and only for a child)."""
        if self._child_parent is None:
            self._child_parent = trace.set_span_in_context(NonRecordingSpan(self.context))
        return self._child_parent

    def add_event(self, name: str, attributes: dict[str, Any]) -> None:
        if self.recording and not self.ended:
            self.events.append(Event(name, attributes))

    def fail(self, description: str | None) -> None:
        self.status = Status(StatusCode.ERROR, description)


class SpanRecorder:
    """Starts spans with the provider's ids and sampler; ends them into the given processors."""

    def __init__(self, *, resource: Resource, sampler: Sampler, ids: IdGenerator, scope: InstrumentationScope,
                 processors: Sequence[SpanProcessor], limits: SpanLimits | None = None) -> None:
        self._resource = resource
        self._sampler = sampler
        self._ids = ids
        self._scope = scope
        self._processors = tuple(processors)
        limits = limits or SpanLimits()
        binding = limits.max_span_attribute_length is not None or (
            limits.max_span_attributes is not None and limits.max_span_attributes < _MOST_ATTRIBUTES)
        self._limits = limits if binding else None

    def start(self, name: str, kind: SpanKind, attributes: dict[str, Any], *,
              remote_parent: Context | None = None, parent: OpenSpan | None = None) -> OpenSpan:
        """A span under ``parent`` (one of ours), or under the caller's context ``remote_parent`` (from
        its ``traceparent``), or the root of a new trace."""
        if parent is not None:
            parent_context: SpanContext | None = parent.context
            sampler_context: Context | None = parent.as_parent()
        else:
            parent_context = trace.get_current_span(remote_parent).get_span_context() if remote_parent else None
            sampler_context = remote_parent
        if parent_context is not None and not parent_context.is_valid:
            parent_context = None
        trace_id = parent_context.trace_id if parent_context is not None else self._ids.generate_trace_id()
        sampled = self._sampler.should_sample(sampler_context, trace_id, name, kind, attributes)
        context = SpanContext(trace_id, self._ids.generate_span_id(), is_remote=False,
                              trace_flags=_SAMPLED if sampled.decision is Decision.RECORD_AND_SAMPLE else _NOT_SAMPLED,
                              trace_state=sampled.trace_state)
        return OpenSpan(name, kind, context, parent_context, dict(sampled.attributes),
                        sampled.decision is not Decision.DROP)

    def end(self, span: OpenSpan) -> None:
        """Ends ``span`` once (later calls do nothing) and hands it to the processors if it records."""
        if span.ended:
            return
        span.ended = True
        if not span.recording:
            return
        attributes: Any = span.attributes
        if self._limits is not None:
            attributes = BoundedAttributes(self._limits.max_span_attributes, attributes, immutable=True,
                                           max_value_len=self._limits.max_span_attribute_length)
        finished = ReadableSpan(span.name, span.context, span.parent, self._resource, attributes, span.events,
                                (), span.kind, None, span.status, span.start_ns, time.time_ns(),
                                instrumentation_scope=self._scope)
        for processor in self._processors:
            processor.on_end(finished)
