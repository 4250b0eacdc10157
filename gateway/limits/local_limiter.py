"""The in-process Limiter: the embedded default (one host) and the fallback while Redis is down.
It is also the reference spelling of the semantics that ``limits_admit_v2.lua`` and
``limits_settle_v2.lua`` implement for Redis; a congruence test replays random operations on both.

Decisions (``admit``), each window being (now - 60 s, now]:

- rpm: refused when the window already holds rpm admits; retry_after = when enough of the oldest
  leave for one slot. Cache hits count here and only here.
- tpm: refused when tokens in the window + the ask exceed tpm; retry_after = when enough of the oldest
  entries' tokens leave. An ask larger than tpm itself never passes: reason "tpm", retry_after None.
- parallel: refused when max_parallel reservations are in flight (lease not expired);
  retry_after = PARALLEL_RETRY_SECONDS, a hint (slots free when requests end).
- budget: refused when spent + reserved + the ask exceed the period's budget (integer micro-dollars);
  retry_after = seconds until the period resets; None for ``total`` or an ask above the whole budget.
- model_rpm, model_tpm: when the quota names a ``model`` (alias) with ``model_rpm``/``model_tpm``, the
  same rules as rpm/tpm over a window of that key's requests to that alias only, on top of the
  key-wide limits, decided in the same section: an ask passes only if both scopes pass, and is then
  taken in both (a refusal by either scope takes nothing from the other). Cache hits count in
  model_rpm as in rpm; settle replaces the estimate by the real tokens in model_tpm as in tpm.
  Without a model or without model limits no model window is touched.
- With several refusing, reason names the one that passes last (a None beats any time), the earlier
  in that order on a tie, and retry_after is its value. A limit of 0 never passes (None).
- Headers on every decision, after it: remaining = limit - count (never below 0); reset = seconds until
  the oldest entry leaves the window, 0 when empty; budget_remaining_usd likewise never below 0.
  The request fields report rpm when the key has one, else model_rpm (the model scope's count and
  reset) when the quota has one; the token fields likewise report tpm, else model_tpm.
  ``usage`` is key-wide only.

Every decision is a synchronous section with no await inside, so concurrent requests on the event
loop are decided one at a time, exactly. The only await is loading budget buckets' spent from
``SqliteSpend`` before the section; settled money is written there after it, in call order. Windows,
leases and reservations live in memory only: they are at most a lease old.

Without a ``SqliteSpend`` (the Redis-down fallback) spent and the ledger stay in memory and are lost
on restart; the caller fails budgets closed in that mode anyway. Settled ids are in memory too, so a
settle retried across a restart counts twice. Reservation ids must be unique per request.
"""
from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway.limits.periods import period_bounds, utc_day
from gateway.limits.sqlite_spend import SpendRecord, SqliteSpend
from gateway.limits.types import (
    LEASE_SECONDS,
    WINDOW_SECONDS,
    Ask,
    BudgetPeriod,
    BudgetStatus,
    Decision,
    LedgerRow,
    LimitReason,
    Quota,
    Spend,
    WindowUsage,
)

#: Seconds to suggest before retrying when every concurrency slot is taken.
PARALLEL_RETRY_SECONDS = 1.0
#: How long a settled reservation id is remembered, so a retried settle changes nothing. The only
#: retry is redis-py's one immediate retry on a broken connection, within two Redis timeouts (0.25 s
#: each by default) of the first try; 15 s covers timeouts far above that. Every request's id is held
#: this long (~140 bytes in this process: 3.9 MB at 1,850 req/s; was 60 s, ~15 MB).
SETTLED_SECONDS = 15.0


def to_micros(usd: float) -> int:
    return round(usd * 1_000_000)


def period_of(quota: Quota) -> BudgetPeriod:
    """A budget without a period is a ``total`` one."""
    return quota.budget_period or "total"


def check_ask(ask: Ask) -> None:
    if not ask.reservation_id or ask.tokens < 0 or ask.cost_usd < 0:
        raise ValueError(f"invalid ask: {ask!r}")


def _leaves_in(admitted_at: float, now: float) -> float:
    """Seconds until an entry admitted at ``admitted_at`` leaves the window; never more than the
    window, even when a caller's clock reading is a little older than the entry's."""
    return min(WINDOW_SECONDS, admitted_at + WINDOW_SECONDS - now)


def _binding(failed: list[tuple[LimitReason, float | None]]) -> tuple[LimitReason, float | None]:
    """The limit that passes last (None, never, beats any time); ties go to check order."""
    pick = failed[0]
    for candidate in failed[1:]:
        if pick[1] is not None and (candidate[1] is None or candidate[1] > pick[1]):
            pick = candidate
    return pick


