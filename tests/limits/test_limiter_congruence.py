"""The two backends agree: random sequences of admits, settles and waits give the same decisions,
usage and budget on Redis and on LocalLimiter, field for field (the Lua scripts and the Python are
two spellings of one semantics). Asks go to model aliases with and without model limits on top of
the key-wide ones."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.limits.local_limiter import LocalLimiter
from gateway.limits.sqlite_spend import SqliteSpend
from gateway.limits.types import Ask, BudgetPeriod, Limiter, Quota, Spend
from tests.limits.conftest import Backend
from tests.limits.test_limiter_contract import at

#: An hour before a UTC midnight that is also a Monday and the 1st (2024-04-01), so every period rolls.
START = at(2024, 3, 31, 23)


@dataclass(frozen=True)
class Admit:
    tokens: int
    micros: int
    cache_hit: bool
    alias: str | None = None


@dataclass(frozen=True)
class Settle:
    pick: int  # index into the asks made so far (settled ones too: a settle may be retried)
    tokens: int
    micros: int


@dataclass(frozen=True)
class Wait:
    seconds: float


operations = st.lists(st.one_of(
    st.builds(Admit, st.integers(0, 400), st.integers(0, 30_000), st.booleans(),
              st.sampled_from(["a", "b", "c", None])),
    st.builds(Settle, st.integers(0, 10_000), st.integers(0, 600), st.integers(0, 40_000)),
    st.builds(Wait, st.sampled_from([0.25, 7.0, 30.0, 59.5, 60.0, 61.0, 950.0, 1800.0])),
), max_size=40)

periods: st.SearchStrategy[BudgetPeriod | None] = st.sampled_from(["daily", "weekly", "monthly", "total", None])
limits = st.fixed_dictionaries({
    "rpm": st.none() | st.integers(0, 8),
    "tpm": st.none() | st.integers(0, 1200),
    "max_parallel": st.none() | st.integers(0, 4),
    "budget_usd": st.none() | st.sampled_from([0.0, 0.01, 0.05, 0.1]),
    "budget_period": periods,
})
#: Model limits of aliases "a" and "b" (alias "c" has none, and None is an ask without a model).
model_limits = st.fixed_dictionaries({
    alias: st.fixed_dictionaries({"model_rpm": st.none() | st.integers(0, 6),
                                  "model_tpm": st.none() | st.integers(0, 1000)})
    for alias in ("a", "b")
})


def for_alias(quota: Quota, alias: str | None, models: dict[str, dict[str, int | None]]) -> Quota:
    limits = models.get(alias or "", {})
    return replace(quota, model=alias, model_rpm=limits.get("model_rpm"), model_tpm=limits.get("model_tpm"))


async def replay(limiter: Limiter, quota: Quota, ops: list[Admit | Settle | Wait], start: float,
                 models: dict[str, dict[str, int | None]]) -> list[object]:
    """Every observable outcome of ``ops``, in order."""
    seen: list[object] = []
    asks: list[tuple[Quota, Ask]] = []
    now = start
    for n, op in enumerate(ops):
        if isinstance(op, Wait):
            now += op.seconds
        elif isinstance(op, Admit):
            a = Ask(reservation_id=f"r{n}", tokens=op.tokens, cost_usd=op.micros / 1_000_000, cache_hit=op.cache_hit)
            q = for_alias(quota, op.alias, models)
            decision = await limiter.admit(q, a, now)
            if decision.allowed:
                asks.append((q, a))
            seen.append(decision)
        elif asks:
            q, a = asks[op.pick % len(asks)]
            # Settled with the quota it was admitted with, as the gateway does.
            await limiter.settle(q, a, Spend(model="m", input_tokens=op.tokens, output_tokens=1,
                                                 cost_usd=op.micros / 1_000_000), now)
        seen.append(await limiter.usage(quota, now))
        seen.append(await limiter.budget(quota, now))
    seen.append(await limiter.ledger(quota.key_id))
    return seen


@pytest.fixture
async def redis_limiter(redis_backend: Backend) -> Limiter:
    return await redis_backend.open()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limits=limits, models=model_limits, ops=operations, offset=st.floats(0, 3600))
async def test_redis_and_local_agree(redis_limiter: Limiter, tmp_path: Path, limits: dict[str, Any],
                                     models: dict[str, dict[str, int | None]], ops: list[Admit | Settle | Wait],
                                     offset: float) -> None:
    # Fixtures outlive the examples, so each example takes a key of its own.
    quota = Quota(key_id=uuid.uuid4().hex, **limits)
    memory = LocalLimiter()
    on_file = LocalLimiter(await SqliteSpend.open(tmp_path / f"{quota.key_id}.sqlite3"))
    try:
        expected = await replay(redis_limiter, quota, ops, START + offset, models)
        assert await replay(memory, quota, ops, START + offset, models) == expected
        assert await replay(on_file, quota, ops, START + offset, models) == expected
    finally:
        await on_file.close()
