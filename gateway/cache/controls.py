"""A request's cache controls, from its headers, checked against the operator's bounds.

    x-gateway-cache: no-cache | no-store | no-cache, no-store    skip the lookup / the write
    Cache-Control:   no-cache | no-store (other directives ignored)
    x-gateway-cache-ttl: <seconds>         capped at cache_settings.max_ttl_seconds
    x-gateway-cache-threshold: <float>     within [min_threshold, max_threshold], else 400
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config import CacheSettings
from gateway.errors import InvalidRequest
from gateway.http_headers import header

CACHE_HEADER = "x-gateway-cache"
TTL_HEADER = "x-gateway-cache-ttl"
THRESHOLD_HEADER = "x-gateway-cache-threshold"
DIRECTIVES = frozenset({"no-cache", "no-store"})


@dataclass(frozen=True, slots=True)
class RequestControls:
    no_cache: bool = False
    no_store: bool = False
    ttl_seconds: float | None = None
    threshold: float | None = None


def _number(headers: Mapping[str, str], name: str) -> float | None:
    raw = header(headers, name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        raise InvalidRequest(f"the {name} header must be a number, got {raw[:40]!r}", param=name) from None
    if not math.isfinite(value):
        raise InvalidRequest(f"the {name} header must be a finite number", param=name)
    return value


def parse_controls(headers: Mapping[str, str], settings: CacheSettings) -> RequestControls:
    """Raises InvalidRequest (400) naming the header when a value is unusable."""
    directives: set[str] = set()
    raw = header(headers, CACHE_HEADER)
    if raw is not None:
        for part in raw.split(","):
            word = part.strip().lower()
            if word not in DIRECTIVES:
                raise InvalidRequest(f"the {CACHE_HEADER} header takes no-cache and/or no-store, got {part.strip()!r}",
                                     param=CACHE_HEADER)
            directives.add(word)
    for part in (header(headers, "cache-control") or "").split(","):
        word = part.strip().lower()
        if word in DIRECTIVES:
            directives.add(word)
    ttl = _number(headers, TTL_HEADER)
    if ttl is not None:
        if ttl <= 0:
            raise InvalidRequest(f"the {TTL_HEADER} header must be a positive number of seconds", param=TTL_HEADER)
        ttl = min(ttl, settings.max_ttl_seconds)
    threshold = _number(headers, THRESHOLD_HEADER)
    if threshold is not None and not settings.min_threshold <= threshold <= settings.max_threshold:
        raise InvalidRequest(f"the {THRESHOLD_HEADER} header must be between {settings.min_threshold} and "
                             f"{settings.max_threshold}", param=THRESHOLD_HEADER)
    return RequestControls(no_cache="no-cache" in directives, no_store="no-store" in directives,
                           ttl_seconds=ttl, threshold=threshold)
