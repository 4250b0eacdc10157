"""Start-up: seconds from exec to 200 on the gateway's /readyz, against `python -c "import litellm"`.

    .venv/bin/python bench/startup.py                 # 3 runs of each, medians
    .venv/bin/python bench/startup.py --runs 5 --demo # and the zero-config demo (local embedder + Qdrant edge)

litellm's import is most of the gateway's start-up, so the ratio says what the gateway adds on top of
it (its own imports, config, stores, the first route table). The gateway starts as in bench/compare.py:
the exact cache on, tracing on (an OTLP endpoint on a closed local port: the wiring and its imports
count, exports are after readiness), embedded stores. Both run pinned to the test core, one at a time,
each `runs` times; the medians are kept. `--demo` adds `llm-gateway serve` with no config, which builds
the semantic tier (the local embedder's model and the in-process vector index) before it is ready.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import compare_targets as targets
from children import Children, StartError, free_port

POLL_S = 0.02
TEST_CPU, LOAD_CPU = 0, 1


@dataclass(frozen=True)
class Result:
    import_litellm_s: float
    gateway_ready_s: float
    import_samples: list[float]
    ready_samples: list[float]
    demo_samples: list[float] = field(default_factory=list)


def time_import_litellm(cpu: int) -> float:
    # With the price map from the installed package, as the gateway imports it (gateway/__init__.py): without
    # it litellm fetches the map at import, and offline it retries for seconds, which flattered the ratio.
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    started = time.perf_counter()
    subprocess.run(["taskset", "-c", str(cpu), targets.python(), "-c", "import litellm"], check=True, env=env)
    return time.perf_counter() - started


def time_gateway_ready(children: Children, work_dir: Path, cpu: int, index: int, demo: bool = False) -> float:
    config = work_dir / "startup-gateway.json"
    config.write_text(json.dumps(targets.gateway_config("http://127.0.0.1:9")))  # never called
    port = free_port()
    env = targets.gateway_env(work_dir / f"startup-{index}{'-demo' if demo else ''}",
                              sink=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    argv = targets.gateway_argv(config, port)
    if demo:
        argv = [arg for arg in argv if arg not in ("--config", str(config))]
        del env["GATEWAY_MASTER_KEY"]  # the demo makes one up
    started = time.perf_counter()
    pid = children.start(f"startup-gateway-{index}", argv, cpu, env=env)
    try:
        while time.perf_counter() - started < targets.START_S["gateway"]:
            if not children.alive(pid):
                raise StartError(f"gateway exited during start-up:\n{children.log_tail(f'startup-gateway-{index}')}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(POLL_S)
        raise StartError("gateway not ready in time")
    finally:
        children.stop(pid)


def measure(children: Children, work_dir: Path, runs: int, test_cpu: int, load_cpu: int,
            demo: bool = False) -> Result:
    imports, ready, demos = [], [], []
    for index in range(runs):
        imports.append(time_import_litellm(test_cpu))
        ready.append(time_gateway_ready(children, work_dir, test_cpu, index))
        if demo:
            demos.append(time_gateway_ready(children, work_dir, test_cpu, index, demo=True))
    return Result(statistics.median(imports), statistics.median(ready), imports, ready, demos)


def render(result: Result) -> str:
    def samples(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    ratio = result.gateway_ready_s / result.import_litellm_s
    return (
        "### Start-up\n\n"
        "| what | median s | runs (s) |\n|---|--:|---|\n"
        f"| `python -c \"import litellm\"` | {result.import_litellm_s:.2f} | {samples(result.import_samples)} |\n"
        f"| gateway: exec to 200 on `/readyz` | {result.gateway_ready_s:.2f} | {samples(result.ready_samples)} |\n"
        + (f"| demo (no config: local embedder + Qdrant edge) | {statistics.median(result.demo_samples):.2f} | "
           f"{samples(result.demo_samples)} |\n" if result.demo_samples else "")
        + f"\ngateway ÷ import litellm: x{ratio:.2f} (goal: under x2)\n"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--demo", action="store_true", help="also time the zero-config demo")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 20:
        parser.error("--runs: 1-20")
    with tempfile.TemporaryDirectory(prefix="llm-gateway-startup-") as tmp, Children(Path(tmp), targets.ROOT) as kids:
        print(render(measure(kids, Path(tmp), args.runs, TEST_CPU, LOAD_CPU, demo=args.demo)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
