"""The in-process limiter's cost per request as its windows fill: one key (rpm and tpm), admit and
settle per request at a steady rate of simulated time, measured once the 60 s window is full; and the
memory it then holds per request of the window (tracemalloc, a separate run).

    .venv/bin/python bench/limiter_window.py                  # 100 to 3,000 req/s, 20,000 requests each
    .venv/bin/python bench/limiter_window.py --rates 1700 --requests 50000

The window then holds rate x 60 entries. What a request costs should not grow with that number: a
hot key is where a gateway spends its limiter time (docs/benchmarks.md, "Limiter").
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.limits.local_limiter import LocalLimiter
from gateway.limits.types import WINDOW_SECONDS, Ask, Quota, Spend

#: Requests between two memory readings once the window is full.
SAMPLE_EVERY = 500


async def per_request_us(rate: float, requests: int) -> float:
    return await _run(rate, requests, LocalLimiter())


async def held_bytes_per_entry(rate: float, requests: int) -> tuple[float, float]:
    """Python memory the limiter holds once its window is full, divided by the requests in the window:
    the mean and the largest of readings every SAMPLE_EVERY requests (the arrays grow between two
    compactions, so one reading depends on where it falls)."""
    readings: list[int] = []
    tracemalloc.start()
    try:
        def read() -> None:
            readings.append(tracemalloc.get_traced_memory()[0])

        await _run(rate, requests, LocalLimiter(), on_measured=read)
    finally:
        tracemalloc.stop()
    window = rate * WINDOW_SECONDS
    return sum(readings) / len(readings) / window, max(readings) / window


async def _run(rate: float, requests: int, limiter: LocalLimiter,
               on_measured: Callable[[], None] | None = None) -> float:
    quota = Quota(key_id="hot", rpm=10**9, tpm=10**12)
    spend = Spend(model="m", input_tokens=120, output_tokens=180, cost_usd=0.0)
    start_at = 1_700_000_000.0
    fill = int(rate * (WINDOW_SECONDS + 5))
    started = 0.0
    for n in range(fill + requests):
        if n == fill:
            started = time.process_time()
        now = start_at + n / rate
        ask = Ask(reservation_id=f"{random.getrandbits(96):024x}", tokens=300, cost_usd=0.0)
        await limiter.admit(quota, ask, now)
        await limiter.settle(quota, ask, spend, now + 0.001)
        if on_measured is not None and n >= fill and (n - fill) % SAMPLE_EVERY == 0:
            on_measured()
    return (time.process_time() - started) / requests * 1e6


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 1_000, 1_700, 3_000])
    parser.add_argument("--requests", type=int, default=20_000, help="measured requests per rate")
    args = parser.parse_args(argv)
    print("| req/s | entries in the window | µs per admit + settle | bytes held per entry, mean / largest |\n"
          "|--:|--:|--:|--:|")
    for rate in args.rates:
        cost = asyncio.run(per_request_us(rate, args.requests))
        mean, largest = asyncio.run(held_bytes_per_entry(rate, args.requests))
        print(f"| {rate:,.0f} | {rate * WINDOW_SECONDS:,.0f} | {cost:.1f} | {mean:.0f} / {largest:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
