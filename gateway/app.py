"""``create_app(settings)`` and the lifespan that builds every client the gateway uses.

Nothing here is a module-level singleton: two apps with different settings can live in one process
(the tests do exactly that).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from opentelemetry.sdk.trace.export import SpanExporter

from gateway import __version__
from gateway.api import admin, cache_admin, health, metrics_route, openai
from gateway.api.abuse import AbuseGuard
from gateway.api.error_handler import install_error_handlers
from gateway.auth import MasterKeyAuthenticator
from gateway.cache.wiring import open_cache
from gateway.config import RoutingConfig, demo_config, load_config
from gateway.keys.admin import KeyAdmin
from gateway.keys.authenticator import KeyAuthenticator
from gateway.limits.admission import Admission, BackgroundWork
from gateway.observability.metrics import PrometheusObserver
from gateway.observability.middleware import TelemetryMiddleware
from gateway.observability.tracing import Tracing
from gateway.pipeline import Pipeline
from gateway.process_tuning import fix_mmap_threshold, settle_start_up_heap
from gateway.routing.litellm_engine import LitellmEngine
from gateway.routing.native import NativeEngine
from gateway.runtime import RoutingTable
from gateway.services import Services
from gateway.settings import Settings
from gateway.stores import open_stores

log = logging.getLogger("gateway")

#: Placeholder-looking master keys are refused outside the demo.
MIN_MASTER_KEY_LENGTH = 16


def _upstream_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
    # A large read buffer so that a long SSE line (a big tool-call chunk) is not split or refused.
    # No cookie jar: a provider's cookies (Cloudflare's, say) must not travel from one tenant's
    # request to the next, and filtering a jar on every request costs time for nothing.
    return aiohttp.ClientSession(connector=connector, read_bufsize=2**20, auto_decompress=True,
                                 raise_for_status=False, trust_env=False, cookie_jar=aiohttp.DummyCookieJar())


async def _start_demo_upstream(stack: AsyncExitStack) -> str:
    from gateway.mock_upstream.server import start

    runner, port = await start("127.0.0.1", 0)
    stack.push_async_callback(runner.cleanup)
    log.info("demo mode: built-in mock upstream on 127.0.0.1:%d serves the 'demo' model", port)
    return f"http://127.0.0.1:{port}/v1"


async def _watch_config(table: RoutingTable, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        table.reload_if_changed()


def _install_sighup(table: RoutingTable) -> None:
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, table.reload)


def _background(stack: AsyncExitStack, coroutine: Coroutine[Any, Any, None]) -> None:
    task = asyncio.create_task(coroutine)
    stack.callback(task.cancel)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if settings.master_key is None:
        raise RuntimeError("GATEWAY_MASTER_KEY is not set (`llm-gateway serve` generates one in demo mode)")
    if not settings.demo and len(settings.master_key.get_secret_value()) < MIN_MASTER_KEY_LENGTH:
        raise RuntimeError(f"GATEWAY_MASTER_KEY must be at least {MIN_MASTER_KEY_LENGTH} characters")
    async with AsyncExitStack() as stack:
        # Off unless OTEL_* asks for it; the provider is this app's own, flushed last at shutdown.
        tracing = Tracing.build(settings, exporter=getattr(app.state, "span_exporter", None))
        if tracing is not None:
            stack.callback(tracing.shutdown)
        app.state.tracing = tracing
        session = _upstream_session()
        stack.push_async_callback(session.close)
        config: RoutingConfig
        if settings.config is None:
            config = demo_config(await _start_demo_upstream(stack))
            source = "demo"
        else:
            config = load_config(settings.config)
            source = str(settings.config)
        table = RoutingTable(config, {"native": NativeEngine(session), "litellm": LitellmEngine(session)},
                             source=settings.config)
        master = MasterKeyAuthenticator(settings.master_key)
        stores = await open_stores(settings, stack)
        keys = KeyAuthenticator(stores.keys, master, ttl=settings.key_cache_seconds)
        _background(stack, keys.follow_changes())
        background = BackgroundWork()
        stack.push_async_callback(background.drain)  # settle what is in flight before stores close
        abuse = AbuseGuard(
            storage_uri=settings.redis_url.get_secret_value() if settings.redis_url else "memory://",
            auth_failures=settings.auth_failure_limit, admin_requests=settings.admin_rate_limit,
            timeout=settings.redis_timeout_seconds,
        )
        observer = PrometheusObserver(table)  # a fresh registry per app
        stack.callback(observer.close)
        cache = await open_cache(settings, table, stores.cache_entries, background, stack, shared=stores.shared,
                                 on_backend_error=observer.cache_backend_failed)
        stack.push_async_callback(background.drain)  # finish cache writes before the vector index closes
        _background(stack, cache.sweep_forever())
        pipeline = Pipeline(keys, table, Admission(stores.limiter, background), cache)
        app.state.metrics = observer
        app.state.services = Services(
            settings=settings, table=table, pipeline=pipeline, master=master, keys=keys,
            key_store=stores.keys, key_admin=KeyAdmin(stores.keys, stores.limiter), abuse=abuse, source=source,
            observer=observer, cache=cache,
        )
        if settings.config is not None:
            _install_sighup(table)
            if settings.config_poll_seconds > 0:
                _background(stack, _watch_config(table, settings.config_poll_seconds))
        log.info("llm-gateway %s ready: %d aliases from %s, keys in %s", __version__,
                 len(table.router.aliases()), source, stores.keys.name)
        settle_start_up_heap()
        fix_mmap_threshold()
        yield


class GatewayApp(FastAPI):
    """FastAPI, with an OpenAPI document that also describes the data plane's plain Starlette routes."""

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, with the data plane's routes (plain Starlette routes, for speed) in it."""
        if not self.openapi_schema:
            self.openapi_schema = get_openapi(title=self.title, version=self.version, summary=self.summary,
                                              routes=[*openai.documented(), *self.routes])
        return self.openapi_schema


def create_app(settings: Settings | None = None, *, span_exporter: SpanExporter | None = None) -> FastAPI:
    """``span_exporter`` turns tracing on with that exporter (tests, in-memory), whatever OTEL_* says."""
    app = GatewayApp(
        title="llm-gateway",
        version=__version__,
        summary="An OpenAI-compatible LLM gateway on litellm's provider layer.",
        lifespan=lifespan,
        # The gateway's own middleware writes the server spans, on the app's provider. FastAPI's
        # native telemetry would look up the global providers on every request (~1 % of CPU) and,
        # with a global provider set, write a second span per request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings or Settings()
    app.state.span_exporter = span_exporter
    app.add_middleware(TelemetryMiddleware)  # server spans and the access log
    install_error_handlers(app, redis=app.state.settings.redis_url is not None)
    # Before include_router, whose bookkeeping then covers these routes too (FastAPI has no public
    # call that adds a ready-made Starlette route).
    app.router.routes.extend(openai.data_plane())
    app.include_router(openai.router)
    app.include_router(admin.router)
    app.include_router(cache_admin.router)
    app.include_router(health.router)
    app.include_router(metrics_route.router)
    return app
