"""The routing layer above both engines: choose a deployment, retry, fall back, cool down.

Why our own instead of ``litellm.Router``: measured here (docs/routing-measurements.md),
``Router.acompletion`` costs 6.5-10 ms of CPU per call against ~0.25 ms for a pooled aiohttp forward,
and its retries live inside the litellm call path, which the native engine bypasses; this router
adds about 0.03 ms to the engine it drives. The policy mirrors litellm's router settings so a LiteLLM
user's ``router_settings`` mean the same thing here (see docs/routing.md).

Invariants: a deployment's in-flight count is incremented and decremented exactly once per attempt;
a stream is retried only until its first frame was read, never after it reached the client.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Generic, Protocol, TypeVar

from gateway.config import RoutingConfig
from gateway.errors import ContextWindowExceeded, GatewayError, ServiceUnavailable, UpstreamRateLimited
from gateway.routing.deployments import Deployment, EngineName
from gateway.routing.health import HealthBook
from gateway.routing.types import Engine, UpstreamCall, UpstreamResponse, UpstreamStream, Usage
from gateway.spend.prices import FREE, Price, resolve_price

T = TypeVar("T")


@dataclass(slots=True)
class AttemptEvent:
    """One failed attempt, for response headers, span events and logs."""

    deployment: str
    error: str
    action: str  # "retry" | "fallback" | "give-up" (the request's last attempt failed)


class AttemptTracer(Protocol):
    """Told about every upstream attempt of one request, so that one client span covers exactly one
    attempt (gateway/observability/tracing.py). A stream's attempt ends when the pipeline closes it."""

    def attempt_started(self, deployment: Deployment, call: UpstreamCall) -> dict[str, str]:
        """Returns headers to send with this attempt only (the trace context)."""
        ...

    def attempt_failed(self, deployment: Deployment, error: BaseException, action: str) -> None:
        """``error`` is a GatewayError, or CancelledError when the client went away mid-attempt."""
        ...

    def attempt_succeeded(self, deployment: Deployment, value: object) -> None:
        """``value`` is the UpstreamResponse, or the opened UpstreamStream (still open)."""
        ...

    def stream_closed(self, stream: UpstreamStream) -> None: ...


@dataclass(slots=True)
class Routed(Generic[T]):
    value: T
    deployment: Deployment
    attempts: int
    upstream_seconds: float
    events: list[AttemptEvent] = field(default_factory=list)


def _tier(deployment: Deployment) -> float:
    order = deployment.params.order
    return float("inf") if order is None else order


