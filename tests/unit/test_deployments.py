"""Deployments resolved from the routing file: engine, ids, base URLs, timeouts."""

from __future__ import annotations

from typing import Any

from gateway.config import parse_config
from gateway.routing.deployments import Deployment, build_deployments


def _build(*entries: dict[str, Any], router_settings: dict[str, Any] | None = None
           ) -> dict[str, tuple[Deployment, ...]]:
    raw: dict[str, Any] = {"model_list": list(entries)}
    if router_settings is not None:
        raw["router_settings"] = router_settings
    return dict(build_deployments(parse_config(raw, environ={})))


def _one(alias: str = "m", model_info: dict[str, Any] | None = None,
         router_settings: dict[str, Any] | None = None, **params: Any) -> Deployment:
    entry: dict[str, Any] = {"model_name": alias, "litellm_params": params}
    if model_info is not None:
        entry["model_info"] = model_info
    (deployment,) = _build(entry, router_settings=router_settings)[alias]
    return deployment


# -- engine selection -----------------------------------------------------------------------------


def test_openai_with_api_base_is_native() -> None:
    d = _one(model="openai/gpt-4o-mini", api_base="http://127.0.0.1:9000/v1/", api_key="sk-x")
    assert d.engine == "native"
    assert d.provider == "openai"
    assert d.upstream_model == "gpt-4o-mini"
    assert d.litellm_model == "openai/gpt-4o-mini"
    assert d.api_base == "http://127.0.0.1:9000/v1"
    assert d.api_key is not None
    assert d.api_key.get_secret_value() == "sk-x"


def test_openai_without_api_base_is_native_with_the_default_base() -> None:
    d = _one(model="openai/gpt-4o")
    assert d.engine == "native"
    assert d.api_base == "https://api.openai.com/v1"


def test_bare_model_name_means_openai() -> None:
    d = _one(model="gpt-4o")
    assert d.provider == "openai"
    assert d.upstream_model == "gpt-4o"
    assert d.engine == "native"
    assert d.api_base == "https://api.openai.com/v1"


def test_anthropic_goes_through_litellm() -> None:
    d = _one(model="anthropic/claude-3-5-sonnet-20240620", api_key="sk-ant")
    assert d.engine == "litellm"
    assert d.provider == "anthropic"
    assert d.upstream_model == "claude-3-5-sonnet-20240620"
    assert d.litellm_model == "anthropic/claude-3-5-sonnet-20240620"
    assert d.api_base is None


def test_azure_with_api_base_is_native() -> None:
    d = _one(model="azure/my-gpt4o", api_base="https://res.openai.azure.com", api_version="2024-06-01")
    assert d.engine == "native"
    assert d.provider == "azure"
    assert d.upstream_model == "my-gpt4o"


def test_native_without_any_base_url_falls_back_to_litellm() -> None:
    # Azure has no default base; the native engine cannot address it.
    assert _one(model="azure/my-gpt4o").engine == "litellm"


def test_groq_goes_through_litellm_by_default() -> None:
    d = _one(model="groq/llama-3.1-8b-instant", api_base="https://api.groq.com/openai/v1")
    assert d.engine == "litellm"
    assert d.provider == "groq"


def test_groq_with_engine_native_is_native() -> None:
    d = _one(model="groq/llama-3.1-8b-instant", api_base="https://api.groq.com/openai/v1", engine="native")
    assert d.engine == "native"
    assert d.upstream_model == "llama-3.1-8b-instant"


def test_engine_litellm_can_be_forced_for_openai() -> None:
    d = _one(model="openai/gpt-4o", api_base="http://127.0.0.1:9000/v1", engine="litellm")
    assert d.engine == "litellm"


def test_custom_llm_provider_without_prefix() -> None:
    d = _one(model="llama3-70b", custom_llm_provider="groq")
    assert d.provider == "groq"
    assert d.upstream_model == "llama3-70b"
    assert d.litellm_model == "groq/llama3-70b"
    assert d.engine == "litellm"


def test_custom_llm_provider_with_the_same_prefix_is_stripped_like_litellm() -> None:
    d = _one(model="openai/gpt-4o", custom_llm_provider="openai", api_base="http://127.0.0.1:9000/v1")
    assert d.upstream_model == "gpt-4o"
    assert d.litellm_model == "openai/gpt-4o"


def test_mode_is_taken_from_model_info() -> None:
    assert _one(model="openai/e", model_info={"mode": "embedding"}).mode == "embedding"
    assert _one(model="openai/e").mode is None


# -- ids ------------------------------------------------------------------------------------------


def test_ids_come_from_model_info_or_alias_and_position() -> None:
    grouped = _build(
        {"model_name": "a", "litellm_params": {"model": "openai/x"}},
        {"model_name": "b", "litellm_params": {"model": "openai/y"}},
        {"model_name": "a", "litellm_params": {"model": "openai/x"}, "model_info": {"id": "a-eu"}},
        {"model_name": "a", "litellm_params": {"model": "openai/x"}},
    )
    assert list(grouped) == ["a", "b"]
    assert [d.id for d in grouped["a"]] == ["a#1", "a-eu", "a#3"]
    assert [d.id for d in grouped["b"]] == ["b#1"]
    assert all(d.alias == "a" for d in grouped["a"])
    assert grouped["a"][0].describe() == "a#1"


def test_describe_never_contains_the_key_or_base() -> None:
    d = _one(model="openai/x", api_base="https://user:pass@example.com/v1", api_key="sk-very-secret")
    assert d.describe() == "m#1"


def test_weight_is_carried() -> None:
    grouped = _build({"model_name": "a", "litellm_params": {"model": "openai/x", "weight": 4}},
                     {"model_name": "a", "litellm_params": {"model": "openai/x"}})
    assert [d.weight for d in grouped["a"]] == [4.0, 1.0]


# -- timeouts -------------------------------------------------------------------------------------


def test_timeouts_inherit_from_router_settings() -> None:
    d = _one(model="openai/x", router_settings={"timeout": 42, "stream_timeout": 7})
    assert d.timeout == 42
    assert d.stream_timeout == 7


def test_stream_timeout_defaults_to_the_timeout() -> None:
    assert _one(model="openai/x", router_settings={"timeout": 42}).stream_timeout == 42
    assert _one(model="openai/x", timeout=9, router_settings={"timeout": 42}).stream_timeout == 9


def test_deployment_timeouts_override_router_settings() -> None:
    d = _one(model="openai/x", timeout=3, stream_timeout=11, router_settings={"timeout": 42,
                                                                            "stream_timeout": 7})
    assert d.timeout == 3
    assert d.stream_timeout == 11


def test_default_timeout() -> None:
    d = _one(model="openai/x")
    assert d.timeout == 600
    assert d.stream_timeout == 600
