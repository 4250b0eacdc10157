"""bench/'s pure parts on canned input: wrk's summary line, the comparison tables, the soak verdict, py-spy stacks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import ab
import compare_report
import profile_gateway
import soak
import wrk_runner

WRK_STDOUT = """\
Running 5s test @ http://127.0.0.1:40000/v1/chat/completions
  1 threads and 16 connections
  8000 requests in 5.00s, 3.1MB read
BENCH requests=8000 duration_us=5000000 p50_us=1950 p99_us=4100 non200=3 broken=0 connect=0 read=1 write=0 timeout=0
"""


def test_wrk_summary_is_parsed_and_only_occurring_errors_kept() -> None:
    result = wrk_runner.result_from(wrk_runner.parse_summary(WRK_STDOUT), cpu_s=0.5)
    assert (result.requests, result.duration_s, result.p50_ms, result.p99_ms) == (8000, 5.0, 1.95, 4.1)
    assert result.errors == {"non200": 3, "read": 1}
    assert result.cpu_s == 0.5


def test_wrk_output_without_summary_is_an_error() -> None:
    with pytest.raises(ValueError, match="no BENCH line"):
        wrk_runner.parse_summary("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_argv_carries_headers_and_nonce() -> None:
    job = wrk_runner.WrkJob("http://127.0.0.1:1/v1/chat/completions", Path("body.json"), 16, token="sk-x",
                            stream=True, headers=(("x-portkey-provider", "openai"),), nonce="abc")
    argv = wrk_runner.argv(job, 5, 1)
    assert argv[:3] == ["taskset", "-c", "1"]
    assert argv[argv.index("--") + 1:] == ["body.json", "sk-x", "stream", "header=x-portkey-provider: openai",
                                           "unique=abc"]


def _m(rps: float, p50: float, cpu: float, *, noisy: bool = False, ttfb: float | None = None
       ) -> compare_report.Measurement:
    return compare_report.Measurement(rps=rps, p50_ms=p50, p99_ms=p50 * 2, cpu_ms_per_request=cpu, rss_mb=100,
                                      requests=int(rps * 5), warnings=["busy"] if noisy else [], ttfb_p50_ms=ttfb)


def test_summaries_take_medians_and_count_noisy_rounds() -> None:
    summary = compare_report.summarize("gw", [_m(100, 9, 1.0), _m(300, 3, 0.5, noisy=True), _m(200, 5, 0.7)], [])
    assert (summary.rps, summary.p50_ms, summary.cpu_ms_per_request) == (200, 5, 0.7)
    assert (summary.rounds, summary.noisy_rounds, summary.warnings) == (3, 1, ["busy"])


def test_table_has_added_latency_ratios_flags_and_failures() -> None:
    table = compare_report.Table("stream-c16", "Streaming", "mock", "gw", ("peer", "absent"), streaming=True)
    rows = [
        compare_report.summarize("mock", [_m(10_000, 1, 0.01, ttfb=0.2)], []),
        compare_report.summarize("gw", [_m(1_000, 4, 1.0, noisy=True, ttfb=1.2)], []),
        compare_report.summarize("peer", [_m(250, 20, 4.0, ttfb=25.2)], []),
        compare_report.summarize("absent", [], ["did not start"]),
    ]
    text = compare_report.render(table, rows)
    assert "| gw ⚠ 1/1 noisy | 1,000 | 4.00 | 8.00 | +3.00 | +6.00 | 1.20 | +1.00 | 1.00 | 100 | 0 |" in text
    assert "| absent | — | — | — | — | — | — | — | — | — | did not start |" in text
    assert "gw ÷ peer: req/s x4.00, CPU ms/req x0.25" in text
    assert "> ⚠ busy" in text


def test_a_window_without_responses_is_a_failed_round_not_a_zero_row() -> None:
    # LiteLLM Proxy at slow-c256 answers after ~4 s: a 3 s window sees none, and its zeros once
    # rendered as the fastest row, with a negative "added" latency and 3,020 CPU ms per request.
    silent = compare_report.Measurement(rps=0, p50_ms=0, p99_ms=0, cpu_ms_per_request=3020, rss_mb=369, requests=0)
    assert compare_report.unusable(silent, 3) == "no response within the 3 s window"
    assert compare_report.unusable(_m(400, 520, 1.2), 3) is None
    table = compare_report.Table("slow-c256", "Slow", "mock", "gw", ("slow peer",))
    rows = [compare_report.summarize("mock", [_m(420, 503, 0.02)], []),
            compare_report.summarize("gw", [_m(420, 520, 1.2)], []),
            compare_report.summarize("slow peer", [], ["no response within the 3 s window"])]
    text = compare_report.render(table, rows)
    assert "| slow peer | — | — | — | — | — | — | — | no response within the 3 s window |" in text
    assert "-50" not in text and "slow peer:" not in text



def _burst(p50: float, burst_p50: float, burst_p99: float) -> compare_report.Measurement:
    measurement = _m(500, p50, 1.0)
    measurement.burst_p50_ms, measurement.burst_p99_ms = burst_p50, burst_p99
    return measurement


def test_the_opening_burst_gets_its_own_table_read_against_the_mock() -> None:
    table = compare_report.Table("slow-c256", "Slow", "mock", "gw", ())
    mock = compare_report.summarize("mock", [_burst(503, 507, 508), _burst(503, 505, 506)], [])
    ours = compare_report.summarize("gw", [_burst(510, 640, 790), _burst(512, 660, 800), _burst(511, 700, 820)], [])
    assert (ours.burst_p50_ms, ours.burst_p99_ms) == (660, 800)  # medians over the rounds
    assert compare_report.burst_added(ours, mock) == (154, 293)
    text = compare_report.render(table, [mock, ours])
    assert "Opening burst" in text
    assert "| gw | 660 | 800 | +154.00 | +293.00 |" in text
    assert "| mock | 506 | 507 |  |  |" in text
    # A wrk scenario has no burst of its own: no such table, no added burst.
    plain = compare_report.summarize("gw", [_m(500, 510, 1.0)], [])
    assert compare_report.burst_added(plain, mock) is None
    assert "Opening burst" not in compare_report.render(table, [compare_report.summarize("mock", [_m(500, 503, 0)], []),
                                                                plain])

def test_soak_verdict_reads_the_second_half() -> None:
    assert soak.is_flat([(0, 200.0), (10_000, 230.0), (20_000, 231.0), (30_000, 232.0)]) == (True, 2.0)
    flat, growth = soak.is_flat([(0, 200.0), (10_000, 230.0), (20_000, 250.0), (30_000, 270.0)])
    assert not flat and growth == 40.0


def test_soak_verdict_answers_the_goal_plainly() -> None:
    text = soak.verdict([(0, 200.0), (10_000, 230.0), (20_000, 231.0), (30_000, 232.0)])
    assert "RSS at the end ≤ 250 MB: **yes** (232.0 MB; idle 200.0 MB, peak 232.0 MB)" in text
    assert "Flat: **yes** (second half +2.0 MB, +1.0 MB per 10,000 requests; at that rate 239 MB after 100,000" in text
    text = soak.verdict([(0, 240.0), (50_000, 250.0), (100_000, 262.0)])
    assert "≤ 250 MB: **no** (262.0 MB" in text and "Flat: **no** (second half +12.0 MB" in text
    assert "after 100,000" not in text


def test_soak_verdict_says_when_the_run_was_too_short_to_judge_flatness() -> None:
    samples = [(0, 225.0), (50_000, 236.0), (100_000, 243.0)]
    short = soak.verdict(samples, elapsed_s=38.0)
    assert "lasted 38 s" in short and "no test of flatness" in short
    assert "no test of flatness" not in soak.verdict(samples, elapsed_s=soak.FILLING_SECONDS + 1)
    assert "no test of flatness" not in soak.verdict(samples)


def test_collapsed_stacks_give_self_and_inclusive_shares() -> None:
    text = ("main (/x/gateway/cli.py:10);call (/x/site-packages/gateway/pipeline.py:5);json (/usr/lib/python3.11/"
            "json/__init__.py:3) 3\nmain (/x/gateway/cli.py:10);call (/x/site-packages/gateway/pipeline.py:7) 1\n")
    self_counts, inclusive, total = profile_gateway.parse_collapsed(text)
    assert total == 4
    assert self_counts["json (stdlib:json/__init__.py:3)"] == 3
    assert inclusive["call (gateway/pipeline.py)"] == 4


def test_ab_verdict_reads_the_difference_against_the_spread_between_processes() -> None:
    a = ab.Arm("HEAD", {"a1": [0.70, 0.72, 0.71], "a2": [0.76, 0.75, 0.77]})
    close = ab.Arm("HEAD", {"b1": [0.74, 0.73, 0.75], "b2": [0.77, 0.78, 0.76]})
    assert a.medians == [0.71, 0.76] and a.value == pytest.approx(0.735)
    assert "the arms overlap, so this is within the noise" in ab.verdict(a, close)
    faster = ab.Arm("WORKTREE", {"b1": [0.60, 0.61, 0.62], "b2": [0.63, 0.64, 0.62]})
    text = ab.verdict(a, faster)
    assert text.startswith("b ÷ a: -15.6 %") and "the arms do not overlap" in text
    table = ab.render(a, faster, [0.23, 0.24], "chat-c16", 3, 5)
    assert "| a2 (HEAD) | 0.760 | 0.760, 0.750, 0.770 |" in table
    assert "| b1 (WORKTREE) | 0.610 |" in table and "| bare forwarder | 0.235 |" in table
