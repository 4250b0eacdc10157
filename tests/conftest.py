"""Fixtures shared by every test package: a scratch directory for process logs and configs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import Process, start_mock


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("processes")


@pytest.fixture(scope="session")
def mock_upstream(workdir: Path) -> Iterator[Process]:
    """The OpenAI-wire mock provider as a real process, shared by the whole session."""
    process = start_mock(workdir)
    yield process
    process.stop()
