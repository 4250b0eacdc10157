"""Everything the app builds at start-up, in one typed bundle kept on ``app.state.services``."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.requests import Request

from gateway.api.abuse import AbuseGuard
from gateway.auth import MasterKeyAuthenticator, Principal
from gateway.cache.service import ResponseCache
from gateway.errors import AuthenticationFailed
from gateway.http_headers import header
from gateway.keys.admin import KeyAdmin
from gateway.keys.authenticator import KeyAuthenticator
from gateway.keys.store import KeyStore
from gateway.observability.observer import RequestObserver
from gateway.pipeline import Pipeline, RequestContext
from gateway.runtime import RoutingTable
from gateway.settings import Settings

log = logging.getLogger("gateway")


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    table: RoutingTable
    pipeline: Pipeline
    master: MasterKeyAuthenticator
    keys: KeyAuthenticator
    key_store: KeyStore
    key_admin: KeyAdmin
    abuse: AbuseGuard
    #: "demo" when serving the built-in mock upstream, otherwise the routing file's path.
    source: str
    observer: RequestObserver
    #: The response cache (both tiers).
    cache: ResponseCache | None = None

    def observe(self, ctx: RequestContext, status: int, error_code: str | None) -> None:
        """Tell the observer once per request; a failing observer never fails a request."""
        if ctx.observed:
            return
        ctx.observed = True
        ctx.status, ctx.error_code = status, error_code
        try:
            self.observer.request_finished(ctx, status, error_code)
        except Exception:
            log.exception("request observer failed")

    async def authenticate(self, request: Request, ctx: RequestContext) -> Principal:
        """Stage 1 with the HTTP-level guard around it: addresses that keep failing are turned away."""
        self.abuse.check_auth_allowed(request)
        try:
            headers = request.headers
            return await self.pipeline.authenticate(ctx, header(headers, "authorization"), header(headers, "api-key"))
        except AuthenticationFailed:
            self.abuse.auth_failed(request)
            raise
