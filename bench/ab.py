"""Two versions of the gateway against each other, several processes per version: CPU per request.

    .venv/bin/python bench/ab.py --b HEAD~1              # HEAD (a) against its parent (b), 2 processes each
    .venv/bin/python bench/ab.py --a HEAD --b HEAD        # the noise floor: the same code in both arms
    .venv/bin/python bench/ab.py --a HEAD --b WORKTREE --processes 3 --rounds 4 --scenario stream-c16

Why several processes per version: on this kind of host, processes of the same code started side by
side differ by up to 8-18 % in CPU per request however many rounds they run, so a difference of a
few percent between two single processes says nothing. Each version's number is the median of its
processes' medians, and every process is shown, so the spread is in view next to the difference.

Each version runs from a git worktree (`WORKTREE`: the working tree as it is) as the gateways'
working directory, which `python -m gateway` puts first on the import path (PYTHONPATH would not: the
working directory comes before it). The project's virtual environment runs both, so a version with
other dependencies needs its own. Everything else is as in bench/feature_cost.py: the full
configuration (virtual key with limits, exact cache, metrics, traces to a sink), the nginx mock,
gateways on CPU 0, wrk on CPU 1, a 2 s warm-up before each window, the order rotating every round.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import compare_targets as targets
import feature_cost
from children import Children, log, run_main

TEST_CPU, LOAD_CPU = 0, 1
WORKTREE = "WORKTREE"


@dataclass(frozen=True)
class Arm:
    rev: str
    processes: dict[str, list[float]]  # process label → CPU ms per request, one per round

    @property
    def medians(self) -> list[float]:
        return [statistics.median(values) for values in self.processes.values() if values]

    @property
    def value(self) -> float:
        return statistics.median(self.medians)


def render(a: Arm, b: Arm, forwarder: list[float], scenario: str, rounds: int, seconds: float) -> str:
    lines = [f"#### `{scenario}`: {a.rev} (a) against {b.rev} (b), CPU ms per request, "
             f"{len(a.processes)} + {len(b.processes)} processes, {rounds} rounds of {seconds:g} s", "",
             "| process | median | rounds |", "|---|--:|---|"]
    for arm in (a, b):
        for label, values in arm.processes.items():
            lines.append(f"| {label} ({arm.rev}) | {statistics.median(values):.3f} | "
                         f"{', '.join(f'{v:.3f}' for v in values)} |")
    if forwarder:
        lines.append(f"| bare forwarder | {statistics.median(forwarder):.3f} | "
                     f"{', '.join(f'{v:.3f}' for v in forwarder)} |")
    lines += ["", verdict(a, b)]
    return "\n".join(lines) + "\n"


def verdict(a: Arm, b: Arm) -> str:
    """b against a, and whether the difference is outside both arms' spread between processes."""
    change = (b.value / a.value - 1) * 100
    a_low, a_high = min(a.medians), max(a.medians)
    b_low, b_high = min(b.medians), max(b.medians)
    separated = b_high < a_low or b_low > a_high
    return (f"b ÷ a: {change:+.1f} % ({a.value:.3f} → {b.value:.3f} ms; processes a {a_low:.3f}-{a_high:.3f}, "
            f"b {b_low:.3f}-{b_high:.3f}): "
            + ("the arms do not overlap" if separated else "the arms overlap, so this is within the noise"))


def _checkout(rev: str, into: Path) -> Path:
    if rev == WORKTREE:
        return targets.ROOT
    subprocess.run(["git", "-C", str(targets.ROOT), "worktree", "add", "--detach", "--force", str(into), rev],
                   check=True, capture_output=True)
    return into


def _drop(tree: Path) -> None:
    if tree != targets.ROOT:
        subprocess.run(["git", "-C", str(targets.ROOT), "worktree", "remove", "--force", str(tree)],
                       check=False, capture_output=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", default="HEAD", help=f"a git revision, or {WORKTREE} (default HEAD)")
    parser.add_argument("--b", default=WORKTREE, help=f"a git revision, or {WORKTREE} (the default)")
    parser.add_argument("--processes", type=int, default=2, help="gateways per version (default 2)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per window")
    parser.add_argument("--scenario", default="chat-c16", choices=list(feature_cost.SCENARIOS))
    args = parser.parse_args(argv)
    if args.processes < 1 or args.rounds < 1:
        parser.error("--processes and --rounds: at least 1")
    with tempfile.TemporaryDirectory(prefix="llm-gateway-ab-") as tmp, ExitStack() as stack:
        work_dir = Path(tmp)
        kids = stack.enter_context(Children(work_dir, targets.ROOT))
        mock = targets.start_mock(kids, LOAD_CPU, work_dir)
        sink = targets.start_sink(kids, LOAD_CPU)
        live: dict[str, targets.Target] = {"bare forwarder": targets.start_forwarder(kids, TEST_CPU, mock.base)}
        owner: dict[str, str] = {}
        for arm, rev in (("a", args.a), ("b", args.b)):
            tree = _checkout(rev, work_dir / f"tree-{arm}")
            stack.callback(_drop, tree)
            arm_kids = stack.enter_context(Children(work_dir, tree))  # the tree is the import path
            for index in range(args.processes):
                label = f"{arm}{index + 1}"
                log(f"starting {label} from {rev} ...")
                process_dir = work_dir / label
                process_dir.mkdir()
                live[label] = targets.start_gateway(arm_kids, TEST_CPU, mock.base, sink, process_dir, name=label)
                owner[label] = arm
        samples: dict[str, list[float]] = {label: [] for label in live}
        order = list(live)
        for round_index in range(args.rounds):
            shift = round_index % len(order)
            for label in order[shift:] + order[:shift]:
                cpu_ms = feature_cost.measure(live[label], args.scenario, args.duration, work_dir)
                samples[label].append(cpu_ms)
                log(f"round {round_index + 1}: {label}: {cpu_ms:.3f} CPU ms/req")
    arms = [Arm(rev, {label: samples[label] for label in order if owner.get(label) == arm})
            for arm, rev in (("a", args.a), ("b", args.b))]
    print(render(arms[0], arms[1], samples["bare forwarder"], args.scenario, args.rounds, args.duration))
    return 0


if __name__ == "__main__":
    run_main(main)
