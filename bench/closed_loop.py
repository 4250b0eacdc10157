"""A closed-loop load generator whose warm-up and measured window share their connections.

wrk opens every connection of a run at once, and each connection sends its first request at once, so
each wrk window starts with a burst: with a 500 ms upstream and 256 connections, that burst is a
tenth of a 5 s window's requests and is its whole p99. A warm-up run of wrk does not help, since the
measured run opens its connections again. This generator keeps its connections from the warm-up into
the window and reports the two apart:

* the window: requests that completed in it, in the steady state the warm-up led to;
* the opening burst: every connection's first request, all sent in the same millisecond.

Each connection is an asyncio protocol on uvloop with httptools parsing the responses, and a request's
latency is taken in the callback that completes its response, before any task runs, so a wave of 256
responses arriving together is timed as it arrived, not as a Python client got round to it (a few
microseconds per response, against ~100 µs through aiohttp). Only what the slow scenarios need:
HTTP/1.1 keep-alive POSTs of JSON, answers with a length or chunked; no TLS, no streaming checks, and
a connection the server closes is counted as a read error and not opened again (wrk reopens it; none
of the targets closes a keep-alive connection within a window).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import httptools
import uvloop

#: A request not answered within this is a timeout (wrk's default in bench/wrk_runner.py).
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Latencies:
    p50_ms: float
    p99_ms: float
    max_ms: float

    @staticmethod
    def of(samples_s: list[float]) -> Latencies:
        if not samples_s:
            return Latencies(float("nan"), float("nan"), float("nan"))
        ordered = sorted(samples_s)
        return Latencies(nearest_rank(ordered, 50) * 1e3, nearest_rank(ordered, 99) * 1e3, ordered[-1] * 1e3)


def nearest_rank(ordered: list[float], percentile: float) -> float:
    """The smallest sample with at least `percentile` % of the samples at or below it (as wrk's)."""
    rank = max(1, -(-len(ordered) * percentile // 100))
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class LoopResult:
    requests: int  # completed in the window
    duration_s: float
    window: Latencies
    burst: Latencies  # the first request of every connection, all sent at once
    errors: dict[str, int]  # only the kinds that occurred: non200, read (connection lost), timeout
    answered: int  # responses over the whole run, warm-up included


@dataclass(frozen=True)
class Plan:
    url: str
    body: Callable[[int], bytes]  # request number → JSON body (unique prompts)
    headers: tuple[tuple[str, str], ...]
    connections: int
    warmup_s: float
    duration_s: float


@dataclass
class _Tally:
    window_start: float = float("inf")
    window_end: float = float("inf")
    stopping: bool = False
    sent: int = 0
    window: list[float] = field(default_factory=list)
    burst: list[float] = field(default_factory=list)
    answered: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class _Connection(asyncio.Protocol):
    def __init__(self, plan: Plan, head: bytes, tally: _Tally, closed: asyncio.Future[None]) -> None:
        self._plan, self._head, self._tally, self._closed = plan, head, tally, closed
        self._transport: asyncio.WriteTransport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._sent_at = 0.0
        self._first = True
        self._busy = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.WriteTransport, transport)  # uvloop's do not subclass asyncio's
        self._send()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._tally.error("read")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._busy:
            self._tally.error("read")
        if not self._closed.done():
            self._closed.set_result(None)

    # httptools callbacks
    def on_message_complete(self) -> None:
        now = time.perf_counter()
        latency = now - self._sent_at
        tally = self._tally
        self._busy = False
        tally.answered += 1
        if self._first:
            tally.burst.append(latency)
            self._first = False
        if tally.window_start <= now <= tally.window_end:
            tally.window.append(latency)
            if self._parser.get_status_code() != 200:
                tally.error("non200")
        if tally.stopping:
            self.close()
        else:
            self._send()

    def _send(self) -> None:
        assert self._transport is not None
        tally = self._tally
        body = self._plan.body(tally.sent)
        tally.sent += 1
        self._busy = True
        self._sent_at = time.perf_counter()
        self._transport.write(self._head + b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def close(self) -> None:
        self._busy = False  # closed on purpose: not a lost connection
        if self._transport is not None:
            self._transport.close()


def _head(plan: Plan) -> tuple[str, int, bytes]:
    parts = urlsplit(plan.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in plan.headers]
    return host, port, ("\r\n".join(lines) + "\r\n").encode()


async def _run(plan: Plan, on_window: Callable[[str], None]) -> LoopResult:
    loop = asyncio.get_running_loop()
    host, port, head = _head(plan)
    tally = _Tally()
    closed: list[asyncio.Future[None]] = [loop.create_future() for _ in range(plan.connections)]
    connections = await asyncio.gather(*(
        loop.create_connection(lambda done=done: _Connection(plan, head, tally, done), host, port)  # type: ignore[misc]
        for done in closed))
    await asyncio.sleep(plan.warmup_s)
    # The snapshots read /proc for a few milliseconds: off the loop, so that no response waits for them.
    tally.window_start = time.perf_counter()
    await loop.run_in_executor(None, on_window, "start")
    await asyncio.sleep(plan.duration_s - (time.perf_counter() - tally.window_start))
    tally.window_end = time.perf_counter()
    await loop.run_in_executor(None, on_window, "end")
    tally.stopping = True
    # Each connection closes once its request in flight is answered; one still waiting after wrk's
    # timeout is a timeout.
    await asyncio.wait(closed, timeout=TIMEOUT_S)
    for (_, protocol), done in zip(connections, closed, strict=True):
        if not done.done():
            tally.error("timeout")
            protocol.close()
    return LoopResult(len(tally.window), tally.window_end - tally.window_start, Latencies.of(tally.window),
                      Latencies.of(tally.burst), dict(tally.errors), tally.answered)


def run(plan: Plan, on_window: Callable[[str], None] = lambda _: None) -> LoopResult:
    """Open `plan.connections` at once, keep each with one request in flight for the warm-up and the
    window; `on_window("start")` and `("end")` are called at the window's edges (CPU snapshots)."""
    return uvloop.run(_run(plan, on_window))
