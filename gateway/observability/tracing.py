"""Traces: a server span per request and a client span per upstream attempt, with the OpenTelemetry
GenAI semantic conventions (docs/tracing.md).

Configured by the standard ``OTEL_*`` variables and off without them, at the cost of one ``None``
check per request. The TracerProvider belongs to one app (never the global provider), so two apps in
one process keep their own traces; its batch processor is flushed when the app shuts down.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as genai
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_PATH, URL_SCHEME
from opentelemetry.trace import SpanContext, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway import __version__
from gateway.errors import GatewayError
from gateway.observability import content
from gateway.observability.spans import OpenSpan, SpanRecorder
from gateway.pipeline import RequestContext
from gateway.routing.deployments import Deployment
from gateway.routing.types import UpstreamCall, UpstreamResponse, UpstreamStream, Usage
from gateway.settings import Settings

log = logging.getLogger("gateway.tracing")

SCOPE = "gateway"
GENAI_OPERATION = {"chat": "chat", "completion": "text_completion", "embedding": "embeddings"}
#: litellm provider names → the GenAI conventions' well-known ``gen_ai.provider.name`` values.
PROVIDERS = {
    "openai": "openai", "text-completion-openai": "openai", "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference", "anthropic": "anthropic", "bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai", "gemini": "gcp.gemini", "cohere": "cohere", "mistral": "mistral_ai",
    "groq": "groq", "deepseek": "deepseek", "xai": "x_ai", "perplexity": "perplexity",
    "watsonx": "ibm.watsonx.ai",
}
#: Request parameters recorded on the client span: body field → attribute.
REQUEST_PARAMS = (
    ("max_tokens", genai.GEN_AI_REQUEST_MAX_TOKENS),
    ("max_completion_tokens", genai.GEN_AI_REQUEST_MAX_TOKENS),
    ("temperature", genai.GEN_AI_REQUEST_TEMPERATURE),
    ("top_p", genai.GEN_AI_REQUEST_TOP_P),
    ("seed", genai.GEN_AI_REQUEST_SEED),
    ("frequency_penalty", genai.GEN_AI_REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", genai.GEN_AI_REQUEST_PRESENCE_PENALTY),
    ("n", genai.GEN_AI_REQUEST_CHOICE_COUNT),
    ("dimensions", genai.GEN_AI_EMBEDDINGS_DIMENSION_COUNT),
)
LIMITER_CODES = frozenset({"rate_limit_exceeded", "insufficient_quota"})
_PROPAGATOR = TraceContextTextMapPropagator()


def tracing_wanted(environ: Mapping[str, str]) -> bool:
    """On when an OTLP endpoint is set or OTEL_TRACES_EXPORTER names an exporter; OTEL_SDK_DISABLED wins."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    names = [n.strip() for n in (environ.get("OTEL_TRACES_EXPORTER") or "otlp").lower().split(",") if n.strip()]
    exporters: list[SpanExporter] = []
    for name in names:
        if name in ("otlp", "otlp_proto_http"):
            protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            if protocol and protocol != "http/protobuf":
                log.warning("OTLP protocol %r is not supported; exporting with http/protobuf", protocol)
            from gateway.observability.otlp_wire import WireSpanExporter

            exporters.append(WireSpanExporter())  # endpoint, headers, timeout from OTEL_EXPORTER_OTLP_*
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name != "none":
            log.warning("unknown OTEL_TRACES_EXPORTER %r ignored (known: otlp, console, none)", name)
    return exporters


def _resource() -> Resource:
    resource = Resource.create({SERVICE_VERSION: __version__})  # + OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "llm-gateway"}))
    return resource


@functools.lru_cache(maxsize=256)
def _server(api_base: str | None) -> tuple[str, int] | None:
    """Host and port of a deployment's base URL (never its credentials or query)."""
    if not api_base:
        return None
    try:
        parts = urlsplit(api_base)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _error_type(error: BaseException) -> str:
    if isinstance(error, GatewayError):
        return error.code or type(error).__name__
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return type(error).__qualname__


