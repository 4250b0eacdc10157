"""Prices: precedence of config overrides, deployment fields and litellm's bundled map; cost formula."""

from __future__ import annotations

from typing import Any

import litellm
import pytest

from gateway.config import parse_config
from gateway.routing.deployments import build_deployments
from gateway.routing.types import Usage
from gateway.spend.estimate import TOKENS_PER_IMAGE, estimate_tokens
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
    prompt, completion = estimate_tokens("chat", body, 512)
    assert prompt == -(-len("userhello there") // 3) + 4 + 3
    assert completion == 21
    _, default = estimate_tokens("chat", {"messages": []}, 512)
    assert default == 512
    embedding_prompt, none = estimate_tokens("embedding", {"input": ["a b c", "d"]}, 512)
    assert embedding_prompt == 2
    assert none == 0
    assert estimate_tokens("embedding", {"input": [[1, 2, 3], [4]]}, 512)[0] == 4  # token arrays: one each
    assert estimate_tokens("completion", {"prompt": "x" * 30, "max_tokens": 5}, 512) == (10, 5)


def test_images_count_a_fixed_amount_and_their_urls_nothing() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, image]}]
    prompt, _ = estimate_tokens("chat", {"messages": messages}, 512)
    assert prompt == -(-len("usertextwhat is this?") // 3) + TOKENS_PER_IMAGE + 4 + 3


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "gpt-3.5-turbo"])
@pytest.mark.parametrize("text", [
    "What is the capital of France, and how many people live there?",
    "Écris un haïku sur la mer, s'il te plaît, avec des vagues et du vent 🌊",
    "def add(a: int, b: int) -> int:\n    return a + b\n\nprint(add(2, 3))\n",
    "Summarise the following report in three bullet points for an executive audience.",
])
def test_prose_and_code_are_not_under_reserved(model: str, text: str) -> None:
    """The size rule reserves at least what OpenAI's tokenizers count for prose and code."""
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}]
    prompt, _ = estimate_tokens("chat", {"messages": messages}, 512)
    assert prompt >= litellm.token_counter(model=model, messages=messages)
