"""Run ``llm-gateway`` with a memory probe: each SIGUSR1 appends one JSON report to $MEMORY_PROBE_OUT.

    MEMORY_PROBE_OUT=/tmp/probe.jsonl python bench/memory_probe.py serve --config ... --workers 1

A report holds RSS and /proc/self/smaps_rollup, glibc's malloc totals (mallinfo2) and its arena count
(malloc_info), the threads by name, which heavy modules are loaded, and gc-tracked objects by type.
With MEMORY_PROBE_TRIM=1 each report then calls malloc_trim(0) and adds the RSS after it.
With MEMORY_PROBE_TRACEMALLOC=1 the first signal starts tracemalloc and every later one adds the top
allocation sites grown since the previous signal (tracemalloc sees Python's allocators only, not C
libraries' malloc). bench/memory.py drives it; it is not part of the gateway.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import gc
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from types import FrameType

HEAVY_MODULES = ("numpy", "onnxruntime", "tokenizers", "qdrant_edge", "qdrant_client", "tiktoken",
                 "litellm.proxy", "jinja2", "boto3", "google", "grpc", "pandas")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _Mallinfo2
_libc.fopen.restype = ctypes.c_void_p
_libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
_libc.fclose.argtypes = [ctypes.c_void_p]
_libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
_libc.malloc_trim.argtypes = [ctypes.c_size_t]
_state: dict[str, object] = {"snapshot": None}


def _smaps_rollup() -> dict[str, int]:
    values = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        values[name] = int(rest.split()[0]) // 1024  # MB
    return values


def _arenas() -> int:
    with tempfile.NamedTemporaryFile("r", suffix=".xml") as out:
        handle = _libc.fopen(out.name.encode(), b"w")
        _libc.malloc_info(0, handle)
        _libc.fclose(handle)
        return len(re.findall(r"<heap nr=", Path(out.name).read_text()))


def _threads() -> dict[str, int]:
    names: collections.Counter[str] = collections.Counter()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            names[(task / "comm").read_text().strip()] += 1
    return dict(names)


def report() -> dict[str, object]:
    info = _libc.mallinfo2()
    types = collections.Counter(type(o).__name__ for o in gc.get_objects())
    data: dict[str, object] = {
        "at": time.time(),
        "smaps_mb": _smaps_rollup(),
        "malloc_mb": {"heap": info.arena / 2**20, "mmapped": info.hblkhd / 2**20, "in_use": info.uordblks / 2**20,
                      "free": info.fordblks / 2**20},
        "arenas": _arenas(),
        "threads": _threads(),
        "python_threads": dict(collections.Counter(re.sub(r"[-_ ]?\d+.*$", "", t.name) for t in threading.enumerate())),
        "modules": len(sys.modules),
        "heavy_modules": [m for m in HEAVY_MODULES if m in sys.modules],
        "gc_objects": sum(types.values()),
        "gc_frozen": gc.get_freeze_count(),
        "gc_types": dict(types.most_common(40)),
    }
    if os.environ.get("MEMORY_PROBE_TRIM") == "1":
        # What glibc would hand back: malloc_trim(0) releases free heap pages of every arena.
        _libc.malloc_trim(0)
        data["rss_after_trim_mb"] = _smaps_rollup()["Rss"]
    if os.environ.get("MEMORY_PROBE_TRACEMALLOC") == "1":
        if not tracemalloc.is_tracing():
            tracemalloc.start(12)
        else:
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)])
            previous = _state["snapshot"]
            if isinstance(previous, tracemalloc.Snapshot):
                stats = snapshot.compare_to(previous, "traceback")[:25]
                data["tracemalloc_growth"] = [
                    {"kb": s.size_diff // 1024, "count": s.count_diff,
                     "where": [f"{f.filename}:{f.lineno}" for f in s.traceback[-6:]]} for s in stats]
                data["tracemalloc_total_mb"] = sum(s.size for s in snapshot.statistics("filename")) / 2**20
            _state["snapshot"] = snapshot
    return data


def _on_signal(signum: int, frame: FrameType | None) -> None:
    out = os.environ.get("MEMORY_PROBE_OUT")
    if out:
        with open(out, "a") as handle:
            handle.write(json.dumps(report()) + "\n")


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _on_signal)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    if os.environ.get("MEMORY_PROBE_ESTIMATE") == "chars":
        # What the gateway would hold without tiktoken's tables: prompt tokens guessed from the length.
        # Replaced before gateway.limits.admission imports the name.
        import gateway.spend.estimate as estimate

        def by_length(operation: str, body: dict[str, object], model: str, default: int) -> tuple[int, int]:
            cap = body.get("max_completion_tokens") or body.get("max_tokens")
            return len(json.dumps(body)) // 4, cap if isinstance(cap, int) else default

        estimate.estimate_tokens = by_length  # type: ignore[assignment]
    from gateway.cli import main

    sys.exit(main(sys.argv[1:]))