@dataclass
class _Lease:
    expires: float
    micros: int = 0
    period_id: str | None = None  # set when the reservation holds budget


@dataclass
class _Bucket:
    spent: int  # micro-dollars
    reserved: int = 0


#: Expired entries at the front of a log's arrays are skipped (``head``) and sliced off in one go once
#: there are COMPACT_AFTER of them and they are at least 1/COMPACT_SHARE of the array. An array holds at
#: most COMPACT_SHARE/(COMPACT_SHARE - 1) times its live entries (1.14x; it was 2x with half); moving
#: the rest costs 7 times the entries sliced off, a memmove of ~1 MB every few seconds at 2,700 req/s.
COMPACT_AFTER = 1024
COMPACT_SHARE = 8


def _compacted(head: int, *arrays: array[Any]) -> int:
    """The new head once the ``head`` skipped entries at the front of ``arrays`` (parallel, equally
    long) are sliced off, if they are COMPACT_AFTER or more and at least 1/COMPACT_SHARE; else ``head``."""
    if head < COMPACT_AFTER or COMPACT_SHARE * head < len(arrays[0]):
        return head
    for entries in arrays:
        del entries[:head]
    return 0


class _Log:
    """Sorted times in a sliding window, each with an integer (tokens) when ``with_values``.

    Memory: the windows hold every request of the last minute, ~100,000 entries at 1,700 req/s. Typed
    arrays hold 8 bytes a time and a value where lists of float and int objects held ~40 (soak: RSS
    after 100k requests, docs/benchmarks.md). Time: dropping expired entries from the front moves the
    rest, so they are skipped instead and sliced off once they are an eighth of the array (COMPACT_SHARE):
    amortised O(1), seven entries moved per entry dropped (bench/limiter_window.py)."""

    __slots__ = ("head", "times", "values")

    def __init__(self, *, with_values: bool = False) -> None:
        self.times = array("d")
        self.values = array("q") if with_values else None
        self.head = 0

    def __len__(self) -> int:
        return len(self.times) - self.head

    def time(self, rank: int = 0) -> float:
        """The ``rank``-th oldest live entry's time."""
        return self.times[self.head + rank]

    def add(self, now: float, value: int = 0) -> None:
        times = self.times
        at = bisect_right(times, now, lo=self.head)
        times.insert(at, now)
        if self.values is not None:
            self.values.insert(at, value)

    def expire(self, cutoff: float) -> int:
        """Drops the entries at or before ``cutoff``; returns the sum of their values."""
        head = self.head
        cut = bisect_right(self.times, cutoff, lo=head)
        if cut == head:
            return 0
        if self.values is None:
            self.head = _compacted(cut, self.times)
            return 0
        gone = sum(self.values[head:cut])
        self.head = _compacted(cut, self.times, self.values)
        return gone

    def replace(self, at: float, old: int, new: int) -> bool:
        """Sets one live entry at time ``at`` holding ``old`` to ``new``; False when there is none.
        Entries with the same time and value are interchangeable: the window is their multiset."""
        times, values = self.times, self.values
        assert values is not None
        index = bisect_left(times, at, lo=self.head)
        while index < len(times) and times[index] == at:
            if values[index] == old:
                values[index] = new
                return True
            index += 1
        return False

    def first_reaching(self, total: int) -> float | None:
        """The time of the entry where the running sum of values, oldest first, reaches ``total``."""
        values = self.values
        assert values is not None
        running = 0
        for index in range(self.head, len(values)):
            running += values[index]
            if running >= total:
                return self.times[index]
        return None


class _SettledIds:
    """Reservation ids settled in the last SETTLED_SECONDS, with their settle times in settle order."""

    __slots__ = ("head", "ids", "order", "times")

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.order: deque[str] = deque()
        self.times = array("d")
        self.head = 0

    def __contains__(self, rid: str) -> bool:
        return rid in self.ids

    def add(self, rid: str, now: float) -> None:
        self.ids.add(rid)
        self.order.append(rid)
        self.times.append(now)

    def forget(self, cutoff: float) -> None:
        """Forgets ids from the front of the settle order while they were settled at or before ``cutoff``."""
        times, head = self.times, self.head
        while head < len(times) and times[head] <= cutoff:
            self.ids.discard(self.order.popleft())
            head += 1
        self.head = _compacted(head, times)


