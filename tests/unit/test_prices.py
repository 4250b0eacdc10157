"""Prices: precedence of config overrides, deployment fields and litellm's bundled map; cost formula."""

from __future__ import annotations

from typing import Any

import litellm
import pytest

from gateway.config import parse_config
from gateway.routing.deployments import build_deployments
from gateway.routing.types import Usage
from gateway.spend.estimate import estimate_tokens
from gateway.spend.prices import FREE, Price, resolve_price


def _price(entry: dict[str, Any], prices: dict[str, Any] | None = None) -> Price:
    config = parse_config({"model_list": [entry], "prices": prices or {}}, environ={})
    deployment = build_deployments(config)[entry["model_name"]][0]
    return resolve_price(config, deployment)


def test_litellm_price_map_is_used_for_known_models() -> None:
    price = _price({"model_name": "mini", "litellm_params": {"model": "openai/gpt-4o-mini"}})
    assert price.input == pytest.approx(0.15 / 1e6)
    assert price.output == pytest.approx(0.60 / 1e6)
    assert price.cached_input == pytest.approx(0.075 / 1e6)


def test_alias_override_beats_the_map_and_deployment_fields() -> None:
    entry = {"model_name": "mini", "litellm_params": {"model": "openai/gpt-4o-mini", "input_cost_per_token": 1.0}}
    price = _price(entry, {"mini": {"input_per_million": 2, "output_per_million": 8}})
    assert (price.input, price.output, price.cached_input) == (2e-6, 8e-6, 2e-6)


def test_litellm_model_override_and_deployment_fields() -> None:
    by_model = _price({"model_name": "x", "litellm_params": {"model": "openai/mock"}},
                      {"openai/mock": {"input_per_million": 1, "output_per_million": 3,
                                       "cached_input_per_million": 0.5}})
    assert (by_model.input, by_model.output, by_model.cached_input) == (1e-6, 3e-6, 0.5e-6)
    fields = _price({"model_name": "x", "litellm_params": {"model": "openai/mock", "input_cost_per_token": 1e-6,
                                                           "output_cost_per_token": 2e-6}})
    assert (fields.input, fields.output) == (1e-6, 2e-6)


def test_unknown_models_are_free_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert _price({"model_name": "x", "litellm_params": {"model": "openai/no-such-model-anywhere"}}) is FREE
    assert "no price known" in caplog.text


def test_cost_prices_cached_prompt_tokens_at_the_cached_rate() -> None:
    price = Price(input=2.0, output=10.0, cached_input=0.5)
    usage = Usage(prompt_tokens=100, completion_tokens=20, cached_tokens=40, reasoning_tokens=15)
    # 60 uncached * 2 + 40 cached * 0.5 + 20 completion (reasoning included) * 10
    assert price.cost(usage) == pytest.approx(120 + 20 + 200)


def test_estimates_use_the_request_cap_and_n() -> None:
    body = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 7, "n": 3}
    prompt, completion = estimate_tokens("chat", body, "openai/gpt-4o-mini", 512)
    assert prompt > 0
    assert completion == 21
    _, default = estimate_tokens("chat", {"messages": []}, "openai/gpt-4o-mini", 512)
    assert default == 512
    embedding_prompt, none = estimate_tokens("embedding", {"input": ["a b c", "d"]}, "whatever/unknown", 512)
    assert embedding_prompt > 0
    assert none == 0



@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "hello there"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Écris un haïku sur la mer 🌊"},
     {"role": "assistant", "content": "Vagues.", "name": "bot"}, {"role": "user", "content": "<|endoftext|> again"}],
    [{"role": "user", "content": [{"type": "text", "text": "two parts"}, {"type": "text", "text": "here"}]},
     {"role": "assistant", "content": None, "tool_calls": [
         {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
     {"role": "tool", "tool_call_id": "c1", "content": "42"}],
    [],
])
@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "gpt-3.5-turbo", "gpt-4-0314",
                                   "anthropic/claude-3-5-haiku-20241022", "whatever/unknown"])
def test_chat_prompts_count_as_litellm_counts_them(messages: list[dict[str, Any]], model: str) -> None:
    """The per-model rules are cached; the count stays litellm's token_counter, exactly."""
    for _ in range(2):
        prompt, _ = estimate_tokens("chat", {"messages": messages}, model, 512)
        assert prompt == litellm.token_counter(model=model, messages=messages)
