"""RoutingTable: a reload validates first, swaps atomically, and keeps deployment health."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config import demo_config, load_config
from gateway.errors import UpstreamAuthFailed
from gateway.routing.types import Engine
from gateway.runtime import RoutingTable

ENV = {"KEY": "sk-test"}
ENGINES: dict[str, Any] = {"native": object(), "litellm": object()}


def _yaml(*aliases: str) -> str:
    lines = ["model_list:"]
    for alias in aliases:
        lines += [f"  - model_name: {alias}",
                  "    litellm_params: {model: openai/x, api_base: 'http://127.0.0.1:9/v1', api_key: os.environ/KEY}",
                  f"    model_info: {{id: {alias}-1}}"]
    lines += ["router_settings: {cooldown_time: 60}"]
    return "\n".join(lines) + "\n"


def _table(path: Path, environ: dict[str, str] | None = None) -> RoutingTable:
    env = ENV if environ is None else environ
    engines: dict[Any, Engine] = ENGINES
    return RoutingTable(load_config(path, environ=env), engines, source=path, environ=env)


@pytest.fixture
def routing_file(tmp_path: Path) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(_yaml("a"), encoding="utf-8")
    return path


def test_a_valid_change_is_applied(routing_file: Path) -> None:
    table = _table(routing_file)
    assert table.router.aliases() == ["a"]
    routing_file.write_text(_yaml("a", "bigger"), encoding="utf-8")

    result = table.reload()

    assert result.applied
    assert result.aliases == ("a", "bigger")
    assert table.router.aliases() == ["a", "bigger"]


def test_an_invalid_file_keeps_the_running_router(routing_file: Path) -> None:
    table = _table(routing_file)
    before = table.router
    routing_file.write_text(_yaml("a").replace("model: openai/x", "model: openai/x, tmeout: 3"),
                            encoding="utf-8")

    result = table.reload()

    assert not result.applied
    assert result.problems == ("model_list.0.litellm_params.tmeout: unknown field",)
    assert table.router is before


def test_health_survives_a_reload(routing_file: Path) -> None:
    table = _table(routing_file)
    table.health.failed("a-1", UpstreamAuthFailed("bad key"))
    routing_file.write_text(_yaml("a", "b"), encoding="utf-8")

    assert table.reload().applied

    assert table.router.choose("a", set()) is None
    assert table.router.choose("b", set()) is not None


def test_reload_if_changed(routing_file: Path) -> None:
    table = _table(routing_file)
    assert table.reload_if_changed() is None
    routing_file.write_text(_yaml("a", "c"), encoding="utf-8")
    result = table.reload_if_changed()
    assert result is not None
    assert result.applied
    assert table.reload_if_changed() is None


def test_a_rejected_file_is_not_retried_until_it_changes_again(routing_file: Path) -> None:
    table = _table(routing_file)
    routing_file.write_text("model_list: [\n", encoding="utf-8")
    first = table.reload_if_changed()
    assert first is not None
    assert not first.applied
    assert table.reload_if_changed() is None


def test_the_demo_has_nothing_to_reload() -> None:
    engines: dict[Any, Engine] = ENGINES
    table = RoutingTable(demo_config("http://127.0.0.1:9/v1"), engines, source=None)
    result = table.reload()
    assert not result.applied
    assert result.problems
    assert table.reload_if_changed() is None


def test_an_explicit_empty_environ_is_respected_on_reload(routing_file: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    routing_file.write_text(_yaml("a").replace("api_key: os.environ/KEY", "api_key: sk-inline"),
                            encoding="utf-8")
    table = _table(routing_file, environ={})
    monkeypatch.setenv("KEY", "from-the-process")
    routing_file.write_text(_yaml("a", "b"), encoding="utf-8")  # now refers to os.environ/KEY
    assert not table.reload().applied