class Router:
    def __init__(self, config: RoutingConfig, deployments: Mapping[str, tuple[Deployment, ...]],
                 engines: Mapping[EngineName, Engine], health: HealthBook,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.settings = config.router_settings
        self.deployments = deployments
        self._engines = engines
        self._health = health
        self._rng = rng or random.Random()
        self._prices = {d.id: resolve_price(config, d) for group in deployments.values() for d in group}
        health.configure(allowed_fails=self.settings.allowed_fails,
                         cooldown_time=self.settings.cooldown_time)

    def aliases(self) -> list[str]:
        return list(self.deployments)

    def knows(self, alias: str) -> bool:
        return alias in self.deployments

    def price(self, deployment: Deployment) -> Price:
        return self._prices.get(deployment.id, FREE)

    def deployments_in_chain(self, alias: str) -> list[Deployment]:
        """Every deployment that may answer a request for ``alias``, fallbacks included."""
        aliases = [alias, *self.config.fallbacks_for(alias),
                   *self.config.fallbacks_for(alias, context_window=True)]
        return [d for name in dict.fromkeys(aliases) for d in self.deployments.get(name, ())]

    # -- choosing -------------------------------------------------------------------------------

    def choose(self, alias: str, tried: set[str]) -> Deployment | None:
        """A healthy deployment of ``alias``, preferring ones this request has not tried yet."""
        healthy = [d for d in self.deployments.get(alias, ())
                   if self._health.available(d.id) and self._health.within_rate(d.id, d.params.rpm, d.params.tpm)]
        if not healthy:
            return None
        fresh = [d for d in healthy if d.id not in tried] or healthy
        # `order`: lower tiers are used first; deployments without one come after every tier.
        top = min(_tier(d) for d in fresh)
        fresh = [d for d in fresh if _tier(d) == top]
        strategy = self.settings.routing_strategy
        if strategy == "least-busy":
            least = min(self._health.state(d.id).in_flight for d in fresh)
            fresh = [d for d in fresh if self._health.state(d.id).in_flight == least]
            return self._rng.choice(fresh)
        if strategy == "latency-based-routing":
            unmeasured = [d for d in fresh if self._health.state(d.id).latency_ewma is None]
            if unmeasured:
                return self._rng.choice(unmeasured)
            return min(fresh, key=lambda d: self._health.state(d.id).latency_ewma or 0.0)
        return self._rng.choices(fresh, weights=[d.weight for d in fresh])[0]

    def _backoff(self, attempt: int, error: GatewayError) -> float:
        wait = self.settings.retry_after
        if error.retry_after is not None:
            wait = max(wait, error.retry_after)
        elif isinstance(error, UpstreamRateLimited):
            wait = max(wait, min(8.0, 0.25 * 2**attempt) * (0.5 + self._rng.random() / 2))
        return wait

    # -- calling --------------------------------------------------------------------------------

    async def send(self, alias: str, call: UpstreamCall, *, events: list[AttemptEvent] | None = None,
                   tracer: AttemptTracer | None = None) -> Routed[UpstreamResponse]:
        """``events`` (the caller's list) receives one event per failed attempt, also when the
        request fails as a whole; ``tracer`` is told about each attempt."""
        routed = await self._run(alias, lambda d, c: self._engines[d.engine].send(d, c), call,
                                 streaming=False, events=events, tracer=tracer)
        self._count_tokens(routed.deployment, routed.value.usage)
        return routed

    async def open_stream(self, alias: str, call: UpstreamCall, *, events: list[AttemptEvent] | None = None,
                          tracer: AttemptTracer | None = None) -> Routed[UpstreamStream]:
        return await self._run(alias, lambda d, c: self._engines[d.engine].open_stream(d, c), call,
                               streaming=True, events=events, tracer=tracer)

    def stream_finished(self, deployment: Deployment, usage: Usage | None) -> None:
        """Called once when a stream returned by ``open_stream`` has ended, however it ended."""
        self._health.finished(deployment.id)
        self._count_tokens(deployment, usage)

    def _count_tokens(self, deployment: Deployment, usage: Usage | None) -> None:
        if usage is not None and deployment.params.tpm is not None:
            self._health.add_tokens(deployment.id, usage.prompt_tokens + usage.completion_tokens)

    async def _run(self, alias: str, attempt: Callable[[Deployment, UpstreamCall], Awaitable[T]],
                   call: UpstreamCall, *, streaming: bool, events: list[AttemptEvent] | None,
                   tracer: AttemptTracer | None) -> Routed[T]:
        chain = [alias, *self.config.fallbacks_for(alias)]
        events = [] if events is None else events

        def failed(deployment: Deployment, error: GatewayError, action: str) -> None:
            events.append(AttemptEvent(deployment.id, error.code or "", action))
            if tracer is not None:
                tracer.attempt_failed(deployment, error, action)

        attempts = 0
        upstream_seconds = 0.0
        last_error: GatewayError | None = None
        switched_for_context = False
        position = 0
        while position < len(chain):
            current = chain[position]
            position += 1
            tried: set[str] = set()
            for retry in range(self.settings.num_retries + 1):
                deployment = self.choose(current, tried)
                if deployment is None and retry > 0:
                    # The deployment we just waited for may still be resting for a few ms: timers
                    # (uvloop's are millisecond-grained) can wake before the cooldown ends. None:
                    # its rest ended between choose()'s clock reading and this one.
                    soonest = self._next_available(current) or 0.0
                    if soonest <= self.settings.max_retry_wait:
                        await asyncio.sleep(soonest + 0.002)
                        deployment = self.choose(current, tried)
                if deployment is None:
                    break
                tried.add(deployment.id)
                attempts += 1
                self._health.started(deployment.id)
                attempt_call = call
                if tracer is not None:
                    extra = tracer.attempt_started(deployment, call)
                    if extra:
                        attempt_call = replace(call, headers={**call.headers, **extra})
                started = time.perf_counter()
                keep_in_flight = False
                try:
                    value = await attempt(deployment, attempt_call)
                    keep_in_flight = streaming
                except GatewayError as error:
                    upstream_seconds += time.perf_counter() - started
                    self._health.failed(deployment.id, error)
                    last_error = error
                    if isinstance(error, ContextWindowExceeded) and not switched_for_context:
                        switched_for_context = True
                        larger = self.config.fallbacks_for(alias, context_window=True)
                        failed(deployment, error, "fallback" if larger else "give-up")
                        chain, position = larger, 0
                        break
                    if not error.retryable:
                        failed(deployment, error, "give-up")
                        raise
                    wait = self._backoff(retry, error)
                    last_try = retry == self.settings.num_retries
                    if last_try or wait > self.settings.max_retry_wait:
                        failed(deployment, error, "fallback" if position < len(chain) else "give-up")
                        break
                    failed(deployment, error, "retry")
                    if wait > 0:
                        await asyncio.sleep(wait)
                    continue
                except BaseException as abandoned:
                    if tracer is not None:  # cancelled (the client went away) or a bug
                        tracer.attempt_failed(deployment, abandoned, "give-up")
                    raise
                finally:
                    if not keep_in_flight:
                        self._health.finished(deployment.id)
                elapsed = time.perf_counter() - started
                self._health.succeeded(deployment.id, elapsed)
                if tracer is not None:
                    tracer.attempt_succeeded(deployment, value)
                return Routed(value, deployment, attempts, upstream_seconds + elapsed, events)
        if last_error is not None:
            raise last_error
        raise ServiceUnavailable(f"no deployment of model {alias!r} is available right now "
                                 "(all are cooling down)", retry_after=self._next_available(alias))

    def _next_available(self, alias: str) -> float | None:
        waits = [self._health.seconds_until_available(d.id) for d in self.deployments.get(alias, ())]
        positive = [w for w in waits if w > 0]
        return min(positive) if positive else None