@dataclass
class _Windows:
    """The RPM and TPM windows of one scope: a key, or one model alias within a key."""

    #: Admission times in the RPM window.
    requests: _Log = field(default_factory=_Log)
    #: Admission times in the TPM window, each with its tokens (the estimate until settled), and their sum.
    tokens: _Log = field(default_factory=lambda: _Log(with_values=True))
    token_total: int = 0

    def trim_windows(self, now: float) -> None:
        cutoff = now - WINDOW_SECONDS
        self.requests.expire(cutoff)
        self.token_total -= self.tokens.expire(cutoff)

    def requests_reset(self, now: float, rank: int = 0) -> float:
        return _leaves_in(self.requests.time(rank), now) if self.requests else 0.0

    def tokens_reset(self, now: float) -> float:
        return _leaves_in(self.tokens.time(), now) if self.tokens else 0.0

    def tokens_free_in(self, now: float, excess: int) -> float:
        at = self.tokens.first_reaching(excess)
        return WINDOW_SECONDS if at is None else _leaves_in(at, now)

    def check(self, failed: list[tuple[LimitReason, float | None]], names: tuple[LimitReason, LimitReason],
              rpm: int | None, tpm: int | None, ask: Ask, now: float) -> None:
        """Append this scope's refusals (rpm then tpm) to ``failed``."""
        if rpm is not None and len(self.requests) + 1 > rpm:
            failed.append((names[0], self.requests_reset(now, len(self.requests) - rpm) if rpm > 0 else None))
        if not ask.cache_hit and tpm is not None and self.token_total + ask.tokens > tpm:
            excess = self.token_total + ask.tokens - tpm
            failed.append((names[1], self.tokens_free_in(now, excess) if ask.tokens <= tpm else None))

    def take(self, rpm: int | None, tpm: int | None, ask: Ask, now: float) -> None:
        if rpm is not None:
            self.requests.add(now)
        if tpm is not None and not ask.cache_hit:
            self.tokens.add(now, ask.tokens)
            self.token_total += ask.tokens

    def replace_tokens(self, admitted: _Admitted, real: int, now: float) -> None:
        """Real tokens replace the estimate at the admit's timestamp, larger or smaller; an entry that
        has left the window (trimmed first) is not touched."""
        self.trim_windows(now)
        if self.tokens.replace(admitted.at, admitted.tokens, real):
            self.token_total += real - admitted.tokens


@dataclass(slots=True)
class _Admitted:
    """An admitted, unsettled reservation's entry in the TPM windows: where its estimate is."""

    at: float
    tokens: int


@dataclass
class _KeyState(_Windows):
    #: In-flight reservations in admission order (so, for one clock, in expiry order).
    leases: dict[str, _Lease] = field(default_factory=dict)
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    #: Settled reservation ids, kept for SETTLED_SECONDS so that a retried settle changes nothing.
    settled: _SettledIds = field(default_factory=_SettledIds)
    #: Admitted reservations with entries in a TPM window, until they settle or leave the window, in
    #: admission order: where each one's estimate is, for settle to replace it by the real tokens.
    admitted: dict[str, _Admitted] = field(default_factory=dict)
    #: Model alias -> its windows (only aliases with model limits).
    models: dict[str, _Windows] = field(default_factory=dict)

    def model(self, quota: Quota) -> _Windows | None:
        """The model scope's windows, or None when the quota has no model limits."""
        if quota.model is None or (quota.model_rpm is None and quota.model_tpm is None):
            return None
        windows = self.models.get(quota.model)
        if windows is None:
            windows = self.models[quota.model] = _Windows()
        return windows

    def trim(self, now: float, period_id: str) -> None:
        self.trim_windows(now)
        cutoff = now - WINDOW_SECONDS
        while self.admitted:  # only a reservation that never settled is still here
            rid, admitted = next(iter(self.admitted.items()))
            if admitted.at > cutoff:
                break
            del self.admitted[rid]
        while self.leases:
            rid, lease = next(iter(self.leases.items()))
            if lease.expires > now:
                break
            # A dead gateway's lease: its slot and (in this period) its budget come back.
            del self.leases[rid]
            bucket = self.buckets.get(period_id)
            if lease.period_id == period_id and bucket is not None:
                bucket.reserved -= lease.micros