class Tracing:
    """One app's tracing: its provider (resource, sampler, ids, processors) and the factory of each
    request's RequestTrace."""

    def __init__(self, provider: TracerProvider, processors: list[SpanProcessor], *,
                 capture_content: bool = False, content_limit: int = 2048) -> None:
        self.provider = provider
        for processor in processors:
            provider.add_span_processor(processor)  # the provider flushes and stops them at shutdown
        self.spans = SpanRecorder(resource=provider.resource, sampler=provider.sampler, ids=provider.id_generator,
                                  scope=InstrumentationScope(SCOPE, __version__), processors=processors)
        self.capture_content = capture_content
        self.content_limit = content_limit

    @classmethod
    def build(cls, settings: Settings, environ: Mapping[str, str] | None = None,
              exporter: SpanExporter | None = None) -> Tracing | None:
        """From the OTEL_* variables (None when tracing is off), or around ``exporter`` (for tests: spans
        are exported synchronously as they end)."""
        environ = os.environ if environ is None else environ
        if exporter is None and not tracing_wanted(environ):
            return None
        provider = TracerProvider(resource=_resource(), shutdown_on_exit=False)  # sampler: OTEL_TRACES_SAMPLER
        processors: list[SpanProcessor]
        if exporter is not None:
            processors = [SimpleSpanProcessor(exporter)]
        else:
            processors = [BatchSpanProcessor(each) for each in _exporters(environ)]  # OTEL_BSP_* tune them
        return cls(provider, processors, capture_content=settings.trace_content,
                   content_limit=settings.trace_content_max_chars)

    def shutdown(self) -> None:
        """Flush what is queued and stop the exporters' threads."""
        self.provider.shutdown()

    def start_request(self, method: str, path: str, route: str, scheme: str,
                      headers: list[tuple[bytes, bytes]]) -> RequestTrace:
        carrier = {}
        for name, value in headers:
            if name in (b"traceparent", b"tracestate"):
                carrier[name.decode("latin-1")] = value.decode("latin-1")
        parent = _PROPAGATOR.extract(carrier) if carrier else None
        span = self.spans.start(f"{method} {route}", SpanKind.SERVER, {
            HTTP_REQUEST_METHOD: method, URL_PATH: path, HTTP_ROUTE: route, URL_SCHEME: scheme,
        }, remote_parent=parent)
        return RequestTrace(self, span)


