"""Deployments: one upstream endpoint behind an alias, resolved once from the routing file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

from gateway.config import LitellmParams, ModelEntry, RoutingConfig

EngineName = Literal["native", "litellm"]
Operation = Literal["chat", "completion", "embedding"]

#: Providers whose wire format is OpenAI's as-is, so the native engine can forward the body untouched.
#: Other OpenAI-compatible providers (groq, together_ai, …) get litellm's parameter mapping unless the
#: deployment sets ``engine: native``.
NATIVE_PROVIDERS = frozenset(
    {"openai", "azure", "hosted_vllm", "openai_like", "text-completion-openai", "litellm_proxy",
     "lm_studio", "llamafile"}
)
DEFAULT_BASES = {"openai": "https://api.openai.com/v1", "text-completion-openai": "https://api.openai.com/v1"}


@dataclass(frozen=True, slots=True, eq=False)
class Deployment:
    id: str
    alias: str
    provider: str
    engine: EngineName
    #: The model name the provider knows (no ``provider/`` prefix).
    upstream_model: str
    #: The full litellm model string, for the litellm engine and the price map.
    litellm_model: str
    api_base: str | None
    api_key: SecretStr | None
    timeout: float
    stream_timeout: float
    weight: float
    mode: Operation | None
    params: LitellmParams

    def describe(self) -> str:
        """A name safe for logs, headers and errors: no URL credentials, no key."""
        return self.id


def _split_provider(params: LitellmParams) -> tuple[str, str]:
    if params.custom_llm_provider:
        provider = params.custom_llm_provider
        return provider, params.model.removeprefix(f"{provider}/")
    provider, sep, rest = params.model.partition("/")
    if sep:
        return provider, rest
    return "openai", params.model


def build_deployment(entry: ModelEntry, index: int, config: RoutingConfig) -> Deployment:
    params = entry.litellm_params
    provider, upstream_model = _split_provider(params)
    engine: EngineName = params.engine or ("native" if provider in NATIVE_PROVIDERS else "litellm")
    api_base = params.api_base or DEFAULT_BASES.get(provider)
    if engine == "native" and not api_base:
        engine = "litellm"
    router = config.router_settings
    timeout = params.timeout or router.timeout
    return Deployment(
        id=entry.model_info.id or f"{entry.model_name}#{index}",
        alias=entry.model_name,
        provider=provider,
        engine=engine,
        upstream_model=upstream_model,
        litellm_model=f"{provider}/{upstream_model}" if params.custom_llm_provider else params.model,
        api_base=api_base,
        api_key=params.api_key,
        timeout=timeout,
        stream_timeout=params.stream_timeout or router.stream_timeout or timeout,
        weight=params.weight or params.rpm or params.tpm or 1.0,
        mode=entry.model_info.mode,
        params=params,
    )


def build_deployments(config: RoutingConfig) -> Mapping[str, tuple[Deployment, ...]]:
    """Deployments grouped by alias, in file order; ids are unique across the file."""
    grouped: dict[str, list[Deployment]] = {}
    for entry in config.model_list:
        siblings = grouped.setdefault(entry.model_name, [])
        siblings.append(build_deployment(entry, len(siblings) + 1, config))
    return {alias: tuple(items) for alias, items in grouped.items()}
