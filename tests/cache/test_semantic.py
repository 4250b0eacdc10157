"""find_hit: the gateway's semantic lookup, with the real local embedder over the embedded index."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.cache.embedders import LocalEmbedder
from gateway.cache.semantic import find_hit, lookup, remember
from gateway.cache.types import EntryTags
from gateway.cache.vector_edge import EdgeVectorIndex

NOW = 1_000.0
TAGS = EntryTags(key_id="k", team=None, alias="gpt")


@pytest.fixture(scope="module")
def embedder() -> Iterator[LocalEmbedder]:
    built = LocalEmbedder.load()
    yield built
    built.close()


@pytest.fixture
async def index() -> AsyncIterator[EdgeVectorIndex]:
    built = EdgeVectorIndex.open(None, 384)
    yield built
    await built.close()


async def cache(index: EdgeVectorIndex, embedder: LocalEmbedder, scope: str, text: str, entry_id: str,
                expires_at: float = NOW + 60) -> None:
    vector = await embedder.embed(text)
    await remember(index, scope, vector, text, entry_id=entry_id, expires_at=expires_at, tags=TAGS)


async def test_a_paraphrase_hits_at_the_default_threshold(index: EdgeVectorIndex, embedder: LocalEmbedder) -> None:
    await cache(index, embedder, "s", "How do I reverse a list in Python?", "e1")
    hit = await find_hit(index, embedder, "s", "What's the best way to reverse a Python list?",
                         embedder.default_threshold, NOW)
    assert hit is not None and hit.entry_id == "e1"
    assert embedder.default_threshold <= hit.score < 1


async def test_another_scope_or_an_expired_entry_misses(index: EdgeVectorIndex, embedder: LocalEmbedder) -> None:
    await cache(index, embedder, "s", "How do I reverse a list in Python?", "e1", expires_at=NOW + 1)
    text = "How do I reverse a list in Python?"
    assert await find_hit(index, embedder, "other", text, 0.5, NOW) is None
    assert await find_hit(index, embedder, "s", text, 0.5, NOW + 1) is None
    assert await find_hit(index, embedder, "s", text, 0.5, NOW) is not None


async def test_a_guard_vetoes_a_close_direction_swap(index: EdgeVectorIndex, embedder: LocalEmbedder) -> None:
    await cache(index, embedder, "s", "How do I convert USD to EUR?", "e1")
    query = "How do I convert EUR to USD?"
    found = await lookup(index, embedder, "s", query, 0.8, NOW)
    assert found.match is None
    assert found.rejected is not None and found.rejected[1] == "order"
    assert found.rejected[0].score > 0.9  # the embedding alone would have served it
    assert await find_hit(index, embedder, "s", query, 0.8, NOW, guards=False) is not None
    assert len(found.vector) == 384


async def test_two_equally_close_entries_make_an_ambiguous_miss(index: EdgeVectorIndex,
                                                                embedder: LocalEmbedder) -> None:
    # Two different cached questions the query fits exactly as well (here: the same vector).
    vector = await embedder.embed("How can I remove duplicates from a Python list?")
    await remember(index, "s", vector, "How can I remove duplicates from a Python list?", entry_id="e1",
                   expires_at=NOW + 60, tags=TAGS)
    await remember(index, "s", vector, "How do I drop duplicates from a Python list?", entry_id="e2",
                   expires_at=NOW + 60, tags=TAGS)
    query = "How do I remove duplicates from a list in Python?"
    found = await lookup(index, embedder, "s", query, 0.7, NOW)
    assert found.match is None and found.rejected is not None and found.rejected[1] == "ambiguous"
    hit = await find_hit(index, embedder, "s", query, 0.7, NOW, margin=0.0)
    assert hit is not None and hit.entry_id in {"e1", "e2"}


async def test_unrelated_text_misses(index: EdgeVectorIndex, embedder: LocalEmbedder) -> None:
    await cache(index, embedder, "s", "How do I reverse a list in Python?", "e1")
    assert await find_hit(index, embedder, "s", "What is the weather in Paris today?",
                          embedder.default_threshold, NOW) is None
