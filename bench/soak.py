"""RSS soak: 100k requests through one gateway worker, its RSS sampled ten times, as a markdown table.

    .venv/bin/python bench/soak.py                      # 100,000 non-streaming requests at concurrency 16
    .venv/bin/python bench/soak.py --requests 20000     # a quick iteration: RSS every 2,000 requests
    .venv/bin/python bench/soak.py --requests 20000 --every 5000 --route stream

The gateway runs as in bench/compare.py (virtual key with rpm/tpm limits, exact cache on with unique
prompts, metrics, OTLP traces to a local sink) on CPU 0; the nginx mock, the sink and wrk on CPU 1. wrk
runs in short back-to-back windows sized to land near each multiple of `--every`; RSS is read from
/proc after each window that crossed one. The verdict under the table answers issue #7's goal: RSS at
the end at most 250 MB, and "flat": the second half of the run grew RSS by at most 2 % and at most 10 MB.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path
from types import FrameType

import compare_targets as targets
import procstat
import wrk_runner
from children import Children, log, run_main

from gateway.limits.local_limiter import SETTLED_SECONDS
from gateway.limits.types import WINDOW_SECONDS

TEST_CPU, LOAD_CPU = 0, 1
FLAT_FRACTION, FLAT_MB = 0.02, 10.0
GOAL_MB, GOAL_REQUESTS = 250.0, 100_000  # issue #7: RSS per worker after 100k requests
SAMPLES = 10  # RSS readings after the idle one, when --every is not given
#: The limiter's window (60 s) plus its settled ids (15 s): per-key state grows until then, with the rate.
FILLING_SECONDS = WINDOW_SECONDS + SETTLED_SECONDS



def is_flat(samples: list[tuple[int, float]]) -> tuple[bool, float]:
    """Whether RSS grew by at most 2 % and 10 MB over the second half of the samples; and that growth."""
    if len(samples) < 2:
        return True, 0.0
    middle = samples[(len(samples) - 1) // 2][1]
    growth = samples[-1][1] - middle
    return growth <= max(0.0, min(FLAT_FRACTION * middle, FLAT_MB)), growth


def verdict(samples: list[tuple[int, float]], elapsed_s: float | None = None) -> str:
    """Plain answers to the goal: under 250 MB at the end? flat over the second half? and the creep's rate.
    A run shorter than FILLING_SECONDS says so: its second half still sees the limiter's windows fill."""
    flat, growth = is_flat(samples)
    final = samples[-1][1]
    half_requests = samples[-1][0] - samples[(len(samples) - 1) // 2][0]
    per_request = growth / half_requests if half_requests > 0 else 0.0
    rate = f", {per_request * 10_000:+.1f} MB per 10,000 requests" if half_requests > 0 else ""
    if 0 < samples[-1][0] < GOAL_REQUESTS:
        rate += f"; at that rate {final + per_request * (GOAL_REQUESTS - samples[-1][0]):.0f} MB after 100,000"
    under = "**yes**" if final <= GOAL_MB else "**no**"
    flat_text = "**yes**" if flat else "**no**"
    return (f"RSS at the end ≤ {GOAL_MB:.0f} MB: {under} ({final:.1f} MB; idle {samples[0][1]:.1f} MB, "
            f"peak {max(rss for _, rss in samples):.1f} MB).  \n"
            f"Flat: {flat_text} (second half {growth:+.1f} MB{rate}; flat means at most "
            f"+{FLAT_FRACTION:.0%} and +{FLAT_MB:.0f} MB)."
            + (f"  \nThe run lasted {elapsed_s:.0f} s, less than the {FILLING_SECONDS:.0f} s the virtual key's "
               "limiter state takes to fill (its windows hold the last minute of requests, its settled ids "
               "15 s): the second half still saw it grow, so it is no test of flatness; send more requests."
               if elapsed_s is not None and elapsed_s < FILLING_SECONDS else ""))


def render(samples: list[tuple[int, float]], errors: int, elapsed_s: float, route: str, concurrency: int) -> str:
    lines = ["### RSS soak: one gateway worker", "",
             f"{samples[-1][0]:,} {route} requests at concurrency {concurrency} in {elapsed_s:.0f} s, "
             f"{errors:,} errors.", "",
             "| requests | RSS MB | change since previous MB |", "|--:|--:|--:|"]
    previous: float | None = None
    for count, rss in samples:
        change = "" if previous is None else f"{rss - previous:+.1f}"
        lines.append(f"| {count:,} | {rss:.1f} | {change} |")
        previous = rss
    lines += ["", verdict(samples, elapsed_s)]
    return "\n".join(lines) + "\n"


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--every", type=int, help=f"sample RSS at each multiple of this (--requests / {SAMPLES})")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--route", choices=("chat", "stream"), default="chat")
    args = parser.parse_args(argv)
    if args.every is None:
        args.every = max(args.requests // SAMPLES, 100)
    if not (1_000 <= args.requests <= 2_000_000 and 100 <= args.every <= args.requests
            and 1 <= args.concurrency <= 512):
        parser.error("keep it bounded: 1,000-2,000,000 requests, --every 100..requests, concurrency 1-512")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    os.sched_setaffinity(0, {LOAD_CPU})
    stream = args.route == "stream"
    with tempfile.TemporaryDirectory(prefix="llm-gateway-soak-") as tmp, Children(Path(tmp), targets.ROOT) as kids:
        work_dir = Path(tmp)
        mock = targets.start_mock(kids, LOAD_CPU, work_dir)
        sink = targets.start_sink(kids, LOAD_CPU)
        log("starting the gateway ...")
        gateway = targets.start_gateway(kids, TEST_CPU, mock.base, sink, work_dir)
        request = gateway.request(args.route, "Soak prompt @N@, please answer.", stream)
        body_file = work_dir / "soak-body.json"
        body_file.write_text(json.dumps(request.body))

        def rss() -> float:
            return procstat.rss_mb(procstat.tree(gateway.pid, procstat.all_processes()))

        samples = [(0, rss())]
        done, errors, rate = 0, 0, 500.0
        started = time.monotonic()
        next_mark = args.every
        while done < args.requests:
            seconds = min(max(math.ceil((next_mark - done) / rate), 1), 10)
            job = wrk_runner.WrkJob(request.url, body_file, args.concurrency, token=request.token, stream=stream,
                                    nonce=uuid.uuid4().hex[:10])
            result = wrk_runner.run(job, seconds, LOAD_CPU)
            done += result.requests
            errors += sum(result.errors.values())
            rate = max(result.requests / result.duration_s, 1.0)
            if not kids.alive(gateway.pid):
                log("the gateway exited during the soak")
                return 1
            if done >= next_mark:
                samples.append((done, rss()))
                log(f"  {done:,} requests, RSS {samples[-1][1]:.1f} MB, {rate:,.0f} req/s, {errors} errors")
                next_mark = (done // args.every + 1) * args.every
        print(render(samples, errors, time.monotonic() - started, args.route, args.concurrency))
    return 0


if __name__ == "__main__":
    run_main(main)
