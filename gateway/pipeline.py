"""The request pipeline: small stages in a fixed order, each with one job. It knows no HTTP.

    authenticate → authorize → admit → route (engines, retries, fallbacks) → result → settle

Each stage takes the context and the request, and either passes or raises a GatewayError. The cache
stage (issue #5) slots in between admit and route with the same shape.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from gateway.auth import Authenticator, Principal, bearer_token
from gateway.cache.replay import ReplayStream, StreamRecorder, replay_frames
from gateway.cache.types import CacheNote
from gateway.errors import ModelNotFound, PermissionDenied
from gateway.limits.admission import Admission, Reservation
from gateway.limits.types import Decision
from gateway.routing.deployments import Deployment, Operation
from gateway.routing.router import AttemptEvent, AttemptTracer, Routed, Router
from gateway.routing.types import UpstreamCall, UpstreamStream, Usage
from gateway.runtime import RoutingTable

if TYPE_CHECKING:
    from gateway.cache.service import CachedAnswer, PendingWrite, ResponseCache


@dataclass(slots=True)
class RequestContext:
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    alias: str | None = None
    deployment: Deployment | None = None
    attempts: int = 0
    upstream_seconds: float = 0.0
    events: list[AttemptEvent] = field(default_factory=list)
    usage: Usage | None = None
    decision: Decision | None = None
    operation: Operation | None = None
    stream: bool = False
    #: perf_counter time the first frame of a stream was ready (time to first token).
    first_frame_at: float | None = None
    #: What the upstream usage cost, at the answering deployment's price.
    cost_usd: float = 0.0
    #: A stream that ended with an error event instead of [DONE].
    stream_failed: bool = False
    #: Set once the observer has been told about this request.
    observed: bool = False
    #: What the cache did (None: the request never reached the cache stage).
    cache: CacheNote | None = None
    #: This request's trace (None when tracing is off): told about each upstream attempt.
    trace: AttemptTracer | None = None
    #: The response status and error code, once the request is observed (for traces and logs).
    status: int | None = None
    error_code: str | None = None

    def note_decision(self, decision: Decision) -> None:
        """The limiter's decision, refusals included (metrics and traces name the binding limit)."""
        self.decision = decision


@dataclass(slots=True)
class JsonResult:
    body: bytes


class StreamResult:
    """An opened stream. ``close`` runs exactly once, whether the frames were read to the end,
    abandoned by a client that went away, or never read at all."""

    def __init__(self, ctx: RequestContext, stream: UpstreamStream, on_close: Callable[[], None]) -> None:
        self._ctx = ctx
        self._stream = stream
        self._on_close: Callable[[], None] | None = on_close

    async def frames(self) -> AsyncIterator[bytes]:
        try:
            async for frame in self._stream:
                yield frame
        finally:
            await self.close()

    async def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is None:
            return
        try:
            await self._stream.aclose()
        finally:
            self._ctx.usage = self._stream.usage
            self._ctx.stream_failed = self._stream.error is not None
            on_close()


