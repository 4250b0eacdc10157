"""The production Limiter: Redis, shared by every replica, so a limit holds once in total, not once
per replica. Each decision is one Lua script (``limits_admit_v2.lua``, ``limits_settle_v2.lua``
beside this file; the version is in the name, so during a rolling deploy an old gateway never runs
its script against a new layout) run atomically by Redis, with the caller's ``now`` as the clock; the semantics
are spelled out in ``local_limiter.py``, and the two agree decision for decision.

Layout, for ``prefix="gw"`` and key id ``<id>``; every key shares the hash tag ``{k:<id>}``, so one
script touches one cluster slot::

    gw:{k:<id>}:rpm              ZSET    reservation id -> admitted at (the last 60 s; rpm keys only)
    gw:{k:<id>}:tpm              ZSET    reservation id -> admitted at (tpm keys only)
    gw:{k:<id>}:tpm:tokens       HASH    reservation id -> tokens (estimate, then the real count)
    gw:{k:<id>}:tpm:total        STRING  sum of tpm:tokens
    gw:{k:<id>}:leases           ZSET    reservation id -> lease expiry (max_parallel or budget keys)
    gw:{k:<id>}:reserved         HASH    reservation id -> "<micro-dollars> <period id>" (budget keys)
    gw:{k:<id>}:budget:<period>  HASH    spent, reserved (micro-dollars); expires a day after the
                                         period ends (``budget:total`` never)
    gw:{k:<id>}:settled          ZSET    reservation id -> settled at (the last SETTLED_SECONDS)
    gw:{k:<id>}:ledger:<day>     HASH    "<model>|<counter>" -> count, for one UTC day and the counters
                                         requests, input_tokens, output_tokens, cost_micros,
                                         saved_micros; kept
    gw:{k:<id>}:ledger:days      ZSET    every ledger day (score 0, lexicographic = chronological)
    gw:{k:<id>}:m:<alias>:rpm, :m:<alias>:tpm, :m:<alias>:tpm:tokens, :m:<alias>:tpm:total
                                         as rpm/tpm above, for the key's requests to one model alias
                                         (only aliases with model limits; under the key's hash tag,
                                         so admit still touches one slot)

Window keys expire a second after their window; leases and reserved never expire by TTL, since a
dead gateway's reserved budget comes back only when an admit drops its lease. Money is integer
micro-dollars inside Redis, so sums never drift.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from gateway.limits.local_limiter import PARALLEL_RETRY_SECONDS, SETTLED_SECONDS, check_ask, period_of, to_micros
from gateway.limits.periods import period_bounds, utc_day
from gateway.limits.types import (
    LEASE_SECONDS,
    WINDOW_SECONDS,
    Ask,
    BudgetStatus,
    Decision,
    LedgerRow,
    LimitReason,
    Quota,
    Spend,
    WindowUsage,
)

#: How long a budget bucket outlives its period: longer than a lease, so a late settle still finds it.
BUCKET_GRACE_SECONDS = 86_400
_LEDGER_FIELDS = ("requests", "input_tokens", "output_tokens", "cost_micros", "saved_micros")
_REASONS: dict[str, LimitReason] = {"rpm": "rpm", "tpm": "tpm", "parallel": "parallel", "budget": "budget",
                                    "model_rpm": "model_rpm", "model_tpm": "model_tpm"}


def _lua(name: str) -> str:
    return (Path(__file__).parent / name).read_text(encoding="utf-8")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _arg(value: int | None) -> int | str:
    return "" if value is None else value


def _int(value: str) -> int | None:
    return None if value == "" else int(value)


def _float(value: str) -> float | None:
    return None if value == "" else float(value)


class RedisLimiter:
    """Limiter on Redis. Owns ``client``: ``close()`` closes it.

    Reservation ids must be unique per request (the pipeline draws 96 random bits for each): a second
    admit with a held id is not detected and would count twice."""

    name = "redis"
    admit_cancel_safe = False  # the script may have run when the reply is cut off

    def __init__(self, client: aioredis.Redis, prefix: str = "gw") -> None:
        self._client = client
        self.prefix = prefix
        self._admit = client.register_script(_lua("limits_admit_v2.lua"))
        self._settle = client.register_script(_lua("limits_settle_v2.lua"))

    def _key(self, key_id: str, suffix: str) -> str:
        return f"{self.prefix}:{{k:{key_id}}}:{suffix}"

    def _window_keys(self, key_id: str) -> list[str]:
        return [self._key(key_id, s) for s in ("rpm", "tpm", "tpm:tokens", "tpm:total", "leases", "reserved")]

    @staticmethod
    def _has_model_limits(quota: Quota) -> bool:
        return quota.model is not None and (quota.model_rpm is not None or quota.model_tpm is not None)

    def _model_keys(self, quota: Quota) -> list[str]:
        """The model alias's rpm ZSET, tpm ZSET, tpm HASH and tpm STRING."""
        return [self._key(quota.key_id, f"m:{quota.model}:{s}") for s in ("rpm", "tpm", "tpm:tokens", "tpm:total")]

    async def admit(self, quota: Quota, ask: Ask, now: float) -> Decision:
        check_ask(ask)
        if quota.unlimited:
            return Decision(allowed=True)
        period_id, resets_at = period_bounds(period_of(quota), now)
        budget = None if quota.budget_usd is None else to_micros(quota.budget_usd)
        model = self._has_model_limits(quota)
        model_rpm = quota.model_rpm if model else None
        model_tpm = quota.model_tpm if model else None
        result = await self._admit(
            keys=[*self._window_keys(quota.key_id), self._key(quota.key_id, f"budget:{period_id}"),
                  *(self._model_keys(quota) if model else [])],
            args=[now, ask.reservation_id, _arg(quota.rpm), _arg(quota.tpm), _arg(quota.max_parallel),
                  _arg(budget), period_id, "" if resets_at is None else resets_at - now, ask.tokens,
                  to_micros(ask.cost_usd), int(ask.cache_hit), WINDOW_SECONDS, LEASE_SECONDS,
                  BUCKET_GRACE_SECONDS, PARALLEL_RETRY_SECONDS, _arg(model_rpm), _arg(model_tpm)],
        )
        allowed, reason, retry, left_req, reset_req, left_tok, reset_tok, left_budget = (_text(v) for v in result)
        budget_left = _int(left_budget)
        return Decision(
            allowed=allowed == "1",
            reason=_REASONS[reason] if reason else None,
            retry_after=_float(retry),
            # The key-wide limits, else (a key with model limits only) the model's; as the script.
            limit_requests=quota.rpm if quota.rpm is not None else model_rpm,
            remaining_requests=_int(left_req),
            reset_requests=_float(reset_req),
            limit_tokens=quota.tpm if quota.tpm is not None else model_tpm,
            remaining_tokens=_int(left_tok),
            reset_tokens=_float(reset_tok),
            budget_remaining_usd=None if budget_left is None else budget_left / 1_000_000,
        )

    async def settle(self, quota: Quota, ask: Ask, spend: Spend, now: float) -> None:
        check_ask(ask)
        period = period_of(quota)
        period_id, resets_at = period_bounds(period, now)
        # A reservation still held was admitted at most one lease ago: in this period or the last.
        previous_id, previous_resets_at = period_bounds(period, now - LEASE_SECONDS)
        key_id = quota.key_id
        day = utc_day(now)
        model_tpm = quota.counts_model_tokens
        await self._settle(
            keys=[self._key(key_id, "settled"), *self._window_keys(key_id)[1:],
                  self._key(key_id, f"budget:{period_id}"), self._key(key_id, f"budget:{previous_id}"),
                  self._key(key_id, f"ledger:{day}"), self._key(key_id, "ledger:days"),
                  *(self._model_keys(quota)[1:] if model_tpm else [])],
            args=[now, ask.reservation_id, int(quota.tpm is not None),
                  int(quota.max_parallel is not None or quota.budget_usd is not None),
                  int(quota.budget_usd is not None), int(ask.cache_hit),
                  period_id, self._bucket_ttl(resets_at, now), previous_id, self._bucket_ttl(previous_resets_at, now),
                  spend.model, spend.input_tokens, spend.output_tokens, to_micros(spend.cost_usd),
                  to_micros(spend.saved_usd), day, WINDOW_SECONDS, SETTLED_SECONDS, int(model_tpm)],
        )

    @staticmethod
    def _bucket_ttl(resets_at: float | None, now: float) -> int | str:
        # Relative to the caller's clock, so a bucket lives as long whatever Redis's clock says.
        return "" if resets_at is None else max(int(resets_at - now) + 1, 0) + BUCKET_GRACE_SECONDS

    async def budget(self, quota: Quota, now: float) -> BudgetStatus:
        period_id, resets_at = period_bounds(period_of(quota), now)
        key_id = quota.key_id
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hmget(self._key(key_id, f"budget:{period_id}"), ["spent", "reserved"])
            pipe.zrangebyscore(self._key(key_id, "leases"), "-inf", now)
            (spent, reserved), dead = await pipe.execute()
        reserved_micros = int(reserved or 0)
        if dead:
            # Leases past expiry that no admit has dropped yet: their budget is no longer reserved.
            for held in await self._client.hmget(self._key(key_id, "reserved"), dead):
                if held is not None:
                    micros, _, held_period = _text(held).partition(" ")
                    if held_period == period_id:
                        reserved_micros -= int(micros)
        return BudgetStatus(spent_usd=int(spent or 0) / 1_000_000, reserved_usd=reserved_micros / 1_000_000,
                            period_id=period_id, resets_at=resets_at)

    async def usage(self, quota: Quota, now: float) -> WindowUsage:
        """The counters of the limits the key has (a counter the key does not track reads 0)."""
        key_id = quota.key_id
        cutoff = now - WINDOW_SECONDS
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.zcount(self._key(key_id, "rpm"), f"({cutoff!r}", "+inf")
            pipe.get(self._key(key_id, "tpm:total"))
            pipe.zrangebyscore(self._key(key_id, "tpm"), "-inf", cutoff)
            pipe.zcount(self._key(key_id, "leases"), f"({now!r}", "+inf")
            requests, total, expired, in_flight = await pipe.execute()
        tokens = int(total or 0)
        if expired:
            tokens -= sum(int(t or 0) for t in await self._client.hmget(self._key(key_id, "tpm:tokens"), expired))
        status = await self.budget(quota, now)
        return WindowUsage(requests=int(requests), tokens=tokens, in_flight=int(in_flight),
                           reserved_usd=status.reserved_usd)

    async def ledger(self, key_id: str) -> list[LedgerRow]:
        days = [_text(d) for d in await self._client.zrange(self._key(key_id, "ledger:days"), 0, -1)]
        async with self._client.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(self._key(key_id, f"ledger:{day}"))
            counters = await pipe.execute()
        rows: list[LedgerRow] = []
        for day, fields in zip(days, counters, strict=True):
            by_model: dict[str, dict[str, int]] = {}
            for field, value in fields.items():
                model, _, name = _text(field).rpartition("|")
                by_model.setdefault(model, {})[name] = int(value)
            for model in sorted(by_model):
                c = {name: by_model[model].get(name, 0) for name in _LEDGER_FIELDS}
                rows.append(LedgerRow(day=day, model=model, requests=c["requests"], input_tokens=c["input_tokens"],
                                      output_tokens=c["output_tokens"], cost_usd=c["cost_micros"] / 1_000_000,
                                      saved_usd=c["saved_micros"] / 1_000_000))
        return rows

    async def close(self) -> None:
        await self._client.aclose()
