"""Build, start and run the mock upstream server.

The server runs with ``handler_cancellation=True``: aiohttp 3.14 defaults it to off, and without it
a handler keeps running after its client disconnects, so ``hang`` would never end and
``/mock/stats`` could not count cancellations.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from aiohttp import web

from gateway.mock_upstream import anthropic_routes, introspection, openai_routes
from gateway.mock_upstream.stats import STATE, MockState, track

MAX_BODY = 64 * 1024 * 1024
"""Largest request body accepted; aiohttp's 1 MiB default is too small for long-context tests."""
SHUTDOWN_TIMEOUT = 1.0
"""Seconds ``runner.cleanup()`` waits for in-flight requests (a ``hang`` would wait forever)."""


def create_app() -> web.Application:
    """A fresh application with its own counters and request log."""
    app = web.Application(middlewares=[track], client_max_size=MAX_BODY)
    app[STATE] = MockState()
    openai_routes.add_routes(app)
    anthropic_routes.add_routes(app)
    introspection.add_routes(app)
    return app


async def start(host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve a new app in the running loop; returns the runner (call ``cleanup()``) and the bound port."""
    runner = web.AppRunner(
        create_app(),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1])
    return runner, bound


async def _serve(host: str, port: int) -> None:
    runner, bound = await start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"mock upstream listening on http://{host}:{bound}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM, on uvloop when it is installed."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(host, port))
