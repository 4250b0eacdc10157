"""The policy for a slow or absent Redis: rate limits fall back to this process, budgets fail closed.

After a store error the shared limiter is not asked again for ``probe_interval`` seconds (no retry
storms, no request waiting on a dead store over and over); then the next request probes it, so
service returns to the shared counts within about a second of Redis coming back. While in fallback,
RPM/TPM/concurrency hold per process (a replica count times looser), and a key with a budget gets
503: spending money on counts nobody else can see would break the budget's promise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gateway.errors import ServiceUnavailable
from gateway.keys.store import store_errors
from gateway.limits.types import Ask, BudgetStatus, Decision, LedgerRow, Limiter, Quota, Spend, WindowUsage

log = logging.getLogger("gateway.limits")


class FailoverLimiter:
    def __init__(self, shared: Limiter, local: Limiter, *, probe_interval: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.name = f"{shared.name} (falls back to {local.name})"
        self.admit_cancel_safe = shared.admit_cancel_safe and local.admit_cancel_safe
        self._shared = shared
        self._local = local
        self._probe_interval = probe_interval
        self._monotonic = monotonic
        self._down_until = 0.0
        #: Reservations admitted by the local limiter, so their settlement goes there too.
        self._local_reservations: set[str] = set()

    @property
    def degraded(self) -> bool:
        return self._monotonic() < self._down_until

    def _mark_down(self, error: Exception) -> None:
        if not self.degraded:
            log.warning("limiter store unreachable (%s): rate limits per process, budgets refused",
                        type(error).__name__)
        self._down_until = self._monotonic() + self._probe_interval

    async def admit(self, quota: Quota, ask: Ask, now: float) -> Decision:
        if not self.degraded:
            try:
                return await self._shared.admit(quota, ask, now)
            except store_errors() as error:
                self._mark_down(error)
        if quota.budget_usd is not None:
            raise ServiceUnavailable("the budget store is unreachable; budgeted keys are paused", retry_after=1)
        self._local_reservations.add(ask.reservation_id)
        return await self._local.admit(quota, ask, now)

    async def settle(self, quota: Quota, ask: Ask, spend: Spend, now: float) -> None:
        if ask.reservation_id in self._local_reservations:
            self._local_reservations.discard(ask.reservation_id)
            await self._local.settle(quota, ask, spend, now)
            return
        try:
            await self._shared.settle(quota, ask, spend, now)
        except store_errors() as error:
            # The shared slot comes back when its lease expires; the ledger misses this request.
            self._mark_down(error)
            log.error("could not settle %s on the shared store: %s", ask.reservation_id, type(error).__name__)

    async def budget(self, quota: Quota, now: float) -> BudgetStatus:
        return await self._shared.budget(quota, now)

    async def usage(self, quota: Quota, now: float) -> WindowUsage:
        return await self._shared.usage(quota, now)

    async def ledger(self, key_id: str) -> list[LedgerRow]:
        return await self._shared.ledger(key_id)

    async def close(self) -> None:
        await self._shared.close()
        await self._local.close()
