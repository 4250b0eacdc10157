"""bench/compare.py's tables: per-round measurements folded into medians, flags, ratios and the goals.

Pure functions over plain data, so tests/bench/test_compare_parsing.py can check them on canned input.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Measurement:
    """One target, one scenario, one round."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float
    rss_mb: float
    requests: int
    errors: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # non-empty: a noisy window, flagged
    ttfb_p50_ms: float | None = None  # streaming only: time to the first body byte, concurrency 1
    ttfb_p99_ms: float | None = None
    burst_p50_ms: float | None = None  # steady scenarios only: every connection's first request, sent at once
    burst_p99_ms: float | None = None


@dataclass
class Summary:
    """Medians over the rounds of one target in one scenario."""

    label: str
    rounds: int = 0
    noisy_rounds: int = 0
    failures: list[str] = field(default_factory=list)
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_ms_per_request: float = 0.0
    rss_mb: float = 0.0
    errors: int = 0
    requests: int = 0
    ttfb_p50_ms: float | None = None
    ttfb_p99_ms: float | None = None
    burst_p50_ms: float | None = None
    burst_p99_ms: float | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rounds > 0


def unusable(measurement: Measurement, window_s: float) -> str | None:
    """Why a round cannot count, or None. A window in which no response finished has no latency and
    no CPU per request (a target whose answers take longer than the window): its zeros would read
    as the fastest row and a negative "added" latency, so the round is a failure with that reason."""
    if measurement.requests == 0:
        return f"no response within the {window_s:g} s window"
    return None


def _median(values: Iterable[float]) -> float:
    items = list(values)
    return statistics.median(items) if items else 0.0


