"""Router policy: choosing, retrying, falling back and cooling down, against fake engines.

The fakes implement the ``Engine`` protocol and answer from a small script; the end-to-end suite
covers the real engines.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.errors import (
    ContextWindowExceeded,
    GatewayError,
    ServiceUnavailable,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejectedRequest,
    UpstreamTimeout,
)
from gateway.routing import router as router_module
from gateway.routing.deployments import Deployment, build_deployments
from gateway.routing.health import HealthBook
from gateway.routing.router import Routed, Router
from gateway.routing.types import UpstreamCall, UpstreamResponse, Usage

CALL = UpstreamCall(operation="chat", body={"model": "m", "messages": [{"role": "user", "content": "hi"}]})

#: Decides each call's outcome from the deployment and the engine's call number (0-based).
Behaviour = Callable[[Deployment, int], Exception | None]


def succeed(deployment: Deployment, n: int) -> Exception | None:
    return None


class FakeStream:
    def __init__(self, deployment: Deployment) -> None:
        self.usage: Usage | None = Usage(prompt_tokens=1, completion_tokens=1)
        self.response_model: str | None = deployment.upstream_model
        self.error: Exception | None = None
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[bytes]:
        yield b'data: {"choices": []}\n\n'
        yield b"data: [DONE]\n\n"

    async def aclose(self) -> None:
        self.closed = True


class FakeEngine:
    def __init__(self, health: HealthBook, behaviour: Behaviour = succeed,
                 delays: dict[str, float] | None = None) -> None:
        self.behaviour = behaviour
        self.calls: list[str] = []
        self.in_flight_seen: list[int] = []
        self._health = health
        self._delays = delays or {}

    async def _attempt(self, deployment: Deployment) -> None:
        n = len(self.calls)
        self.calls.append(deployment.id)
        self.in_flight_seen.append(self._health.state(deployment.id).in_flight)
        delay = self._delays.get(deployment.id)
        if delay:
            await asyncio.sleep(delay)
        outcome = self.behaviour(deployment, n)
        if outcome is not None:
            raise outcome

    async def send(self, deployment: Deployment, call: UpstreamCall) -> UpstreamResponse:
        await self._attempt(deployment)
        return UpstreamResponse(b'{"object": "chat.completion"}', None, deployment.upstream_model)

    async def open_stream(self, deployment: Deployment, call: UpstreamCall) -> FakeStream:
        await self._attempt(deployment)
        return FakeStream(deployment)


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


class _AsyncioWithRecordedSleep:
    """Stands in for the router module's ``asyncio``: sleeps advance the fake clock instantly."""

    def __init__(self, clock: Clock) -> None:
        self.waits: list[float] = []
        self._clock = clock

    async def sleep(self, delay: float) -> None:
        self.waits.append(delay)
        self._clock.now += delay

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> list[float]:
    fake = _AsyncioWithRecordedSleep(clock)
    monkeypatch.setattr(router_module, "asyncio", fake)
    return fake.waits


Spec = tuple[str, str] | tuple[str, str, float]


def _config(specs: list[Spec], **settings: Any) -> dict[str, Any]:
    entries = []
    for spec in specs:
        alias, ident = spec[0], spec[1]
        weight = spec[2] if len(spec) == 3 else 1.0
        entries.append({"model_name": alias,
                        "litellm_params": {"model": f"openai/{alias}", "api_base": "http://127.0.0.1:9/v1",
                                           "weight": weight},
                        "model_info": {"id": ident}})
    return {"model_list": entries, "router_settings": {"allowed_fails": 10, **settings}}


def make(specs: list[Spec], behaviour: Behaviour = succeed, *, clock: Clock | None = None, seed: int = 0,
         delays: dict[str, float] | None = None, **settings: Any) -> tuple[Router, FakeEngine, HealthBook]:
    config = parse_config(_config(specs, **settings), environ={})
    health = HealthBook(allowed_fails=0, cooldown_time=0, monotonic=clock) if clock else \
        HealthBook(allowed_fails=0, cooldown_time=0)
    engine = FakeEngine(health, behaviour, delays)
    router = Router(config, build_deployments(config), {"native": engine, "litellm": engine}, health,
                    rng=random.Random(seed))
    return router, engine, health


