"""The routing file: litellm's format loads, and every problem is reported with its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.config import ConfigError, RoutingConfig, demo_config, load_config, parse_config

VALID_YAML = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: https://eu.example.com/v1/
      api_key: os.environ/EU_KEY
      weight: 3
    model_info:
      id: gpt4o-eu
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: https://us.example.com/v1
      api_key: os.environ/US_KEY
      timeout: os.environ/US_TIMEOUT
  - model_name: claude
    litellm_params:
      model: anthropic/claude-3-5-sonnet-20240620
      api_key: os.environ/ANTHROPIC_KEY
  - model_name: gpt-4o-long
    litellm_params:
      model: openai/gpt-4o-128k
      api_base: https://eu.example.com/v1
router_settings:
  routing_strategy: least-busy
  num_retries: 1
  timeout: 30
  allowed_fails: 5
  cooldown_time: 10
  fallbacks:
    - gpt-4o: [claude]
  context_window_fallbacks:
    - gpt-4o: [gpt-4o-long]
"""

ENVIRON = {"EU_KEY": "sk-eu-secret", "US_KEY": "sk-us-secret", "US_TIMEOUT": "12.5",
           "ANTHROPIC_KEY": "sk-ant-secret"}


def _entry(alias: str = "a", **params: Any) -> dict[str, Any]:
    return {"model_name": alias, "litellm_params": {"model": "openai/x", **params}}


def _problems(raw: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, source="routing.yaml", environ=environ or {})
    assert caught.value.source == "routing.yaml"
    assert str(caught.value).startswith("routing.yaml: ")
    return caught.value.problems


@pytest.fixture
def valid_file(tmp_path: Path) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(VALID_YAML, encoding="utf-8")
    return path


# -- a valid file ---------------------------------------------------------------------------------


def test_valid_litellm_file_loads(valid_file: Path) -> None:
    config = load_config(valid_file, environ=ENVIRON)

    assert [e.model_name for e in config.model_list] == ["gpt-4o", "gpt-4o", "claude", "gpt-4o-long"]
    first, second, _, _ = config.model_list
    assert first.model_info.id == "gpt4o-eu"
    assert first.litellm_params.weight == 3
    assert first.litellm_params.api_base == "https://eu.example.com/v1"  # trailing slash removed
    assert second.model_info.id is None
    settings = config.router_settings
    assert settings.routing_strategy == "least-busy"
    assert settings.num_retries == 1
    assert settings.timeout == 30
    assert settings.allowed_fails == 5
    assert settings.cooldown_time == 10
    assert settings.fallbacks == [{"gpt-4o": ["claude"]}]
    assert settings.context_window_fallbacks == [{"gpt-4o": ["gpt-4o-long"]}]


def test_environment_references_resolve_from_the_given_mapping(valid_file: Path) -> None:
    config = load_config(valid_file, environ=ENVIRON)
    first, second, claude, long_context = config.model_list

    assert first.litellm_params.api_key is not None
    assert first.litellm_params.api_key.get_secret_value() == "sk-eu-secret"
    assert second.litellm_params.api_key is not None
    assert second.litellm_params.api_key.get_secret_value() == "sk-us-secret"
    assert second.litellm_params.timeout == 12.5  # a string from the environment, coerced
    assert claude.litellm_params.api_key is not None
    assert claude.litellm_params.api_key.get_secret_value() == "sk-ant-secret"
    assert long_context.litellm_params.api_key is None
    # A secret never shows in the model's repr.
    assert "sk-eu-secret" not in repr(config)


def test_defaults_for_router_settings() -> None:
    config = parse_config({"model_list": [_entry()]}, environ={})
    settings = config.router_settings
    assert settings.routing_strategy == "simple-shuffle"
    assert settings.num_retries == 2
    assert settings.fallbacks == []
    assert settings.context_window_fallbacks == []
    assert config.model_list[0].litellm_params.weight is None


