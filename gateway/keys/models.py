"""Virtual keys: the stored record, the admin API's request bodies, audit entries, usage rows.

A key's secret is never stored: only its SHA-256 (hex) and a short display prefix. The plaintext
exists once, in the response that created or rotated it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KeyRole = Literal["user", "admin"]
BudgetPeriod = Literal["daily", "weekly", "monthly", "total"]
AuditAction = Literal["create", "update", "revoke", "rotate", "reload", "cache_purge"]
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@\- ]+$")]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime | None) -> datetime | None:
    """A timestamp without an offset is read as UTC, so comparisons never mix naive and aware."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class ModelLimits(BaseModel):
    """Limits of a key for one model alias, on top of (never instead of) the key-wide ones."""

    model_config = ConfigDict(extra="forbid")

    rpm: Annotated[int, Field(ge=1)] | None = None
    tpm: Annotated[int, Field(ge=1)] | None = None


class KeyLimits(BaseModel):
    """Fields an operator may set at creation and change later (PATCH)."""

    model_config = ConfigDict(extra="forbid")

    alias: Name | None = None
    team: Name | None = None
    role: KeyRole = "user"
    #: Model aliases this key may use; empty means every alias.
    allowed_models: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(default_factory=list)
    rpm: Annotated[int, Field(ge=1)] | None = None
    tpm: Annotated[int, Field(ge=1)] | None = None
    max_parallel: Annotated[int, Field(ge=1)] | None = None
    budget_usd: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    budget_period: BudgetPeriod | None = None
    #: Per model alias: {"gpt-4o": {"rpm": 10, "tpm": 20000}}.
    model_limits: dict[Annotated[str, Field(min_length=1, max_length=256)], ModelLimits] = Field(
        default_factory=dict)
    expires_at: datetime | None = None
    enabled: bool = True
    metadata: dict[str, Any] = Field(default_factory=dict)

    _expires_in_utc = field_validator("expires_at")(_as_utc)


class KeyCreate(KeyLimits):
    pass


class KeyUpdate(BaseModel):
    """PATCH body: only the fields present are changed (``model_fields_set``)."""

    model_config = ConfigDict(extra="forbid")

    alias: Name | None = None
    team: Name | None = None
    role: KeyRole | None = None
    allowed_models: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = None
    rpm: Annotated[int, Field(ge=1)] | None = None
    tpm: Annotated[int, Field(ge=1)] | None = None
    max_parallel: Annotated[int, Field(ge=1)] | None = None
    budget_usd: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    budget_period: BudgetPeriod | None = None
    model_limits: dict[Annotated[str, Field(min_length=1, max_length=256)], ModelLimits] | None = None
    expires_at: datetime | None = None
    enabled: bool | None = None
    metadata: dict[str, Any] | None = None

    _expires_in_utc = field_validator("expires_at")(_as_utc)

    @model_validator(mode="after")
    def _required_stay_set(self) -> KeyUpdate:
        # null clears optional fields (alias, team, limits, expiry); these four always have a value.
        for name in ("role", "enabled", "metadata", "allowed_models", "model_limits"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class KeyRecord(KeyLimits):
    """What the store keeps. ``key_hash`` and ``previous_hash`` never leave the gateway."""

    model_config = ConfigDict(extra="forbid")

    id: str
    key_prefix: str
    key_hash: str
    #: During a rotation's grace period, the old secret's hash still authenticates until then.
    previous_hash: str | None = None
    previous_valid_until: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def public(self) -> KeyView:
        return KeyView.model_validate(self.model_dump(exclude={"key_hash", "previous_hash"}))


class KeyView(KeyLimits):
    """A key as the admin API shows it: no hashes."""

    id: str
    key_prefix: str
    previous_valid_until: datetime | None = None
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class KeyCreated(KeyView):
    """The one response that carries the plaintext secret."""

    key: str


class KeyPage(BaseModel):
    data: list[KeyView]
    #: Pass as ``cursor`` to get the next page; null on the last page.
    next_cursor: str | None = None


class AuditEntry(BaseModel):
    id: str
    at: datetime
    #: ``master`` or the acting key's id.
    actor: str
    actor_team: str | None = None
    action: AuditAction
    key_id: str | None = None
    team: str | None = None
    #: Field names and new values; never a secret or a hash.
    changes: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = None


class AuditPage(BaseModel):
    data: list[AuditEntry]
    next_cursor: str | None = None


class UsageRow(BaseModel):
    day: str  # YYYY-MM-DD, UTC
    model: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    #: Cost that cache hits saved (never charged against the budget).
    saved_usd: float = 0.0


class KeyUsage(BaseModel):
    key_id: str
    rows: list[UsageRow]
    budget_usd: float | None = None
    budget_period: BudgetPeriod | None = None
    spent_usd: float = 0.0
    #: Estimated cost of requests in flight, held against the budget until they settle.
    reserved_usd: float = 0.0
    remaining_usd: float | None = None
    period_resets_at: datetime | None = None
    #: The rolling minute right now, across every replica.
    requests_last_minute: int = 0
    tokens_last_minute: int = 0
    in_flight: int = 0
