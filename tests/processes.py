"""Real processes for end-to-end tests: the mock upstream and gateways, on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
MASTER_KEY = "sk-test-master-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{url} not ready after {timeout}s:\n{log.read_text()[-4000:]}")


class Process:
    def __init__(self, args: list[str], ready_path: str, port: int, log: Path,
                 env: dict[str, str] | None = None, timeout: float = 90) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(args, cwd=ROOT, env=full_env, stdout=self._log_file,
                                        stderr=subprocess.STDOUT)
        try:
            _wait_until(self.url + ready_path, self.process, log, timeout)
        except BaseException:
            self.stop()
            raise

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log_file.closed:
            self._log_file.close()


def start_mock(workdir: Path) -> Process:
    port = free_port()
    return Process([sys.executable, "-m", "gateway.mock_upstream", "--port", str(port)], "/health", port,
                   workdir / f"mock-{port}.log")


def start_gateway(workdir: Path, config: dict[str, Any] | None, *, env: dict[str, str] | None = None,
                  config_path: Path | None = None) -> Process:
    """A gateway process on a free port; ``config=None`` runs the demo."""
    port = free_port()
    args = [sys.executable, "-m", "gateway", "serve", "--port", str(port)]
    if config is not None:
        path = config_path or workdir / f"gateway-{port}.yaml"
        path.write_text(yaml.safe_dump(config))
        args += ["--config", str(path)]
    full_env = {"GATEWAY_MASTER_KEY": MASTER_KEY, "GATEWAY_DATA_DIR": str(workdir / f"data-{port}"),
                "GATEWAY_LOG_LEVEL": "INFO", **(env or {})}
    return Process(args, "/readyz", port, workdir / f"gateway-{port}.log", env=full_env)
