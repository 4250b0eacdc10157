"""bench/limiter_window.py runs, fills the window before it measures, and prints one row per rate."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import limiter_window


def test_one_row_per_rate(capsys: pytest.CaptureFixture[str]) -> None:
    assert limiter_window.main(["--rates", "20", "50", "--requests", "200"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "µs" not in line]
    assert [row.split("|")[1:3] for row in rows] == [[" 20 ", " 1,200 "], [" 50 ", " 3,000 "]]
    assert all(float(row.split("|")[3]) > 0 for row in rows)
    # Each request of the window holds something (its times and tokens), and far less than a kilobyte.
    held = [[float(v) for v in row.split("|")[4].split("/")] for row in rows]
    assert all(8 < mean <= largest < 1000 for mean, largest in held)