class LocalLimiter:
    """Limiter in this process; ``spend`` persists budget spent and the ledger (None: memory only)."""

    name = "local"
    admit_cancel_safe = True  # admit awaits only in _load_buckets, before its decision section

    def __init__(self, spend: SqliteSpend | None = None) -> None:
        self._spend = spend
        self._keys: dict[str, _KeyState] = {}
        #: Without ``spend``: key id -> (day, model) -> [requests, input, output, cost µ$, saved µ$].
        self._ledger: dict[str, dict[tuple[str, str], list[int]]] = {}

    def _state(self, key_id: str) -> _KeyState:
        state = self._keys.get(key_id)
        if state is None:
            state = self._keys[key_id] = _KeyState()
        return state

    async def _load_buckets(self, key_id: str, *period_ids: str) -> _KeyState:
        """Make sure these budget buckets are in memory; the only await before a decision section.

        Returns without yielding after the last await, so the caller's section starts from the state
        this leaves."""
        state = self._state(key_id)
        loaded: dict[str, int] = {}
        for period_id in period_ids:
            if period_id not in state.buckets and period_id not in loaded:
                loaded[period_id] = 0 if self._spend is None else await self._spend.spent_micros(key_id, period_id)
        if loaded and self._spend is not None:
            # Earlier periods' buckets can be reloaded from the file once no lease holds them. With
            # memory as the only copy they stay (the fallback only runs while Redis is down).
            keep = {lease.period_id for lease in state.leases.values()} | set(period_ids)
            for old in [p for p in state.buckets if p not in keep]:
                del state.buckets[old]
        for period_id, spent in loaded.items():
            state.buckets.setdefault(period_id, _Bucket(spent))  # another task may have loaded it meanwhile
        return state

    async def admit(self, quota: Quota, ask: Ask, now: float) -> Decision:
        check_ask(ask)
        if quota.unlimited:
            return Decision(allowed=True)
        period_id, resets_at = period_bounds(period_of(quota), now)
        budget = None if quota.budget_usd is None else to_micros(quota.budget_usd)
        state = await self._load_buckets(quota.key_id, *([period_id] if budget is not None else []))
        # From here to the return: no await, so this decision cannot interleave with another.
        state.trim(now, period_id)
        model = state.model(quota)
        if model is not None:
            model.trim_windows(now)
        bucket = state.buckets[period_id] if budget is not None else None
        committed = 0 if bucket is None else bucket.spent + bucket.reserved
        work = not ask.cache_hit
        failed: list[tuple[LimitReason, float | None]] = []
        state.check(failed, ("rpm", "tpm"), quota.rpm, quota.tpm, ask, now)
        if work and quota.max_parallel is not None and len(state.leases) + 1 > quota.max_parallel:
            failed.append(("parallel", PARALLEL_RETRY_SECONDS if quota.max_parallel > 0 else None))
        ask_micros = to_micros(ask.cost_usd)
        if work and budget is not None and committed + ask_micros > budget:
            failed.append(("budget", resets_at - now if resets_at is not None and ask_micros <= budget else None))
        if model is not None:
            model.check(failed, ("model_rpm", "model_tpm"), quota.model_rpm, quota.model_tpm, ask, now)
        reason: LimitReason | None = None
        retry: float | None = None
        if failed:
            reason, retry = _binding(failed)
        else:
            self._take(state, quota, ask, now, period_id, bucket, ask_micros)
            if model is not None:
                model.take(quota.model_rpm, quota.model_tpm, ask, now)
        # Headers: the key-wide windows, else (a key with model limits only) the model's.
        rpm, requests = (quota.rpm, state) if quota.rpm is not None or model is None else (quota.model_rpm, model)
        tpm, tokens = (quota.tpm, state) if quota.tpm is not None or model is None else (quota.model_tpm, model)
        return Decision(
            allowed=not failed, reason=reason, retry_after=retry,
            limit_requests=rpm,
            remaining_requests=None if rpm is None else max(rpm - len(requests.requests), 0),
            reset_requests=None if rpm is None else requests.requests_reset(now),
            limit_tokens=tpm,
            remaining_tokens=None if tpm is None else max(tpm - tokens.token_total, 0),
            reset_tokens=None if tpm is None else tokens.tokens_reset(now),
            budget_remaining_usd=None if budget is None or bucket is None
            else max(budget - bucket.spent - bucket.reserved, 0) / 1_000_000,
        )

    @staticmethod
    def _take(state: _KeyState, quota: Quota, ask: Ask, now: float, period_id: str, bucket: _Bucket | None,
              ask_micros: int) -> None:
        rid = ask.reservation_id
        state.take(quota.rpm, quota.tpm, ask, now)
        if ask.cache_hit:
            return
        if quota.tpm is not None or quota.counts_model_tokens:
            state.admitted[rid] = _Admitted(now, ask.tokens)
        if bucket is not None:
            state.leases[rid] = _Lease(now + LEASE_SECONDS, ask_micros, period_id)
            bucket.reserved += ask_micros
        elif quota.max_parallel is not None:
            state.leases[rid] = _Lease(now + LEASE_SECONDS)

    async def settle(self, quota: Quota, ask: Ask, spend: Spend, now: float) -> None:
        check_ask(ask)
        key_id, rid = quota.key_id, ask.reservation_id
        budgeted = quota.budget_usd is not None and not ask.cache_hit
        current = period_bounds(period_of(quota), now)[0]
        previous = period_bounds(period_of(quota), now - LEASE_SECONDS)[0]
        state = await self._load_buckets(key_id, *([current, previous] if budgeted else []))
        # From here on no await until the record is handed to the spend store.
        period_id = held_in = None
        if budgeted:
            # A live reservation is released where it was made (this period or, a lease ago, the
            # last), and its cost goes there too, so spent + reserved there stays within budget;
            # without a live reservation the cost goes to this period. A dead one (its lease ran
            # out, nothing dropped it yet) is released as an admit would: only this period's counts.
            period_id = current
            lease = state.leases.get(rid)
            if lease is not None and lease.expires > now and lease.period_id in (current, previous):
                period_id = held_in = lease.period_id
            elif lease is not None and lease.expires <= now and lease.period_id == current:
                held_in = current
        state.settled.forget(now - SETTLED_SECONDS)
        if rid in state.settled:
            return
        state.settled.add(rid, now)
        cost = 0 if ask.cache_hit else to_micros(spend.cost_usd)
        record = SpendRecord(key_id=key_id, period_id=period_id, day=utc_day(now), model=spend.model,
                             input_tokens=0 if ask.cache_hit else spend.input_tokens,
                             output_tokens=0 if ask.cache_hit else spend.output_tokens,
                             cost_micros=cost, saved_micros=to_micros(spend.saved_usd))
        if not ask.cache_hit:
            self._release(state, quota, rid, spend, now, held_in)
        if period_id is not None:
            state.buckets[period_id].spent += cost
        if self._spend is not None:
            await self._spend.record(record)
        else:
            row = self._ledger.setdefault(key_id, {}).setdefault((record.day, record.model), [0, 0, 0, 0, 0])
            for i, value in enumerate((1, record.input_tokens, record.output_tokens, cost, record.saved_micros)):
                row[i] += value

    @staticmethod
    def _release(state: _KeyState, quota: Quota, rid: str, spend: Spend, now: float, held_in: str | None) -> None:
        real = spend.input_tokens + spend.output_tokens
        admitted = state.admitted.pop(rid, None)
        if admitted is not None:
            if quota.tpm is not None:
                state.replace_tokens(admitted, real, now)
            model = state.models.get(quota.model) if quota.counts_model_tokens and quota.model else None
            if model is not None:
                model.replace_tokens(admitted, real, now)
        lease = state.leases.pop(rid, None)
        if lease is not None and held_in is not None:
            state.buckets[held_in].reserved -= lease.micros

    async def budget(self, quota: Quota, now: float) -> BudgetStatus:
        period_id, resets_at = period_bounds(period_of(quota), now)
        state = await self._load_buckets(quota.key_id, period_id)
        state.trim(now, period_id)
        bucket = state.buckets[period_id]
        return BudgetStatus(spent_usd=bucket.spent / 1_000_000, reserved_usd=bucket.reserved / 1_000_000,
                            period_id=period_id, resets_at=resets_at)

    async def usage(self, quota: Quota, now: float) -> WindowUsage:
        """The counters of the limits the key has (a counter the key does not track reads 0)."""
        status = await self.budget(quota, now)  # trims the windows to ``now`` too
        state = self._state(quota.key_id)
        return WindowUsage(requests=len(state.requests), tokens=state.token_total, in_flight=len(state.leases),
                           reserved_usd=status.reserved_usd)

    async def ledger(self, key_id: str) -> list[LedgerRow]:
        if self._spend is not None:
            return await self._spend.ledger(key_id)
        return [LedgerRow(day=day, model=model, requests=c[0], input_tokens=c[1], output_tokens=c[2],
                          cost_usd=c[3] / 1_000_000, saved_usd=c[4] / 1_000_000)
                for (day, model), c in sorted(self._ledger.get(key_id, {}).items())]

    async def close(self) -> None:
        if self._spend is not None:
            await self._spend.close()
