"""The semantic tier's lookup: embed the last user message, search its scope, let the guards veto.

This is the one code path both the gateway's cache service and bench/semantic_cache_eval.py run, so
the measured precision is the served precision. The scope comes from ``request_key.semantic_query``
(it already includes the embedder's id); the text is the last user message's plain text.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.cache.guards import GuardName, disagreement
from gateway.cache.types import Embedder, EntryTags, VectorIndex, VectorMatch

#: Two different cached texts within this much similarity of each other make the query ambiguous:
#: a miss. Only the best candidate is ever served (falling through to the next one after a guard's
#: veto served more false hits than it saved: docs/caching.md, "Semantic tier: quality").
AMBIGUITY_MARGIN = 0.02


@dataclass(slots=True)
class SemanticLookup:
    """What one lookup found; ``vector`` is kept so a miss can be stored without embedding twice."""

    vector: list[float]
    match: VectorMatch | None = None
    #: The best candidate above the threshold when it was refused, and why: a guard's name, or
    #: "ambiguous" (for traces and logs).
    rejected: tuple[VectorMatch, GuardName] | None = None


async def lookup(index: VectorIndex, embedder: Embedder, scope: str, text: str, threshold: float, now: float,
                 *, guards: bool = True, margin: float = AMBIGUITY_MARGIN) -> SemanticLookup:
    vector = await embedder.embed(text)
    result = SemanticLookup(vector=vector)
    found = await index.search(scope, vector, limit=2, min_score=threshold, now=now)
    if not found:
        return result
    best = found[0]
    if len(found) > 1 and best.score - found[1].score < margin and found[1].text != best.text:
        result.rejected = (best, "ambiguous")
        return result
    veto = disagreement(text, best.text) if guards else None
    if veto is not None:
        result.rejected = (best, veto)
        return result
    result.match = best
    return result


async def find_hit(index: VectorIndex, embedder: Embedder, scope: str, text: str, threshold: float,
                   now: float, *, guards: bool = True, margin: float = AMBIGUITY_MARGIN) -> VectorMatch | None:
    """The best cached entry of ``scope`` whose text is at least ``threshold`` similar to ``text``,
    live at ``now``, not as close to another cached text (``margin``), and that every lexical guard
    agrees with; None on a miss."""
    return (await lookup(index, embedder, scope, text, threshold, now, guards=guards, margin=margin)).match


async def remember(index: VectorIndex, scope: str, vector: list[float], text: str, *, entry_id: str,
                   expires_at: float, tags: EntryTags) -> None:
    """Index a stored response under ``scope`` (the vector from the miss's ``lookup``)."""
    await index.add(scope, vector, entry_id=entry_id, text=text, expires_at=expires_at, tags=tags)