def fail_ids(error: Callable[[], Exception], *ids: str) -> Behaviour:
    return lambda d, n: error() if d.id in ids else None


def in_flight(health: HealthBook, *ids: str) -> list[int]:
    return [health.state(i).in_flight for i in ids]


# -- choosing -------------------------------------------------------------------------------------


def _chi_square(observed: Counter[str], weights: dict[str, float]) -> float:
    total = sum(observed.values())
    weight_sum = sum(weights.values())
    return sum((observed[k] - total * w / weight_sum) ** 2 / (total * w / weight_sum)
               for k, w in weights.items())


def test_simple_shuffle_follows_the_weights() -> None:
    router, _, _ = make([("m", "a", 1), ("m", "b", 3)], seed=1234)
    picks = Counter(router.choose("m", set()).id for _ in range(4000))  # type: ignore[union-attr]
    assert set(picks) == {"a", "b"}
    # 1 degree of freedom: 10.83 is the 0.1% critical value.
    assert _chi_square(picks, {"a": 1, "b": 3}) < 10.83
    assert 850 < picks["a"] < 1150


def test_simple_shuffle_with_three_weights() -> None:
    router, _, _ = make([("m", "a", 1), ("m", "b", 2), ("m", "c", 5)], seed=99)
    picks = Counter(router.choose("m", set()).id for _ in range(8000))  # type: ignore[union-attr]
    # 2 degrees of freedom: 13.82 is the 0.1% critical value.
    assert _chi_square(picks, {"a": 1, "b": 2, "c": 5}) < 13.82


def test_a_seeded_router_is_reproducible() -> None:
    first, _, _ = make([("m", "a"), ("m", "b"), ("m", "c")], seed=7)
    second, _, _ = make([("m", "a"), ("m", "b"), ("m", "c")], seed=7)
    picks = [first.choose("m", set()).id for _ in range(50)]  # type: ignore[union-attr]
    assert picks == [second.choose("m", set()).id for _ in range(50)]  # type: ignore[union-attr]
    assert len(set(picks)) == 3


async def test_sends_are_spread_by_weight() -> None:
    router, engine, _ = make([("m", "a", 1), ("m", "b", 4)], seed=3)
    for _ in range(500):
        await router.send("m", CALL)
    counts = Counter(engine.calls)
    assert _chi_square(counts, {"a": 1, "b": 4}) < 10.83


def test_choose_skips_deployments_that_are_cooling_down(clock: Clock) -> None:
    router, _, health = make([("m", "a"), ("m", "b")], clock=clock, cooldown_time=30)
    health.failed("a", UpstreamAuthFailed("x"))
    assert {router.choose("m", set()).id for _ in range(30)} == {"b"}  # type: ignore[union-attr]
    health.failed("b", UpstreamAuthFailed("x"))
    assert router.choose("m", set()) is None


def test_choose_prefers_untried_deployments() -> None:
    router, _, _ = make([("m", "a"), ("m", "b"), ("m", "c")])
    assert {router.choose("m", {"a", "b"}).id for _ in range(30)} == {"c"}  # type: ignore[union-attr]
    # When every deployment was tried, any healthy one may be tried again.
    assert router.choose("m", {"a", "b", "c"}) is not None


def test_least_busy_picks_the_deployment_with_fewer_in_flight() -> None:
    router, _, health = make([("m", "a"), ("m", "b"), ("m", "c")], routing_strategy="least-busy")
    health.started("a")
    health.started("a")
    health.started("b")
    health.started("c")
    health.started("c")
    assert {router.choose("m", set()).id for _ in range(30)} == {"b"}  # type: ignore[union-attr]


async def test_least_busy_avoids_a_deployment_holding_an_open_stream() -> None:
    router, engine, _ = make([("m", "a"), ("m", "b")], routing_strategy="least-busy")
    streamed = await router.open_stream("m", CALL)
    for _ in range(5):
        routed = await router.send("m", CALL)
        assert routed.deployment.id != streamed.deployment.id
    router.stream_finished(streamed.deployment, None)
    assert len(engine.calls) == 6


