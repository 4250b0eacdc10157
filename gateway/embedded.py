"""The embedded default serves one process on one host; this module makes that a rule, not a hope.

Its limits live in process memory and its SQLite files are written by one gateway only. A second
gateway process (another worker, another host mounting the same directory) on the same data
directory would make every limit and budget wrong, so the directory is claimed with an exclusive
``flock`` at start-up and a second claimant is refused with a message that says what to do.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


class DataDirInUse(RuntimeError):
    pass


def claim_data_dir(path: Path) -> IO[str]:
    """Hold the returned file open for the process's lifetime; closing it releases the claim."""
    path.mkdir(parents=True, exist_ok=True)
    handle = (path / "gateway.lock").open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise DataDirInUse(
            f"the embedded store in {path} is already used by {holder}; it serves one gateway process. "
            "Run several workers or replicas with GATEWAY_REDIS_URL set, or give each its own "
            "GATEWAY_DATA_DIR."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
    handle.flush()
    return handle
