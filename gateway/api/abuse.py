"""Per-address limits on failed authentications and on /admin, through slowapi's limiter.

slowapi's decorators need a limiter at import time (a module global); we build its ``Limiter`` in
the lifespan instead and call its rate limiter directly. With Redis configured the counts live there
and hold across replicas; otherwise they are per process. When Redis does not answer, the counts
fall back to this process's memory: an abuse limit must never turn into an outage.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter, RateLimiter
from slowapi import Limiter
from slowapi.util import get_remote_address
from starlette.requests import Request

from gateway.errors import RateLimited
from gateway.keys.store import store_errors
from gateway.stores import redis_retry_policy

log = logging.getLogger("gateway.abuse")
T = TypeVar("T")
#: Bound on the blocked-address table; past it the table starts over (an attacker rotating addresses
#: must not grow the gateway's memory).
MAX_BLOCKED_ADDRESSES = 100_000


class AbuseGuard:
    def __init__(self, *, storage_uri: str, auth_failures: str, admin_requests: str,
                 timeout: float = 0.25, probe_interval: float = 1.0) -> None:
        # limits' Redis storage is synchronous: its calls block the event loop, so they get the
        # same short timeouts as every other Redis call, and a failure sends counting to this
        # process's memory for probe_interval seconds instead of blocking every request again.
        options: dict[str, Any] = ({"socket_timeout": timeout, "socket_connect_timeout": timeout,
                                    "retry": redis_retry_policy()} if storage_uri.startswith("redis") else {})
        self._limiter = Limiter(key_func=get_remote_address, storage_uri=storage_uri, key_prefix="gw-abuse",
                                swallow_errors=True, in_memory_fallback_enabled=True, storage_options=options)
        self._probe_interval = probe_interval
        self._down_until = 0.0
        #: Addresses over the failed-authentication limit, until when (monotonic seconds).
        self._blocked: dict[str, float] = {}
        self._local: RateLimiter = FixedWindowRateLimiter(MemoryStorage())
        self._auth_failures: RateLimitItem = parse(auth_failures)
        self._admin_requests: RateLimitItem = parse(admin_requests)

    def _call(self, operation: Callable[[RateLimiter], T]) -> T:
        if time.monotonic() < self._down_until:
            return operation(self._local)
        try:
            return operation(self._limiter.limiter)
        except store_errors() as error:
            log.warning("abuse-limit storage unreachable (%s); counting in this process", type(error).__name__)
            self._down_until = time.monotonic() + self._probe_interval
            return operation(self._local)

    def _retry_after(self, item: RateLimitItem, address: str, scope: str) -> float:
        reset_at, _ = self._call(lambda limiter: limiter.get_window_stats(item, scope, address))
        return max(1.0, math.ceil(reset_at - time.time()))

    def check_auth_allowed(self, request: Request) -> None:
        """Refuse an address that failed authentication too often, before trying its key.

        Only this process's list of blocked addresses is read here, so a request with a good key
        costs no store call; the shared count is consulted when an authentication fails.
        """
        address = get_remote_address(request)
        until = self._blocked.get(address)
        if until is None:
            return
        remaining = until - time.monotonic()
        if remaining <= 0:
            del self._blocked[address]
            return
        raise RateLimited("too many failed authentications from this address", retry_after=math.ceil(remaining))

    def auth_failed(self, request: Request) -> None:
        address = get_remote_address(request)
        if not self._call(lambda limiter: limiter.hit(self._auth_failures, "auth", address)):
            retry_after = self._retry_after(self._auth_failures, address, "auth")
            if len(self._blocked) > MAX_BLOCKED_ADDRESSES:
                self._blocked.clear()
            self._blocked[address] = time.monotonic() + retry_after
            raise RateLimited("too many failed authentications from this address", retry_after=retry_after)

    def admin_request(self, request: Request) -> None:
        address = get_remote_address(request)
        if not self._call(lambda limiter: limiter.hit(self._admin_requests, "admin", address)):
            raise RateLimited("too many admin requests from this address",
                              retry_after=self._retry_after(self._admin_requests, address, "admin"))
