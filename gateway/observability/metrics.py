"""Prometheus metrics read from finished RequestContexts, on a registry owned by one app.

Every label value comes from configuration (aliases, deployment ids, key aliases, teams) or from
the gateway's own fixed vocabularies (routes, statuses, error codes): a model name a client made up
is reported as ``unknown`` and never creates a series.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from gateway.cache.types import CacheNote, CacheTier
from gateway.limits.admission import quota_for
from gateway.pipeline import RequestContext
from gateway.runtime import RoutingTable

#: Set by the operator (or by ``llm-gateway serve --workers N``) to aggregate across processes.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

UNKNOWN = "unknown"
NONE = "none"

#: From a cache hit (a few ms) to a long reasoning call (two minutes).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
#: The OpenTelemetry GenAI semantic conventions' advice for these two instruments.
GENAI_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
GENAI_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 60.0)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: An exact lookup is one store read (sub-ms to a few ms); a semantic one embeds and searches (10-100 ms).
CACHE_LOOKUP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

GENAI_OPERATION = {"chat": "chat", "completion": "text_completion", "embedding": "embeddings"}
LIMITER_CODES = {"rate_limit_exceeded": "rate", "insufficient_quota": "budget"}
CACHE_TIERS: tuple[CacheTier, ...] = ("exact", "semantic")

M = TypeVar("M", bound=MetricWrapperBase)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class CooldownCollector(Collector):
    """``gateway_deployment_cooling_down``, read from the HealthBook at scrape time (1 or 0 for
    every configured deployment, so a deployment that recovers goes back to 0 instead of vanishing)."""

    def __init__(self, table: RoutingTable) -> None:
        self._table = table

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("gateway_deployment_cooling_down",
                                   "1 while the deployment is cooling down after failures, else 0",
                                   labels=["deployment"])
        cooling = set(self._table.health.cooling_down())
        ids = sorted({d.id for group in self._table.router.deployments.values() for d in group})
        for deployment_id in ids:
            family.add_metric([deployment_id], 1.0 if deployment_id in cooling else 0.0)
        yield family


class PrometheusObserver:
    """The RequestObserver that turns each finished request into metric updates.

    ``request_started`` / ``request_finished`` keep ``gateway_requests_in_flight``; a finish without
    a start (an error before the handler ran) leaves the gauge alone, so it never goes negative.
    """

    def __init__(self, table: RoutingTable, registry: CollectorRegistry | None = None) -> None:
        self._table = table
        self.registry = registry or CollectorRegistry()
        self._started: set[str] = set()
        #: (metric, label values) -> its child: ``labels()`` validates, converts and locks on every call.
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}
        r = self.registry
        self.requests = Counter("gateway_requests_total", "Requests to /v1 by outcome",
                                ["route", "alias", "key_alias", "team", "status"], registry=r)
        self.duration = Histogram("gateway_request_duration_seconds", "Request duration until the "
                                  "response (or the stream) ended", ["route", "alias", "status"],
                                  buckets=REQUEST_BUCKETS, registry=r)
        self.genai_duration = Histogram("gen_ai_client_operation_duration_seconds", "GenAI operation duration",
                                        ["gen_ai_operation_name", "gen_ai_request_model", "gen_ai_provider_name"],
                                        buckets=GENAI_DURATION_BUCKETS, registry=r)
        self.genai_tokens = Histogram("gen_ai_client_token_usage", "Tokens used per GenAI operation",
                                      ["gen_ai_operation_name", "gen_ai_request_model", "gen_ai_provider_name",
                                       "gen_ai_token_type"], buckets=GENAI_TOKEN_BUCKETS, registry=r)
        self.ttft = Histogram("gateway_time_to_first_token_seconds", "Streams: time until the first frame",
                              ["alias"], buckets=TTFT_BUCKETS, registry=r)
        self.tpot = Histogram("gateway_time_per_output_token_seconds", "Streams: time per output token "
                              "after the first frame", ["alias"], buckets=TPOT_BUCKETS, registry=r)
        self.overhead = Histogram("gateway_overhead_seconds", "Time spent in the gateway, not waiting "
                                  "for an upstream", ["route"], buckets=OVERHEAD_BUCKETS, registry=r)
        self.tokens = Counter("gateway_tokens_total", "Tokens by type",
                              ["alias", "key_alias", "team", "type"], registry=r)
        self.cost = Counter("gateway_cost_usd_total", "Upstream cost in US dollars",
                            ["alias", "key_alias", "team"], registry=r)
        self.limiter_rejections = Counter("gateway_limiter_rejections_total", "Requests refused by a key's "
                                          "limits or budget", ["key_alias", "team", "reason"], registry=r)
        self.upstream_errors = Counter("gateway_upstream_errors_total", "Failed upstream attempts",
                                       ["deployment", "code"], registry=r)
        self.retries = Counter("gateway_retries_total", "Retries on the same model group", ["alias"], registry=r)
        self.fallbacks = Counter("gateway_fallbacks_total", "Moves to a fallback model group", ["alias"],
                                 registry=r)
        self.stream_errors = Counter("gateway_stream_errors_total", "Streams that ended with an error event",
                                     ["alias"], registry=r)
        self.in_flight = Gauge("gateway_requests_in_flight", "/v1 requests being served", ["route"],
                               multiprocess_mode="livesum", registry=r)
        self.upstream_duration = Histogram("gateway_upstream_duration_seconds", "Upstream time of requests "
                                           "answered at the first attempt (streams: until the stream opened)",
                                           ["deployment"], buckets=REQUEST_BUCKETS, registry=r)
        # Budgets: set when a budgeted key is admitted (the limiter's decision says what is left)
        # or refused for its budget; no store call at scrape time (docs/metrics.md).
        self.budget_used = Gauge("gateway_key_budget_used_ratio", "Share of the key's budget spent or "
                                 "reserved in the current period, as of its last request",
                                 ["key_alias", "team"], multiprocess_mode="mostrecent", registry=r)
        self.cache_requests = Counter("gateway_cache_requests_total", "Requests that reached the cache stage, "
                                      "by what x-gateway-cache said", ["alias", "outcome"], registry=r)
        self.cache_lookups = Counter("gateway_cache_lookups_total", "Cache lookups by tier and result",
                                     ["alias", "tier", "result"], registry=r)
        self.cache_lookup_duration = Histogram("gateway_cache_lookup_duration_seconds", "Time spent looking "
                                               "up one cache tier", ["tier"], buckets=CACHE_LOOKUP_BUCKETS,
                                               registry=r)
        self.cache_saved = Counter("gateway_cache_saved_usd_total", "Upstream cost cache hits avoided, in US "
                                   "dollars", ["alias", "key_alias", "team"], registry=r)
        self.cache_errors = Counter("gateway_cache_errors_total", "Cache backend calls that failed (the "
                                    "request went on without the cache)", ["tier"], registry=r)
        self.store_up = Gauge("gateway_store_up", "1 when the store answered its last check, else 0",
                              ["store"], multiprocess_mode="mostrecent", registry=r)
        for tier in CACHE_TIERS:  # a zero series from the start, so rate() and alerts see the first error
            self._child(self.cache_errors, tier)
        self._cooldowns = CooldownCollector(table)
        if multiprocess_dir() is None:
            r.register(self._cooldowns)

    def _child(self, metric: M, *values: str) -> M:
        """``metric.labels(*values)``, memoised (label values come from configuration, so the map is
        as bounded as the series themselves; no series is ever removed)."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return cast(M, child)

    # -- the RequestObserver protocol ------------------------------------------------------------

    def request_started(self, ctx: RequestContext) -> None:
        if ctx.request_id in self._started:
            return
        self._started.add(ctx.request_id)
        self._child(self.in_flight, self._route(ctx)).inc()

    def request_finished(self, ctx: RequestContext, status: int, error_code: str | None) -> None:
        now = time.perf_counter()
        route, alias = self._route(ctx), self._alias(ctx)
        key_alias, team = self._caller(ctx)
        if ctx.request_id in self._started:
            self._started.discard(ctx.request_id)
            self._child(self.in_flight, route).dec()
        total = max(0.0, now - ctx.started)
        code = str(status)
        self._child(self.requests, route, alias, key_alias, team, code).inc()
        self._child(self.duration, route, alias, code).observe(total)
        self._genai(ctx, alias, total)
        self._streaming(ctx, alias, now)
        answered = (ctx.first_frame_at if ctx.stream and ctx.first_frame_at is not None else now)
        self._child(self.overhead, route).observe(max(0.0, answered - ctx.started - ctx.upstream_seconds))
        self._usage(ctx, alias, key_alias, team)
        reason = self._refusal(ctx, status, error_code)
        if reason is not None:
            self._child(self.limiter_rejections, key_alias, team, reason).inc()
        self._budget(ctx, key_alias, team, refused_for_budget=reason == "budget")
        self._attempts(ctx, alias, error_code, refused=reason is not None)
        if ctx.cache is not None:
            self._cache(ctx.cache, alias, key_alias, team)
        if error_code is None and ctx.deployment is not None and not ctx.events and ctx.upstream_seconds > 0:
            self._child(self.upstream_duration, ctx.deployment.id).observe(ctx.upstream_seconds)

    # -- signals from other parts of the gateway -------------------------------------------------

    def cache_backend_failed(self, tier: CacheTier) -> None:
        """The cache calls this when a backend call (Redis, Qdrant, the embedder) raised and the
        request went on without the cache; ``gateway_cache_errors_total`` feeds the alert."""
        self._child(self.cache_errors, tier).inc()

    def store_checked(self, store: str, up: bool) -> None:
        """The result of a store probe (``/readyz``, or a backend's own health check); ``store`` is
        a fixed backend name such as ``redis``, ``sqlite``, ``qdrant``."""
        self._child(self.store_up, store).set(1.0 if up else 0.0)

    # -- scraping --------------------------------------------------------------------------------

    def scrape(self) -> bytes:
        """The exposition text: this process's registry, or every worker's files in multiprocess mode."""
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        registry.register(self._cooldowns)
        return generate_latest(registry)

    def close(self) -> None:
        """At shutdown: a dead worker's live gauges must stop counting in multiprocess mode."""
        if multiprocess_dir() is not None:
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    # -- label values ----------------------------------------------------------------------------

    @staticmethod
    def _route(ctx: RequestContext) -> str:
        return ctx.operation or UNKNOWN

    def _alias(self, ctx: RequestContext) -> str:
        alias = ctx.alias
        return alias if alias is not None and self._table.router.knows(alias) else UNKNOWN

    @staticmethod
    def _caller(ctx: RequestContext) -> tuple[str, str]:
        principal = ctx.principal
        if principal is None:
            return NONE, NONE
        return principal.alias or principal.key_id, principal.team or NONE

    def _provider(self, ctx: RequestContext, alias: str) -> str:
        if ctx.deployment is not None:
            return ctx.deployment.provider
        group = self._table.router.deployments.get(alias) or ()
        return group[0].provider if group else UNKNOWN

    # -- metric groups ---------------------------------------------------------------------------

    def _genai(self, ctx: RequestContext, alias: str, total: float) -> None:
        if alias == UNKNOWN or ctx.operation is None:
            return
        operation, provider = GENAI_OPERATION[ctx.operation], self._provider(ctx, alias)
        self._child(self.genai_duration, operation, alias, provider).observe(total)
        if ctx.usage is not None:
            self._child(self.genai_tokens, operation, alias, provider, "input").observe(ctx.usage.prompt_tokens)
            if ctx.operation != "embedding":
                output = self._child(self.genai_tokens, operation, alias, provider, "output")
                output.observe(ctx.usage.completion_tokens)

    def _streaming(self, ctx: RequestContext, alias: str, now: float) -> None:
        if not ctx.stream or ctx.first_frame_at is None:
            return
        self._child(self.ttft, alias).observe(max(0.0, ctx.first_frame_at - ctx.started))
        completion = ctx.usage.completion_tokens if ctx.usage is not None else 0
        if completion > 0:
            self._child(self.tpot, alias).observe(max(0.0, now - ctx.first_frame_at) / completion)
        if ctx.stream_failed:
            self._child(self.stream_errors, alias).inc()

    def _usage(self, ctx: RequestContext, alias: str, key_alias: str, team: str) -> None:
        usage = ctx.usage
        if usage is not None:
            for kind, count in (("input", usage.prompt_tokens), ("output", usage.completion_tokens),
                                ("cached", usage.cached_tokens), ("reasoning", usage.reasoning_tokens)):
                if count:
                    self._child(self.tokens, alias, key_alias, team, kind).inc(count)
        if ctx.cost_usd > 0:
            self._child(self.cost, alias, key_alias, team).inc(ctx.cost_usd)

    def _budget(self, ctx: RequestContext, key_alias: str, team: str, *, refused_for_budget: bool) -> None:
        principal = ctx.principal
        record = principal.record if principal is not None else None
        if record is None or not record.budget_usd:
            return
        if refused_for_budget:
            self._child(self.budget_used, key_alias, team).set(1.0)
            return
        decision = ctx.decision
        if decision is not None and decision.allowed and decision.budget_remaining_usd is not None:
            left = max(0.0, decision.budget_remaining_usd)
            self._child(self.budget_used, key_alias, team).set(max(0.0, 1.0 - left / record.budget_usd))

    def _cache(self, note: CacheNote, alias: str, key_alias: str, team: str) -> None:
        self._child(self.cache_requests, alias, note.outcome).inc()
        consulted = set(note.lookup_seconds) | ({note.tier} if note.tier is not None else set())
        for tier in sorted(consulted):
            self._child(self.cache_lookups, alias, tier, "hit" if tier == note.tier else "miss").inc()
        for tier, seconds in note.lookup_seconds.items():
            self._child(self.cache_lookup_duration, tier).observe(max(0.0, seconds))
        if note.semantic_skipped is not None and "semantic" not in note.lookup_seconds:
            self._child(self.cache_lookups, alias, "semantic", "skipped").inc()
        if note.saved_cost_usd > 0:
            self._child(self.cache_saved, alias, key_alias, team).inc(note.saved_cost_usd)

    def _refusal(self, ctx: RequestContext, status: int, error_code: str | None) -> str | None:
        """The reason when the key's limits refused this request, else None (an upstream 429 has
        the same code; it is told apart by whether admission ran)."""
        if status != 429 or error_code not in LIMITER_CODES:
            return None
        decision = ctx.decision
        if decision is not None:
            return None if decision.allowed else decision.reason or LIMITER_CODES[error_code]
        # Admission raises before ctx.decision is set; a 429 without a decision is the limiter's
        # only if the caller has limits at all (otherwise admission never ran).
        principal, alias = ctx.principal, ctx.alias
        if principal is None or alias is None:
            return None
        if quota_for(principal, self._table.router.config.limit_settings, alias) is None:
            return None
        return LIMITER_CODES[error_code]

    def _attempts(self, ctx: RequestContext, alias: str, error_code: str | None, refused: bool) -> None:
        for event in ctx.events:
            self._child(self.upstream_errors, event.deployment, event.error or UNKNOWN).inc()
            if event.action == "retry":
                self._child(self.retries, alias).inc()
            elif event.action == "fallback":
                self._child(self.fallbacks, alias).inc()
        routed = ctx.alias is not None and ctx.principal is not None
        if error_code is not None and routed and not refused and _upstream_code(error_code) \
                and not _final_attempt_in_events(ctx):
            self._child(self.upstream_errors, self._final_deployment(ctx, alias), error_code).inc()

    def _final_deployment(self, ctx: RequestContext, alias: str) -> str:
        """The failing request's last deployment; the pipeline keeps no events for a request that
        failed, so it is only known when the alias has a single deployment."""
        if ctx.deployment is not None:
            return ctx.deployment.id
        group = self._table.router.deployments.get(alias) or ()
        return group[0].id if len(group) == 1 else UNKNOWN


def _final_attempt_in_events(ctx: RequestContext) -> bool:
    """Whether a failed request's events already hold its last attempt (the router gives up with a
    ``give-up`` event, or records one event per attempt), so it is not counted twice."""
    events = ctx.events
    return bool(events) and (events[-1].action == "give-up" or 0 < ctx.attempts <= len(events))


def _upstream_code(code: str) -> bool:
    return code.startswith("upstream_") or code in ("rate_limit_exceeded", "context_length_exceeded")

