"""Finished spans → the bytes of an OTLP ``ExportTraceServiceRequest``, written straight to the protobuf
wire format.

The OTLP exporter's own encoder builds a protobuf object per span, attribute and value, and hashes the
resource (a JSON dump) once per span: x4.3 the time per span of ours that this takes (bench/otlp_encoding.py),
on the exporter's thread but holding the GIL; it was the largest single cost of a traced request
(docs/tracing.md, "Cost"). This is held to the official encoder byte for byte:
tests/observability/test_otlp_wire.py compares the two on generated spans, so a field the SDK adds one
day fails a test rather than going missing.

``WireSpanExporter`` is the SDK's OTLP/HTTP exporter (endpoint, headers, compression, timeout and
retries from ``OTEL_EXPORTER_OTLP_*``) with this encoding in place of its own.

Field numbers: opentelemetry/proto/{collector/trace,trace,common,resource}/v1/*.proto.
"""

from __future__ import annotations

import functools
import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind

log = logging.getLogger("gateway.tracing")

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_SMALL = [bytes((n,)) for n in range(128)]
_DOUBLE = struct.Struct("<d").pack
_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack
_KIND = {SpanKind.INTERNAL: b"\x30\x01", SpanKind.SERVER: b"\x30\x02", SpanKind.CLIENT: b"\x30\x03",
         SpanKind.PRODUCER: b"\x30\x04", SpanKind.CONSUMER: b"\x30\x05"}
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200  # SpanFlags


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (a string, bytes or a sub-message)."""
    return tag + _varint(len(payload)) + payload


def _string(tag: bytes, value: str | None) -> bytes:
    """A proto3 string field: absent when empty."""
    return _field(tag, value.encode()) if value else b""


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` message's body (the oneof member is written even when it holds its default)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"{value} does not fit an int64")
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # negative: ten bytes of two's complement
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(each)) for each in value))
    if isinstance(value, Mapping):
        return _field(b"\x32", b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    return _key(key) + _field(b"\x12", _any_value(value))


@functools.lru_cache(maxsize=1024)
def _key(key: str) -> bytes:
    """A ``KeyValue``'s key field: attribute names repeat in every span."""
    return _string(b"\x0a", key)


def _attribute(tag: bytes, key: str, value: Any) -> bytes:
    """One repeated ``KeyValue`` field (``_field(tag, _key_value(key, value))`` with the calls unrolled:
    it runs for every attribute of every span)."""
    any_value = _any_value(value)
    body = _key(key) + b"\x12" + _varint(len(any_value)) + any_value
    return tag + _varint(len(body)) + body


#: Encoded attributes of one batch, by (tag, key, type, value), for values that are a short string, a
#: bool or an int: most of a span's attributes (method, route, model, deployment, key, status, token
#: counts) repeat from request to request. Emptied when full, so unique values (ids) cannot grow it.
Memo = dict[tuple[bytes, str, type, Any], bytes]
_MEMO_ENTRIES = 4096
_MEMO_MAX_CHARS = 128


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None, memo: Memo) -> bytes:
    """Repeated ``KeyValue`` fields; one that cannot be encoded is logged and left out, as the SDK's
    encoder does."""
    if not attributes:
        return b""
    parts = []
    for key, value in attributes.items():
        kind = type(value)
        memo_key = (tag, key, kind, value) if (
            kind is bool or kind is int or (kind is str and len(value) <= _MEMO_MAX_CHARS)) else None
        encoded = memo.get(memo_key) if memo_key is not None else None
        if encoded is None:
            try:
                encoded = _attribute(tag, key, value)
            except Exception as error:
                log.error("Failed to encode key %s: %s", key, error)
                continue
            if memo_key is not None:
                if len(memo) >= _MEMO_ENTRIES:
                    memo.clear()
                memo[memo_key] = encoded
        parts.append(encoded)
    return b"".join(parts)


def _uint(tag: bytes, value: int) -> bytes:
    return tag + _varint(value) if value else b""


def _flags(context: SpanContext | None) -> bytes:
    flags = _HAS_IS_REMOTE | (_IS_REMOTE if context is not None and context.is_remote else 0)
    return _FIXED32(flags)


