"""Readings from /proc: CPU time and RSS of process trees, per-core busy time, and everyone else's CPU.

A `Snapshot` is taken at the start and the end of a measured window; `compare` turns the pair into what
the tables print and what the noise warning needs. Linux only.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


@dataclass(frozen=True)
class Proc:
    ppid: int
    ticks: int  # utime + stime of every thread of the process
    started: int  # start time in ticks since boot: tells a reused pid from the same process
    comm: str


@dataclass(frozen=True)
class Snapshot:
    at: float
    procs: dict[int, Proc]
    cores: dict[str, tuple[int, int]]  # "cpu0" -> (busy ticks, total ticks)
    loadavg: str

    @classmethod
    def take(cls) -> Snapshot:
        return cls(time.monotonic(), all_processes(), core_ticks(), loadavg())


@dataclass(frozen=True)
class Offender:
    pid: int
    comm: str
    core_fraction: float


@dataclass(frozen=True)
class WindowStats:
    cpu_s: float  # CPU seconds used by the process tree under test
    load_side_cores: float  # cores' worth of CPU used by the benchmark's other processes seen in /proc
    test_core_others: float  # share of the test core's time that went to anything but the tree under test
    load_core_busy: float  # share of the load core's time that was busy
    offenders: list[Offender]  # processes outside the benchmark, busiest first


def _read_proc(pid: int) -> Proc | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may hold spaces and parentheses: the fields after it start at the last ")".
    head, _, tail = raw.rpartition(")")
    fields = tail.split()
    return Proc(
        ppid=int(fields[1]),
        ticks=int(fields[11]) + int(fields[12]),
        started=int(fields[19]),
        comm=head.partition("(")[2],  # a kworker's name changes with its work item
    )


def all_processes() -> dict[int, Proc]:
    procs: dict[int, Proc] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (proc := _read_proc(int(entry.name))) is not None:
            procs[int(entry.name)] = proc
    return procs


def tree(root: int, procs: dict[int, Proc]) -> set[int]:
    """`root` and all its descendants among `procs`."""
    children: dict[int, list[int]] = {}
    for pid, proc in procs.items():
        children.setdefault(proc.ppid, []).append(pid)
    found, frontier = {root}, [root]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found & (procs.keys() | {root})


def rss_mb(pids: set[int]) -> float:
    """Summed VmRSS of `pids` in MiB (shared pages of a forked worker count twice)."""
    total_kb = 0
    for pid in pids:
        try:
            status = (_PROC / str(pid) / "status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


def core_ticks() -> dict[str, tuple[int, int]]:
    cores: dict[str, tuple[int, int]] = {}
    for line in (_PROC / "stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            numbers = [int(v) for v in values[:8]]  # guest time is already inside user time
            idle = numbers[3] + numbers[4]  # idle + iowait
            cores[name] = (sum(numbers) - idle, sum(numbers))
    return cores


def loadavg() -> str:
    return " ".join((_PROC / "loadavg").read_text().split()[:3])


def _delta_ticks(before: Snapshot, after: Snapshot, pids: set[int]) -> dict[int, int]:
    """Ticks each of `pids` used between the snapshots; a process born in between counts from zero."""
    deltas: dict[int, int] = {}
    for pid in pids:
        if pid in after.procs:
            start = before.procs.get(pid)
            same = start is not None and start.started == after.procs[pid].started
            deltas[pid] = after.procs[pid].ticks - (start.ticks if same and start else 0)
    return deltas


def _busy(before: Snapshot, after: Snapshot, core: str) -> float:
    busy_before, total_before = before.cores.get(core, (0, 0))
    busy_after, total_after = after.cores.get(core, (0, 0))
    return (busy_after - busy_before) / max(total_after - total_before, 1)


def compare(
    before: Snapshot, after: Snapshot, *, under_test: int, ours: int, test_core: int, load_core: int
) -> WindowStats:
    """Stats of one window.

    `under_test` roots the measured tree, pinned to `test_core`; `ours` roots every benchmark process.
    A process that starts and ends inside the window is in neither snapshot: wrk is measured apart, and
    others show only in the test core's busy time (`test_core_others`) and the load average.
    """
    elapsed = max(after.at - before.at, 1e-9)
    tested = tree(under_test, after.procs) | tree(under_test, before.procs)
    cpu_s = sum(_delta_ticks(before, after, tested).values()) * _TICK_S

    benchmark = tree(ours, after.procs) | tree(ours, before.procs)
    load_side_s = sum(_delta_ticks(before, after, benchmark - tested).values()) * _TICK_S
    others = set(after.procs) - benchmark
    offenders = [
        Offender(pid, after.procs[pid].comm, ticks * _TICK_S / elapsed)
        for pid, ticks in _delta_ticks(before, after, others).items()
        if ticks > 0
    ]
    offenders.sort(key=lambda o: o.core_fraction, reverse=True)
    return WindowStats(
        cpu_s=cpu_s,
        load_side_cores=load_side_s / elapsed,
        test_core_others=max(_busy(before, after, f"cpu{test_core}") - cpu_s / elapsed, 0.0),
        load_core_busy=_busy(before, after, f"cpu{load_core}"),
        offenders=offenders,
    )