def test_fallbacks_for(valid_file: Path) -> None:
    config = load_config(valid_file, environ=ENVIRON)

    assert config.fallbacks_for("gpt-4o") == ["claude"]
    assert config.fallbacks_for("gpt-4o", context_window=True) == ["gpt-4o-long"]
    assert config.fallbacks_for("claude") == []
    assert config.fallbacks_for("claude", context_window=True) == []
    assert config.fallbacks_for("no-such-alias") == []


def test_fallbacks_for_returns_a_copy(valid_file: Path) -> None:
    config = load_config(valid_file, environ=ENVIRON)
    config.fallbacks_for("gpt-4o").append("mutated")
    assert config.fallbacks_for("gpt-4o") == ["claude"]


def test_demo_config() -> None:
    config = demo_config("http://127.0.0.1:4000/v1/")

    assert isinstance(config, RoutingConfig)
    by_alias = {e.model_name: e for e in config.model_list}
    assert set(by_alias) == {"demo", "demo-embedding"}
    assert by_alias["demo"].litellm_params.api_base == "http://127.0.0.1:4000/v1"
    assert by_alias["demo"].model_info.mode == "chat"
    assert by_alias["demo-embedding"].model_info.mode == "embedding"
    assert by_alias["demo"].model_info.id == "demo-mock"


# -- problems, each with its path -----------------------------------------------------------------


def test_unknown_top_level_field() -> None:
    assert _problems({"model_list": [_entry()], "router_setings": {}}) == ["router_setings: unknown field"]


def test_unknown_field_inside_litellm_params() -> None:
    problems = _problems({"model_list": [_entry(tmeout=3)]})
    assert problems == ["model_list.0.litellm_params.tmeout: unknown field"]


def test_unknown_field_inside_router_settings() -> None:
    problems = _problems({"model_list": [_entry()], "router_settings": {"num_retry": 3}})
    assert problems == ["router_settings.num_retry: unknown field"]


def test_missing_model() -> None:
    problems = _problems({"model_list": [{"model_name": "a", "litellm_params": {}}]})
    assert len(problems) == 1
    assert problems[0].startswith("model_list.0.litellm_params.model: ")
    assert "required" in problems[0].lower()


def test_wrong_type() -> None:
    problems = _problems({"model_list": [_entry()], "router_settings": {"num_retries": "many"}})
    assert len(problems) == 1
    assert problems[0].startswith("router_settings.num_retries: ")
    assert "integer" in problems[0]


def test_unknown_routing_strategy() -> None:
    problems = _problems({"model_list": [_entry()], "router_settings": {"routing_strategy": "fastest"}})
    assert len(problems) == 1
    assert problems[0].startswith("router_settings.routing_strategy: ")


def test_negative_timeout() -> None:
    problems = _problems({"model_list": [_entry(timeout=-1)]})
    assert len(problems) == 1
    assert problems[0].startswith("model_list.0.litellm_params.timeout: ")
    assert "greater than 0" in problems[0]


def test_empty_model_list() -> None:
    problems = _problems({"model_list": []})
    assert len(problems) == 1
    assert problems[0].startswith("model_list: ")


def test_missing_environment_variable_names_variable_and_path() -> None:
    problems = _problems({"model_list": [_entry(api_key="os.environ/MISSING_KEY")]},
                         environ={"OTHER": "x"})
    assert problems == ["model_list.0.litellm_params.api_key: environment variable MISSING_KEY is not set"]


def test_environment_is_read_only_from_the_explicit_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONLY_IN_PROCESS_ENV", "value")
    problems = _problems({"model_list": [_entry(api_key="os.environ/ONLY_IN_PROCESS_ENV")]}, environ={})
    assert "environment variable ONLY_IN_PROCESS_ENV is not set" in problems[0]


def test_process_environment_is_used_without_a_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIT_TEST_GATEWAY_KEY", "sk-from-env")
    config = parse_config({"model_list": [_entry(api_key="os.environ/UNIT_TEST_GATEWAY_KEY")]})
    key = config.model_list[0].litellm_params.api_key
    assert key is not None
    assert key.get_secret_value() == "sk-from-env"