class Pipeline:
    def __init__(self, authenticator: Authenticator, table: RoutingTable, admission: Admission,
                 cache: ResponseCache | None = None) -> None:
        self._authenticator = authenticator
        self._table = table
        self._admission = admission
        self._cache = cache

    # 1 authenticate
    async def authenticate(self, ctx: RequestContext, authorization: str | None,
                           api_key: str | None = None) -> Principal:
        ctx.principal = await self._authenticator.authenticate(bearer_token(authorization, api_key))
        return ctx.principal

    # 2 authorize
    def authorize(self, ctx: RequestContext, alias: str) -> None:
        principal = ctx.principal
        assert principal is not None, "authenticate runs first"
        if not self._table.router.knows(alias):
            raise ModelNotFound(f"The model '{alias}' does not exist or you do not have access to it.",
                                param="model")
        if not principal.may_use(alias):
            raise PermissionDenied(f"This key is not allowed to use the model '{alias}'.", param="model")
        ctx.alias = alias

    def visible_aliases(self, principal: Principal) -> list[str]:
        return [alias for alias in self._table.router.aliases() if principal.may_use(alias)]

    @property
    def loaded_at(self) -> int:
        return self._table.loaded_at

    # 4 cache lookup, 3 admit, 5 route, 7 settle. The lookup runs before admission so that a hit is
    # admitted as one (a request slot only: no tokens, concurrency or budget).
    async def call(self, ctx: RequestContext, operation: Operation, body: dict[str, Any],
                   *, stream: bool, headers: Mapping[str, str] | None = None) -> JsonResult | StreamResult:
        alias, principal = ctx.alias, ctx.principal
        assert alias is not None and principal is not None, "authorize runs first"
        router = self._table.router
        ctx.operation, ctx.stream = operation, stream
        write: PendingWrite | None = None
        if self._cache is not None:
            cached = await self._cache.lookup(ctx, principal, alias, operation, body, headers or {})
            write = cached.write
            if cached.answer is not None:
                reservation = await self._admission.admit(principal, operation, body, alias, router,
                                                          cache_hit=True, on_decision=ctx.note_decision)
                self._admission.settle_hit(reservation, cached.answer.saved_cost_usd)
                return self._replay(ctx, cached.answer, body, stream=stream)
        reservation = await self._admission.admit(principal, operation, body, alias, router,
                                                  on_decision=ctx.note_decision)
        try:
            return await self._route(ctx, router, reservation, operation, body, stream=stream, write=write)
        except BaseException:
            # The router filled ctx.events with one event per failed attempt.
            ctx.attempts = ctx.attempts or len(ctx.events)
            self._admission.settle(reservation, router, ctx.deployment, None)
            raise

    @staticmethod
    def _replay(ctx: RequestContext, answer: CachedAnswer, body: dict[str, Any], *, stream: bool,
                ) -> JsonResult | StreamResult:
        """6 respond from the cache: the stored JSON, or its replay as a live-shaped stream."""
        if not stream:
            return JsonResult(orjson.dumps(answer.body))
        options = body.get("stream_options")
        include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        ctx.first_frame_at = time.perf_counter()
        return StreamResult(ctx, ReplayStream(replay_frames(answer.body, include_usage=include_usage)), lambda: None)

    async def _route(self, ctx: RequestContext, router: Router, reservation: Reservation | None,
                     operation: Operation, body: dict[str, Any], *, stream: bool,
                     write: PendingWrite | None = None) -> JsonResult | StreamResult:
        alias = ctx.alias
        assert alias is not None
        options = body.get("stream_options")
        call = UpstreamCall(
            operation=operation,
            body=body,
            stream=stream,
            client_wants_usage=bool(isinstance(options, dict) and options.get("include_usage")),
            request_id=ctx.request_id,
        )
        if not stream:
            routed = await router.send(alias, call, events=ctx.events, tracer=ctx.trace)
            self._record(ctx, routed)
            ctx.usage = routed.value.usage
            ctx.cost_usd = router.price(routed.deployment).cost(ctx.usage) if ctx.usage else 0.0
            self._admission.settle(reservation, router, routed.deployment, ctx.usage)
            if write is not None and self._cache is not None:
                self._cache.store_later(write, routed.value.body)
            return JsonResult(routed.value.body)
        opened = await router.open_stream(alias, call, events=ctx.events, tracer=ctx.trace)
        self._record(ctx, opened)
        ctx.first_frame_at = time.perf_counter()
        upstream, deployment = opened.value, opened.deployment
        cache = self._cache if write is not None else None
        recorder = StreamRecorder(upstream) if cache is not None else None  # hooks into the stream's chunks

        def finished() -> None:
            router.stream_finished(deployment, ctx.usage)
            if ctx.trace is not None:
                ctx.trace.stream_closed(upstream)
            if ctx.usage is not None:
                ctx.cost_usd = router.price(deployment).cost(ctx.usage)
            usage = ctx.usage
            if usage is None and reservation is not None:
                # The client left before the usage chunk: charge the estimated prompt and what was
                # relayed (about one token per chunk), never nothing.
                usage = Usage(prompt_tokens=reservation.prompt_tokens,
                              completion_tokens=max(0, upstream.relayed - 1))
            self._admission.settle(reservation, router, deployment, usage)
            assembled = recorder.assembled() if recorder is not None else None
            if cache is not None and write is not None and assembled is not None:
                cache.store_later(write, assembled)

        return StreamResult(ctx, upstream, finished)

    @staticmethod
    def _record(ctx: RequestContext, routed: Routed[Any]) -> None:
        ctx.deployment = routed.deployment
        ctx.attempts = routed.attempts
        ctx.upstream_seconds = routed.upstream_seconds
        ctx.events = routed.events
