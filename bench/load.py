"""Load benchmark: the mock upstream alone, a bare forwarder, and the gateway, as markdown tables.

    .venv/bin/python bench/load.py [--duration S] [--quick] [--scenarios ...] [--targets ...]

The process under test (the gateway or the forwarder, or the mock when hit directly) is pinned to CPU 0;
the mock upstream, wrk and this script to CPU 1. Tables go to stdout, progress to stderr, so
`bench/load.py > results.md` keeps only the results. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import procstat
import wrk_runner
from children import Children, StartError, chosen_names, free_port, log, run_main
from wrk_runner import WrkResult

ROOT = Path(__file__).resolve().parent.parent
TEST_CPU, LOAD_CPU = 0, 1
MASTER_KEY = "sk-bench-master-key-0123456789abcdef"  # a fixed key for a throwaway local gateway
NOISE_CORE_FRACTION = 0.10  # another process above this share of a core makes a window noisy
SATURATED_LOAD_SIDE = 0.90  # wrk and the mock above this share of CPU 1: the load side may be the limit
MOCK_START_S, FORWARDER_START_S, GATEWAY_START_S = 30.0, 30.0, 120.0

GATEWAY_CONFIG = """\
model_list:
  - model_name: bench
    litellm_params:
      model: openai/mock
      api_base: http://127.0.0.1:{port}/v1
      api_key: sk-upstream-not-secret
  - model_name: bench-stream
    litellm_params:
      model: openai/mock+chunks=20
      api_base: http://127.0.0.1:{port}/v1
      api_key: sk-upstream-not-secret
  - model_name: bench-slow
    litellm_params:
      model: openai/mock+latency=500
      api_base: http://127.0.0.1:{port}/v1
      api_key: sk-upstream-not-secret
