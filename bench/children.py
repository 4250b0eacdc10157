"""The benchmark's child processes: started pinned to a core, awaited until ready, always stopped.

Each child runs in its own session (so a Ctrl-C at the terminal reaches only the benchmark, which then
stops them in order) and writes to a log file whose tail is shown when it fails to start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection
from pathlib import Path
from types import TracebackType
from typing import NoReturn


class StartError(RuntimeError):
    """A child exited or did not become ready in time; the message carries its log's tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Children:
    """Owns every process it starts; leaving the `with` block stops all of them."""

    def __init__(self, log_dir: Path, cwd: Path) -> None:
        self._log_dir = log_dir
        self._cwd = cwd
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    def start(self, name: str, argv: list[str], cpu: int, env: dict[str, str] | None = None) -> int:
        """Start `argv` pinned to `cpu`; return its pid (taskset execs, so it is the program's own)."""
        log = self.log_path(name)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["taskset", "-c", str(cpu), *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=self._cwd,
                start_new_session=True,
            )
        self._procs.append((name, proc))
        return proc.pid

    def log_path(self, name: str) -> Path:
        return self._log_dir / f"{name}.log"

    def alive(self, pid: int) -> bool:
        return any(proc.pid == pid and proc.poll() is None for _, proc in self._procs)

    def wait_ready(self, name: str, pid: int, url: str, timeout_s: float) -> None:
        """Poll `url` until it answers 200; raise StartError if the child dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive(pid):
                raise StartError(f"{name} exited during start-up:\n{self.log_tail(name)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (a 127.0.0.1 URL we built)
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise StartError(f"{name} not ready at {url} after {timeout_s:.0f} s:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def stop(self, pid: int) -> None:
        for index, (_, proc) in enumerate(self._procs):
            if proc.pid == pid:
                _terminate(proc)
                del self._procs[index]
                return

    def stop_all(self) -> None:
        """Stop children newest first, so the mock upstream outlives what sits in front of it."""
        while self._procs:
            _, proc = self._procs.pop()
            _terminate(proc)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group (its workers too), then SIGKILL after 5 s."""
    for sig, grace_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
    # A worker that outlived its parent is still in the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def log(message: str) -> None:
    """Progress goes to stderr, so that a benchmark's stdout is only its tables."""
    print(message, file=sys.stderr, flush=True)


def run_main(main: Callable[[list[str]], int]) -> NoReturn:
    """Run a benchmark's ``main``; Ctrl-C unwinds its ``Children`` (stopping them) and exits 130."""
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        log("interrupted; child processes stopped")
        sys.exit(130)


def chosen_names(values: list[str], known: Collection[str], what: str) -> list[str]:
    """Names from repeated or comma-separated command-line values, each one checked against ``known``."""
    names = [name for value in values for name in value.split(",") if name]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names
