"""Prices per deployment, resolved once per routing table.

Order of precedence: the routing file's ``prices`` entry for the alias, then for the litellm model,
then the deployment's ``input_cost_per_token`` / ``output_cost_per_token``, then litellm's bundled
price map (loaded locally, never downloaded). A deployment with no price anywhere costs 0 and is
logged once, so a missing price is visible rather than silently free.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import litellm

from gateway.config import RoutingConfig
from gateway.routing.deployments import Deployment
from gateway.routing.types import Usage

log = logging.getLogger("gateway.spend")
PER_MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    input: float  # USD per token
    output: float
    cached_input: float

    def cost(self, usage: Usage) -> float:
        """Cached prompt tokens at the cached rate; reasoning tokens are part of completion tokens
        (OpenAI's accounting) and priced as output."""
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        return ((usage.prompt_tokens - cached) * self.input + cached * self.cached_input
                + usage.completion_tokens * self.output)


FREE = Price(0.0, 0.0, 0.0)


def _from_price_map(deployment: Deployment) -> Price | None:
    candidates = (deployment.litellm_model, deployment.upstream_model,
                  f"{deployment.provider}/{deployment.upstream_model}")
    for name in candidates:
        entry = litellm.model_cost.get(name)
        if entry and entry.get("input_cost_per_token") is not None:
            input_price = float(entry["input_cost_per_token"])
            cached = entry.get("cache_read_input_token_cost")
            return Price(input_price, float(entry.get("output_cost_per_token") or 0.0),
                         float(cached) if cached is not None else input_price)
    return None


def resolve_price(config: RoutingConfig, deployment: Deployment) -> Price:
    override = config.prices.get(deployment.alias) or config.prices.get(deployment.litellm_model)
    if override is not None:
        cached = override.cached_input_per_million
        return Price(override.input_per_million / PER_MILLION, override.output_per_million / PER_MILLION,
                     (cached if cached is not None else override.input_per_million) / PER_MILLION)
    params = deployment.params
    if params.input_cost_per_token is not None or params.output_cost_per_token is not None:
        input_price = params.input_cost_per_token or 0.0
        return Price(input_price, params.output_cost_per_token or 0.0, input_price)
    price = _from_price_map(deployment)
    if price is None:
        log.warning("no price known for deployment %s (%s): its requests cost 0", deployment.id,
                    deployment.litellm_model)
        return FREE
    return price
