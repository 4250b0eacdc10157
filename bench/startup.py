"""Start-up: seconds from exec to 200 on the gateway's /readyz, against `python -c "import litellm"`.

litellm's import is most of the gateway's start-up, so the ratio says what the gateway adds on top of
it (its own imports, config, stores, the first route table). Both run pinned to the test core, one at
a time, each `runs` times; the medians are kept.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import compare_targets as targets
from children import Children, StartError, free_port

POLL_S = 0.02


@dataclass(frozen=True)
class Result:
    import_litellm_s: float
    gateway_ready_s: float
    import_samples: list[float]
    ready_samples: list[float]


def time_import_litellm(cpu: int) -> float:
    started = time.perf_counter()
    subprocess.run(["taskset", "-c", str(cpu), targets.python(), "-c", "import litellm"], check=True)
    return time.perf_counter() - started


def time_gateway_ready(children: Children, work_dir: Path, cpu: int, index: int) -> float:
    config = work_dir / "startup-gateway.json"
    config.write_text(json.dumps(targets.gateway_config("http://127.0.0.1:9")))  # never called
    port = free_port()
    env = targets.gateway_env(work_dir / f"startup-{index}", sink="")
    del env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    started = time.perf_counter()
    pid = children.start(f"startup-gateway-{index}", targets.gateway_argv(config, port), cpu, env=env)
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


def measure(children: Children, work_dir: Path, runs: int, test_cpu: int, load_cpu: int) -> Result:
    imports, ready = [], []
    for index in range(runs):
        imports.append(time_import_litellm(test_cpu))
        ready.append(time_gateway_ready(children, work_dir, test_cpu, index))
    return Result(statistics.median(imports), statistics.median(ready), imports, ready)


def render(result: Result) -> str:
    def samples(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    ratio = result.gateway_ready_s / result.import_litellm_s
    return (
        "### Start-up\n\n"
        "| what | median s | runs (s) |\n|---|--:|---|\n"
        f"| `python -c \"import litellm\"` | {result.import_litellm_s:.2f} | {samples(result.import_samples)} |\n"
        f"| gateway: exec to 200 on `/readyz` | {result.gateway_ready_s:.2f} | {samples(result.ready_samples)} |\n"
        f"\ngateway ÷ import litellm: x{ratio:.2f} (goal: under x2)\n"
    )