@pytest.mark.parametrize("field", ["fallbacks", "context_window_fallbacks"])
def test_fallback_naming_an_unknown_alias(field: str) -> None:
    problems = _problems({"model_list": [_entry("a")], "router_settings": {field: [{"a": ["nope"]}]}})
    assert len(problems) == 1
    assert f"router_settings.{field}.0" in problems[0]
    assert "'nope'" in problems[0]


def test_fallback_source_must_be_known_too() -> None:
    problems = _problems({"model_list": [_entry("a")], "router_settings": {"fallbacks": [{"ghost": ["a"]}]}})
    assert "'ghost'" in problems[0]


def test_duplicate_model_info_id() -> None:
    entries = [{**_entry("a"), "model_info": {"id": "same"}}, {**_entry("b"), "model_info": {"id": "same"}},
               {**_entry("c"), "model_info": {"id": "unique"}}]
    problems = _problems({"model_list": entries})
    assert len(problems) == 1
    assert "model_info.id must be unique" in problems[0]
    assert "same" in problems[0]
    assert "unique" not in problems[0].replace("must be unique", "")


@pytest.mark.parametrize("raw", [[], ["model_list"], "model_list", 42, None])
def test_not_a_mapping(raw: Any) -> None:
    assert _problems(raw) == ["the file must be a mapping with a model_list"]


def test_several_problems_are_all_reported() -> None:
    raw = {
        "model_list": [_entry("a", tmeout=3, api_key="os.environ/NOPE"),
                       {"model_name": "b", "litellm_params": {}}],
        "router_settings": {"num_retries": -1},
        "extra": True,
    }
    problems = _problems(raw)

    paths = [p.split(": ", 1)[0] for p in problems]
    assert sorted(paths) == sorted([
        "model_list.0.litellm_params.api_key",
        "model_list.0.litellm_params.tmeout",
        "model_list.1.litellm_params.model",
        "router_settings.num_retries",
        "extra",
    ])
    assert "model_list.0.litellm_params.api_key: environment variable NOPE is not set" in problems


# -- load_config: files ---------------------------------------------------------------------------


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("model_list:\n  - model_name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.source == str(path)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("not valid YAML")


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- model_name: a\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.problems == ["the file must be a mapping with a model_list"]


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.problems == ["the file must be a mapping with a model_list"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.source == str(path)
    assert caught.value.problems[0].startswith("cannot read the file")


def test_problems_in_a_file_carry_the_file_as_source(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n"
                    "      tmeout: 5\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.source == str(path)
    assert caught.value.problems == ["model_list.0.litellm_params.tmeout: unknown field"]


# -- llm-gateway check-config ---------------------------------------------------------------------

CHECKABLE_YAML = """\
model_list:
  - model_name: fast
    litellm_params: {model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:9/v1"}
  - model_name: fast
    litellm_params: {model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:10/v1"}
  - model_name: claude
    litellm_params: {model: anthropic/claude-3-5-haiku-20241022}
"""


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(CHECKABLE_YAML, encoding="utf-8")

    assert main(["check-config", str(path)]) == 0

    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"{path}: OK")
    assert "2 model aliases" in out
    assert "3 deployments" in out
    assert "2 native" in out
    assert "1 through litellm" in out


def test_check_config_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model_list:\n  - model_name: a\n    litellm_params: {tmeout: 3}\nextra: 1\n",
                    encoding="utf-8")

    assert main(["check-config", str(path)]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == f"{path}: 3 problem(s)"
    assert sorted(line.strip() for line in lines[1:]) == sorted([
        "model_list.0.litellm_params.tmeout: unknown field",
        "model_list.0.litellm_params.model: Field required",
        "extra: unknown field",
    ])


def test_check_config_invalid_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model_list: [\n", encoding="utf-8")

    assert main(["check-config", str(path)]) == 1

    _, err = capsys.readouterr()
    assert err.startswith(f"{path}: 1 problem(s)")
    assert "not valid YAML" in err
