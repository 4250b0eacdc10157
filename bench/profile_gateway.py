"""Where the gateway's CPU goes under load: py-spy samples of one worker, as markdown tables.

    .venv/bin/python bench/profile_gateway.py        # chat-c16, stream-c16, litellm-path-c16, slow-c256, 15 s each
    .venv/bin/python bench/profile_gateway.py --scenarios chat-c16 --seconds 30 --keep profiles/

The gateway runs as in bench/compare.py (virtual key, limits, exact cache, metrics, traces to a sink)
on CPU 0, loaded by wrk on CPU 1; py-spy (installed into bench/.peers/ on first use, never into the
project's environment) samples it with `--nonblocking`, so the process is not paused, or, with
`--pause`, stopping it for each sample: slower under the profiler, but every stack is whole (a
non-blocking sample reads the stack while it changes, and now and then credits a frame to the wrong
caller, which misleads at the grain of a few percent). Two tables per
scenario: the frames where samples land (self), and the gateway's own functions on the stack
(inclusive, one count per sample even when recursive). `--gil` keeps only samples of the thread holding
the GIL (Python work; C code that released the GIL, SQLite in a worker thread say, drops out).
`--keep DIR` also writes py-spy's collapsed stacks (flamegraph input).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from types import FrameType

import compare_targets as targets
import peers
import wrk_runner
from children import Children, log, run_main

TEST_CPU, LOAD_CPU = 0, 1
SCENARIOS = {"chat-c16": ("chat", False, 16), "stream-c16": ("stream", True, 16),
             "litellm-path-c16": ("anthropic", False, 16), "slow-c256": ("slow", False, 256)}


def parse_collapsed(text: str) -> tuple[Counter[str], Counter[str], int]:
    """Self counts per frame (`func (file:line)`), inclusive counts per function (`func (file)`), total."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if frame]
        if not frames:
            continue
        total += count
        self_counts[_short(frames[-1])] += count
        for function in {_function(frame) for frame in frames}:
            inclusive[function] += count
    return self_counts, inclusive, total


def _short(frame: str) -> str:
    """`func (/long/path/site-packages/pkg/mod.py:12)` → `func (pkg/mod.py:12)`."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/work/main/", str(targets.ROOT) + "/", "lib/python3."):
        if marker in where:
            where = where.split(marker, 1)[1]
            if marker == "lib/python3.":
                where = "stdlib:" + where.split("/", 1)[-1]
            break
    return f"{name} ({where})" if where else name


def _function(frame: str) -> str:
    short = _short(frame)
    return short.rsplit(":", 1)[0] + ")" if short.endswith(")") and ":" in short else short


def render(title: str, text: str, top: int) -> str:
    self_counts, inclusive, total = parse_collapsed(text)
    if not total:
        return f"### {title}\n\nno samples\n"
    lines = [f"### {title}", "", f"{total:,} samples.", "", "| self % | frame (function, file:line) |", "|--:|---|"]
    lines += [f"| {100 * n / total:.1f} | `{frame}` |" for frame, n in self_counts.most_common(top)]
    ours = [(function, n) for function, n in inclusive.most_common() if "(gateway/" in function]
    lines += ["", "| inclusive % | gateway function (file) |", "|--:|---|"]
    lines += [f"| {100 * n / total:.1f} | `{function}` |" for function, n in ours[:top * 2]]
    return "\n".join(lines) + "\n"


def profile(gateway: targets.Target, name: str, seconds: int, work_dir: Path, py_spy: Path, gil: bool,
            pause: bool = False) -> str:
    route, stream, concurrency = SCENARIOS[name]
    request = gateway.request(route, "Profile prompt @N@, please answer.", stream)
    body_file = work_dir / f"profile-{name}.json"
    body_file.write_text(json.dumps(request.body))
    job = wrk_runner.WrkJob(request.url, body_file, concurrency, token=request.token, stream=stream,
                            nonce=uuid.uuid4().hex[:10])
    wrk_runner.run(job, 3, LOAD_CPU)  # warm-up
    out = work_dir / f"{name}.collapsed"
    job = wrk_runner.WrkJob(request.url, body_file, concurrency, token=request.token, stream=stream,
                            nonce=uuid.uuid4().hex[:10])
    load = subprocess.Popen(wrk_runner.argv(job, seconds + 2, LOAD_CPU), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        subprocess.run(["taskset", "-c", str(LOAD_CPU), str(py_spy), "record",
                        *([] if pause else ["--nonblocking"]), "--rate", "250",
                        "--duration", str(seconds), "--format", "raw", "--output", str(out),
                        "--pid", str(gateway.pid), *(["--gil"] if gil else [])],
                       check=True, capture_output=True, timeout=seconds + 60)
    finally:
        stdout, _ = load.communicate(timeout=seconds + 60)
    result = wrk_runner.result_from(wrk_runner.parse_summary(stdout))
    log(f"  {name}: {result.requests / result.duration_s:,.0f} req/s under the profiler, "
        f"errors {sum(result.errors.values())}")
    return out.read_text(errors="replace")


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--seconds", type=int, default=15, help="sampled seconds per scenario (1-120)")
    parser.add_argument("--top", type=int, default=15, help="rows per table")
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    parser.add_argument("--keep", type=Path, help="also write the collapsed stacks here")
    parser.add_argument("--pause", action="store_true",
                        help="stop the gateway for each sample: whole stacks, a slower gateway meanwhile")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 120:
        parser.error("--seconds: 1-120")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    os.sched_setaffinity(0, {LOAD_CPU})
    py_spy = peers.py_spy()
    with tempfile.TemporaryDirectory(prefix="llm-gateway-profile-") as tmp, Children(Path(tmp), targets.ROOT) as kids:
        work_dir = Path(tmp)
        mock = targets.start_mock(kids, LOAD_CPU, work_dir)
        sink = targets.start_sink(kids, LOAD_CPU)
        log("starting the gateway ...")
        gateway = targets.start_gateway(kids, TEST_CPU, mock.base, sink, work_dir)
        for name in args.scenarios:
            log(f"profiling {name} for {args.seconds} s ...")
            text = profile(gateway, name, args.seconds, work_dir, py_spy, args.gil, args.pause)
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(work_dir / f"{name}.collapsed", args.keep / f"{name}.collapsed")
            what = "py-spy --gil" if args.gil else "py-spy, all threads"
            what += ", paused per sample" if args.pause else ""
            print(render(f"Gateway profile, `{name}` ({what}, {args.seconds} s)", text, args.top))
    return 0


if __name__ == "__main__":
    run_main(main)
