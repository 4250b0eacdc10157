"""What both vector backends do with the points Qdrant returns."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from gateway.cache.types import VectorMatch


class ScoredPoint(Protocol):
    """Qdrant's scored point, from the server client or the in-process engine alike."""

    @property
    def payload(self) -> Any: ...

    @property
    def score(self) -> float: ...


def live_matches(points: Iterable[ScoredPoint], scope: str, now: float) -> list[VectorMatch]:
    """The points of ``scope`` that have not expired, as matches. The engine already filtered on both;
    checking again costs nothing and keeps the isolation invariant visible where results leave."""
    matches = []
    for point in points:
        payload = point.payload or {}
        if payload.get("scope") != scope or float(payload.get("expires_at", 0.0)) <= now:
            continue
        matches.append(VectorMatch(entry_id=str(payload["entry_id"]), score=float(point.score),
                                   text=str(payload.get("text", ""))))
    return matches
