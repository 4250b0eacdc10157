"""Where a gateway worker's memory goes: RSS idle and after N requests, one feature off at a time.

    .venv/bin/python bench/memory.py                          # every variant, 10,000 requests each
    .venv/bin/python bench/memory.py --variants full no-cache --requests 5000 --details
    .venv/bin/python bench/memory.py --variants full --tracemalloc --details   # allocation sites that grew

Each variant starts the gateway as bench/soak.py does (virtual key with limits, exact cache on with
unique prompts, metrics, OTLP traces to a local sink; embedded stores), through bench/memory_probe.py,
changes one thing, sends the requests with wrk at concurrency 16, and asks the probe (SIGUSR1) for a
report at idle, after the first 500 requests and at the end. The table shows RSS, the anonymous part
of it, glibc's heap (mallinfo2: in use and free), the arena count, threads and gc-tracked objects.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import compare_targets as targets
import procstat
import wrk_runner
from children import Children, log, run_main

TEST_CPU, LOAD_CPU = 0, 1
FIRST = 500  # requests before the second report: what the first requests load


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    env: dict[str, str] = field(default_factory=dict)
    drop_env: tuple[str, ...] = ()
    config: Callable[[dict[str, object]], dict[str, object]] = lambda c: c
    virtual_key: bool = True


def _no_cache(config: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in config.items() if k != "cache_settings"}


VARIANTS = {v.name: v for v in (
    Variant("full", "as bench/soak.py"),
    Variant("no-tracing", "no OTLP endpoint: tracing off", drop_env=("OTEL_EXPORTER_OTLP_ENDPOINT",)),
    Variant("no-cache", "no cache_settings: exact cache off", config=_no_cache),
    Variant("master-key", "the master key: no per-key limits", virtual_key=False),
    Variant("no-tiktoken", "prompt tokens estimated as characters / 4 (no tokenizer tables)",
            env={"MEMORY_PROBE_ESTIMATE": "chars"}),
    Variant("arena-2", "MALLOC_ARENA_MAX=2", env={"MALLOC_ARENA_MAX": "2"}),
    Variant("trim", "malloc_trim(0) after each report (RSS before it in the table; after it below)",
            env={"MEMORY_PROBE_TRIM": "1"}),
)}



def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def probe(pid: int, out: Path) -> dict[str, object]:
    lines_before = len(out.read_text().splitlines()) if out.exists() else 0
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if out.exists():
            lines = out.read_text().splitlines()
            if len(lines) > lines_before:
                report: dict[str, object] = json.loads(lines[-1])
                return report
        time.sleep(0.1)
    raise RuntimeError("the memory probe did not answer")


def drive(request: targets.Request, body_file: Path, count: int, stream: bool) -> tuple[int, int]:
    done, errors, rate = 0, 0, 300.0
    while done < count:
        seconds = min(max(round((count - done) / rate), 1), 10)
        job = wrk_runner.WrkJob(request.url, body_file, 16, token=request.token, stream=stream,
                                nonce=uuid.uuid4().hex[:10])
        result = wrk_runner.run(job, seconds, LOAD_CPU)
        done += result.requests
        errors += sum(result.errors.values())
        rate = max(result.requests / result.duration_s, 1.0)
    return done, errors


def run_variant(variant: Variant, kids: Children, work_dir: Path, mock_base: str, sink: str,
                requests: int, tracemalloc: bool, route: str) -> list[tuple[int, dict[str, object]]]:
    vdir = work_dir / variant.name
    vdir.mkdir()
    config = vdir / "gateway.json"
    config.write_text(json.dumps(variant.config(targets.gateway_config(mock_base)), indent=2))
    out = vdir / "probe.jsonl"
    env = {**targets.gateway_env(vdir, sink), **variant.env, "MEMORY_PROBE_OUT": str(out),
           "MEMORY_PROBE_TRACEMALLOC": "1" if tracemalloc else "0"}
    for name in variant.drop_env:
        env.pop(name, None)
    port = targets.free_port()
    argv = [targets.python(), str(targets.BENCH / "memory_probe.py"), *targets.gateway_argv(config, port)[3:]]
    pid = kids.start(f"gateway-{variant.name}", argv, TEST_CPU, env=env)
    base = f"http://127.0.0.1:{port}"
    kids.wait_ready(f"gateway-{variant.name}", pid, f"{base}/readyz", targets.START_S["gateway"])
    token = targets.create_key(base) if variant.virtual_key else targets.MASTER_KEY
    gateway = targets.Target("gateway", base, pid, token=token)
    stream = route == "stream"
    request = gateway.request(route, "Memory prompt @N@, please answer.", stream)
    body_file = vdir / "body.json"
    body_file.write_text(json.dumps(request.body))
    time.sleep(1)
    reports = [(0, probe(pid, out))]
    first, errors = drive(request, body_file, FIRST, stream)
    reports.append((first, probe(pid, out)))
    rest, more = drive(request, body_file, requests - first, stream)
    reports.append((first + rest, probe(pid, out)))
    if errors + more:
        log(f"  {variant.name}: {errors + more} errors")
    log(f"  {variant.name}: RSS {procstat.rss_mb(procstat.tree(pid, procstat.all_processes())):.1f} MB")
    kids.stop(pid)
    return reports


def _row(variant: Variant, count: int, report: dict[str, object]) -> str:
    smaps = report["smaps_mb"]
    malloc = report["malloc_mb"]
    assert isinstance(smaps, dict) and isinstance(malloc, dict)
    threads = report["threads"]
    assert isinstance(threads, dict)
    return (f"| {variant.name} | {count:,} | {smaps['Rss']} | {smaps['Anonymous']} | {malloc['in_use']:.0f} | "
            f"{malloc['free']:.0f} | {malloc['mmapped']:.0f} | {report['arenas']} | {sum(threads.values())} | "
            f"{report['gc_objects']:,} |")


def render(results: dict[str, list[tuple[int, dict[str, object]]]], details: bool) -> str:
    lines = ["| variant | requests | RSS MB | anon MB | malloc in use MB | malloc free MB | mmapped MB | arenas | "
             "threads | gc objects |", "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for name, reports in results.items():
        lines += [_row(VARIANTS[name], count, report) for count, report in reports]
    lines.append("")
    lines += [f"* `{name}`: {VARIANTS[name].what}" for name in results]
    if details:
        for name, reports in results.items():
            (_, idle), (_, end) = reports[0], reports[-1]
            trimmed = [f"{r['rss_after_trim_mb']} MB after {c:,}" for c, r in reports if "rss_after_trim_mb" in r]
            trim_line = [f"RSS after malloc_trim(0): {', '.join(trimmed)}", ""] if trimmed else []
            lines += ["", f"#### {name}", "", *trim_line,
                      f"threads at the end: {end['threads']}; Python's: {end['python_threads']}",
                      f"heavy modules idle: {idle['heavy_modules']}, at the end: {end['heavy_modules']}",
                      f"modules idle {idle['modules']}, at the end {end['modules']}; frozen {end['gc_frozen']:,}",
                      "", "gc-tracked objects that grew (idle → end):", ""]
            before, after = idle["gc_types"], end["gc_types"]
            assert isinstance(before, dict) and isinstance(after, dict)
            grown = sorted(after, key=lambda t: after[t] - before.get(t, 0), reverse=True)[:12]
            lines += [f"    {t}: {before.get(t, 0):,} → {after[t]:,}" for t in grown]
            for count, report in reports:
                growth = report.get("tracemalloc_growth")
                if isinstance(growth, list):
                    lines += ["", f"tracemalloc growth up to {count:,} requests "
                                  f"(traced total {report['tracemalloc_total_mb']:.1f} MB):", ""]
                    for item in growth[:15]:
                        lines.append(f"    {item['kb']:+,} KB in {item['count']:+,} blocks: "
                                     + " <- ".join(reversed(item["where"][-3:])))
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--route", choices=("chat", "stream"), default="chat")
    parser.add_argument("--tracemalloc", action="store_true", help="report the allocation sites that grew")
    parser.add_argument("--details", action="store_true", help="threads, modules, object types per variant")
    args = parser.parse_args(argv)
    if not FIRST < args.requests <= 1_000_000:
        parser.error(f"--requests: more than {FIRST} and at most 1,000,000")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    os.sched_setaffinity(0, {LOAD_CPU})
    results = {}
    with tempfile.TemporaryDirectory(prefix="llm-gateway-memory-") as tmp, Children(Path(tmp), targets.ROOT) as kids:
        work_dir = Path(tmp)
        mock = targets.start_mock(kids, LOAD_CPU, work_dir)
        sink = targets.start_sink(kids, LOAD_CPU)
        for name in args.variants:
            log(f"{name}: {VARIANTS[name].what} ...")
            results[name] = run_variant(VARIANTS[name], kids, work_dir, mock.base, sink, args.requests,
                                        args.tracemalloc, args.route)
    print(render(results, args.details))
    return 0


if __name__ == "__main__":
    run_main(main)