class RequestTrace:
    """The spans of one request: the server span, and the client span of the attempt in flight.

    Implements the router's ``AttemptTracer``. Every span it starts is ended exactly once: an attempt
    by its outcome (a stream when it is closed), the server span and any attempt still open by ``finish``.
    """

    __slots__ = ("_attempts", "_client", "_operation", "_started", "_tracing", "span")

    def __init__(self, tracing: Tracing, span: OpenSpan) -> None:
        self._tracing = tracing
        self.span = span
        self._client: OpenSpan | None = None
        self._operation = "chat"
        self._attempts = 0
        self._started = 0.0

    @property
    def ids(self) -> tuple[str, str]:
        """The trace id and the server span's id, as hex (for logs)."""
        context = self.span.context
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"

    # -- the router's AttemptTracer ---------------------------------------------------------------

    def attempt_started(self, deployment: Deployment, call: UpstreamCall) -> dict[str, str]:
        self._end_client("superseded")
        self._attempts += 1
        operation = self._operation = call.operation
        model = deployment.upstream_model
        attributes: dict[str, Any] = {
            genai.GEN_AI_OPERATION_NAME: GENAI_OPERATION[operation],
            genai.GEN_AI_PROVIDER_NAME: PROVIDERS.get(deployment.provider, deployment.provider),
            genai.GEN_AI_REQUEST_MODEL: model,
            "gateway.deployment": deployment.id,
            "gateway.attempt": self._attempts,
        }
        if operation != "embedding":
            attributes[genai.GEN_AI_REQUEST_STREAM] = call.stream
        body = call.body
        for field, attribute in REQUEST_PARAMS:
            value = body.get(field)
            if _number(value):
                attributes[attribute] = value
        server = _server(deployment.api_base)
        if server is not None:
            attributes[SERVER_ADDRESS], attributes[SERVER_PORT] = server
        client = self._tracing.spans.start(f"{GENAI_OPERATION[operation]} {model}", SpanKind.CLIENT, attributes,
                                           parent=self.span)
        self._client, self._started = client, time.perf_counter()
        if not client.recording:
            return {}
        if self._tracing.capture_content:
            messages = content.input_messages(operation, body, self._tracing.content_limit)
            if messages is not None:
                client.attributes[genai.GEN_AI_INPUT_MESSAGES] = messages
        return _trace_headers(client.context)

    def attempt_failed(self, deployment: Deployment, error: BaseException, action: str) -> None:
        error_type = _error_type(error)
        self._end_client(error_type)
        # After the response is over (a client that left), the server span has ended: no event.
        self.span.add_event(f"gateway.{action.replace('-', '_')}", {
            "gateway.deployment": deployment.id, ERROR_TYPE: error_type, "gateway.attempt": self._attempts,
        })

    def attempt_succeeded(self, deployment: Deployment, value: object) -> None:
        client = self._client
        if client is None:
            return
        if isinstance(value, UpstreamResponse):
            self._response(client, value.response_model, value.response_id, value.finish_reasons, value.usage)
            if self._tracing.capture_content and client.recording:
                messages = content.output_messages(self._operation, value.body, self._tracing.content_limit)
                if messages is not None:
                    client.attributes[genai.GEN_AI_OUTPUT_MESSAGES] = messages
            self._end_client(None)
        else:
            # A stream: its first frame has arrived; the span stays open until the stream is closed.
            client.attributes[genai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = time.perf_counter() - self._started

    def stream_closed(self, stream: UpstreamStream) -> None:
        client = self._client
        if client is None:
            return
        self._response(client, stream.response_model, stream.response_id, stream.finish_reasons, stream.usage)
        self._end_client(_error_type(stream.error) if stream.error is not None else None)

    # -- the end of the request -------------------------------------------------------------------

    def finish(self, ctx: RequestContext | None, status: int, error: BaseException | None,
               route: str | None = None, name: str | None = None) -> None:
        """Called once by the middleware when the response is over; ends every span still open.
        ``route`` is the matched route's template, when one matched (``http.route``); ``name`` the
        server span's final name."""
        self._end_client("cancelled" if error is None else _error_type(error))
        span = self.span
        if span.recording:  # a span the sampler dropped is never exported: nothing to fill in
            if name:
                span.name = name
            self._close_server_span(ctx, status, error, route)
        self._tracing.spans.end(span)

    def _close_server_span(self, ctx: RequestContext | None, status: int, error: BaseException | None,
                           route: str | None) -> None:
        span = self.span
        attributes = span.attributes
        attributes[HTTP_RESPONSE_STATUS_CODE] = status
        if route:
            attributes[HTTP_ROUTE] = route
        error_type = _error_type(error) if error is not None else None
        if ctx is not None:
            _gateway_attributes(attributes, ctx, status)
            error_type = error_type or ctx.error_code or ("stream_failed" if ctx.stream_failed else None)
        if error_type is None and status >= 400:
            error_type = str(status)
        if error_type is not None:
            attributes[ERROR_TYPE] = error_type
        if status >= 500 or error is not None or (ctx is not None and ctx.stream_failed):
            span.fail(error_type)

    # -- helpers ----------------------------------------------------------------------------------

    def _response(self, client: OpenSpan, model: str | None, response_id: str | None,
                  finish_reasons: tuple[str, ...] | list[str], usage: Usage | None) -> None:
        if not client.recording:
            return
        attributes = client.attributes
        if model:
            attributes[genai.GEN_AI_RESPONSE_MODEL] = model
        if response_id:
            attributes[genai.GEN_AI_RESPONSE_ID] = response_id
        if finish_reasons:
            attributes[genai.GEN_AI_RESPONSE_FINISH_REASONS] = tuple(finish_reasons)
        if usage is not None:
            attributes[genai.GEN_AI_USAGE_INPUT_TOKENS] = usage.prompt_tokens
            if self._operation != "embedding":
                attributes[genai.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.completion_tokens
            if usage.cached_tokens:
                attributes[genai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cached_tokens
            if usage.reasoning_tokens:
                attributes[genai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens

    def _end_client(self, error_type: str | None) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if error_type is not None:
            client.attributes[ERROR_TYPE] = error_type
            client.fail(error_type)
        self._tracing.spans.end(client)


def _trace_headers(context: SpanContext) -> dict[str, str]:
    """The W3C trace-context headers naming ``context`` as the parent (what the propagator's
    ``inject`` writes, without building a Context to carry the span there)."""
    headers = {"traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"}
    if context.trace_state:
        headers["tracestate"] = context.trace_state.to_header()
    return headers


def _gateway_attributes(attributes: dict[str, Any], ctx: RequestContext, status: int) -> None:
    """What the gateway decided, under ``gateway.``, added to ``attributes``: never a secret (ids
    and aliases only)."""
    attributes["gateway.request_id"] = ctx.request_id
    principal = ctx.principal
    if principal is not None:
        attributes["gateway.key.id"] = principal.key_id
        if principal.alias:
            attributes["gateway.key.alias"] = principal.alias
        if principal.team:
            attributes["gateway.team"] = principal.team
    if ctx.alias is not None:
        attributes["gateway.model_alias"] = ctx.alias
    if ctx.operation is not None:
        attributes["gateway.stream"] = ctx.stream
    if ctx.deployment is not None:
        attributes["gateway.deployment"] = ctx.deployment.id
    if ctx.attempts:
        attributes["gateway.attempts"] = ctx.attempts
    if ctx.cost_usd:
        attributes["gateway.cost_usd"] = ctx.cost_usd
    cache = ctx.cache
    if cache is not None:
        attributes["gateway.cache.outcome"] = cache.outcome
        if cache.tier is not None:
            attributes["gateway.cache.tier"] = cache.tier
        if cache.similarity is not None:
            attributes["gateway.cache.similarity"] = cache.similarity
    decision = ctx.decision
    if decision is not None:
        attributes["gateway.limiter.decision"] = "allowed" if decision.allowed else "refused"
        if decision.reason:
            attributes["gateway.limiter.reason"] = decision.reason
    elif status == 429 and ctx.error_code in LIMITER_CODES and not ctx.attempts and ctx.deployment is None:
        # Admission raises before the decision reaches the context.
        attributes["gateway.limiter.decision"] = "refused"
