"""glibc's mmap threshold stays where the gateway pins it (gateway/process_tuning.py): after a large
block is freed, later large buffers still get their own mappings instead of growing the main heap.
Run in fresh interpreters, since the setting is process-wide."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from gateway.process_tuning import fix_mmap_threshold

def heap_kb():
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith("[heap]"):
            start, end = (int(part, 16) for part in line.split()[0].split("-"))
            return (end - start) // 1024
    return 0

pinned = fix_mmap_threshold() if sys.argv[1] == "pin" else None
big = bytearray(8 * 2**20)  # mapped, then freed: glibc would now raise its threshold to 8 MB
del big
before = heap_kb()
kept = [bytearray(256 * 1024) for _ in range(32)]  # 8 MB of blocks above the default threshold
print(pinned, heap_kb() - before)
"""


def _heap_growth_kb(mode: str) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60,
                          check=True)
    pinned, growth = done.stdout.split()
    return pinned, int(growth)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc is Linux's")
def test_large_buffers_stay_out_of_the_main_heap_once_the_threshold_is_pinned() -> None:
    assert _heap_growth_kb("pin") == ("True", pytest.approx(0, abs=1024))
    # The control: without the pin the same buffers land in the main heap.
    pinned, growth = _heap_growth_kb("default")
    assert pinned == "None" and growth >= 7 * 1024
