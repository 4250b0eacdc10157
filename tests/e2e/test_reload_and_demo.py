"""Applying a changed routing file without a restart, and the zero-config demo."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.e2e.conftest import deployment
from tests.processes import MASTER_KEY, ROOT, Process, start_gateway

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}


def _config(mock: Process, *aliases: str) -> dict[str, Any]:
    return {"model_list": [deployment(alias, "openai/mock", f"{mock.url}/v1") for alias in aliases]}


def _aliases(gateway: Process) -> list[str]:
    aliases: list[str] = httpx.get(f"{gateway.url}/readyz").json()["aliases"]
    return aliases


@pytest.fixture(scope="module")
def config_file(workdir: Path) -> Path:
    return workdir / "reloadable.yaml"


@pytest.fixture(scope="module")
def reloadable(workdir: Path, mock_upstream: Process, config_file: Path) -> Iterator[Process]:
    # The file watcher is off so that each test decides when a reload happens.
    process = start_gateway(workdir, _config(mock_upstream, "first"), config_path=config_file,
                            env={"GATEWAY_CONFIG_POLL_SECONDS": "0"})
    yield process
    process.stop()


def test_admin_reload_applies_a_valid_file(reloadable: Process, mock_upstream: Process,
                                           config_file: Path) -> None:
    config_file.write_text(yaml.safe_dump(_config(mock_upstream, "first", "second")))
    response = httpx.post(f"{reloadable.url}/admin/reload", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["aliases"] == ["first", "second"]
    with openai.OpenAI(base_url=f"{reloadable.url}/v1", api_key=MASTER_KEY, max_retries=0) as client:
        assert client.chat.completions.create(model="second", messages=[{"role": "user", "content": "new"}]) \
            .choices[0].message.content == "new"


def test_invalid_file_keeps_the_running_config(reloadable: Process, config_file: Path) -> None:
    before = _aliases(reloadable)
    config_file.write_text("model_list:\n  - model_name: broken\n    litellm_params: {modle: x}\n")
    response = httpx.post(f"{reloadable.url}/admin/reload", headers=AUTH)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_config"
    assert "model_list.0.litellm_params.modle: unknown field" in error["message"]
    assert _aliases(reloadable) == before


def test_reload_needs_the_master_key(reloadable: Process) -> None:
    response = httpx.post(f"{reloadable.url}/admin/reload", headers={"authorization": "Bearer sk-nope"})
    assert response.status_code == 401
    assert httpx.post(f"{reloadable.url}/admin/reload").status_code == 401


def test_sighup_reloads(reloadable: Process, mock_upstream: Process, config_file: Path) -> None:
    config_file.write_text(yaml.safe_dump(_config(mock_upstream, "after-hup")))
    reloadable.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _aliases(reloadable) != ["after-hup"]:
        time.sleep(0.1)
    assert _aliases(reloadable) == ["after-hup"]


def test_file_watcher_applies_changes(workdir: Path, mock_upstream: Process) -> None:
    path = workdir / "watched.yaml"
    process = start_gateway(workdir, _config(mock_upstream, "one"), config_path=path,
                            env={"GATEWAY_CONFIG_POLL_SECONDS": "0.2"})
    try:
        path.write_text(yaml.safe_dump(_config(mock_upstream, "one", "two")))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _aliases(process) != ["one", "two"]:
            time.sleep(0.1)
        assert _aliases(process) == ["one", "two"]
    finally:
        process.stop()


def test_demo_runs_with_no_configuration(workdir: Path) -> None:
    process = start_gateway(workdir, None, env={"GATEWAY_MASTER_KEY": ""})
    try:
        key_line = next(line for line in process.logs().splitlines() if "Demo master key" in line)
        key = key_line.rsplit(" ", 1)[-1]
        assert key.startswith("sk-gw-master-")
        assert len(key) > 30
        with openai.OpenAI(base_url=f"{process.url}/v1", api_key=key, max_retries=0) as client:
            reply = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi demo"}])
            assert reply.choices[0].message.content == "hi demo"
            assert client.embeddings.create(model="demo-embedding", input="x").data[0].embedding
        assert httpx.get(f"{process.url}/readyz").json()["config"] == "demo"
        # The key is printed once, at start-up, and never again.
        assert process.logs().count(key) == 1
    finally:
        process.stop()


def test_serve_refuses_an_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list: []\nrouter_settings: {num_retries: -1}\n")
    result = subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(bad)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "GATEWAY_MASTER_KEY": MASTER_KEY})
    assert result.returncode == 2
    assert "model_list" in result.stderr
    assert "router_settings.num_retries" in result.stderr