def test_latency_based_prefers_the_faster_measured_deployment() -> None:
    router, _, health = make([("m", "slow"), ("m", "fast")], routing_strategy="latency-based-routing")
    health.succeeded("slow", 0.5)
    health.succeeded("fast", 0.1)
    assert {router.choose("m", set()).id for _ in range(30)} == {"fast"}  # type: ignore[union-attr]


def test_latency_based_tries_unmeasured_deployments_first() -> None:
    router, _, health = make([("m", "a"), ("m", "b"), ("m", "new")], routing_strategy="latency-based-routing")
    health.succeeded("a", 0.01)
    health.succeeded("b", 0.02)
    assert router.choose("m", set()).id == "new"  # type: ignore[union-attr]


async def test_latency_based_learns_from_measurements() -> None:
    router, engine, _ = make([("m", "slow"), ("m", "fast")], routing_strategy="latency-based-routing",
                             delays={"slow": 0.3})
    for _ in range(6):
        await router.send("m", CALL)
    assert set(engine.calls[:2]) == {"slow", "fast"}  # each measured once
    assert engine.calls[2:] == ["fast"] * 4


# -- retries and fallbacks ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
async def test_a_retry_goes_to_an_untried_deployment(seed: int) -> None:
    router, engine, _ = make([("m", "a"), ("m", "b"), ("m", "c")],
                             lambda d, n: UpstreamError("boom") if n < 2 else None, seed=seed)
    routed = await router.send("m", CALL)
    assert len(set(engine.calls)) == 3
    assert routed.deployment.id == engine.calls[2]
    assert routed.attempts == 3
    assert [e.action for e in routed.events] == ["retry", "retry"]
    assert [e.deployment for e in routed.events] == engine.calls[:2]


async def test_a_non_retryable_error_is_raised_at_once() -> None:
    rejected = UpstreamRejectedRequest("bad body", param="temperature")
    router, engine, health = make([("m", "a"), ("m", "b"), ("backup", "z")],
                                  lambda d, n: rejected, fallbacks=[{"m": ["backup"]}], num_retries=3)
    with pytest.raises(UpstreamRejectedRequest) as caught:
        await router.send("m", CALL)
    assert caught.value is rejected
    assert len(engine.calls) == 1
    assert in_flight(health, "a", "b", "z") == [0, 0, 0]


async def test_retries_then_the_fallback_alias(sleeps: list[float]) -> None:
    router, engine, _ = make([("primary", "p"), ("backup", "b")], fail_ids(lambda: UpstreamError("x"), "p"),
                             num_retries=2, fallbacks=[{"primary": ["backup"]}])
    routed = await router.send("primary", CALL)

    assert engine.calls == ["p", "p", "p", "b"]
    assert routed.deployment.id == "b"
    assert routed.deployment.alias == "backup"
    assert routed.attempts == 4
    assert [e.action for e in routed.events] == ["retry", "retry", "fallback"]
    assert {e.error for e in routed.events} == {"upstream_error"}
    assert sleeps == []  # no Retry-After and retry_after=0: no wait


@pytest.mark.parametrize("num_retries", [0, 1, 4])
async def test_attempts_are_num_retries_plus_one(num_retries: int) -> None:
    router, engine, _ = make([("m", "a")], lambda d, n: UpstreamTimeout("slow"), num_retries=num_retries)
    with pytest.raises(UpstreamTimeout):
        await router.send("m", CALL)
    assert len(engine.calls) == num_retries + 1


async def test_fallbacks_are_tried_in_order() -> None:
    router, engine, _ = make([("m", "a"), ("f1", "x"), ("f2", "y")],
                             fail_ids(lambda: UpstreamError("down"), "a", "x"),
                             num_retries=0, fallbacks=[{"m": ["f1", "f2"]}])
    routed = await router.send("m", CALL)
    assert engine.calls == ["a", "x", "y"]
    assert routed.deployment.id == "y"


async def test_the_last_error_is_raised_when_everything_failed() -> None:
    errors = [UpstreamError("first"), UpstreamTimeout("last")]
    router, engine, _ = make([("m", "a"), ("f", "x")], lambda d, n: errors[n], num_retries=0,
                             fallbacks=[{"m": ["f"]}])
    with pytest.raises(UpstreamTimeout) as caught:
        await router.send("m", CALL)
    assert caught.value is errors[1]
    assert engine.calls == ["a", "x"]


