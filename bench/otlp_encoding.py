"""OTLP encoding of the gateway's own spans: the SDK's encoder against gateway/observability/otlp_wire.py.

    .venv/bin/python bench/otlp_encoding.py                 # 512-span batches, best of 15
    .venv/bin/python bench/otlp_encoding.py --batch 64 --repeat 30

The spans are what a traced chat request leaves (a server span and a client span, with the gateway's
attributes), made by the gateway's own RequestTrace; both encoders get the same batch, and the table
says whether their bytes are equal (they must be).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

from gateway.auth import Principal
from gateway.config import LitellmParams
from gateway.observability.otlp_wire import encode_spans
from gateway.observability.tracing import Tracing
from gateway.pipeline import RequestContext
from gateway.routing.deployments import Deployment
from gateway.routing.types import UpstreamCall, UpstreamResponse, Usage
from gateway.settings import Settings


def traced_requests(count: int) -> Sequence[ReadableSpan]:
    exporter = InMemorySpanExporter()
    tracing = Tracing.build(Settings(), environ={}, exporter=exporter)
    assert tracing is not None
    deployment = Deployment(id="bench/0", alias="bench", provider="openai", engine="native",
                            upstream_model="gpt-4o-mini", litellm_model="openai/gpt-4o-mini",
                            api_base="http://127.0.0.1:9000/v1", api_key=SecretStr("sk-not-used"), timeout=30,
                            stream_timeout=30, weight=1, mode=None,
                            params=LitellmParams(model="openai/gpt-4o-mini"))
    principal = Principal(key_id="key_0123456789", alias="bench-key", role="user", team="bench-team")
    for index in range(count):
        trace = tracing.start_request("POST", "/v1/chat/completions", "/v1/chat/completions", "http", [])
        call = UpstreamCall(operation="chat", body={"model": "bench", "messages": [], "max_tokens": 64,
                                                    "temperature": 0.2}, stream=False, client_wants_usage=False,
                            request_id=f"req_{index:032x}")
        trace.attempt_started(deployment, call)
        trace.attempt_succeeded(deployment, UpstreamResponse(
            body=b"{}", usage=Usage(prompt_tokens=42, completion_tokens=17), response_model="gpt-4o-mini-2024-07-18",
            response_id=f"chatcmpl-{index}", finish_reasons=("stop",)))
        ctx = RequestContext(request_id=f"req_{index:032x}", principal=principal, alias="bench",
                             deployment=deployment, attempts=1, cost_usd=0.0000165, operation="chat")
        trace.finish(ctx, 200, None, "/v1/chat/completions")
    tracing.shutdown()
    return exporter.get_finished_spans()


def best_of(repeat: int, encode: Callable[[], bytes]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        encode()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=512, help="spans per batch (the batch processor's default)")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    spans = traced_requests((args.batch + 1) // 2)[:args.batch]
    sdk = sdk_encode_spans(spans).SerializePartialToString()
    ours = encode_spans(spans)
    timings = {
        "SDK encoder (`encode_spans(...).SerializePartialToString()`)":
            best_of(args.repeat, lambda: sdk_encode_spans(spans).SerializePartialToString()),
        "gateway (`otlp_wire.encode_spans`)": best_of(args.repeat, lambda: encode_spans(spans)),
    }
    print(f"#### OTLP encoding, batches of {len(spans)} gateway spans (best of {args.repeat})\n")
    print("| encoder | µs per span | batch ms |\n|---|--:|--:|")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds / len(spans) * 1e6:.1f} | {seconds * 1e3:.2f} |")
    first, second = timings.values()
    print(f"\nSDK ÷ gateway: x{first / second:.2f}; same bytes: {'yes' if sdk == ours else 'NO'} "
          f"({len(ours):,} bytes a batch)")


if __name__ == "__main__":
    main()
