"""The Limiter contract: every case runs on each backend (see ``backend`` in conftest.py), with time
driven explicitly through ``now``."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.limits.types import LEASE_SECONDS, Ask, BudgetPeriod, Limiter, LimitReason, Quota, Spend
from tests.limits.conftest import Backend

#: Wednesday 2024-03-13 12:00:00 UTC.
T0 = datetime(2024, 3, 13, 12, tzinfo=UTC).timestamp()


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def quota(**limits: Any) -> Quota:
    """A quota on a key of its own, so tests never share counters."""
    return Quota(key_id=f"k{uuid.uuid4().hex[:12]}", **limits)


def ask(tokens: int = 0, cost: float = 0.0, *, cache_hit: bool = False) -> Ask:
    return Ask(reservation_id=uuid.uuid4().hex, tokens=tokens, cost_usd=cost, cache_hit=cache_hit)


def spend(input_tokens: int = 0, output_tokens: int = 0, cost: float = 0.0, *, model: str = "m",
          saved: float = 0.0) -> Spend:
    return Spend(model=model, input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost, saved_usd=saved)


async def admitted(limiter: Limiter, q: Quota, a: Ask, now: float) -> bool:
    return (await limiter.admit(q, a, now)).allowed


async def test_unlimited_key_passes_without_headers(limiter: Limiter) -> None:
    q = quota()
    decision = await limiter.admit(q, ask(10**9, 10**6), T0)
    assert decision.allowed
    assert decision.reason is None and decision.retry_after is None
    assert decision.limit_requests is None and decision.limit_tokens is None
    assert decision.budget_remaining_usd is None


async def test_rpm_allows_exactly_n_per_window_and_slides(limiter: Limiter) -> None:
    q = quota(rpm=3)
    for offset in (0, 10, 20):
        assert await admitted(limiter, q, ask(), T0 + offset)
    refused = await limiter.admit(q, ask(), T0 + 30)
    assert (refused.allowed, refused.reason, refused.retry_after) == (False, "rpm", pytest.approx(30))
    assert not await admitted(limiter, q, ask(), T0 + 59.999)
    # 60 s after the first, the first has left the window and only it.
    assert await admitted(limiter, q, ask(), T0 + 60)
    refused = await limiter.admit(q, ask(), T0 + 65)
    assert (refused.reason, refused.retry_after) == ("rpm", pytest.approx(5))  # T0+10 leaves at T0+70
    assert (await limiter.usage(q, T0 + 65)).requests == 3
    assert (await limiter.usage(q, T0 + 200)).requests == 0


async def test_refusals_take_nothing(limiter: Limiter) -> None:
    q = quota(rpm=1, tpm=100, max_parallel=5, budget_usd=1.0, budget_period="daily")
    assert await admitted(limiter, q, ask(10, 0.1), T0)
    for _ in range(5):
        assert not await admitted(limiter, q, ask(10, 0.1), T0 + 1)
    usage = await limiter.usage(q, T0 + 1)
    assert (usage.requests, usage.tokens, usage.in_flight, usage.reserved_usd) == (1, 10, 1, pytest.approx(0.1))


async def test_request_headers(limiter: Limiter) -> None:
    q = quota(rpm=3)
    first = await limiter.admit(q, ask(), T0)
    assert (first.limit_requests, first.remaining_requests, first.reset_requests) == (3, 2, pytest.approx(60))
    second = await limiter.admit(q, ask(), T0 + 15)
    assert (second.remaining_requests, second.reset_requests) == (1, pytest.approx(45))
    assert (second.limit_tokens, second.remaining_tokens, second.reset_tokens) == (None, None, None)
    await limiter.admit(q, ask(), T0 + 20)
    refused = await limiter.admit(q, ask(), T0 + 30)
    assert (refused.remaining_requests, refused.reset_requests) == (0, pytest.approx(30))
    # An empty window resets in 0 s; a window with one entry when the entry leaves.
    empty = await limiter.admit(quota(rpm=0), ask(), T0)
    assert (empty.allowed, empty.reason, empty.retry_after, empty.remaining_requests, empty.reset_requests) == (
        False, "rpm", None, 0, 0)


async def test_token_headers(limiter: Limiter) -> None:
    q = quota(tpm=1000)
    first = await limiter.admit(q, ask(300), T0)
    assert (first.limit_tokens, first.remaining_tokens, first.reset_tokens) == (1000, 700, pytest.approx(60))
    assert (first.limit_requests, first.remaining_requests) == (None, None)
    second = await limiter.admit(q, ask(200), T0 + 20)
    assert (second.remaining_tokens, second.reset_tokens) == (500, pytest.approx(40))


async def test_tpm_estimate_larger_than_real_frees_tokens(limiter: Limiter) -> None:
    q = quota(tpm=1000)
    a = ask(600)
    assert await admitted(limiter, q, a, T0)
    refused = await limiter.admit(q, ask(600), T0 + 1)
    assert (refused.reason, refused.retry_after, refused.remaining_tokens) == ("tpm", pytest.approx(59), 400)
    await limiter.settle(q, a, spend(150, 50), T0 + 2)
    assert (await limiter.usage(q, T0 + 2)).tokens == 200
    assert await admitted(limiter, q, ask(800), T0 + 3)
    assert not await admitted(limiter, q, ask(1), T0 + 4)


async def test_tpm_estimate_smaller_than_real_shows_real(limiter: Limiter) -> None:
    q = quota(tpm=1000)
    a = ask(100)
    assert await admitted(limiter, q, a, T0)
    await limiter.settle(q, a, spend(500, 400), T0 + 5)  # more than estimated: allowed, and it counts
    assert (await limiter.usage(q, T0 + 5)).tokens == 900
    refused = await limiter.admit(q, ask(200), T0 + 10)
    assert (refused.reason, refused.remaining_tokens) == ("tpm", 100)
    # The real tokens sit at the admit's timestamp, so they leave 60 s after the admit.
    assert not await admitted(limiter, q, ask(200), T0 + 59.9)
    assert await admitted(limiter, q, ask(1000), T0 + 60)


async def test_retry_after_never_exceeds_the_window_when_a_clock_reading_is_older(limiter: Limiter) -> None:
    """Replicas read their clocks before their admits reach the store, so an admit can carry a
    ``now`` a little older than entries already in the window (seen in CI: Retry-After 61)."""
    q = quota(rpm=1, tpm=100)
    assert await admitted(limiter, q, ask(100), T0 + 0.5)
    by_requests = await limiter.admit(q, ask(), T0)
    assert (by_requests.reason, by_requests.retry_after) == ("rpm", 60)
    assert by_requests.reset_requests is not None and by_requests.reset_requests <= 60
    q = quota(tpm=100)
    assert await admitted(limiter, q, ask(100), T0 + 0.5)
    by_tokens = await limiter.admit(q, ask(50), T0)
    assert (by_tokens.reason, by_tokens.retry_after) == ("tpm", 60)


async def test_tpm_retry_after_waits_for_enough_tokens_to_leave(limiter: Limiter) -> None:
    q = quota(tpm=1000)
    assert await admitted(limiter, q, ask(400), T0)
    assert await admitted(limiter, q, ask(400), T0 + 10)
    one = await limiter.admit(q, ask(500), T0 + 20)  # 300 too many: the first entry suffices
    assert (one.reason, one.retry_after) == ("tpm", pytest.approx(40))
    two = await limiter.admit(q, ask(700), T0 + 20)  # 500 too many: both must leave
    assert (two.reason, two.retry_after) == ("tpm", pytest.approx(50))


async def test_ask_larger_than_whole_tpm_never_passes(limiter: Limiter) -> None:
    q = quota(tpm=1000)
    decision = await limiter.admit(q, ask(1001), T0)
    assert (decision.allowed, decision.reason, decision.retry_after) == (False, "tpm", None)
    assert decision.remaining_tokens == 1000
    assert await admitted(limiter, q, ask(1000), T0)


async def test_parallel_slots_freed_by_settle(limiter: Limiter) -> None:
    q = quota(max_parallel=2)
    a, b = ask(), ask()
    assert await admitted(limiter, q, a, T0)
    assert await admitted(limiter, q, b, T0)
    refused = await limiter.admit(q, ask(), T0 + 1)
    assert (refused.reason, refused.retry_after) == ("parallel", 1.0)
    assert (await limiter.usage(q, T0 + 1)).in_flight == 2
    await limiter.settle(q, a, spend(), T0 + 2)
    assert (await limiter.usage(q, T0 + 2)).in_flight == 1
    assert await admitted(limiter, q, ask(), T0 + 2)
    assert not await admitted(limiter, q, ask(), T0 + 3)


async def test_parallel_slots_freed_by_lease_expiry(limiter: Limiter) -> None:
    q = quota(max_parallel=1)
    lost = ask()
    assert await admitted(limiter, q, lost, T0)
    assert not await admitted(limiter, q, ask(), T0 + LEASE_SECONDS - 1)
    # The gateway that held it died: the slot comes back when the lease runs out.
    assert (await limiter.usage(q, T0 + LEASE_SECONDS)).in_flight == 0
    late = ask()
    assert await admitted(limiter, q, late, T0 + LEASE_SECONDS)
    # A late settle of the lost request frees nothing that is not its own.
    await limiter.settle(q, lost, spend(), T0 + LEASE_SECONDS + 1)
    assert not await admitted(limiter, q, ask(), T0 + LEASE_SECONDS + 2)


async def test_budget_reserves_settles_and_refuses(limiter: Limiter) -> None:
    q = quota(budget_usd=1.0, budget_period="daily")
    a, b = ask(cost=0.4), ask(cost=0.4)
    first = await limiter.admit(q, a, T0)
    assert first.budget_remaining_usd == pytest.approx(0.6)
    assert await admitted(limiter, q, b, T0)
    refused = await limiter.admit(q, ask(cost=0.3), T0 + 1)
    midnight = at(2024, 3, 14)
    assert (refused.reason, refused.retry_after) == ("budget", pytest.approx(midnight - T0 - 1))
    assert refused.budget_remaining_usd == pytest.approx(0.2)
    status = await limiter.budget(q, T0 + 1)
    assert (status.spent_usd, status.reserved_usd) == (0, pytest.approx(0.8))
    assert (status.period_id, status.resets_at) == ("d2024-03-13", midnight)
    await limiter.settle(q, a, spend(cost=0.1), T0 + 2)
    status = await limiter.budget(q, T0 + 2)
    assert (status.spent_usd, status.reserved_usd) == (pytest.approx(0.1), pytest.approx(0.4))
    assert await admitted(limiter, q, ask(cost=0.5), T0 + 3)  # 0.1 + 0.4 + 0.5 = 1.0: exactly allowed
    assert not await admitted(limiter, q, ask(cost=0.000001), T0 + 3)
    assert await admitted(limiter, q, ask(cost=0.0), T0 + 3)


async def test_real_cost_above_estimate_is_charged(limiter: Limiter) -> None:
    q = quota(budget_usd=1.0, budget_period="daily")
    a = ask(cost=0.1)
    assert await admitted(limiter, q, a, T0)
    await limiter.settle(q, a, spend(cost=0.95), T0 + 1)
    assert (await limiter.budget(q, T0 + 1)).spent_usd == pytest.approx(0.95)
    decision = await limiter.admit(q, ask(cost=0.1), T0 + 2)
    assert (decision.reason, decision.budget_remaining_usd) == ("budget", pytest.approx(0.05))


async def test_ask_larger_than_whole_budget_never_passes(limiter: Limiter) -> None:
    decision = await limiter.admit(quota(budget_usd=1.0, budget_period="daily"), ask(cost=1.5), T0)
    assert (decision.reason, decision.retry_after) == ("budget", None)


@pytest.mark.parametrize(("period", "before", "boundary", "old_id", "new_id"), [
    ("daily", at(2024, 3, 13, 23, 59, 59), at(2024, 3, 14), "d2024-03-13", "d2024-03-14"),
    ("weekly", at(2024, 3, 17, 23, 59, 59), at(2024, 3, 18), "w2024-11", "w2024-12"),  # Sunday -> Monday
    ("monthly", at(2024, 2, 29, 23, 59, 59), at(2024, 3, 1), "m2024-02", "m2024-03"),
    ("monthly", at(2024, 12, 31, 23, 59, 59), at(2025, 1, 1), "m2024-12", "m2025-01"),
])
async def test_budget_period_rolls_over_at_utc_boundary(limiter: Limiter, period: BudgetPeriod, before: float,
                                                        boundary: float, old_id: str, new_id: str) -> None:
    q = quota(budget_usd=0.5, budget_period=period)
    a = ask(cost=0.5)
    assert await admitted(limiter, q, a, before - 10)
    await limiter.settle(q, a, spend(cost=0.5), before - 5)
    refused = await limiter.admit(q, ask(cost=0.01), before)
    assert (refused.reason, refused.retry_after) == ("budget", pytest.approx(boundary - before))
    assert (await limiter.budget(q, before)).period_id == old_id
    fresh = await limiter.admit(q, ask(cost=0.01), boundary)
    assert (fresh.allowed, fresh.budget_remaining_usd) == (True, pytest.approx(0.49))
    status = await limiter.budget(q, boundary)
    assert (status.period_id, status.spent_usd, status.reserved_usd) == (new_id, 0, pytest.approx(0.01))


async def test_total_budget_never_resets(limiter: Limiter) -> None:
    q = quota(budget_usd=0.5, budget_period="total")
    a = ask(cost=0.5)
    assert await admitted(limiter, q, a, T0)
    await limiter.settle(q, a, spend(cost=0.5), T0 + 1)
    refused = await limiter.admit(q, ask(cost=0.01), T0 + 2)
    assert (refused.reason, refused.retry_after) == ("budget", None)
    assert not await admitted(limiter, q, ask(cost=0.01), T0 + 400 * 86_400)
    status = await limiter.budget(q, T0 + 400 * 86_400)
    assert (status.period_id, status.resets_at, status.spent_usd) == ("total", None, pytest.approx(0.5))


async def test_budget_without_period_is_total(limiter: Limiter) -> None:
    q = quota(budget_usd=0.5)
    assert await admitted(limiter, q, ask(cost=0.5), T0)
    refused = await limiter.admit(q, ask(cost=0.01), T0 + 1)
    assert (refused.reason, refused.retry_after) == ("budget", None)


async def test_dead_reservation_returns_its_budget(limiter: Limiter) -> None:
    q = quota(budget_usd=1.0, budget_period="total")
    lost = ask(cost=0.8)
    assert await admitted(limiter, q, lost, T0)
    assert not await admitted(limiter, q, ask(cost=0.3), T0 + LEASE_SECONDS - 1)
    assert (await limiter.budget(q, T0 + LEASE_SECONDS)).reserved_usd == 0
    assert await admitted(limiter, q, ask(cost=0.3), T0 + LEASE_SECONDS)
    # If the lost request settles after all, its real cost is charged (once), nothing else released.
    await limiter.settle(q, lost, spend(cost=0.2), T0 + LEASE_SECONDS + 1)
    status = await limiter.budget(q, T0 + LEASE_SECONDS + 1)
    assert (status.spent_usd, status.reserved_usd) == (pytest.approx(0.2), pytest.approx(0.3))


async def test_settle_after_rollover_charges_the_reserving_period(limiter: Limiter) -> None:
    q = quota(budget_usd=1.0, budget_period="daily")
    a = ask(cost=0.6)
    assert await admitted(limiter, q, a, at(2024, 3, 13, 23, 59, 50))
    await limiter.settle(q, a, spend(cost=0.7), at(2024, 3, 14, 0, 0, 10))
    today = await limiter.budget(q, at(2024, 3, 14, 0, 0, 10))
    assert (today.period_id, today.spent_usd, today.reserved_usd) == ("d2024-03-14", 0, 0)
    yesterday = await limiter.budget(q, at(2024, 3, 13, 23, 59, 59))
    assert (yesterday.spent_usd, yesterday.reserved_usd) == (pytest.approx(0.7), 0)
    # The ledger files the request under the day it settled.
    assert [(r.day, r.cost_usd) for r in await limiter.ledger(q.key_id)] == [("2024-03-14", pytest.approx(0.7))]


async def test_cache_hit_counts_only_in_rpm(limiter: Limiter) -> None:
    q = quota(rpm=2, tpm=10, max_parallel=1, budget_usd=0.01, budget_period="daily")
    busy = ask(10, 0.01)
    assert await admitted(limiter, q, busy, T0)  # tokens, the slot and the budget are now all taken
    hit = ask(500, 5.0, cache_hit=True)
    decision = await limiter.admit(q, hit, T0 + 1)
    assert (decision.allowed, decision.remaining_requests, decision.remaining_tokens) == (True, 0, 0)
    usage = await limiter.usage(q, T0 + 1)
    assert (usage.requests, usage.tokens, usage.in_flight, usage.reserved_usd) == (2, 10, 1, pytest.approx(0.01))
    await limiter.settle(q, hit, spend(400, 100, 0.02, saved=0.02), T0 + 2)
    usage = await limiter.usage(q, T0 + 2)
    assert (usage.tokens, usage.in_flight) == (10, 1)
    assert (await limiter.budget(q, T0 + 2)).spent_usd == 0
    [row] = await limiter.ledger(q.key_id)
    assert (row.requests, row.input_tokens, row.output_tokens, row.cost_usd, row.saved_usd) == (
        1, 0, 0, 0, pytest.approx(0.02))
    refused = await limiter.admit(q, ask(cache_hit=True), T0 + 3)
    assert refused.reason == "rpm"


@pytest.mark.parametrize(("limits", "expected"), [
    # rpm frees in 59 s, a daily budget at midnight (12 h): the budget binds.
    ({"rpm": 1, "budget_usd": 0.1, "budget_period": "daily"}, ("budget", 12 * 3600 - 1)),
    # rpm frees in 59 s, parallel is a 1 s hint: rpm binds.
    ({"rpm": 1, "max_parallel": 1}, ("rpm", 59)),
    # A total budget never frees: it binds whatever else is full.
    ({"rpm": 1, "tpm": 100, "budget_usd": 0.1}, ("budget", None)),
])
async def test_refusal_names_the_limit_that_passes_last(limiter: Limiter, limits: dict[str, Any],
                                                        expected: tuple[LimitReason, float | None]) -> None:
    q = quota(**limits)
    assert await admitted(limiter, q, ask(100, 0.1), T0)
    decision = await limiter.admit(q, ask(1, 0.1), T0 + 1)
    reason, retry = expected
    assert (decision.reason, decision.retry_after) == (reason, None if retry is None else pytest.approx(retry))


async def test_settle_is_idempotent(limiter: Limiter) -> None:
    q = quota(tpm=1000, max_parallel=2, budget_usd=1.0, budget_period="daily")
    a = ask(100, 0.2)
    assert await admitted(limiter, q, a, T0)
    assert await admitted(limiter, q, ask(100, 0.2), T0)
    for _ in range(3):
        await limiter.settle(q, a, spend(300, 200, 0.3), T0 + 1)
    status = await limiter.budget(q, T0 + 1)
    assert (status.spent_usd, status.reserved_usd) == (pytest.approx(0.3), pytest.approx(0.2))
    usage = await limiter.usage(q, T0 + 1)
    assert (usage.tokens, usage.in_flight) == (600, 1)
    [row] = await limiter.ledger(q.key_id)
    assert (row.requests, row.input_tokens, row.output_tokens) == (1, 300, 200)


async def test_ledger_rows_per_day_and_model(limiter: Limiter) -> None:
    q = quota(rpm=100)
    day2 = at(2024, 3, 14, 8)
    for now, model, used in [(T0, "gpt", (10, 5, 0.01)), (T0 + 1, "gpt", (20, 10, 0.02)),
                             (T0 + 2, "claude", (1, 1, 0.5)), (day2, "gpt", (7, 3, 0.001))]:
        a = ask(30, 0.1)
        assert await admitted(limiter, q, a, now)
        await limiter.settle(q, a, spend(*used, model=model), now + 1)
    rows = [(r.day, r.model, r.requests, r.input_tokens, r.output_tokens, r.cost_usd, r.saved_usd)
            for r in await limiter.ledger(q.key_id)]
    assert rows == [
        ("2024-03-13", "claude", 1, 1, 1, pytest.approx(0.5), 0),
        ("2024-03-13", "gpt", 2, 30, 15, pytest.approx(0.03), 0),
        ("2024-03-14", "gpt", 1, 7, 3, pytest.approx(0.001), 0),
    ]
    assert await limiter.ledger("no-such-key") == []


async def test_errors_settle_with_nothing_used(limiter: Limiter) -> None:
    q = quota(tpm=100, max_parallel=1, budget_usd=1.0, budget_period="daily")
    a = ask(50, 0.5)
    assert await admitted(limiter, q, a, T0)
    await limiter.settle(q, a, spend(), T0 + 1)
    usage = await limiter.usage(q, T0 + 1)
    assert (usage.tokens, usage.in_flight, usage.reserved_usd) == (0, 0, 0)
    assert [(r.requests, r.cost_usd) for r in await limiter.ledger(q.key_id)] == [(1, 0)]


async def test_spend_survives_a_new_limiter_object(backend: Backend, limiter: Limiter) -> None:
    """Persistent backends keep spent and the ledger; the in-memory fallback, by design, keeps
    nothing (the Redis-down policy fails budgets closed, so nothing relies on it)."""
    q = quota(tpm=1000, budget_usd=1.0, budget_period="daily")
    a = ask(100, 0.5)
    assert await admitted(limiter, q, a, T0)
    await limiter.settle(q, a, spend(60, 40, 0.4), T0 + 1)
    await limiter.close()
    again = await backend.open()
    status = await again.budget(q, T0 + 2)
    if not backend.persistent:
        assert (status.spent_usd, status.reserved_usd) == (0, 0)
        assert await again.ledger(q.key_id) == []
        return
    assert (status.spent_usd, status.reserved_usd) == (pytest.approx(0.4), 0)
    assert [(r.model, r.requests, r.cost_usd) for r in await again.ledger(q.key_id)] == [
        ("m", 1, pytest.approx(0.4))]
    assert await admitted(again, q, ask(cost=0.6), T0 + 2)
    assert not await admitted(again, q, ask(cost=0.01), T0 + 2)


async def test_concurrent_admits_take_exactly_the_limit(limiter: Limiter) -> None:
    q = quota(rpm=50)
    decisions = await asyncio.gather(*(limiter.admit(q, ask(), T0 + i / 1000) for i in range(200)))
    assert sum(d.allowed for d in decisions) == 50
    assert {d.reason for d in decisions if not d.allowed} == {"rpm"}


async def test_concurrent_budget_asks_never_overspend(limiter: Limiter) -> None:
    q = quota(budget_usd=0.5, budget_period="daily")
    asks = [ask(cost=0.01) for _ in range(100)]
    decisions = await asyncio.gather(*(limiter.admit(q, a, T0) for a in asks))
    winners = [a for a, d in zip(asks, decisions, strict=True) if d.allowed]
    assert len(winners) == 50
    await asyncio.gather(*(limiter.settle(q, a, spend(cost=0.01), T0 + 1) for a in winners))
    status = await limiter.budget(q, T0 + 1)
    assert status.reserved_usd == 0
    assert status.spent_usd == pytest.approx(0.5)
    assert status.spent_usd <= 0.5 + 1e-9
    assert not await admitted(limiter, q, ask(cost=0.01), T0 + 2)


async def test_invalid_asks_are_refused_loudly(limiter: Limiter) -> None:
    with pytest.raises(ValueError, match="invalid ask"):
        await limiter.admit(quota(rpm=1), Ask(reservation_id="", tokens=1, cost_usd=0.0), T0)
    with pytest.raises(ValueError, match="invalid ask"):
        await limiter.admit(quota(rpm=1), Ask(reservation_id="r", tokens=-1, cost_usd=0.0), T0)


# Per-model limits: a key's rpm/tpm for one alias, on top of the key-wide ones, in the same decision.


def for_model(q: Quota, alias: str | None, **limits: Any) -> Quota:
    """The same key, asked for another alias (with that alias's model limits, if any)."""
    return replace(q, model=alias, model_rpm=limits.get("model_rpm"), model_tpm=limits.get("model_tpm"))


async def test_model_rpm_allows_exactly_n_for_that_alias_only(limiter: Limiter) -> None:
    a = quota(model="a", model_rpm=2)
    b = for_model(a, "b")
    assert await admitted(limiter, a, ask(), T0)
    assert await admitted(limiter, a, ask(), T0 + 10)
    refused = await limiter.admit(a, ask(), T0 + 20)
    assert (refused.allowed, refused.reason, refused.retry_after) == (False, "model_rpm", pytest.approx(40))
    # The key has no key-wide rpm: the headers report the model scope.
    assert (refused.limit_requests, refused.remaining_requests, refused.reset_requests) == (
        2, 0, pytest.approx(40))
    for i in range(10):
        assert await admitted(limiter, b, ask(), T0 + 21 + i)
    assert await admitted(limiter, a, ask(), T0 + 60)  # the first left the model window
    assert not await admitted(limiter, a, ask(), T0 + 61)
    zero = await limiter.admit(quota(model="a", model_rpm=0), ask(), T0)
    assert (zero.allowed, zero.reason, zero.retry_after) == (False, "model_rpm", None)


async def test_key_rpm_still_binds_across_aliases(limiter: Limiter) -> None:
    a = quota(rpm=3, model="a", model_rpm=10)
    b = for_model(a, "b")
    assert await admitted(limiter, a, ask(), T0)
    assert await admitted(limiter, b, ask(), T0 + 1)
    first = await limiter.admit(a, ask(), T0 + 2)
    # The key has a key-wide rpm: the headers report it, not the model's.
    assert (first.allowed, first.limit_requests, first.remaining_requests) == (True, 3, 0)
    for q in (a, b):
        refused = await limiter.admit(q, ask(), T0 + 3)
        assert (refused.reason, refused.retry_after) == ("rpm", pytest.approx(57))
    assert (await limiter.usage(a, T0 + 3)).requests == 3


async def test_a_model_refusal_takes_nothing_from_the_key_and_vice_versa(limiter: Limiter) -> None:
    a = quota(rpm=3, tpm=1000, model="a", model_rpm=1, model_tpm=500)
    b = for_model(a, "b")
    assert await admitted(limiter, a, ask(100), T0)
    for _ in range(3):
        refused = await limiter.admit(a, ask(100), T0 + 1)
        assert (refused.allowed, refused.reason) == (False, "model_rpm")
    usage = await limiter.usage(a, T0 + 1)
    assert (usage.requests, usage.tokens) == (1, 100)
    # The key scope still has exactly two requests for other aliases.
    assert await admitted(limiter, b, ask(100), T0 + 2)
    assert await admitted(limiter, b, ask(100), T0 + 3)
    refused = await limiter.admit(b, ask(), T0 + 4)
    assert refused.reason == "rpm"
    # Vice versa: a key-wide refusal of alias a took nothing from a's model window.
    c = quota(rpm=1, model="a", model_rpm=5)
    assert await admitted(limiter, for_model(c, "b"), ask(), T0)
    assert (await limiter.admit(c, ask(), T0 + 1)).reason == "rpm"
    assert (await limiter.admit(c, ask(), T0 + 2)).reason == "rpm"
    # 60 s later the key's window is empty and a's model window had nothing taken: five pass.
    for i in range(5):
        assert await admitted(limiter, replace(c, rpm=None), ask(), T0 + 61 + i)
    assert (await limiter.admit(replace(c, rpm=None), ask(), T0 + 66)).reason == "model_rpm"


async def test_model_tpm_settle_replaces_the_estimate(limiter: Limiter) -> None:
    a = quota(tpm=10_000, model="a", model_tpm=1000)
    b = for_model(a, "b")
    first = ask(600)
    assert await admitted(limiter, a, first, T0)
    refused = await limiter.admit(a, ask(600), T0 + 1)
    assert (refused.reason, refused.retry_after) == ("model_tpm", pytest.approx(59))
    assert (refused.limit_tokens, refused.remaining_tokens) == (10_000, 9_400)  # key-wide headers
    assert await admitted(limiter, b, ask(5000), T0 + 1)  # another alias: the key's tpm only
    await limiter.settle(a, first, spend(150, 50), T0 + 2)
    assert (await limiter.usage(a, T0 + 2)).tokens == 5200
    assert await admitted(limiter, a, ask(800), T0 + 3)
    assert (await limiter.admit(a, ask(1), T0 + 4)).reason == "model_tpm"
    # More than estimated counts in full in the model window too, at the admit's timestamp.
    c = quota(model="a", model_tpm=1000)
    second = ask(100)
    assert await admitted(limiter, c, second, T0)
    await limiter.settle(c, second, spend(500, 400), T0 + 5)
    refused = await limiter.admit(c, ask(200), T0 + 10)
    assert (refused.reason, refused.limit_tokens, refused.remaining_tokens, refused.reset_tokens) == (
        "model_tpm", 1000, 100, pytest.approx(50))
    assert await admitted(limiter, c, ask(1000), T0 + 60)
    never = await limiter.admit(c, ask(1001), T0 + 200)
    assert (never.reason, never.retry_after) == ("model_tpm", None)


async def test_cache_hits_count_in_model_rpm_only(limiter: Limiter) -> None:
    a = quota(model="a", model_rpm=2, model_tpm=100)
    assert await admitted(limiter, a, ask(100, cache_hit=True), T0)
    assert await admitted(limiter, a, ask(100), T0 + 1)  # the hit took no tokens
    refused = await limiter.admit(a, ask(0, cache_hit=True), T0 + 2)
    assert refused.reason == "model_rpm"


async def test_binding_rule_spans_key_and_model_limits(limiter: Limiter) -> None:
    a = quota(rpm=2, model="a", model_rpm=1, model_tpm=50)
    assert await admitted(limiter, a, ask(10), T0)
    assert await admitted(limiter, for_model(a, "b"), ask(), T0 + 30)
    # rpm passes at T0+60, model_rpm at T0+60 too (a tie: rpm, checked first), model_tpm never.
    tie = await limiter.admit(a, ask(10), T0 + 40)
    assert (tie.reason, tie.retry_after) == ("rpm", pytest.approx(20))
    never = await limiter.admit(a, ask(51), T0 + 40)
    assert (never.reason, never.retry_after) == ("model_tpm", None)


async def test_concurrent_admits_take_exactly_both_limits(limiter: Limiter) -> None:
    a = quota(rpm=50, model="a", model_rpm=20)
    b = for_model(a, "b")
    decisions = await asyncio.gather(*(limiter.admit((a, b)[i % 2], ask(), T0 + i / 1000) for i in range(200)))
    assert sum(d.allowed for d in decisions[0::2]) == 20
    assert sum(d.allowed for d in decisions) == 50
    only_a = quota(rpm=50, model="a", model_rpm=20)
    decisions = await asyncio.gather(*(limiter.admit(only_a, ask(), T0 + i / 1000) for i in range(200)))
    assert sum(d.allowed for d in decisions) == 20
    assert {d.reason for d in decisions if not d.allowed} == {"model_rpm"}
    assert (await limiter.usage(only_a, T0 + 1)).requests == 20
