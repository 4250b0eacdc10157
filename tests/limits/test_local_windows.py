"""LocalLimiter's windows past COMPACT_AFTER entries: expired entries are skipped, then sliced off in one
go, and every count, sum and reset must read as if they had been removed one by one."""

from __future__ import annotations

import random

import pytest

from gateway.limits.local_limiter import COMPACT_AFTER, SETTLED_SECONDS, LocalLimiter
from gateway.limits.types import WINDOW_SECONDS, Ask, Quota, Spend

T0 = 1_700_000_000.0


async def test_long_windows_count_exactly_while_they_slide() -> None:
    limiter = LocalLimiter()
    quota = Quota(key_id="hot", rpm=10**9, tpm=10**12)
    rate = 120.0  # a window of 7,200 entries: several compactions over the run
    admitted: list[tuple[float, int]] = []  # (time, tokens after settle)
    rng = random.Random(7)
    for n in range(int(rate * WINDOW_SECONDS * 2.5)):
        now = T0 + n / rate
        ask = Ask(reservation_id=f"r{n}", tokens=rng.randint(1, 50), cost_usd=0.0)
        decision = await limiter.admit(quota, ask, now)
        assert decision.allowed
        real = rng.randint(0, 80)
        await limiter.settle(quota, ask, Spend(model="m", input_tokens=real, output_tokens=0, cost_usd=0.0), now)
        admitted.append((now, real))
        if n % 997 == 0:
            live = [(at, tokens) for at, tokens in admitted if at > now - WINDOW_SECONDS]
            usage = await limiter.usage(quota, now)
            assert (usage.requests, usage.tokens) == (len(live), sum(tokens for _, tokens in live))
            assert decision.reset_requests == pytest.approx(live[0][0] + WINDOW_SECONDS - now)
    assert rate * WINDOW_SECONDS > 2 * COMPACT_AFTER


async def test_refusals_name_the_right_entry_after_compactions() -> None:
    limiter = LocalLimiter()
    rpm = 3_000
    quota = Quota(key_id="k", rpm=rpm, tpm=10**12)
    times = [T0 + n * 0.01 for n in range(rpm)]  # 3,000 admits in 30 s
    for n, now in enumerate(times):
        assert (await limiter.admit(quota, Ask(reservation_id=f"a{n}", tokens=1, cost_usd=0.0), now)).allowed
    later = T0 + WINDOW_SECONDS + 20.005  # the first 2,001 have left (sliced off): room for 2,001 more
    for n in range(2_001):
        assert (await limiter.admit(quota, Ask(reservation_id=f"b{n}", tokens=1, cost_usd=0.0), later)).allowed
    refused = await limiter.admit(quota, Ask(reservation_id="c", tokens=1, cost_usd=0.0), later)
    assert (refused.allowed, refused.reason) == (False, "rpm")
    # The oldest live admit is a2001, at T0 + 20.01: it leaves 0.005 s after ``later``.
    assert refused.retry_after == pytest.approx(times[2_001] + WINDOW_SECONDS - later)
    assert COMPACT_AFTER <= 2_001


async def test_a_retried_settle_changes_nothing_for_a_minute_then_counts_again() -> None:
    limiter = LocalLimiter()
    quota = Quota(key_id="k", rpm=10**9, tpm=10**12)
    asks = [Ask(reservation_id=f"s{n}", tokens=1, cost_usd=0.0) for n in range(3 * COMPACT_AFTER)]
    spend = Spend(model="m", input_tokens=1, output_tokens=0, cost_usd=0.0)
    for n, ask in enumerate(asks):
        await limiter.admit(quota, ask, T0 + n / 100)
        await limiter.settle(quota, ask, spend, T0 + n / 100)
    end = T0 + len(asks) / 100
    await limiter.settle(quota, asks[-1], spend, end)  # a retry within the minute: ignored
    await limiter.settle(quota, asks[0], spend, end + SETTLED_SECONDS)  # long forgotten: counts again
    (row,) = await limiter.ledger("k")
    assert row.requests == len(asks) + 1
