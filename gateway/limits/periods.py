"""Budget periods on UTC calendar boundaries: a day starts at 00:00 UTC, a week on Monday, a month
on the 1st. The period id names the bucket that holds the period's spend."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

from gateway.limits.types import BudgetPeriod

#: Seconds in a UTC day: POSIX time has no leap seconds, so a day number is ``now // DAY``.
DAY = 86_400


def period_bounds(period: BudgetPeriod, now: float) -> tuple[str, float | None]:
    """(period id, epoch seconds when the next period starts); ``total`` never resets."""
    if period == "total":
        return "total", None
    return _bounds(period, int(now // DAY))


@functools.lru_cache(maxsize=64)
def _bounds(period: BudgetPeriod, day_number: int) -> tuple[str, float]:
    """Every period starts on a day boundary, so the answer depends on the day only (computed once a day)."""
    day = datetime.fromtimestamp(day_number * DAY, UTC)
    if period == "daily":
        return day.strftime("d%Y-%m-%d"), (day + timedelta(days=1)).timestamp()
    if period == "weekly":
        monday = day - timedelta(days=day.weekday())
        year, week, _ = monday.isocalendar()
        return f"w{year}-{week:02d}", (monday + timedelta(days=7)).timestamp()
    first = day.replace(day=1)
    following = (first.replace(year=first.year + 1, month=1) if first.month == 12
                 else first.replace(month=first.month + 1))
    return first.strftime("m%Y-%m"), following.timestamp()


def utc_day(now: float) -> str:
    """The ledger's day bucket (YYYY-MM-DD, UTC)."""
    return _day_name(int(now // DAY))


@functools.lru_cache(maxsize=8)
def _day_name(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * DAY, UTC).strftime("%Y-%m-%d")
