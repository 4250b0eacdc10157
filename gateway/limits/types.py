"""What the limiter decides on, and the Limiter protocol every backend implements.

One ``admit`` call checks every limit of a key at once and, only if all pass, takes everything it
checked: a request slot in the rolling minute, the estimated tokens, a concurrency slot and the
estimated cost. ``settle`` replaces the estimates by what the request really used and frees the
concurrency slot, exactly once per admitted reservation. Backends: Redis (one Lua script, so every
replica shares the same counts) and in-process (one host).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

BudgetPeriod = Literal["daily", "weekly", "monthly", "total"]
LimitReason = Literal["rpm", "tpm", "parallel", "budget", "model_rpm", "model_tpm"]

WINDOW_SECONDS = 60.0
#: A concurrency slot not settled within this long is presumed lost (its gateway died) and freed.
LEASE_SECONDS = 900.0


@dataclass(frozen=True, slots=True)
class Quota:
    """A key's limits; None means unlimited."""

    key_id: str
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget_usd: float | None = None
    budget_period: BudgetPeriod | None = None
    #: The model alias of this request, with the key's own rpm/tpm for that alias (``model_limits``
    #: on the key). Checked and taken in the same atomic decision as the key-wide limits.
    model: str | None = None
    model_rpm: int | None = None
    model_tpm: int | None = None

    @property
    def counts_model_tokens(self) -> bool:
        """Whether a model-scope TPM window counts this quota's tokens (an alias with a model_tpm)."""
        return self.model is not None and self.model_tpm is not None

    @property
    def unlimited(self) -> bool:
        return (self.rpm is None and self.tpm is None and self.max_parallel is None
                and self.budget_usd is None and self.model_rpm is None and self.model_tpm is None)


@dataclass(frozen=True, slots=True)
class Ask:
    """What one request wants to take."""

    reservation_id: str
    tokens: int
    cost_usd: float
    #: A cache hit takes a request slot only: no tokens, no concurrency, no budget.
    cache_hit: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: LimitReason | None = None
    #: Seconds until the refused ask could pass (for Retry-After).
    retry_after: float | None = None
    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None
    budget_remaining_usd: float | None = None


@dataclass(frozen=True, slots=True)
class Spend:
    """What a request really used, for settlement and the ledger."""

    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    #: Cost a cache hit saved (recorded, never charged).
    saved_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    spent_usd: float
    reserved_usd: float
    period_id: str
    resets_at: float | None  # epoch seconds, None for "total"


@dataclass(frozen=True, slots=True)
class LedgerRow:
    day: str  # YYYY-MM-DD, UTC
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    saved_usd: float


@dataclass(frozen=True, slots=True)
class WindowUsage:
    """Counters of a key right now, for tests and the admin API."""

    requests: int
    tokens: int
    in_flight: int
    reserved_usd: float


class Limiter(Protocol):
    name: str
    #: True when a cancelled ``admit`` never took anything: its only awaits come before the decision.
    #: Admission then awaits it in the request's own task; otherwise it shields the call in a task
    #: of its own and gives back what an abandoned admit took (a store round trip can be cut off
    #: after the store decided). The shield is a scheduling point: in a burst of requests every one
    #: of them waits behind the others' steps there (docs/benchmarks.md, slow-c256).
    admit_cancel_safe: bool

    async def admit(self, quota: Quota, ask: Ask, now: float) -> Decision: ...

    async def settle(self, quota: Quota, ask: Ask, spend: Spend, now: float) -> None:
        """Replace the ask's estimates by the real spend and free its concurrency slot; also adds
        the spend to the per-day ledger. Called exactly once per admitted ask (also after errors,
        with zero tokens and cost when nothing was used)."""
        ...

    async def budget(self, quota: Quota, now: float) -> BudgetStatus: ...

    async def usage(self, quota: Quota, now: float) -> WindowUsage: ...

    async def ledger(self, key_id: str) -> list[LedgerRow]:
        """Every recorded (day, model) row of a key, oldest day first."""
        ...

    async def close(self) -> None: ...
