"""What each gateway feature costs per request: the same load against gateways with features turned on
one at a time, next to the bare forwarder, all on the nginx mock.

    .venv/bin/python bench/feature_cost.py                    # chat-c16, 3 rounds of 5 s windows: ~3 min
    .venv/bin/python bench/feature_cost.py --scenario stream-c16 --rounds 2

Rows (each a fresh process on CPU 0; nginx, the trace sink, wrk and this script on CPU 1):

* bare forwarder: bench/forwarder.py, the floor;
* gateway, master key: auth by the master key, no per-key limits, no cache, no traces (metrics are always on);
* + virtual key: a key with rpm and tpm limits, checked and settled on every request;
* + exact cache: a lookup, a miss and a write per request (every prompt is unique);
* + traces: spans exported over OTLP/HTTP to bench/otlp_sink.py: everything bench/compare.py turns on.

Each row's CPU ms/req is the median over rounds (rounds interleave the rows); "step" is what that row
adds to the one above it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import compare_targets as targets
import procstat
import wrk_runner
from children import Children, log, run_main

TEST_CPU, LOAD_CPU = 0, 1
SCENARIOS = {"chat-c16": ("chat", False, 16), "stream-c16": ("stream", True, 16)}


@dataclass(frozen=True)
class Variant:
    label: str
    key: bool
    cache: bool
    traces: bool


VARIANTS = (
    Variant("gateway, master key", key=False, cache=False, traces=False),
    Variant("+ virtual key (rpm, tpm)", key=True, cache=False, traces=False),
    Variant("+ exact cache (miss + write)", key=True, cache=True, traces=False),
    Variant("+ traces (OTLP/HTTP)", key=True, cache=True, traces=True),
)


def start_variant(kids: Children, variant: Variant, mock_base: str, sink: str, work_dir: Path) -> targets.Target:
    name = f"gw-{VARIANTS.index(variant)}"
    variant_dir = work_dir / name
    variant_dir.mkdir()
    return targets.start_gateway(kids, TEST_CPU, mock_base, sink, variant_dir, name=name, cache=variant.cache,
                                 traces=variant.traces, virtual_key=variant.key)


def measure(target: targets.Target, scenario: str, seconds: float, work_dir: Path) -> float:
    route, stream, concurrency = SCENARIOS[scenario]
    request = target.request(route, "Feature cost prompt @N@, please answer.", stream)
    body_file = work_dir / f"body-{uuid.uuid4().hex[:8]}.json"
    body_file.write_text(json.dumps(request.body))

    def job() -> wrk_runner.WrkJob:
        return wrk_runner.WrkJob(request.url, body_file, concurrency, token=request.token, stream=stream,
                                 headers=request.headers, nonce=uuid.uuid4().hex[:10])

    wrk_runner.run(job(), 2, LOAD_CPU)
    before = procstat.Snapshot.take()
    result = wrk_runner.run(job(), seconds, LOAD_CPU)
    after = procstat.Snapshot.take()
    stats = procstat.compare(before, after, under_test=target.pid, ours=os.getpid(), test_core=TEST_CPU,
                             load_core=LOAD_CPU)
    if result.errors:
        log(f"  errors: {result.errors}")
    if stats.test_core_others > 0.10 or (stats.offenders and stats.offenders[0].core_fraction > 0.10):
        log(f"  ⚠ noisy window: {stats.test_core_others:.0%} of CPU {TEST_CPU} went to other work")
    return 1000 * stats.cpu_s / max(1, result.requests)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="chat-c16", choices=list(SCENARIOS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="llm-gateway-features-") as tmp, Children(Path(tmp), targets.ROOT) as kids:
        work_dir = Path(tmp)
        mock = targets.start_mock(kids, LOAD_CPU, work_dir)
        sink = targets.start_sink(kids, LOAD_CPU)
        rows: dict[str, targets.Target] = {"bare forwarder": targets.start_forwarder(kids, TEST_CPU, mock.base)}
        for variant in VARIANTS:
            log(f"starting {variant.label} ...")
            rows[variant.label] = start_variant(kids, variant, mock.base, sink, work_dir)
        samples: dict[str, list[float]] = {label: [] for label in rows}
        for round_no in range(args.rounds):
            for label, target in rows.items():
                cpu_ms = measure(target, args.scenario, args.duration, work_dir)
                samples[label].append(cpu_ms)
                log(f"round {round_no + 1}: {label}: {cpu_ms:.3f} CPU ms/req")
    print(f"#### CPU per request by feature, `{args.scenario}` (medians of {args.rounds} rounds of "
          f"{args.duration:g} s)\n")
    print("| configuration | CPU ms/req | step ms | ÷ forwarder |\n|---|--:|--:|--:|")
    previous = None
    floor = statistics.median(samples["bare forwarder"])
    for label, values in samples.items():
        value = statistics.median(values)
        step = "" if previous is None or label == VARIANTS[0].label else f"{value - previous:+.3f}"
        print(f"| {label} | {value:.3f} | {step} | x{value / floor:.2f} |")
        previous = value
    return 0


if __name__ == "__main__":
    run_main(main)
