"""Pipeline stages 3 (admit) and 7 (settle) for per-key limits and budgets.

Admission is one limiter call before the upstream call. Settlement replaces the reservation's
estimates by the real usage and cost, exactly once per admitted request — after a response, at the
end of a stream, after an error, or when the client went away — as a background task, so it is
off the response's critical path and survives the cancellation of the request that caused it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from gateway.auth import Principal
from gateway.config import LimitSettings
from gateway.errors import QuotaExceeded, RateLimited
from gateway.limits.types import Ask, Decision, Limiter, Quota, Spend
from gateway.routing.deployments import Deployment, Operation
from gateway.routing.router import Router
from gateway.routing.types import Usage
from gateway.spend.estimate import estimate_tokens

log = logging.getLogger("gateway.limits")


@dataclass(slots=True)
class Reservation:
    quota: Quota
    ask: Ask
    decision: Decision
    alias: str
    #: The admission estimate of prompt tokens, charged when a stream ends without a usage block.
    prompt_tokens: int = 0
    settled: bool = field(default=False)


class BackgroundWork:
    """Keeps references to fire-and-forget tasks (so they are not garbage-collected mid-flight) and
    lets the lifespan wait for them at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, within: float = 5.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within)


def quota_for(principal: Principal, defaults: LimitSettings, alias: str) -> Quota | None:
    record = principal.record
    if record is None:
        return None  # the master key has no limits
    per_model = record.model_limits.get(alias)
    quota = Quota(
        key_id=record.id,
        rpm=record.rpm if record.rpm is not None else defaults.default_rpm,
        tpm=record.tpm if record.tpm is not None else defaults.default_tpm,
        max_parallel=record.max_parallel if record.max_parallel is not None else defaults.default_max_parallel,
        budget_usd=record.budget_usd,
        budget_period=record.budget_period or ("total" if record.budget_usd is not None else None),
        model=alias if per_model else None,
        model_rpm=per_model.rpm if per_model else None,
        model_tpm=per_model.tpm if per_model else None,
    )
    return None if quota.unlimited else quota


def refusal(decision: Decision, headers: dict[str, str]) -> RateLimited:
    if decision.reason == "budget":
        return QuotaExceeded("this key's budget is exhausted for the current period",
                             retry_after=decision.retry_after, headers=headers)
    what = {"rpm": "requests per minute", "tpm": "tokens per minute", "parallel": "concurrent requests",
            "model_rpm": "requests per minute for this model", "model_tpm": "tokens per minute for this model",
            }.get(decision.reason or "", "a limit")
    return RateLimited(f"rate limit reached for {what} on this key", retry_after=decision.retry_after,
                       headers=headers)


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the limits the key has."""
    headers: dict[str, str] = {}
    if decision.limit_requests is not None:
        headers["x-ratelimit-limit-requests"] = str(decision.limit_requests)
        headers["x-ratelimit-remaining-requests"] = str(max(0, decision.remaining_requests or 0))
        headers["x-ratelimit-reset-requests"] = f"{decision.reset_requests or 0:.3f}s"
    if decision.limit_tokens is not None:
        headers["x-ratelimit-limit-tokens"] = str(decision.limit_tokens)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, decision.remaining_tokens or 0))
        headers["x-ratelimit-reset-tokens"] = f"{decision.reset_tokens or 0:.3f}s"
    return headers


class Admission:
    def __init__(self, limiter: Limiter, background: BackgroundWork) -> None:
        self._limiter = limiter
        self._background = background

    async def admit(self, principal: Principal, operation: Operation, body: dict[str, Any],
                    alias: str, router: Router, *, cache_hit: bool = False,
                    on_decision: Callable[[Decision], None] | None = None) -> Reservation | None:
        """A cache hit (``cache_hit``) takes a request slot only: no tokens, concurrency or budget.
        ``on_decision`` hears the limiter's decision before a refusal is raised (metrics, traces)."""
        quota = quota_for(principal, router.config.limit_settings, alias)
        if quota is None:
            return None
        tokens, cost, prompt = 0, 0.0, 0
        if not cache_hit and (quota.tpm is not None or quota.model_tpm is not None or quota.budget_usd is not None):
            deployments = router.deployments_in_chain(alias)
            default_completion = router.config.limit_settings.default_completion_tokens
            prompt, completion = estimate_tokens(operation, body, default_completion)
            tokens = prompt + completion
            # Reserve the dearest deployment that could answer, fallbacks included: never too little.
            expected = Usage(prompt_tokens=prompt, completion_tokens=completion)
            cost = max(router.price(d).cost(expected) for d in deployments)
        # The gateway's own 96 random bits, never the client's x-request-id: a client that repeats its
        # request id must not make two reservations share one (the windows and the settled ids are
        # keyed by it), and a short id is most of what the windows hold per request.
        ask = Ask(reservation_id=f"{random.getrandbits(96):024x}", tokens=tokens, cost_usd=cost,
                  cache_hit=cache_hit)
        admitting = self._limiter.admit(quota, ask, time.time())
        if self._limiter.admit_cancel_safe:
            decision = await admitting
        else:
            pending = asyncio.ensure_future(admitting)
            try:
                # Shielded: if the client leaves mid-admission, the store call still completes, and
                # whatever it took is given back instead of leaking until its lease expires.
                decision = await asyncio.shield(pending)
            except asyncio.CancelledError:
                pending.add_done_callback(lambda done: self._release_orphan(done, quota, ask, alias))
                raise
        if on_decision is not None:
            on_decision(decision)
        if not decision.allowed:
            raise refusal(decision, rate_limit_headers(decision))
        return Reservation(quota, ask, decision, alias, prompt_tokens=prompt)

    def _release_orphan(self, done: asyncio.Future[Decision], quota: Quota, ask: Ask, alias: str) -> None:
        if not done.cancelled() and done.exception() is None and done.result().allowed:
            self._background.spawn(self._settle(Reservation(quota, ask, done.result(), alias),
                                                Spend(model=alias, input_tokens=0, output_tokens=0, cost_usd=0.0)))

    def settle(self, reservation: Reservation | None, router: Router, deployment: Deployment | None,
               usage: Usage | None) -> None:
        """Settle once; later calls for the same reservation do nothing."""
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        used = usage or Usage()
        cost = router.price(deployment).cost(used) if deployment is not None else 0.0
        spend = Spend(model=reservation.alias, input_tokens=used.prompt_tokens,
                      output_tokens=used.completion_tokens, cost_usd=cost)
        self._background.spawn(self._settle(reservation, spend))

    def settle_hit(self, reservation: Reservation | None, saved_usd: float) -> None:
        """Settle a cache hit: nothing used or charged, ``saved_usd`` recorded in the ledger."""
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        spend = Spend(model=reservation.alias, input_tokens=0, output_tokens=0, cost_usd=0.0, saved_usd=saved_usd)
        self._background.spawn(self._settle(reservation, spend))

    async def _settle(self, reservation: Reservation, spend: Spend) -> None:
        try:
            await self._limiter.settle(reservation.quota, reservation.ask, spend, time.time())
        except Exception:
            # Its concurrency slot comes back when the lease expires; the ledger misses this request.
            log.exception("could not settle reservation %s", reservation.ask.reservation_id)
