"""PrometheusObserver on a fresh registry per test: exact sample values from hand-built contexts."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.auth import MASTER, Principal
from gateway.cache.types import CacheNote
from gateway.config import parse_config
from gateway.errors import UpstreamError
from gateway.keys.models import KeyRecord
from gateway.limits.types import Decision
from gateway.observability.metrics import PrometheusObserver
from gateway.pipeline import RequestContext
from gateway.routing.router import AttemptEvent
from gateway.routing.types import Engine, Usage
from gateway.runtime import RoutingTable

V1 = "http://127.0.0.1:9/v1"
ENGINES: dict[Any, Engine] = {"native": object(), "litellm": object()}  # type: ignore[dict-item]


def _entry(alias: str, model: str, deployment_id: str) -> dict[str, Any]:
    return {"model_name": alias, "litellm_params": {"model": model, "api_base": V1, "api_key": "sk-x"},
            "model_info": {"id": deployment_id}}


@pytest.fixture
def table() -> RoutingTable:
    config = parse_config({
        "model_list": [_entry("gpt", "openai/gpt-x", "gpt-1"), _entry("claude", "anthropic/claude-x", "claude-1"),
                       _entry("embed", "openai/embed-x", "embed-1")],
        "router_settings": {"allowed_fails": 0, "cooldown_time": 60},
    }, environ={})
    return RoutingTable(config, ENGINES, source=None)


@pytest.fixture
def observer(table: RoutingTable) -> PrometheusObserver:
    return PrometheusObserver(table, CollectorRegistry())


def _key(alias: str = "svc", team: str | None = "search", **limits: Any) -> Principal:
    record = KeyRecord(id="key-1", key_prefix="sk-gw-abc", key_hash="h", alias=alias, team=team, **limits)
    return Principal(key_id=record.id, alias=alias, role="user", team=team, record=record)


def _ctx(table: RoutingTable, alias: str | None = "gpt", principal: Principal | None = MASTER,
         **fields: Any) -> RequestContext:
    ctx = RequestContext(request_id=fields.pop("request_id", f"req-{time.perf_counter_ns()}"),
                         started=time.perf_counter() - fields.pop("elapsed", 0.2), principal=principal,
                         alias=alias, operation=fields.pop("operation", "chat"))
    if alias is not None and table.router.knows(alias) and fields.pop("answered", True):
        ctx.deployment = table.router.deployments[alias][0]
    for name, value in fields.items():
        setattr(ctx, name, value)
    return ctx


def value(observer: PrometheusObserver, name: str, **labels: str) -> float | None:
    return observer.registry.get_sample_value(name, labels)


def series_with(observer: PrometheusObserver, text: str) -> list[str]:
    return [f"{s.name}{s.labels}" for metric in observer.registry.collect() for s in metric.samples
            if text in s.labels.values()]


def test_counts_tokens_and_cost(observer: PrometheusObserver, table: RoutingTable) -> None:
    usage = Usage(prompt_tokens=10, completion_tokens=5, cached_tokens=4, reasoning_tokens=2)
    for _ in range(3):
        observer.request_finished(_ctx(table, principal=_key(), usage=usage, cost_usd=0.25,
                                       upstream_seconds=0.15), 200, None)
    who = {"alias": "gpt", "key_alias": "svc", "team": "search"}
    assert value(observer, "gateway_requests_total", route="chat", status="200", **who) == 3
    assert value(observer, "gateway_request_duration_seconds_count", route="chat", alias="gpt", status="200") == 3
    assert value(observer, "gateway_tokens_total", type="input", **who) == 30
    assert value(observer, "gateway_tokens_total", type="output", **who) == 15
    assert value(observer, "gateway_tokens_total", type="cached", **who) == 12
    assert value(observer, "gateway_tokens_total", type="reasoning", **who) == 6
    assert value(observer, "gateway_cost_usd_total", **who) == pytest.approx(0.75)
    genai = {"gen_ai_operation_name": "chat", "gen_ai_request_model": "gpt", "gen_ai_provider_name": "openai"}
    assert value(observer, "gen_ai_client_operation_duration_seconds_count", **genai) == 3
    assert value(observer, "gen_ai_client_token_usage_sum", gen_ai_token_type="input", **genai) == 30
    assert value(observer, "gen_ai_client_token_usage_sum", gen_ai_token_type="output", **genai) == 15
    overhead = value(observer, "gateway_overhead_seconds_sum", route="chat")
    assert overhead is not None and 0.04 < overhead / 3 < 0.2
    # Non-streams have no time to first token.
    assert value(observer, "gateway_time_to_first_token_seconds_count", alias="gpt") is None


def test_master_and_anonymous_callers(observer: PrometheusObserver, table: RoutingTable) -> None:
    observer.request_finished(_ctx(table), 200, None)
    observer.request_finished(_ctx(table, alias=None, principal=None), 401, "invalid_api_key")
    assert value(observer, "gateway_requests_total", route="chat", alias="gpt", key_alias="master",
                 team="none", status="200") == 1
    assert value(observer, "gateway_requests_total", route="chat", alias="unknown", key_alias="none",
                 team="none", status="401") == 1


def test_embeddings_use_semconv_operation_name(observer: PrometheusObserver, table: RoutingTable) -> None:
    observer.request_finished(_ctx(table, alias="embed", operation="embedding", usage=Usage(prompt_tokens=7)),
                              200, None)
    genai = {"gen_ai_operation_name": "embeddings", "gen_ai_request_model": "embed",
             "gen_ai_provider_name": "openai"}
    assert value(observer, "gen_ai_client_token_usage_sum", gen_ai_token_type="input", **genai) == 7
    assert value(observer, "gen_ai_client_token_usage_count", gen_ai_token_type="output", **genai) is None


def test_streams_observe_ttft_tpot_and_failures(observer: PrometheusObserver, table: RoutingTable) -> None:
    ctx = _ctx(table, alias="claude", stream=True, usage=Usage(prompt_tokens=3, completion_tokens=10))
    ctx.first_frame_at = ctx.started + 0.05
    observer.request_finished(ctx, 200, None)
    failed = _ctx(table, alias="claude", stream=True, stream_failed=True)
    failed.first_frame_at = failed.started + 0.01
    observer.request_finished(failed, 200, None)
    assert value(observer, "gateway_time_to_first_token_seconds_count", alias="claude") == 2
    ttft = value(observer, "gateway_time_to_first_token_seconds_sum", alias="claude")
    assert ttft == pytest.approx(0.06)
    # Only the stream with completion tokens has a time per output token: (0.2 - 0.05) / 10.
    assert value(observer, "gateway_time_per_output_token_seconds_count", alias="claude") == 1
    tpot = value(observer, "gateway_time_per_output_token_seconds_sum", alias="claude")
    assert tpot is not None and 0.014 < tpot < 0.03
    assert value(observer, "gateway_stream_errors_total", alias="claude") == 1
    assert value(observer, "gen_ai_client_operation_duration_seconds_count", gen_ai_operation_name="chat",
                 gen_ai_request_model="claude", gen_ai_provider_name="anthropic") == 2


def test_unknown_model_creates_no_series(observer: PrometheusObserver, table: RoutingTable) -> None:
    made_up = "gpt-made-up-by-a-client"
    ctx = _ctx(table, alias=None)
    observer.request_finished(ctx, 404, "model_not_found")
    # Even an alias set on the context (a reload removed it) is not trusted as a label.
    observer.request_finished(_ctx(table, alias=made_up), 404, "model_not_found")
    assert value(observer, "gateway_requests_total", route="chat", alias="unknown", key_alias="master",
                 team="none", status="404") == 2
    assert series_with(observer, made_up) == []
    assert value(observer, "gen_ai_client_operation_duration_seconds_count", gen_ai_operation_name="chat",
                 gen_ai_request_model="unknown", gen_ai_provider_name="unknown") is None
    assert value(observer, "gateway_upstream_errors_total", deployment="unknown", code="model_not_found") is None


def test_limiter_rejection_reasons(observer: PrometheusObserver, table: RoutingTable) -> None:
    limited = _key(rpm=1, budget_usd=1.0)
    # Admission refused: it raises before ctx.decision is set; the reason comes from the code.
    observer.request_finished(_ctx(table, principal=limited, answered=False), 429, "rate_limit_exceeded")
    observer.request_finished(_ctx(table, principal=limited, answered=False), 429, "insufficient_quota")
    observer.request_finished(_ctx(table, principal=limited, answered=False), 429, "insufficient_quota")
    # A refused decision on the context names its own reason.
    observer.request_finished(_ctx(table, principal=limited, answered=False,
                                   decision=Decision(allowed=False, reason="tpm")), 429, "rate_limit_exceeded")
    # Upstream 429s are not the limiter's: admitted (decision allowed), the master key, an unlimited key.
    observer.request_finished(_ctx(table, principal=limited, answered=False, decision=Decision(allowed=True)),
                              429, "rate_limit_exceeded")
    observer.request_finished(_ctx(table, answered=False), 429, "rate_limit_exceeded")
    observer.request_finished(_ctx(table, principal=_key(alias="free"), answered=False), 429, "rate_limit_exceeded")
    who = {"key_alias": "svc", "team": "search"}
    assert value(observer, "gateway_limiter_rejections_total", reason="rate", **who) == 1
    assert value(observer, "gateway_limiter_rejections_total", reason="budget", **who) == 2
    assert value(observer, "gateway_limiter_rejections_total", reason="tpm", **who) == 1
    assert value(observer, "gateway_limiter_rejections_total", key_alias="master", team="none", reason="rate") is None
    assert value(observer, "gateway_limiter_rejections_total", key_alias="free", team="search", reason="rate") is None
    # The upstream 429s are upstream errors; the refusals are not.
    assert value(observer, "gateway_upstream_errors_total", deployment="gpt-1", code="rate_limit_exceeded") == 3
    assert value(observer, "gateway_upstream_errors_total", deployment="gpt-1", code="insufficient_quota") is None


def test_retries_fallbacks_and_upstream_errors(observer: PrometheusObserver, table: RoutingTable) -> None:
    events = [AttemptEvent("gpt-1", "upstream_error", "retry"), AttemptEvent("gpt-1", "upstream_timeout", "retry"),
              AttemptEvent("gpt-1", "upstream_error", "fallback")]
    ctx = _ctx(table, events=events)
    ctx.deployment = table.router.deployments["claude"][0]
    observer.request_finished(ctx, 200, None)
    # A request that failed: the pipeline keeps no events, the final error names the one deployment.
    observer.request_finished(_ctx(table, alias="claude", answered=False), 502, "upstream_error")
    assert value(observer, "gateway_retries_total", alias="gpt") == 2
    assert value(observer, "gateway_fallbacks_total", alias="gpt") == 1
    assert value(observer, "gateway_upstream_errors_total", deployment="gpt-1", code="upstream_error") == 2
    assert value(observer, "gateway_upstream_errors_total", deployment="gpt-1", code="upstream_timeout") == 1
    assert value(observer, "gateway_upstream_errors_total", deployment="claude-1", code="upstream_error") == 1
    assert value(observer, "gateway_requests_total", route="chat", alias="claude", key_alias="master",
                 team="none", status="502") == 1


def test_in_flight_is_started_minus_finished(observer: PrometheusObserver, table: RoutingTable) -> None:
    first, second = _ctx(table, request_id="a"), _ctx(table, request_id="b")
    observer.request_started(first)
    observer.request_started(second)
    observer.request_started(second)  # idempotent
    assert value(observer, "gateway_requests_in_flight", route="chat") == 2
    observer.request_finished(first, 200, None)
    assert value(observer, "gateway_requests_in_flight", route="chat") == 1
    observer.request_finished(_ctx(table, request_id="never-started"), 401, "invalid_api_key")
    observer.request_finished(second, 200, None)
    assert value(observer, "gateway_requests_in_flight", route="chat") == 0


def test_cooldown_collector_reads_health_at_scrape_time(observer: PrometheusObserver,
                                                        table: RoutingTable) -> None:
    assert value(observer, "gateway_deployment_cooling_down", deployment="gpt-1") == 0
    assert value(observer, "gateway_deployment_cooling_down", deployment="embed-1") == 0
    table.health.failed("gpt-1", UpstreamError("boom"))
    assert value(observer, "gateway_deployment_cooling_down", deployment="gpt-1") == 1
    assert value(observer, "gateway_deployment_cooling_down", deployment="claude-1") == 0
    assert b'gateway_deployment_cooling_down{deployment="gpt-1"} 1.0' in observer.scrape()


def test_two_observers_do_not_share_state(table: RoutingTable) -> None:
    one, two = PrometheusObserver(table), PrometheusObserver(table)
    one.request_finished(_ctx(table), 200, None)
    labels = {"route": "chat", "alias": "gpt", "key_alias": "master", "team": "none", "status": "200"}
    assert one.registry.get_sample_value("gateway_requests_total", labels) == 1
    assert two.registry.get_sample_value("gateway_requests_total", labels) is None


def test_cache_outcomes_lookups_latency_and_savings(observer: PrometheusObserver, table: RoutingTable) -> None:
    who = {"key_alias": "svc", "team": "search"}
    exact_hit = CacheNote(outcome="hit", tier="exact", saved_cost_usd=0.5, lookup_seconds={"exact": 0.001})
    semantic_hit = CacheNote(outcome="semantic-hit", tier="semantic", similarity=0.97, saved_cost_usd=0.25,
                             lookup_seconds={"exact": 0.002, "semantic": 0.04})
    miss = CacheNote(outcome="miss", lookup_seconds={"exact": 0.001, "semantic": 0.03})
    skipped = CacheNote(outcome="miss", lookup_seconds={"exact": 0.001}, semantic_skipped="tool-turn")
    for note in (exact_hit, semantic_hit, miss, skipped, CacheNote(outcome="bypass")):
        observer.request_finished(_ctx(table, principal=_key(), cache=note), 200, None)
    assert value(observer, "gateway_cache_requests_total", alias="gpt", outcome="hit") == 1
    assert value(observer, "gateway_cache_requests_total", alias="gpt", outcome="semantic-hit") == 1
    assert value(observer, "gateway_cache_requests_total", alias="gpt", outcome="miss") == 2
    assert value(observer, "gateway_cache_requests_total", alias="gpt", outcome="bypass") == 1
    assert value(observer, "gateway_cache_lookups_total", alias="gpt", tier="exact", result="hit") == 1
    assert value(observer, "gateway_cache_lookups_total", alias="gpt", tier="exact", result="miss") == 3
    assert value(observer, "gateway_cache_lookups_total", alias="gpt", tier="semantic", result="hit") == 1
    assert value(observer, "gateway_cache_lookups_total", alias="gpt", tier="semantic", result="miss") == 1
    assert value(observer, "gateway_cache_lookups_total", alias="gpt", tier="semantic", result="skipped") == 1
    assert value(observer, "gateway_cache_lookup_duration_seconds_count", tier="exact") == 4
    assert value(observer, "gateway_cache_lookup_duration_seconds_sum", tier="semantic") == pytest.approx(0.07)
    assert value(observer, "gateway_cache_saved_usd_total", alias="gpt", **who) == pytest.approx(0.75)
    # A request that never reached the cache stage says nothing about the cache.
    observer.request_finished(_ctx(table, alias="claude"), 200, None)
    assert not [name for name in series_with(observer, "claude") if name.startswith("gateway_cache")]


def test_cache_backend_errors_and_store_probes(observer: PrometheusObserver) -> None:
    observer.cache_backend_failed("semantic")
    observer.cache_backend_failed("semantic")
    assert value(observer, "gateway_cache_errors_total", tier="semantic") == 2
    assert value(observer, "gateway_cache_errors_total", tier="exact") == 0
    observer.store_checked("redis", True)
    assert value(observer, "gateway_store_up", store="redis") == 1
    observer.store_checked("redis", False)
    assert value(observer, "gateway_store_up", store="redis") == 0


def test_budget_used_ratio_from_the_admission_decision(observer: PrometheusObserver, table: RoutingTable) -> None:
    budgeted = _key(budget_usd=10.0)
    admitted = Decision(allowed=True, budget_remaining_usd=7.5)
    observer.request_finished(_ctx(table, principal=budgeted, decision=admitted), 200, None)
    assert value(observer, "gateway_key_budget_used_ratio", key_alias="svc", team="search") == pytest.approx(0.25)
    observer.request_finished(_ctx(table, principal=budgeted, answered=False), 429, "insufficient_quota")
    assert value(observer, "gateway_key_budget_used_ratio", key_alias="svc", team="search") == 1
    # Keys without a budget, and the master key, have no series.
    observer.request_finished(_ctx(table, principal=_key(alias="free", rpm=5), decision=Decision(allowed=True)),
                              200, None)
    observer.request_finished(_ctx(table), 200, None)
    assert value(observer, "gateway_key_budget_used_ratio", key_alias="free", team="search") is None
    assert value(observer, "gateway_key_budget_used_ratio", key_alias="master", team="none") is None


def test_upstream_latency_per_deployment(observer: PrometheusObserver, table: RoutingTable) -> None:
    observer.request_finished(_ctx(table, upstream_seconds=0.3), 200, None)
    observer.request_finished(_ctx(table, alias="claude", upstream_seconds=0.1), 200, None)
    # Retried requests mix several attempts' time: not observed.
    observer.request_finished(_ctx(table, upstream_seconds=0.9,
                                   events=[AttemptEvent("gpt-1", "upstream_error", "retry")]), 200, None)
    assert value(observer, "gateway_upstream_duration_seconds_count", deployment="gpt-1") == 1
    assert value(observer, "gateway_upstream_duration_seconds_sum", deployment="gpt-1") == pytest.approx(0.3)
    assert value(observer, "gateway_upstream_duration_seconds_count", deployment="claude-1") == 1


def test_failed_request_events_are_not_counted_twice(observer: PrometheusObserver, table: RoutingTable) -> None:
    # When the router hands a failed request's attempts to the context, the last one is among them.
    events = [AttemptEvent("claude-1", "upstream_error", "retry"), AttemptEvent("claude-1", "upstream_error",
                                                                                "give-up")]
    observer.request_finished(_ctx(table, alias="claude", answered=False, events=events, attempts=2), 502,
                              "upstream_error")
    assert value(observer, "gateway_upstream_errors_total", deployment="claude-1", code="upstream_error") == 2
    assert value(observer, "gateway_retries_total", alias="claude") == 1
