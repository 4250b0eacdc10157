"""The routing file: litellm's ``model_list`` format plus ``router_settings``, validated once.

Unknown fields are errors (``extra="forbid"``) so that a typo is reported at load time with its path
in the file, never silently ignored at request time. ``os.environ/NAME`` values are resolved while
loading; a missing variable is an error that names both the field and the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "os.environ/"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LitellmParams(_Strict):
    """The subset of litellm's per-deployment parameters the gateway understands."""

    model: str = Field(min_length=1, description="provider/model, e.g. openai/gpt-4o-mini")
    api_base: str | None = None
    api_key: SecretStr | None = None
    api_version: str | None = None
    organization: str | None = None
    custom_llm_provider: str | None = None
    timeout: float | None = Field(default=None, gt=0)
    stream_timeout: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0)
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    #: simple-shuffle weight; unset, litellm's rule applies: rpm, else tpm, else 1.
    weight: float | None = Field(default=None, gt=0)
    order: int | None = Field(default=None, ge=1)
    extra_headers: dict[str, str] | None = None
    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)
    # Cloud credentials, passed to litellm untouched.
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    aws_region_name: str | None = None
    vertex_project: str | None = None
    vertex_location: str | None = None
    vertex_credentials: SecretStr | None = None
    #: Force an engine; by default OpenAI-wire deployments take the native one.
    engine: Literal["native", "litellm"] | None = None

    @field_validator("api_base")
    @classmethod
    def _strip_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value


class ModelInfo(_Strict):
    id: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    mode: Literal["chat", "completion", "embedding"] | None = None
    max_input_tokens: int | None = Field(default=None, ge=1)
    description: str | None = None


class ModelEntry(_Strict):
    model_name: str = Field(min_length=1, max_length=200)
    litellm_params: LitellmParams
    model_info: ModelInfo = ModelInfo()


RoutingStrategy = Literal["simple-shuffle", "least-busy", "latency-based-routing"]


class RouterSettings(_Strict):
    routing_strategy: RoutingStrategy = "simple-shuffle"
    num_retries: int = Field(default=2, ge=0, le=10)
    #: Minimum wait before a retry (seconds); an upstream Retry-After longer than this wins.
    retry_after: float = Field(default=0.0, ge=0)
    #: Longest Retry-After the gateway will sleep for before retrying; longer ones fail over instead.
    max_retry_wait: float = Field(default=5.0, ge=0)
    timeout: float = Field(default=600.0, gt=0)
    stream_timeout: float | None = Field(default=None, gt=0)
    fallbacks: list[dict[str, list[str]]] = Field(default_factory=list)
    context_window_fallbacks: list[dict[str, list[str]]] = Field(default_factory=list)
    #: Failures within a minute before a deployment is cooled down.
    allowed_fails: int = Field(default=3, ge=0)
    cooldown_time: float = Field(default=30.0, ge=0)


class PriceOverride(_Strict):
    """USD per million tokens; overrides litellm's bundled price map for one alias or model."""

    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)
    #: Cached prompt tokens; defaults to the input price.
    cached_input_per_million: float | None = Field(default=None, ge=0)


class LimitSettings(_Strict):
    #: Completion tokens assumed for admission when a request sets no max_tokens.
    default_completion_tokens: int = Field(default=512, ge=1)
    #: Limits for keys that set none of their own (None: unlimited).
    default_rpm: int | None = Field(default=None, ge=1)
    default_tpm: int | None = Field(default=None, ge=1)
    default_max_parallel: int | None = Field(default=None, ge=1)


CacheMode = Literal["off", "exact", "semantic"]


class AliasCache(_Strict):
    """One alias's cache policy; unset fields take ``cache_settings.default``'s value."""

    mode: CacheMode | None = None
    ttl_seconds: float | None = Field(default=None, gt=0)
    #: Semantic similarity threshold; unset, the embedder's calibrated default.
    threshold: float | None = Field(default=None, gt=0, le=1)


class CacheSettings(_Strict):
    default: AliasCache = AliasCache(mode="off", ttl_seconds=3600)
    aliases: dict[str, AliasCache] = Field(default_factory=dict)
    #: "local" (the packaged MiniLM model) or the alias of an embeddings deployment in model_list.
    embedder: str = "local"
    #: Share entries between keys of no team (by default a key without a team is its own tenant).
    share_across_keys: bool = False
    #: Bounds for the per-request ``x-gateway-cache-threshold`` header.
    min_threshold: float = Field(default=0.8, gt=0, le=1)
    max_threshold: float = Field(default=1.0, gt=0, le=1)
    #: Longest TTL a request may ask for with ``x-gateway-cache-ttl``.
    max_ttl_seconds: float = Field(default=7 * 86400, gt=0)
    #: Requests with a higher temperature are not cached (sampling is meant to vary).
    max_temperature: float = Field(default=1.0, ge=0)
    #: Last user messages with fewer words skip the semantic tier ("yes", "continue").
    min_semantic_words: int = Field(default=3, ge=1)
    #: How often expired semantic points are swept (seconds).
    sweep_seconds: float = Field(default=300, gt=0)