async def test_a_deployment_cooled_down_mid_request_is_not_retried(clock: Clock, sleeps: list[float]) -> None:
    router, engine, health = make([("m", "a"), ("f", "x")], fail_ids(lambda: UpstreamError("x"), "a"),
                                  clock=clock, num_retries=5, allowed_fails=1, fallbacks=[{"m": ["f"]}])
    routed = await router.send("m", CALL)
    assert engine.calls == ["a", "a", "x"]  # the second failure cooled "a" down
    assert not health.available("a")
    assert routed.deployment.id == "x"


async def test_a_short_retry_after_is_waited_for(clock: Clock, sleeps: list[float]) -> None:
    router, engine, _ = make([("m", "a")],
                             lambda d, n: UpstreamRateLimited("slow", retry_after=2) if n == 0 else None,
                             clock=clock, max_retry_wait=5)
    routed = await router.send("m", CALL)
    assert sleeps == [2]
    assert engine.calls == ["a", "a"]  # the cooldown ended while the router waited
    assert [e.action for e in routed.events] == ["retry"]


class _BusyMachineClock(Clock):
    """Timers wake ``early`` (uvloop's are millisecond-grained), and each clock reading comes
    ``tick`` after the one before, as on a busy machine."""

    def __init__(self, early: float, tick: float) -> None:
        super().__init__()
        self.early, self.tick = early, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


