"""Budget periods on UTC calendar boundaries: a day starts at 00:00 UTC, a week on Monday, a month
on the 1st. The period id names the bucket that holds the period's spend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.limits.types import BudgetPeriod


def period_bounds(period: BudgetPeriod, now: float) -> tuple[str, float | None]:
    """(period id, epoch seconds when the next period starts); ``total`` never resets."""
    moment = datetime.fromtimestamp(now, UTC)
    if period == "total":
        return "total", None
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
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
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