class RoutingConfig(_Strict):
    model_list: list[ModelEntry] = Field(min_length=1)
    router_settings: RouterSettings = RouterSettings()
    limit_settings: LimitSettings = LimitSettings()
    cache_settings: CacheSettings = CacheSettings()
    #: Price overrides keyed by model alias or by litellm model name.
    prices: dict[str, PriceOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_references(self) -> RoutingConfig:
        aliases = {entry.model_name for entry in self.model_list}
        for field in ("fallbacks", "context_window_fallbacks"):
            for index, mapping in enumerate(getattr(self.router_settings, field)):
                for source, targets in mapping.items():
                    for name in (source, *targets):
                        if name not in aliases:
                            raise ValueError(
                                f"router_settings.{field}.{index}: unknown model_name {name!r}"
                            )
        ids = [entry.model_info.id for entry in self.model_list if entry.model_info.id]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"model_info.id must be unique; repeated: {', '.join(duplicates)}")
        cache = self.cache_settings
        for alias in cache.aliases:
            if alias not in aliases:
                raise ValueError(f"cache_settings.aliases: unknown model_name {alias!r}")
        if cache.embedder != "local" and cache.embedder not in aliases:
            raise ValueError(f"cache_settings.embedder: unknown model_name {cache.embedder!r}")
        if cache.min_threshold > cache.max_threshold:
            raise ValueError("cache_settings: min_threshold is above max_threshold")
        return self

    def cache_for(self, alias: str) -> AliasCache:
        """The alias's cache policy with every field resolved."""
        resolved = self.resolved_caches.get(alias)
        return resolved if resolved is not None else self._resolve_cache(alias)

    @cached_property
    def resolved_caches(self) -> dict[str, AliasCache]:
        """Every configured alias's resolved cache policy, built once per config (asked per request)."""
        return {entry.model_name: self._resolve_cache(entry.model_name) for entry in self.model_list}

    def _resolve_cache(self, alias: str) -> AliasCache:
        default = self.cache_settings.default
        own = self.cache_settings.aliases.get(alias, AliasCache())
        return AliasCache(mode=own.mode or default.mode or "off",
                          ttl_seconds=own.ttl_seconds or default.ttl_seconds or 3600,
                          threshold=own.threshold or default.threshold)

    def fallbacks_for(self, alias: str, *, context_window: bool = False) -> list[str]:
        field = "context_window_fallbacks" if context_window else "fallbacks"
        for mapping in getattr(self.router_settings, field):
            if alias in mapping:
                return list(mapping[alias])
        return []


class ConfigError(Exception):
    """The routing file is unusable; ``problems`` lists each one with its path in the file."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


def _resolve_env(node: Any, path: str, environ: Mapping[str, str], problems: list[str]) -> Any:
    if isinstance(node, dict):
        return {k: _resolve_env(v, f"{path}.{k}" if path else str(k), environ, problems)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_env(v, f"{path}.{i}", environ, problems) for i, v in enumerate(node)]
    if isinstance(node, str) and node.startswith(ENV_PREFIX):
        name = node[len(ENV_PREFIX):]
        if name not in environ:
            problems.append(f"{path}: environment variable {name} is not set")
            return None
        return environ[name]
    return node


def _format_validation_error(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in item["loc"])
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(f"{location}: {message}" if location else message)
    return problems


def parse_config(raw: Any, *, source: str = "<config>",
                 environ: Mapping[str, str] | None = None) -> RoutingConfig:
    """Validate an already-parsed YAML document. Raises ConfigError listing every problem."""
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the file must be a mapping with a model_list"])
    problems: list[str] = []
    resolved = _resolve_env(raw, "", os.environ if environ is None else environ, problems)
    try:
        config = RoutingConfig.model_validate(resolved)
    except ValidationError as error:
        problems.extend(_format_validation_error(error))
        raise ConfigError(source, problems) from None
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> RoutingConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(str(path), [f"cannot read the file: {error.strerror}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(str(path), [f"not valid YAML: {error}"]) from None
    return parse_config(raw, source=str(path), environ=environ)


def demo_config(mock_base_url: str) -> RoutingConfig:
    """The routing used when no file is given: alias ``demo`` served by the built-in mock upstream."""
    return parse_config(
        {
            "model_list": [
                {"model_name": "demo",
                 "litellm_params": {"model": "openai/demo", "api_base": mock_base_url,
                                    "api_key": "demo-upstream-key"},
                 "model_info": {"id": "demo-mock", "mode": "chat"}},
                {"model_name": "demo-embedding",
                 "litellm_params": {"model": "openai/demo-embedding", "api_base": mock_base_url,
                                    "api_key": "demo-upstream-key"},
                 "model_info": {"id": "demo-mock-embedding", "mode": "embedding"}},
            ],
            # Both tiers on, so a newcomer sees a semantic-hit on a paraphrase with no setup.
            "cache_settings": {"aliases": {"demo": {"mode": "semantic"}}},
            # The mock costs nothing; saying so keeps the "no price known" warning for real gaps.
            "prices": {alias: {"input_per_million": 0, "output_per_million": 0}
                       for alias in ("demo", "demo-embedding")},
        },
        source="<demo>",
        environ={},
    )
