"""The gateway against LiteLLM Proxy, Portkey and a bare forwarder, in one run, as markdown tables.

    .venv/bin/python bench/compare.py            # 3 interleaved rounds of every scenario: ~15 minutes
    .venv/bin/python bench/compare.py --quick    # 1 short round: ~3 minutes
    .venv/bin/python bench/compare.py --scenarios chat-c16 stream-c16 --targets mock,gateway,portkey

Every target runs on CPU 0, one at a time under load; the nginx mock upstream, the trace sink, wrk and
this script on CPU 1 (the 500 ms upstream scenarios are loaded by this script, bench/closed_loop.py, on
connections kept from their warm-up). Tables go to stdout, progress to stderr. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import aiohttp
import closed_loop
import compare_targets as targets
import peers
import procstat
import startup
import upstream_nginx
import wrk_runner
from children import Children, StartError, chosen_names, log, run_main
from compare_report import (
    Goal,
    Measurement,
    Summary,
    Table,
    burst_added,
    render,
    render_goals,
    summarize,
    unusable,
)

TEST_CPU, LOAD_CPU = 0, 1
NOISE_CORE_FRACTION = 0.10  # another process above this share of a core makes a window noisy
SATURATED_LOAD_SIDE = 0.90  # wrk, nginx and the sink above this share of CPU 1: the load side may be the limit
ALL = ("mock", "forwarder", "gateway", "litellm", "portkey")
PROMPT = "Benchmark prompt @N@, please answer."  # `@N@`: made unique per request (chat.lua's `unique=`)


@dataclass(frozen=True)
class Scenario:
    title: str
    route: str  # see compare_targets.ROUTES
    concurrency: int
    stream: bool = False
    targets: tuple[str, ...] = ALL
    #: Above 0: measured by bench/closed_loop.py instead of wrk, after a warm-up this long on the same
    #: connections (long enough for their opening burst to disperse: docs/benchmarks.md), with the
    #: burst of every connection's first request reported apart.
    steady_warmup_s: int = 0

    @property
    def steady(self) -> bool:
        return self.steady_warmup_s > 0


SCENARIOS = {
    "chat-c1": Scenario("Non-streaming, concurrency 1", "chat", 1),
    "chat-c16": Scenario("Non-streaming, concurrency 16", "chat", 16),
    "chat-c64": Scenario("Non-streaming, concurrency 64", "chat", 64),
    "stream-c16": Scenario("Streaming (20 chunks, read through `[DONE]`), concurrency 16", "stream", 16,
                           stream=True),
    "slow-c64": Scenario("500 ms upstream, concurrency 64", "slow", 64, steady_warmup_s=3),
    "slow-c256": Scenario("500 ms upstream, concurrency 256", "slow", 256, steady_warmup_s=8),
    "litellm-path-c16": Scenario("Translated provider (Anthropic Messages upstream), non-streaming, concurrency 16",
                                 "anthropic", 16, targets=("mock", "gateway", "litellm", "portkey")),
}


@dataclass(frozen=True)
class Timing:
    rounds: int
    duration_s: int
    warmup_s: int
    ttfb_samples: int
    startup_runs: int
    steady_warmup_s: int | None = None  # None: each steady scenario's own

    def warmup_for(self, scenario: Scenario, target: str = "") -> int:
        if target == "mock":
            # nginx has nothing to warm up; a steady window still runs on open connections.
            return 1 if scenario.steady else 0
        if not scenario.steady:
            return self.warmup_s
        return scenario.steady_warmup_s if self.steady_warmup_s is None else self.steady_warmup_s



# --- one window ----------------------------------------------------------------------------------------


def _job(target: targets.Target, scenario: Scenario, work_dir: Path, nonce: str) -> wrk_runner.WrkJob:
    request = target.request(scenario.route, PROMPT, scenario.stream)
    body_file = work_dir / f"body-{target.name}-{scenario.route}-{scenario.stream}.json"
    body_file.write_text(json.dumps(request.body))
    return wrk_runner.WrkJob(request.url, body_file, scenario.concurrency, token=request.token,
                             stream=scenario.stream, headers=request.headers, nonce=nonce)


@dataclass(frozen=True)
class Window:
    """What the load generator saw in one measured window, and /proc at its edges."""

    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    generator_cpu_s: float  # wrk's own CPU (it is in neither snapshot); 0 when this script generates
    before: procstat.Snapshot
    after: procstat.Snapshot
    burst: closed_loop.Latencies | None = None


def _wrk_window(target: targets.Target, scenario: Scenario, timing: Timing, work_dir: Path, nonce: str) -> Window:
    warmup = timing.warmup_for(scenario, target.name)
    if warmup:
        wrk_runner.run(_job(target, scenario, work_dir, nonce), warmup, LOAD_CPU)
    job = _job(target, scenario, work_dir, nonce + "m")
    before = procstat.Snapshot.take()
    result = wrk_runner.run(job, timing.duration_s, LOAD_CPU)
    after = procstat.Snapshot.take()
    return Window(result.requests, result.duration_s, result.p50_ms, result.p99_ms, result.errors, result.cpu_s,
                  before, after)


def _steady_window(target: targets.Target, scenario: Scenario, timing: Timing, nonce: str) -> Window:
    """bench/closed_loop.py: the warm-up's connections stay open into the window, and their opening
    burst is reported apart."""
    request = target.request(scenario.route, PROMPT, scenario.stream)
    headers = request.headers + ((("Authorization", f"Bearer {request.token}"),) if request.token else ())
    template = json.dumps(request.body)  # `@N@` made unique per request, as chat.lua does

    def body(number: int) -> bytes:
        return template.replace("@N@", f"{nonce}-{number}").encode()

    snapshots: dict[str, procstat.Snapshot] = {}
    plan = closed_loop.Plan(request.url, body, headers, scenario.concurrency,
                            timing.warmup_for(scenario, target.name), timing.duration_s)
    result = closed_loop.run(plan, lambda edge: snapshots.__setitem__(edge, procstat.Snapshot.take()))
    return Window(result.requests, result.duration_s, result.window.p50_ms, result.window.p99_ms, result.errors,
                  0.0, snapshots["start"], snapshots["end"], result.burst)


def measure(target: targets.Target, scenario: Scenario, timing: Timing, work_dir: Path) -> Measurement:
    nonce = uuid.uuid4().hex[:10]
    if scenario.steady:
        window = _steady_window(target, scenario, timing, nonce)
    else:
        window = _wrk_window(target, scenario, timing, work_dir, nonce)
    before, after = window.before, window.after
    stats = procstat.compare(before, after, under_test=target.pid, ours=os.getpid(), test_core=TEST_CPU,
                             load_core=LOAD_CPU)
    load_side = stats.load_side_cores + window.generator_cpu_s / max(after.at - before.at, 1e-9)
    measurement = Measurement(
        rps=window.requests / window.duration_s,
        p50_ms=window.p50_ms,
        p99_ms=window.p99_ms,
        cpu_ms_per_request=stats.cpu_s * 1e3 / max(window.requests, 1),
        rss_mb=procstat.rss_mb(procstat.tree(target.pid, procstat.all_processes())),
        requests=window.requests,
        errors=window.errors,
    )
    if window.burst is not None:
        measurement.burst_p50_ms, measurement.burst_p99_ms = window.burst.p50_ms, window.burst.p99_ms
    noisy = [o for o in stats.offenders if o.core_fraction > NOISE_CORE_FRACTION]
    if noisy or stats.test_core_others > NOISE_CORE_FRACTION:
        names = ", ".join(f"{o.comm} (pid {o.pid}) {o.core_fraction:.0%}" for o in noisy[:4])
        measurement.warnings.append(
            f"{target.label}: {stats.test_core_others:.0%} of CPU {TEST_CPU} went to other work; "
            f"others above {NOISE_CORE_FRACTION:.0%} of a core: {names or 'none seen'}; loadavg {before.loadavg}")
    if load_side > SATURATED_LOAD_SIDE:
        measurement.warnings.append(
            f"{target.label}: the load side (wrk, nginx) used {load_side:.0%} of CPU {LOAD_CPU}, so this row may "
            f"measure the load generator")
    if scenario.stream and timing.ttfb_samples:
        p50, p99 = asyncio.run(ttfb(target, scenario, timing.ttfb_samples, nonce + "t"))
        measurement.ttfb_p50_ms, measurement.ttfb_p99_ms = p50, p99
    return measurement


async def ttfb(target: targets.Target, scenario: Scenario, samples: int, nonce: str) -> tuple[float, float]:
    """Time to the first byte of the body of `samples` sequential streams (concurrency 1), p50 and p99."""
    timings: list[float] = []
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for index in range(samples + 5):  # the first 5 open the connection and are not counted
            request = target.request(scenario.route, PROMPT.replace("@N@", f"{nonce}-{index}"), True)
            headers = {"content-type": "application/json", **dict(request.headers)}
            if request.token:
                headers["authorization"] = f"Bearer {request.token}"
            started = time.perf_counter()
            async with session.post(request.url, data=json.dumps(request.body), headers=headers) as response:
                await response.content.readany()
                first = time.perf_counter() - started
                await response.read()
            if index >= 5 and response.status == 200:
                timings.append(first * 1e3)
    if not timings:
        return float("nan"), float("nan")
    timings.sort()
    return timings[len(timings) // 2], timings[min(len(timings) - 1, int(len(timings) * 0.99))]


# --- the run -------------------------------------------------------------------------------------------


def start_targets(names: list[str], children: Children, work_dir: Path) -> dict[str, targets.Target]:
    mock = targets.start_mock(children, LOAD_CPU, work_dir)
    sink = targets.start_sink(children, LOAD_CPU) if "gateway" in names else ""
    started: dict[str, targets.Target] = {}
    for name in names:
        log(f"starting {targets.LABELS[name]} ...")
        try:
            if name == "mock":
                started[name] = mock
            elif name == "forwarder":
                started[name] = targets.start_forwarder(children, TEST_CPU, mock.base)
            elif name == "gateway":
                started[name] = targets.start_gateway(children, TEST_CPU, mock.base, sink, work_dir)
            elif name == "litellm":
                started[name] = targets.start_litellm(children, TEST_CPU, mock.base, work_dir)
            elif name == "portkey":
                started[name] = targets.start_portkey(children, TEST_CPU, mock.base)
        except (StartError, subprocess.CalledProcessError, RuntimeError, OSError) as error:
            log(f"{targets.LABELS[name]} did not start: {error}")
    return started


def run_rounds(scenarios: list[str], names: list[str], timing: Timing, children: Children, work_dir: Path
               ) -> dict[str, list[Summary]]:
    live = start_targets(names, children, work_dir)
    results: dict[tuple[str, str], list[Measurement]] = {}
    failures: dict[tuple[str, str], list[str]] = {}
    for round_index in range(timing.rounds):
        for key in scenarios:
            scenario = SCENARIOS[key]
            order = [n for n in names if n in scenario.targets]
            shift = round_index % max(len(order), 1)  # rotate, so no target always runs first after a pause
            for name in order[shift:] + order[:shift]:
                target = live.get(name)
                if target is None:
                    failures.setdefault((key, name), []).append("did not start")
                    continue
                if not children.alive(target.pid) and name != "mock":
                    failures.setdefault((key, name), []).append("exited")
                    continue
                log(f"round {round_index + 1}/{timing.rounds} {key} {target.label}: "
                    f"{timing.warmup_for(scenario, name)} s warm-up + {timing.duration_s} s ...")
                try:
                    m = measure(target, scenario, timing, work_dir)
                except (RuntimeError, subprocess.TimeoutExpired, aiohttp.ClientError, OSError) as error:
                    log(f"  failed: {error}")
                    failures.setdefault((key, name), []).append("load run failed")
                    continue
                reason = unusable(m, timing.duration_s)
                if reason is not None:
                    log(f"  failed: {reason}")
                    failures.setdefault((key, name), []).append(reason)
                    continue
                results.setdefault((key, name), []).append(m)
                log(f"  {m.rps:,.0f} req/s, p50 {m.p50_ms:.1f} ms, p99 {m.p99_ms:.1f} ms, "
                    f"{m.cpu_ms_per_request:.2f} CPU ms/req, errors {sum(m.errors.values())}"
                    + (f", TTFB p50 {m.ttfb_p50_ms:.2f} ms" if m.ttfb_p50_ms is not None else "")
                    + (" [noisy]" if m.warnings else ""))
    return {
        key: [summarize(targets.LABELS[name], results.get((key, name), []), failures.get((key, name), []))
              for name in names if name in SCENARIOS[key].targets]
        for key in scenarios
    }


def table_for(key: str, names: list[str]) -> Table:
    scenario = SCENARIOS[key]
    peer_names = [n for n in ("litellm", "portkey", "forwarder") if n in names and n in scenario.targets]
    return Table(key, scenario.title, targets.LABELS["mock"], targets.LABELS["gateway"],
                 tuple(targets.LABELS[n] for n in peer_names), streaming=scenario.stream)


def goals(summaries: dict[str, list[Summary]], start: startup.Result | None) -> list[Goal]:
    def get(key: str, name: str) -> Summary | None:
        # A target that completed nothing in its windows (all timed out) has no ratio to offer.
        return next((s for s in summaries.get(key, []) if s.label == targets.LABELS[name] and s.ok and s.rps > 0
                     and s.cpu_ms_per_request > 0), None)

    out: list[Goal] = []
    ours, lite, port, fwd = (get("chat-c16", n) for n in ("gateway", "litellm", "portkey", "forwarder"))
    if ours:
        out.append(Goal("native non-streaming c16: CPU per request", "≤ 1.0 ms",
                        f"{ours.cpu_ms_per_request:.2f} ms", ours.cpu_ms_per_request <= 1.0))
        if lite:
            ratio = ours.rps / lite.rps
            out.append(Goal("… req/s vs LiteLLM Proxy", "≥ 15x", f"{ratio:.1f}x", ratio >= 15))
        if port:
            ratio = ours.rps / port.rps
            out.append(Goal("… req/s vs Portkey", "≥ 1.5x", f"{ratio:.2f}x", ratio >= 1.5))
        if fwd:
            rps, cpu = fwd.rps / ours.rps, ours.cpu_ms_per_request / fwd.cpu_ms_per_request
            out.append(Goal("… within 2.5x of the bare forwarder", "req/s and CPU/req within 2.5x",
                            f"req/s ÷{rps:.2f}, CPU/req x{cpu:.2f}", rps <= 2.5 and cpu <= 2.5))
    stream, stream_mock = get("stream-c16", "gateway"), get("stream-c16", "mock")
    if stream:
        out.append(Goal("streaming c16: CPU per stream", "≤ 1.5 ms", f"{stream.cpu_ms_per_request:.2f} ms",
                        stream.cpu_ms_per_request <= 1.5))
        if stream_mock and stream.ttfb_p50_ms is not None and stream_mock.ttfb_p50_ms is not None:
            added = stream.ttfb_p50_ms - stream_mock.ttfb_p50_ms
            out.append(Goal("streaming: TTFB added, p50 (concurrency 1)", "≤ 2 ms", f"{added:.2f} ms", added <= 2))
    slow, slow_mock = get("slow-c256", "gateway"), get("slow-c256", "mock")
    if slow and slow_mock:
        p50, p99 = slow.p50_ms - slow_mock.p50_ms, slow.p99_ms - slow_mock.p99_ms
        out.append(Goal("500 ms upstream c256: added p50 / p99 (steady: connections open since the warm-up)",
                        "≤ 20 ms / ≤ 100 ms", f"{p50:.1f} / {p99:.1f} ms", p50 <= 20 and p99 <= 100))
        burst = burst_added(slow, slow_mock)
        if burst is not None:
            out.append(Goal("… the opening burst: 256 new connections' first requests at once", "(reported)",
                            f"{burst[0]:.1f} / {burst[1]:.1f} ms", None))
    path, path_lite = get("litellm-path-c16", "gateway"), get("litellm-path-c16", "litellm")
    if path and path_lite:
        ratio = path.rps / path_lite.rps
        out.append(Goal("litellm path c16: req/s vs LiteLLM Proxy", "≥ 3x", f"{ratio:.2f}x", ratio >= 3))
    if start:
        ratio = start.gateway_ready_s / start.import_litellm_s
        out.append(Goal("start-up: ready on /readyz vs `import litellm`", "< 2x",
                        f"{start.gateway_ready_s:.1f} s vs {start.import_litellm_s:.1f} s ({ratio:.2f}x)", ratio < 2))
    out.append(Goal("RSS per worker after 100k requests, flat", "≤ 250 MB", "see `bench/soak.py`", None))
    out.append(Goal("semantic-cache hit, p50 incl. embedding", "≤ 20 ms", "see `bench/semantic_hit.py`", None))
    return out


def preamble(argv: list[str], timing: Timing) -> str:
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "unknown CPU")
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout or wrk.stderr).split("Copyright")[0].strip()
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False).stderr.strip()
    commit = subprocess.run(["git", "-C", str(targets.ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(targets.ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    steady = " and ".join(f"{timing.warmup_for(SCENARIOS[k])} s at {k}" for k in SCENARIOS if SCENARIOS[k].steady)
    return (
        f"Run {now} on {os.cpu_count()} x {cpu_model}, Python {platform.python_version()}, "
        f"node {peers.node_version()}, {wrk_version}, {nginx.replace('nginx version: ', '')}, "
        f"commit {commit or 'none'}{' (with uncommitted changes in the tree)' if dirty else ''}.  \n"
        f"Command: `{shlex.join(argv)}`  \n"
        f"{timing.rounds} interleaved round(s); per target and scenario a {timing.warmup_s} s warm-up (none for "
        f"the mock), then a {timing.duration_s} s window; the 500 ms upstream scenarios are measured by "
        f"bench/closed_loop.py on connections kept from a longer warm-up ({steady}; 1 s for the mock), their "
        f"opening burst reported apart; medians over rounds (RSS: the largest). Targets on CPU {TEST_CPU}; nginx "
        f"mock, trace sink, wrk and this script on CPU {LOAD_CPU}. Every prompt is unique (exact-cache misses). "
        f"\"added\": minus the mock-direct row of the same table. ⚠: a round whose window saw other work on "
        f"CPU {TEST_CPU} or a saturated CPU {LOAD_CPU}; its reasons are listed under the table.\n"
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 round, 1 s warm-up, 3 s windows")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, 1 with --quick)")
    parser.add_argument("--duration", type=int, help="measured seconds per window (default 5, 3 with --quick)")
    parser.add_argument("--warmup", type=int, help="warm-up seconds per window (default 2, 1 with --quick)")
    parser.add_argument("--steady-warmup", type=int,
                        help="warm-up of the 500 ms upstream scenarios (default 3 s at c64, 8 s at c256; 2 s quick)")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), help=", ".join(SCENARIOS))
    parser.add_argument("--targets", nargs="+", default=list(ALL), help=", ".join(ALL))
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up measurement")
    args = parser.parse_args(argv)
    args.scenarios = chosen_names(args.scenarios, SCENARIOS, "scenario")
    args.targets = chosen_names(args.targets, ALL, "target")
    if "mock" not in args.targets:
        args.targets.insert(0, "mock")  # every "added" column is read against it
    return args


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    timing = Timing(
        rounds=args.rounds or (1 if args.quick else 3),
        duration_s=args.duration or (3 if args.quick else 5),
        warmup_s=args.warmup if args.warmup is not None else (1 if args.quick else 2),
        ttfb_samples=40 if args.quick else 100,
        startup_runs=0 if args.no_startup else (1 if args.quick else 3),
        steady_warmup_s=args.steady_warmup if args.steady_warmup is not None else (2 if args.quick else None),
    )
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None] + upstream_nginx.missing()
    if missing:
        log(f"missing: {', '.join(missing)}. Install with:\n    apt-get update && apt-get install -y "
            f"{' '.join(m if m != 'taskset' else 'util-linux' for m in missing)}\n(or run `make bench-compare`)")
        return 2
    if (os.cpu_count() or 0) < 2:
        log("this benchmark pins processes to CPUs 0 and 1 and needs at least 2 cores")
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    os.sched_setaffinity(0, {LOAD_CPU})  # keep this script off the core under test
    with tempfile.TemporaryDirectory(prefix="llm-gateway-compare-") as tmp:
        work_dir = Path(tmp)
        start: startup.Result | None = None
        if timing.startup_runs:
            log(f"start-up: {timing.startup_runs} x (import litellm, gateway to /readyz) ...")
            with Children(work_dir, cwd=targets.ROOT) as children:
                start = startup.measure(children, work_dir, timing.startup_runs, TEST_CPU, LOAD_CPU)
        with Children(work_dir, cwd=targets.ROOT) as children:
            summaries = run_rounds(args.scenarios, args.targets, timing, children, work_dir)
    print("## Comparison: llm-gateway, LiteLLM Proxy, Portkey, a bare forwarder\n")
    print(preamble([".venv/bin/python", "bench/compare.py", *argv], timing))
    for key in args.scenarios:
        print(render(table_for(key, args.targets), summaries[key]))
    if start:
        print(startup.render(start))
    print(render_goals(goals(summaries, start)))
    return 0


if __name__ == "__main__":
    run_main(main)
