"""Process settings, read once from ``GATEWAY_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    #: The routing file. None runs the demo: alias ``demo`` served by the built-in mock upstream.
    config: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    master_key: SecretStr | None = None
    redis_url: SecretStr | None = None
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    data_dir: Path = Path(".gateway-data")
    #: Request bodies above this size are refused with 413 before they are parsed.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    log_level: str = "INFO"
    #: ``json`` (one object per line), ``text`` (for people), or ``auto``: text on a terminal, else JSON.
    log_format: Literal["auto", "json", "text"] = "auto"
    #: Record prompt and completion text on spans (gen_ai.input/output.messages); off by default.
    trace_content: bool = False
    #: Each captured text part is cut after this many characters.
    trace_content_max_chars: int = Field(default=2048, ge=16)
    #: How often the routing file is checked for changes (seconds); 0 turns the watcher off.
    config_poll_seconds: float = Field(default=2.0, ge=0)
    #: Failed authentications allowed per client address (slowapi/limits syntax), then 429.
    auth_failure_limit: str = "30/minute"
    #: Requests to /admin allowed per client address.
    admin_rate_limit: str = "300/minute"
    #: How long a key lookup is cached in process (seconds); revocations reach every replica within it.
    key_cache_seconds: float = Field(default=0.5, ge=0, le=60)
    #: Timeout for one Redis call (seconds): a slow store must not hold requests.
    redis_timeout_seconds: float = Field(default=0.25, gt=0)

    @field_validator("master_key", "redis_url", "qdrant_url", "qdrant_api_key", "config", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def demo(self) -> bool:
        return self.config is None