async def test_a_retry_after_ending_between_two_clock_readings_is_still_retried(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in CI: the router's wake-up read "still cooling down", the next reading "available
    now", and the request failed with the provider's 429 instead of being retried."""
    clock = _BusyMachineClock(early=0.001, tick=0.0005)

    class EarlyTimers:
        async def sleep(self, delay: float) -> None:
            clock.now += delay - clock.early if delay > clock.early else delay

        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

    monkeypatch.setattr(router_module, "asyncio", EarlyTimers())
    router, engine, _ = make([("m", "a")],
                             lambda d, n: UpstreamRateLimited("slow", retry_after=1) if n == 0 else None,
                             clock=clock, max_retry_wait=5)
    routed = await router.send("m", CALL)
    assert engine.calls == ["a", "a"]
    assert routed.attempts == 2


async def test_a_long_retry_after_skips_to_the_fallback_without_sleeping(clock: Clock,
                                                                        sleeps: list[float]) -> None:
    router, engine, _ = make([("m", "a"), ("m", "b"), ("f", "x")],
                             fail_ids(lambda: UpstreamRateLimited("slow", retry_after=60), "a", "b"),
                             clock=clock, max_retry_wait=5, num_retries=3, fallbacks=[{"m": ["f"]}])
    routed = await router.send("m", CALL)
    assert sleeps == []
    assert len(engine.calls) == 2
    assert engine.calls[-1] == "x"
    assert routed.events[0].action == "fallback"
    assert routed.events[0].error == "rate_limit_exceeded"


async def test_rate_limit_without_a_hint_backs_off_and_switches(clock: Clock, sleeps: list[float]) -> None:
    router, engine, health = make([("m", "a"), ("m", "b")],
                                  lambda d, n: UpstreamRateLimited("slow") if n == 0 else None,
                                  clock=clock, cooldown_time=30)
    routed = await router.send("m", CALL)
    limited = engine.calls[0]
    assert routed.deployment.id != limited
    assert len(sleeps) == 1
    assert 0.125 <= sleeps[0] <= 0.25  # jittered exponential backoff, first step
    assert not health.available(limited)  # cooling down for cooldown_time


async def test_the_configured_retry_after_is_a_minimum_wait(clock: Clock, sleeps: list[float]) -> None:
    router, engine, _ = make([("m", "a")], lambda d, n: UpstreamError("x") if n < 2 else None,
                             clock=clock, retry_after=0.5, num_retries=2)
    await router.send("m", CALL)
    assert sleeps == [0.5, 0.5]
    assert len(engine.calls) == 3


async def test_context_window_error_switches_to_context_window_fallbacks() -> None:
    router, engine, _ = make(
        [("small", "s"), ("other", "o"), ("large", "l")],
        fail_ids(lambda: ContextWindowExceeded("too long", param="messages"), "s"),
        num_retries=3, fallbacks=[{"small": ["other"]}], context_window_fallbacks=[{"small": ["large"]}])
    routed = await router.send("small", CALL)
    assert engine.calls == ["s", "l"]
    assert routed.deployment.alias == "large"
    assert routed.attempts == 2
    assert [(e.deployment, e.error, e.action) for e in routed.events] == [
        ("s", "context_length_exceeded", "fallback")]


async def test_context_window_error_without_a_larger_model_is_raised() -> None:
    router, engine, _ = make([("small", "s"), ("other", "o")],
                             fail_ids(lambda: ContextWindowExceeded("too long"), "s"),
                             num_retries=3, fallbacks=[{"small": ["other"]}])
    with pytest.raises(ContextWindowExceeded):
        await router.send("small", CALL)
    assert engine.calls == ["s"]


async def test_context_window_error_on_the_larger_model_too_is_raised() -> None:
    router, engine, _ = make([("small", "s"), ("large", "l")],
                             lambda d, n: ContextWindowExceeded("too long"),
                             context_window_fallbacks=[{"small": ["large"]}])
    with pytest.raises(ContextWindowExceeded):
        await router.send("small", CALL)
    assert engine.calls == ["s", "l"]


async def test_requests_use_the_deployments_engine() -> None:
    config = parse_config({"model_list": [
        {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-3-5-haiku-20241022"}},
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://127.0.0.1:9"}},
    ]}, environ={})
    health = HealthBook(allowed_fails=3, cooldown_time=30)
    native, via_litellm = FakeEngine(health), FakeEngine(health)
    router = Router(config, build_deployments(config), {"native": native, "litellm": via_litellm}, health)
    await router.send("claude", CALL)
    await router.send("gpt", CALL)
    assert via_litellm.calls == ["claude#1"]
    assert native.calls == ["gpt#1"]


# -- nothing available ----------------------------------------------------------------------------


async def test_all_deployments_cooling_down_is_service_unavailable() -> None:
    router, engine, health = make([("m", "a"), ("m", "b")], cooldown_time=30)
    health.failed("a", UpstreamAuthFailed("x"))
    health.failed("b", UpstreamAuthFailed("x"))

    with pytest.raises(ServiceUnavailable) as caught:
        await router.send("m", CALL)

    error = caught.value
    assert error.status == 503
    assert engine.calls == []
    assert error.retry_after is not None
    assert 29 < error.retry_after <= 30
    assert error.headers()["retry-after"] == "30"


async def test_service_unavailable_retry_after_uses_the_health_clock(clock: Clock) -> None:
    router, _, health = make([("m", "a")], clock=clock, cooldown_time=30)
    health.failed("a", UpstreamAuthFailed("x"))
    with pytest.raises(ServiceUnavailable) as caught:
        await router.send("m", CALL)
    assert caught.value.retry_after == 30


async def test_a_cooling_primary_goes_straight_to_the_fallback(clock: Clock) -> None:
    router, engine, health = make([("m", "a"), ("f", "x")], clock=clock, cooldown_time=30,
                                  fallbacks=[{"m": ["f"]}])
    health.failed("a", UpstreamAuthFailed("x"))
    routed = await router.send("m", CALL)
    assert engine.calls == ["x"]
    assert routed.attempts == 1


# -- in-flight accounting -------------------------------------------------------------------------


async def test_in_flight_is_one_during_a_call_and_zero_after_success() -> None:
    router, engine, health = make([("m", "a")])
    routed: Routed[UpstreamResponse] = await router.send("m", CALL)
    assert routed.value.response_model == "m"
    assert routed.attempts == 1
    assert routed.upstream_seconds >= 0
    assert engine.in_flight_seen == [1]
    assert in_flight(health, "a") == [0]
    assert health.state("a").latency_ewma is not None


async def test_in_flight_returns_to_zero_after_failures(sleeps: list[float]) -> None:
    router, engine, health = make([("m", "a"), ("m", "b")], lambda d, n: UpstreamError("x"), num_retries=3)
    with pytest.raises(UpstreamError):
        await router.send("m", CALL)
    assert len(engine.calls) == 4
    assert engine.in_flight_seen == [1, 1, 1, 1]
    assert in_flight(health, "a", "b") == [0, 0]


async def test_in_flight_returns_to_zero_after_an_unexpected_exception() -> None:
    router, _, health = make([("m", "a")], lambda d, n: RuntimeError("engine bug"))
    with pytest.raises(RuntimeError):
        await router.send("m", CALL)
    assert in_flight(health, "a") == [0]


async def test_in_flight_returns_to_zero_when_the_request_is_cancelled() -> None:
    router, engine, health = make([("m", "a")], delays={"a": 3600})
    task = asyncio.ensure_future(router.send("m", CALL))
    while not engine.calls:
        await asyncio.sleep(0)
    assert in_flight(health, "a") == [1]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert in_flight(health, "a") == [0]


async def test_an_open_stream_stays_in_flight_until_finished() -> None:
    router, _, health = make([("m", "a")])
    routed = await router.open_stream("m", CALL)
    assert [frame async for frame in routed.value][-1] == b"data: [DONE]\n\n"
    assert in_flight(health, "a") == [1]
    router.stream_finished(routed.deployment, None)
    assert in_flight(health, "a") == [0]


async def test_a_stream_that_failed_to_open_is_not_in_flight(sleeps: list[float]) -> None:
    router, engine, health = make([("m", "a"), ("m", "b")],
                                  lambda d, n: UpstreamError("x") if n == 0 else None)
    routed = await router.open_stream("m", CALL)
    failed = engine.calls[0]
    assert routed.deployment.id != failed
    assert health.state(failed).in_flight == 0
    assert health.state(routed.deployment.id).in_flight == 1
    router.stream_finished(routed.deployment, None)
    assert in_flight(health, "a", "b") == [0, 0]


async def test_errors_are_recorded_in_the_health_book(clock: Clock) -> None:
    router, _, health = make([("m", "a")], lambda d, n: UpstreamAuthFailed("bad"), clock=clock,
                             cooldown_time=30, num_retries=2)
    with pytest.raises(GatewayError):
        await router.send("m", CALL)
    assert not health.available("a")
    assert health.cooling_down() == ["a"]


async def test_deployment_rpm_from_model_list_is_respected_per_process(clock: Clock) -> None:
    """A deployment at its own rpm is skipped until its minute has passed (litellm's semantics)."""
    config = parse_config({"model_list": [
        {"model_name": "m", "litellm_params": {"model": "openai/a", "api_base": "http://127.0.0.1:1/v1", "rpm": 2},
         "model_info": {"id": "capped"}},
        {"model_name": "m", "litellm_params": {"model": "openai/b", "api_base": "http://127.0.0.1:1/v1"},
         "model_info": {"id": "open"}},
    ], "router_settings": {"num_retries": 0}}, environ={})
    health = HealthBook(allowed_fails=3, cooldown_time=30, monotonic=clock)
    engine = FakeEngine(health)
    router = Router(config, build_deployments(config), {"native": engine, "litellm": engine}, health,
                    rng=random.Random(7))
    call = UpstreamCall(operation="chat", body={"model": "m", "messages": []})
    served = [(await router.send("m", call)).deployment.id for _ in range(20)]
    assert served.count("capped") == 2
    clock.now += 61
    served = [(await router.send("m", call)).deployment.id for _ in range(20)]
    assert served.count("capped") == 2


def test_weight_defaults_to_rpm_like_litellm() -> None:
    config = parse_config({"model_list": [
        {"model_name": "m", "litellm_params": {"model": "openai/a", "api_base": "http://h/v1", "rpm": 300}},
        {"model_name": "m", "litellm_params": {"model": "openai/b", "api_base": "http://h/v1", "weight": 2}},
        {"model_name": "m", "litellm_params": {"model": "openai/c", "api_base": "http://h/v1"}},
    ]}, environ={})
    assert [d.weight for d in build_deployments(config)["m"]] == [300, 2, 1.0]