def _event(event: Event, memo: Memo) -> bytes:
    return b"".join((
        b"\x09" + _FIXED64(event.timestamp) if event.timestamp else b"",
        _string(b"\x12", event.name),
        _attributes(b"\x1a", event.attributes, memo),
        _uint(b"\x20", event.dropped_attributes),
    ))


def _link(link: Link, memo: Memo) -> bytes:
    context = link.context
    return b"".join((
        _field(b"\x0a", context.trace_id.to_bytes(16, "big")),
        _field(b"\x12", context.span_id.to_bytes(8, "big")),
        _attributes(b"\x22", link.attributes, memo),
        _uint(b"\x28", link.dropped_attributes),
        b"\x35" + _flags(context),
    ))


def _span(span: ReadableSpan, memo: Memo) -> bytes:
    context = span.get_span_context()
    assert context is not None, "a finished SDK span has a context"
    parent = span.parent
    trace_state = context.trace_state
    status = span.status
    parts = [
        _field(b"\x0a", context.trace_id.to_bytes(16, "big")),
        _field(b"\x12", context.span_id.to_bytes(8, "big")),
        _string(b"\x1a", ",".join(f"{k}={v}" for k, v in trace_state.items()) if trace_state else None),
        _field(b"\x22", parent.span_id.to_bytes(8, "big")) if parent else b"",
        _string(b"\x2a", span.name),
        _KIND[span.kind],
        b"\x39" + _FIXED64(span.start_time) if span.start_time else b"",
        b"\x41" + _FIXED64(span.end_time) if span.end_time else b"",
        _attributes(b"\x4a", span.attributes, memo),
        _uint(b"\x50", span.dropped_attributes),
        b"".join(_field(b"\x5a", _event(event, memo)) for event in span.events),
        _uint(b"\x60", span.dropped_events),
        b"".join(_field(b"\x6a", _link(link, memo)) for link in span.links),
        _uint(b"\x70", span.dropped_links),
        _field(b"\x7a", _string(b"\x12", status.description) + _uint(b"\x18", status.status_code.value)),
        b"\x85\x01" + _flags(parent),
    ]
    return b"".join(parts)


def _scope(scope: InstrumentationScope | None, memo: Memo) -> bytes:
    if scope is None:
        return b""
    return _string(b"\x0a", scope.name) + _string(b"\x12", scope.version) + _attributes(b"\x1a", scope.attributes, memo)


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` for ``spans``, grouped by resource, then scope."""
    # Grouped by the resource object, not its value: a provider's spans share one, and hashing a
    # Resource dumps its attributes to JSON.
    by_resource: dict[int, tuple[Any, dict[InstrumentationScope | None, list[bytes]]]] = {}
    memo: Memo = {}
    for span in spans:
        resource = span.resource
        entry = by_resource.get(id(resource))
        if entry is None:
            entry = by_resource[id(resource)] = (resource, {})
        entry[1].setdefault(span.instrumentation_scope or None, []).append(_field(b"\x12", _span(span, memo)))
    out = []
    for resource, scopes in by_resource.values():
        scope_spans = b"".join(
            _field(b"\x12", b"".join((
                _field(b"\x0a", _scope(scope, memo)),
                *encoded,
                _string(b"\x1a", scope.schema_url if scope else None),
            )))
            for scope, encoded in scopes.items()
        )
        resource_body = _attributes(b"\x0a", resource.attributes, memo)
        schema_url = _string(b"\x1a", resource.schema_url)
        out.append(_field(b"\x0a", _field(b"\x0a", resource_body) + scope_spans + schema_url))
    return b"".join(out)


class WireSpanExporter(OTLPSpanExporter):
    """OTLPSpanExporter whose batches are encoded by ``encode_spans`` above.

    Only ``export`` differs: it hands the bytes to the exporter's HTTP client (``_client``) as the SDK's
    own ``export`` does; tests/observability/test_otlp_wire.py sends a batch through it to a real HTTP
    sink, so an SDK upgrade that moves that client fails a test.
    """

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            log.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        try:
            data = encode_spans(spans)
        except Exception:
            log.exception("Failed to encode span batch")
            return SpanExportResult.FAILURE
        if 0 < self._max_request_size < len(data):  # 0 or less: no limit, as in the SDK
            log.warning("Dropping span batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                        len(data), self._max_request_size)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if self._client.export(data).success else SpanExportResult.FAILURE
