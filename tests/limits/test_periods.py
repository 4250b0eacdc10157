"""Budget periods on UTC calendar boundaries, for any moment: ``now`` lies in its period, the id
changes exactly at ``resets_at``, and resets fall on midnight, Mondays and the 1st."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from gateway.limits.periods import period_bounds, utc_day
from gateway.limits.types import BudgetPeriod

# 1971 to 2200, in whole microseconds as timestamps are.
moments = st.integers(365 * 86_400 * 1_000_000, 7_258_118_400 * 1_000_000).map(lambda us: us / 1_000_000)
calendar_periods: st.SearchStrategy[BudgetPeriod] = st.sampled_from(["daily", "weekly", "monthly"])


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def start_of(period: BudgetPeriod, now: float) -> float:
    """The period's first second, found independently of periods.py."""
    day = utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "weekly":
        day -= timedelta(days=day.weekday())
    elif period == "monthly":
        day = day.replace(day=1)
    return day.timestamp()


@given(now=moments, period=calendar_periods)
def test_now_lies_in_its_period_and_the_id_changes_exactly_at_reset(now: float, period: BudgetPeriod) -> None:
    period_id, resets_at = period_bounds(period, now)
    assert resets_at is not None
    start = start_of(period, now)
    assert start <= now < resets_at
    # Every moment of the period shares the id; the reset starts the next one.
    assert period_bounds(period, start) == (period_id, resets_at)
    assert period_bounds(period, resets_at - 0.001)[0] == period_id
    next_id, next_reset = period_bounds(period, resets_at)
    assert next_id != period_id
    assert next_reset is not None and next_reset > resets_at
    assert period_bounds(period, start - 0.001)[1] == start


@given(now=moments)
def test_daily_ids_are_consecutive_days(now: float) -> None:
    period_id, resets_at = period_bounds("daily", now)
    assert resets_at is not None
    today = date.fromisoformat(period_id.removeprefix("d"))
    assert today == utc(now).date()
    assert period_id == "d" + utc_day(now)
    assert period_bounds("daily", resets_at)[0] == "d" + (today + timedelta(days=1)).isoformat()
    assert resets_at - start_of("daily", now) == 86_400


@given(now=moments)
def test_weekly_resets_on_monday_midnight(now: float) -> None:
    period_id, resets_at = period_bounds("weekly", now)
    assert resets_at is not None
    reset = utc(resets_at)
    assert (reset.weekday(), reset.hour, reset.minute, reset.second, reset.microsecond) == (0, 0, 0, 0, 0)
    assert 0 < resets_at - now <= 7 * 86_400
    year, week, _ = utc(now).isocalendar()
    assert period_id == f"w{year}-{week:02d}"


@given(now=moments)
def test_monthly_resets_on_the_first_at_midnight(now: float) -> None:
    period_id, resets_at = period_bounds("monthly", now)
    assert resets_at is not None
    reset = utc(resets_at)
    assert (reset.day, reset.hour, reset.minute, reset.second, reset.microsecond) == (1, 0, 0, 0, 0)
    moment = utc(now)
    assert period_id == f"m{moment.year:04d}-{moment.month:02d}"
    assert (reset.year * 12 + reset.month) - (moment.year * 12 + moment.month) == 1


@given(now=moments)
def test_total_never_resets(now: float) -> None:
    assert period_bounds("total", now) == ("total", None)
