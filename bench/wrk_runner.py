"""One wrk run with bench/chat.lua, pinned to a core, and the parse of its `BENCH` summary line."""

from __future__ import annotations

import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent / "chat.lua"
ERROR_KINDS = ("non200", "broken", "connect", "read", "write", "timeout")


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]  # only the kinds that occurred
    cpu_s: float  # wrk's own CPU time (it starts and ends inside the window, so /proc never sees it)


@dataclass(frozen=True)
class WrkJob:
    url: str
    body_file: Path
    concurrency: int
    token: str | None = None
    stream: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    nonce: str | None = None  # set: every `@N@` in the body becomes a per-request unique string
    timeout_s: int = 10


def parse_summary(stdout: str) -> dict[str, int]:
    """The numbers of chat.lua's `BENCH key=value ...` line; ValueError when there is none."""
    line = next((line for line in stdout.splitlines() if line.startswith("BENCH ")), None)
    if line is None:
        raise ValueError("no BENCH line in wrk's output")
    return {key: int(value) for key, value in (item.split("=", 1) for item in line.split()[1:])}


def result_from(values: dict[str, int], cpu_s: float = 0.0) -> WrkResult:
    errors = {key: values[key] for key in ERROR_KINDS if values.get(key)}
    return WrkResult(
        requests=values["requests"],
        duration_s=values["duration_us"] / 1e6,
        p50_ms=values["p50_us"] / 1e3,
        p99_ms=values["p99_us"] / 1e3,
        errors=errors,
        cpu_s=cpu_s,
    )


def argv(job: WrkJob, seconds: float, cpu: int) -> list[str]:
    command = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{job.concurrency}", f"-d{seconds:g}s"]
    command += ["--timeout", f"{job.timeout_s}s", "-s", str(LUA_SCRIPT), job.url]
    command += ["--", str(job.body_file), job.token or "-", "stream" if job.stream else "plain"]
    command += [f"header={name}: {value}" for name, value in job.headers]
    if job.nonce is not None:
        command.append(f"unique={job.nonce}")
    return command


def run(job: WrkJob, seconds: float, cpu: int) -> WrkResult:
    """Run wrk for `seconds` on `cpu`; RuntimeError when it fails or prints no summary."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv(job, seconds, cpu), capture_output=True, text=True, timeout=seconds + 60,
                          check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        values = parse_summary(done.stdout)
    except ValueError:
        values = {}
    if done.returncode != 0 or not values:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout.strip()} {done.stderr.strip()}")
    return result_from(values, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime))