def _median_of_present(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(label: str, measurements: list[Measurement], failures: list[str]) -> Summary:
    summary = Summary(label, rounds=len(measurements), failures=failures)
    if not measurements:
        return summary
    summary.noisy_rounds = sum(1 for m in measurements if m.warnings)
    summary.rps = _median(m.rps for m in measurements)
    summary.p50_ms = _median(m.p50_ms for m in measurements)
    summary.p99_ms = _median(m.p99_ms for m in measurements)
    summary.cpu_ms_per_request = _median(m.cpu_ms_per_request for m in measurements)
    summary.rss_mb = max(m.rss_mb for m in measurements)
    summary.errors = sum(sum(m.errors.values()) for m in measurements)
    summary.requests = sum(m.requests for m in measurements)
    summary.ttfb_p50_ms = _median_of_present(m.ttfb_p50_ms for m in measurements)
    summary.ttfb_p99_ms = _median_of_present(m.ttfb_p99_ms for m in measurements)
    summary.burst_p50_ms = _median_of_present(m.burst_p50_ms for m in measurements)
    summary.burst_p99_ms = _median_of_present(m.burst_p99_ms for m in measurements)
    summary.warnings = [w for m in measurements for w in m.warnings]
    return summary


def number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _flag(summary: Summary) -> str:
    if summary.noisy_rounds:
        return f" ⚠ {summary.noisy_rounds}/{summary.rounds} noisy"
    return ""


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    added_vs: str | None  # label of the mock-direct row that "added" latencies are read against
    ours: str
    peers: tuple[str, ...]
    streaming: bool = False


def render(table: Table, summaries: list[Summary]) -> str:
    base = next((s for s in summaries if s.label == table.added_vs and s.ok), None)
    header = ["target", "req/s", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms"]
    header += ["TTFB p50 ms (c1)", "added TTFB p50 ms"] if table.streaming else []
    header += ["CPU ms/req", "RSS MB", "errors"]
    lines = [f"### {table.title} (`{table.key}`)", ""]
    lines += ["| " + " | ".join(header) + " |", "|---|" + "--:|" * (len(header) - 1)]
    for s in summaries:
        if not s.ok:
            reason = "; ".join(dict.fromkeys(s.failures)) or "not run"
            lines.append("| " + " | ".join([s.label, *["—"] * (len(header) - 2), reason]) + " |")
            continue
        added = (s.p50_ms - base.p50_ms, s.p99_ms - base.p99_ms) if base and s is not base else None
        cells = [s.label + _flag(s), number(s.rps), number(s.p50_ms), number(s.p99_ms)]
        cells += [f"{added[0]:+.2f}", f"{added[1]:+.2f}"] if added else ["", ""]
        if table.streaming:
            ttfb_added = (s.ttfb_p50_ms - base.ttfb_p50_ms
                          if base and s is not base and s.ttfb_p50_ms is not None and base.ttfb_p50_ms is not None
                          else None)
            cells += [number(s.ttfb_p50_ms) if s.ttfb_p50_ms is not None else "—",
                      f"{ttfb_added:+.2f}" if ttfb_added is not None else ""]
        cells += [number(s.cpu_ms_per_request), number(s.rss_mb),
                  f"{s.errors:,} of {s.requests:,}" if s.errors else "0"]
        lines.append("| " + " | ".join(cells) + " |")
    ratios = ratio_lines(table, summaries)
    if ratios:
        lines += ["", *ratios]
    lines += burst_lines(base, summaries)
    warnings = [w for s in summaries for w in s.warnings]
    if warnings:
        lines += [""] + [f"> ⚠ {w}  " for w in warnings]
    return "\n".join(lines) + "\n"


def burst_lines(base: Summary | None, summaries: list[Summary]) -> list[str]:
    """The opening burst of a steady scenario, as a small table of its own: every connection's first
    request, all sent in the same millisecond, before the window (which excludes them)."""
    rows = [s for s in summaries if s.ok and s.burst_p50_ms is not None and s.burst_p99_ms is not None]
    if not rows:
        return []
    lines = ["", "Opening burst (each connection's first request, all sent at once; not in the window above):", "",
             "| target | burst p50 ms | burst p99 ms | added p50 ms | added p99 ms |", "|---|--:|--:|--:|--:|"]
    for s in rows:
        added = burst_added(s, base) if s is not base else None
        cells = [s.label, number(s.burst_p50_ms or 0), number(s.burst_p99_ms or 0)]
        cells += [f"{added[0]:+.2f}", f"{added[1]:+.2f}"] if added else ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def burst_added(summary: Summary, base: Summary | None) -> tuple[float, float] | None:
    """The opening burst's p50 and p99 minus the mock-direct row's, when both were measured."""
    if (base is None or summary.burst_p50_ms is None or summary.burst_p99_ms is None
            or base.burst_p50_ms is None or base.burst_p99_ms is None):
        return None
    return summary.burst_p50_ms - base.burst_p50_ms, summary.burst_p99_ms - base.burst_p99_ms


def ratio_lines(table: Table, summaries: list[Summary]) -> list[str]:
    by_label = {s.label: s for s in summaries if s.ok}
    ours = by_label.get(table.ours)
    if ours is None or not ours.rps:
        return []
    parts = []
    for peer in table.peers:
        other = by_label.get(peer)
        if other is None or not other.rps or not other.cpu_ms_per_request:
            continue
        parts.append(f"{peer}: req/s x{ours.rps / other.rps:.2f}, "
                     f"CPU ms/req x{ours.cpu_ms_per_request / other.cpu_ms_per_request:.2f}")
    return [f"{table.ours} ÷ " + "; ".join(parts)] if parts else []


@dataclass(frozen=True)
class Goal:
    what: str
    target: str
    measured: str
    met: bool | None  # None: not measured


def render_goals(goals: list[Goal]) -> str:
    lines = ["### Goals of issue #7", "", "| goal | target | measured | met |", "|---|---|---|---|"]
    for goal in goals:
        met = "—" if goal.met is None else ("yes" if goal.met else "**no**")
        lines.append(f"| {goal.what} | {goal.target} | {goal.measured} | {met} |")
    return "\n".join(lines) + "\n"
