"""bench/closed_loop.py against a real HTTP server: connections kept from the warm-up into the window,
unique bodies, lengths and chunked answers, errors counted, and the opening burst told apart."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import closed_loop

LATENCY_S = 0.05
CONNECTIONS = 8


@dataclass
class Seen:
    prompts: list[str] = field(default_factory=list)
    peers: set[tuple[str, int]] = field(default_factory=set)
    authorization: set[str] = field(default_factory=set)


@dataclass
class Server:
    base: str
    seen: Seen


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    seen = Seen()

    async def record(request: web.Request) -> None:
        body = await request.json()
        seen.prompts.append(body["messages"][0]["content"])
        seen.peers.add(request.transport.get_extra_info("peername") if request.transport else ("?", 0))
        seen.authorization.add(request.headers.get("authorization", ""))
        await asyncio.sleep(LATENCY_S)

    async def sized(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"ok": True})

    async def chunked(request: web.Request) -> web.StreamResponse:
        await record(request)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"ok":')
        await response.write(b" true}")
        await response.write_eof()
        return response

    async def failing(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"error": {"message": "no"}}, status=500)

    app = web.Application()
    app.router.add_post("/sized", sized)
    app.router.add_post("/chunked", chunked)
    app.router.add_post("/failing", failing)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{port}", seen)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def _plan(url: str, nonce: str) -> closed_loop.Plan:
    template = json.dumps({"model": "m", "messages": [{"role": "user", "content": "prompt @N@"}]})
    return closed_loop.Plan(url, lambda n: template.replace("@N@", f"{nonce}-{n}").encode(),
                            (("Authorization", "Bearer sk-test"),), CONNECTIONS, warmup_s=0.3, duration_s=0.6)


def _reset(seen: Seen) -> None:
    seen.prompts.clear()
    seen.peers.clear()
    seen.authorization.clear()


@pytest.mark.parametrize("path", ["/sized", "/chunked"])
def test_window_runs_on_the_warm_up_connections_with_unique_bodies(server: Server, path: str) -> None:
    _reset(server.seen)
    edges: list[str] = []
    result = closed_loop.run(_plan(server.base + path, path), edges.append)
    assert edges == ["start", "end"]
    assert result.errors == {}
    # Every request of the warm-up and the window went over the same CONNECTIONS connections.
    assert len(server.seen.peers) == CONNECTIONS
    assert len(server.seen.prompts) == len(set(server.seen.prompts)) == result.answered
    assert server.seen.authorization == {"Bearer sk-test"}
    # One request in flight per connection: at most one answer per connection per LATENCY_S.
    assert 0 < result.requests <= CONNECTIONS * (0.6 / LATENCY_S + 1)
    assert result.window.p50_ms >= LATENCY_S * 1e3
    assert result.window.p50_ms <= result.window.p99_ms <= result.window.max_ms
    # The warm-up's answers are counted, but not in the window.
    assert result.answered > result.requests
    assert result.burst.p50_ms >= LATENCY_S * 1e3


def test_error_answers_are_counted_in_the_window(server: Server) -> None:
    _reset(server.seen)
    result = closed_loop.run(_plan(server.base + "/failing", "failing"))
    assert result.requests > 0
    assert result.errors == {"non200": result.requests}


def test_an_unanswered_request_is_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # A listener that accepts and never answers.
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    monkeypatch.setattr(closed_loop, "TIMEOUT_S", 0.2)
    try:
        port = listener.getsockname()[1]
        plan = closed_loop.Plan(f"http://127.0.0.1:{port}/x", lambda n: b"{}", (), 3, warmup_s=0.05, duration_s=0.1)
        result = closed_loop.run(plan)
    finally:
        listener.close()
    assert result.requests == 0
    assert result.errors == {"timeout": 3}


@given(st.lists(st.floats(min_value=0, max_value=1e3, allow_nan=False), min_size=1, max_size=200),
       st.sampled_from([50, 90, 99, 100]))
def test_nearest_rank_has_the_percentile_at_or_below_it(samples: list[float], percentile: int) -> None:
    ordered = sorted(samples)
    value = closed_loop.nearest_rank(ordered, percentile)
    at_or_below = sum(1 for s in ordered if s <= value)
    below = sum(1 for s in ordered if s < value)
    assert at_or_below * 100 >= percentile * len(ordered)
    assert below * 100 < percentile * len(ordered)
