"""bench/otlp_encoding.py's spans are the gateway's real ones, and both encoders agree on them."""

from __future__ import annotations

import sys
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.trace import SpanKind

from gateway.observability.otlp_wire import encode_spans

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import otlp_encoding


def test_the_benchmarked_batch_is_a_server_and_a_client_span_per_request_encoded_alike() -> None:
    spans = otlp_encoding.traced_requests(3)
    assert [span.kind for span in spans].count(SpanKind.SERVER) == 3
    assert [span.kind for span in spans].count(SpanKind.CLIENT) == 3
    client = next(span for span in spans if span.kind is SpanKind.CLIENT)
    assert client.attributes is not None and client.attributes["gen_ai.usage.output_tokens"] == 17
    assert encode_spans(spans) == sdk_encode_spans(spans).SerializePartialToString()