"""


@dataclass(frozen=True)
class Scenario:
    title: str
    upstream_model: str  # what the mock and the forwarder are sent
    gateway_model: str  # the gateway's alias for the same upstream model
    concurrency: int
    stream: bool = False
    upstream_latency_ms: float = 0.0


SCENARIOS = {
    "chat-c1": Scenario("Non-streaming chat completion, concurrency 1", "mock", "bench", 1),
    "chat-c16": Scenario("Non-streaming chat completion, concurrency 16", "mock", "bench", 16),
    "chat-c64": Scenario("Non-streaming chat completion, concurrency 64", "mock", "bench", 64),
    "stream-c16": Scenario(
        "Streaming chat completion (20 chunks, read through `[DONE]`), concurrency 16",
        "mock+chunks=20",
        "bench-stream",
        16,
        stream=True,
    ),
    "slow-c64": Scenario(
        "500 ms upstream latency, concurrency 64",
        "mock+latency=500",
        "bench-slow",
        64,
        upstream_latency_ms=500.0,
    ),
}
TARGETS = {"mock": "mock direct", "forwarder": "bare forwarder", "gateway": "gateway"}


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    pid: int  # root of the process tree under test
    token: str | None

    def model(self, scenario: Scenario) -> str:
        return scenario.gateway_model if self.name == "gateway" else scenario.upstream_model


@dataclass
class Row:
    target: str
    failure: str | None = None
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_ms_per_request: float = 0.0
    rss_mb: float = 0.0
    load_side_cores: float = 0.0  # wrk (and the mock, behind a target) in cores' worth of CPU
    test_core_others: float = 0.0  # share of the target's core that went to anything else
    errors: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Timing:
    duration_s: int
    warmup_s: int



# --- the processes -------------------------------------------------------------------------------------


def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def start_mock(children: Children, cpu: int) -> tuple[int, int]:
    port = free_port()
    argv = [python(), "-m", "gateway.mock_upstream", "--host", "127.0.0.1", "--port", str(port)]
    pid = children.start("mock", argv, cpu)
    children.wait_ready("mock", pid, f"http://127.0.0.1:{port}/health", MOCK_START_S)
    return pid, port


def launch(name: str, children: Children, work_dir: Path) -> Target:
    """Start `name` and whatever it needs; the processes live until `children` stops them."""
    if name == "mock":
        pid, port = start_mock(children, TEST_CPU)
        return Target(name, f"http://127.0.0.1:{port}", pid, None)

    _, mock_port = start_mock(children, LOAD_CPU)
    port = free_port()
    if name == "forwarder":
        argv = [python(), str(Path(__file__).with_name("forwarder.py")), "--port", str(port)]
        pid = children.start("forwarder", [*argv, "--upstream", f"http://127.0.0.1:{mock_port}"], TEST_CPU)
        children.wait_ready(name, pid, f"http://127.0.0.1:{port}/health", FORWARDER_START_S)
        return Target(name, f"http://127.0.0.1:{port}", pid, None)

    config = work_dir / "gateway.yaml"
    config.write_text(GATEWAY_CONFIG.format(port=mock_port))
    argv = [python(), "-m", "gateway", "serve", "--config", str(config)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    pid = children.start(name, argv, TEST_CPU, env={"GATEWAY_MASTER_KEY": MASTER_KEY})
    children.wait_ready(name, pid, f"http://127.0.0.1:{port}/readyz", GATEWAY_START_S)
    return Target(name, f"http://127.0.0.1:{port}", pid, MASTER_KEY)


# --- the load ------------------------------------------------------------------------------------------


def run_wrk(target: Target, scenario: Scenario, seconds: int, work_dir: Path) -> WrkResult:
    body_file = work_dir / f"body-{target.name}-{scenario.concurrency}-{target.model(scenario)}.json"
    body: dict[str, object] = {
        "model": target.model(scenario),
        "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
    }
    if scenario.stream:
        body["stream"] = True
    body_file.write_text(json.dumps(body))
    job = wrk_runner.WrkJob(f"{target.url}/v1/chat/completions", body_file, scenario.concurrency,
                            token=target.token, stream=scenario.stream)
    return wrk_runner.run(job, seconds, LOAD_CPU)


def measure(target: Target, scenario: Scenario, timing: Timing, children: Children, work_dir: Path) -> Row:
    label = TARGETS[target.name]
    if timing.warmup_s:
        run_wrk(target, scenario, timing.warmup_s, work_dir)
    before = procstat.Snapshot.take()
    result = run_wrk(target, scenario, timing.duration_s, work_dir)
    after = procstat.Snapshot.take()
    stats = procstat.compare(
        before, after, under_test=target.pid, ours=os.getpid(), test_core=TEST_CPU, load_core=LOAD_CPU
    )
    load_side_cores = stats.load_side_cores + result.cpu_s / (after.at - before.at)
    if not children.alive(target.pid):
        return Row(label, failure=f"{target.name} exited during the window")

    row = Row(
        label,
        rps=result.requests / result.duration_s,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        cpu_ms_per_request=stats.cpu_s * 1e3 / max(result.requests, 1),
        rss_mb=procstat.rss_mb(procstat.tree(target.pid, procstat.all_processes())),
        errors=result.errors,
        load_side_cores=load_side_cores,
        test_core_others=stats.test_core_others,
    )
    noisy = [o for o in stats.offenders if o.core_fraction > NOISE_CORE_FRACTION]
    if noisy or stats.test_core_others > NOISE_CORE_FRACTION:
        names = ", ".join(f"{o.comm} (pid {o.pid}) {o.core_fraction:.0%}" for o in noisy[:5])
        row.warnings.append(
            f"noisy {label} window: {stats.test_core_others:.0%} of CPU {TEST_CPU} (the target's core) "
            f"went to other work; processes outside the benchmark above {NOISE_CORE_FRACTION:.0%} of a core: "
            f"{names or 'none seen'}; loadavg before the window {before.loadavg}"
        )
    if load_side_cores > SATURATED_LOAD_SIDE:
        on_load_core = "wrk" if target.name == "mock" else "wrk and the mock upstream"
        row.warnings.append(
            f"{label} window: {on_load_core} used {load_side_cores:.0%} of a core "
            f"(CPU {LOAD_CPU} was {stats.load_core_busy:.0%} busy), so this row may measure the load side "
            f"rather than the {label}"
        )
    return row


# --- the tables ----------------------------------------------------------------------------------------


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _errors(errors: dict[str, int]) -> str:
    if not errors:
        return "0"
    return f"{sum(errors.values())} ({', '.join(f'{k} {v}' for k, v in errors.items())})"


def render(name: str, scenario: Scenario, rows: list[Row]) -> str:
    added = scenario.upstream_latency_ms > 0
    header = ["target", "req/s", "p50 ms", "p99 ms"]
    header += ["added p50 ms", "added p99 ms"] if added else []
    header += ["CPU ms/req", "RSS MB", "errors"]
    lines = [f"### {scenario.title} (`{name}`)", ""]
    lines += ["| " + " | ".join(header) + " |", "|---|" + "--:|" * (len(header) - 1)]
    for row in rows:
        if row.failure:
            cells = [row.target, *["—"] * (len(header) - 2), row.failure]
        else:
            cells = [row.target, _number(row.rps), _number(row.p50_ms), _number(row.p99_ms)]
            if added:
                latency = scenario.upstream_latency_ms
                cells += [_number(row.p50_ms - latency), _number(row.p99_ms - latency)]
            cells += [_number(row.cpu_ms_per_request), _number(row.rss_mb), _errors(row.errors)]
        lines.append("| " + " | ".join(cells) + " |")

    by_target = {row.target: row for row in rows if not row.failure}
    gateway, forwarder = by_target.get(TARGETS["gateway"]), by_target.get(TARGETS["forwarder"])
    if gateway and forwarder and forwarder.rps and forwarder.cpu_ms_per_request:
        lines += [
            "",
            f"gateway ÷ bare forwarder: req/s x{gateway.rps / forwarder.rps:.2f}, "
            f"CPU ms/req x{gateway.cpu_ms_per_request / forwarder.cpu_ms_per_request:.2f}",
        ]
    warnings = [warning for row in rows for warning in row.warnings]
    if warnings:
        lines += [""] + [f"> **warning:** {warning}  " for warning in warnings]
    return "\n".join(lines) + "\n"


def preamble(argv: list[str], timing: Timing) -> str:
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout or wrk.stderr).split("Copyright")[0].strip()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Run {now} on {os.cpu_count()} x {cpu_model}, Python {platform.python_version()}, {wrk_version}, "
        f"commit {commit or 'none'}.  \n"
        f"Command: `{shlex.join(argv)}`  \n"
        f"{timing.warmup_s} s warm-up, then a {timing.duration_s} s measured window per row. "
        f"Under test on CPU {TEST_CPU}; mock upstream (when behind a target), wrk and this script on "
        f"CPU {LOAD_CPU}.\n"
    )


# --- the run -------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, help="measured seconds per row (default 10, 3 with --quick)")
    parser.add_argument("--warmup", type=int, help="warm-up seconds before each window (default 2, 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="short windows for a smoke run")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), help=", ".join(SCENARIOS))
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), help=", ".join(TARGETS))
    args = parser.parse_args(argv)
    args.scenarios = chosen_names(args.scenarios, SCENARIOS, "scenario")
    args.targets = chosen_names(args.targets, TARGETS, "target")
    return args


def run_target(name: str, scenarios: list[str], timing: Timing, work_dir: Path) -> list[Row]:
    """One row per scenario for target `name`, whose processes are stopped before this returns."""
    label = TARGETS[name]
    with Children(work_dir, cwd=ROOT) as children:
        log(f"starting {label} ...")
        try:
            target = launch(name, children, work_dir)
        except StartError as error:
            log(f"{label} did not start: {error}")
            return [Row(label, failure="did not start") for _ in scenarios]
        rows = []
        for scenario in scenarios:
            log(f"  {scenario}: {timing.warmup_s} s warm-up + {timing.duration_s} s ...")
            try:
                row = measure(target, SCENARIOS[scenario], timing, children, work_dir)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                log(f"  {scenario} failed: {error}")
                row = Row(label, failure="load run failed")
            log(f"  {scenario}: {_progress(row)}")
            rows.append(row)
        return rows


def _progress(row: Row) -> str:
    if row.failure:
        return row.failure
    return (
        f"{row.rps:,.0f} req/s, p50 {row.p50_ms:.1f} ms, {row.cpu_ms_per_request:.2f} CPU ms/req, "
        f"errors {_errors(row.errors)}; CPU {LOAD_CPU}: load side {row.load_side_cores:.0%}, "
        f"CPU {TEST_CPU}: others {row.test_core_others:.0%}"
    )


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    timing = Timing(
        duration_s=args.duration or (3 if args.quick else 10),
        warmup_s=args.warmup if args.warmup is not None else (1 if args.quick else 2),
    )
    if shutil.which("wrk") is None:
        log(
            "wrk is not installed; it is the load generator. Install it with:\n"
            "    apt-get update && apt-get install -y wrk"
        )
        return 2
    if os.cpu_count() is None or (os.cpu_count() or 0) < 2:
        log("this benchmark pins processes to CPUs 0 and 1 and needs at least 2 cores")
        return 2

    # Both end in KeyboardInterrupt, which unwinds through `Children` and stops every child. SIGINT is set
    # explicitly because a shell starts background jobs with it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    os.sched_setaffinity(0, {LOAD_CPU})  # keep this script off the core under test
    results: dict[str, list[Row]] = {name: [] for name in args.scenarios}
    with tempfile.TemporaryDirectory(prefix="llm-gateway-bench-") as tmp:
        for target_name in args.targets:
            rows = run_target(target_name, args.scenarios, timing, Path(tmp))
            for name, row in zip(args.scenarios, rows, strict=True):
                results[name].append(row)
    print("## Load benchmark\n")
    print(preamble([".venv/bin/python", "bench/load.py", *argv], timing))
    for name, rows in results.items():
        print(render(name, SCENARIOS[name], rows))
    return 0


if __name__ == "__main__":
    run_main(main)
