"""One contract for every VectorIndex: Qdrant edge in a temp dir, and the server adapter over
qdrant-client's ``:memory:`` mode."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient

from gateway.cache.types import EntryTags, PurgeFilter, VectorIndex
from gateway.cache.vector_edge import EdgeVectorIndex
from gateway.cache.vector_qdrant import QdrantVectorIndex

DIMS = 8
NOW = 1_000_000.0
LATER = NOW + 3600
TAGS = EntryTags(key_id="k1", team="red", alias="gpt")


def unit(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def near(base: list[float], amount: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return unit([b + amount * rng.uniform(-1, 1) for b in base])


BASE = unit([1, 2, 3, 4, 5, 6, 7, 8])
OTHER = unit([8, -7, 6, -5, 4, -3, 2, -1])


@pytest.fixture(params=["edge", "qdrant-memory"])
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorIndex]:
    built: VectorIndex
    if request.param == "edge":
        built = EdgeVectorIndex.open(tmp_path / "vectors", DIMS)
    else:
        built = QdrantVectorIndex(AsyncQdrantClient(location=":memory:"), DIMS, "contract")
    yield built
    await built.close()


async def add(index: VectorIndex, scope: str, vector: list[float], entry_id: str, *,
              expires_at: float = LATER, tags: EntryTags = TAGS, text: str | None = None) -> None:
    await index.add(scope, vector, entry_id=entry_id, text=text or f"text of {entry_id}", expires_at=expires_at,
                    tags=tags)


async def test_finds_the_entry_in_its_scope_with_its_text(index: VectorIndex) -> None:
    await add(index, "scope-a", BASE, "e1", text="how do I reverse a list")
    found = await index.search("scope-a", BASE, limit=3, min_score=0.5, now=NOW)
    assert [(m.entry_id, m.text) for m in found] == [("e1", "how do I reverse a list")]
    assert found[0].score == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("other_scope", ["scope-b", "scope-a ", "SCOPE-A", "scope-", "scope-a\0", ""])
async def test_every_scope_change_misses(index: VectorIndex, other_scope: str) -> None:
    await add(index, "scope-a", BASE, "e1")
    assert await index.search(other_scope, BASE, limit=5, min_score=0.0, now=NOW) == []
    assert len(await index.search("scope-a", BASE, limit=5, min_score=0.0, now=NOW)) == 1


async def test_same_entry_id_in_two_scopes_are_two_points(index: VectorIndex) -> None:
    await add(index, "scope-a", BASE, "e1", text="a")
    await add(index, "scope-b", BASE, "e1", text="b")
    assert [m.text for m in await index.search("scope-a", BASE, limit=5, min_score=0.0, now=NOW)] == ["a"]
    assert [m.text for m in await index.search("scope-b", BASE, limit=5, min_score=0.0, now=NOW)] == ["b"]


async def test_an_expired_point_is_never_returned(index: VectorIndex) -> None:
    await add(index, "s", BASE, "old", expires_at=NOW - 1)
    await add(index, "s", BASE, "edge", expires_at=NOW)
    await add(index, "s", near(BASE, 0.05, 1), "live", expires_at=NOW + 1)
    found = await index.search("s", BASE, limit=5, min_score=0.0, now=NOW)
    assert [m.entry_id for m in found] == ["live"]
    assert await index.search("s", BASE, limit=5, min_score=0.0, now=NOW + 1) == []


async def test_sweep_removes_expired_points_and_counts_them(index: VectorIndex) -> None:
    await add(index, "s", BASE, "old1", expires_at=NOW - 10)
    await add(index, "t", OTHER, "old2", expires_at=NOW)
    await add(index, "s", near(BASE, 0.1, 2), "live", expires_at=LATER)
    assert await index.sweep(NOW) == 2
    assert await index.sweep(NOW) == 0
    # Swept for good: not even a search "in the past" finds them.
    assert [m.entry_id for m in await index.search("s", BASE, limit=5, min_score=0.0, now=0)] == ["live"]
    assert await index.search("t", OTHER, limit=5, min_score=0.0, now=0) == []


@pytest.mark.parametrize(("which", "left"), [
    (PurgeFilter(key_id="k1"), {"k2-blue", "k3-none"}),
    (PurgeFilter(team="blue"), {"k1-red", "k3-none"}),
    (PurgeFilter(alias="emb"), {"k1-red", "k2-blue"}),
    (PurgeFilter(key_id="k2", alias="gpt"), {"k1-red", "k3-none"}),
    (PurgeFilter(key_id="k2", alias="emb"), {"k1-red", "k2-blue", "k3-none"}),
    (PurgeFilter(), set()),
])
async def test_purge_by_key_team_alias_or_all(index: VectorIndex, which: PurgeFilter, left: set[str]) -> None:
    await add(index, "s", near(BASE, 0.1, 1), "k1-red", tags=EntryTags("k1", "red", "gpt"))
    await add(index, "s", near(BASE, 0.1, 2), "k2-blue", tags=EntryTags("k2", "blue", "gpt"))
    await add(index, "s", near(BASE, 0.1, 3), "k3-none", tags=EntryTags("k3", None, "emb"))
    purged = await index.purge(which)
    assert purged == 3 - len(left)
    found = await index.search("s", BASE, limit=10, min_score=0.0, now=NOW)
    assert {m.entry_id for m in found} == left


async def test_limit_and_best_first(index: VectorIndex) -> None:
    for i, amount in enumerate([0.8, 0.05, 0.4, 0.2]):
        await add(index, "s", near(BASE, amount, i), f"e{amount}")
    found = await index.search("s", BASE, limit=3, min_score=-1.0, now=NOW)
    assert [m.entry_id for m in found] == ["e0.05", "e0.2", "e0.4"]
    assert [m.score for m in found] == sorted((m.score for m in found), reverse=True)


async def test_min_score_is_a_floor(index: VectorIndex) -> None:
    await add(index, "s", BASE, "same")
    await add(index, "s", OTHER, "other")
    between = sum(a * b for a, b in zip(BASE, OTHER, strict=True))
    found = await index.search("s", BASE, limit=5, min_score=between + 0.01, now=NOW)
    assert [m.entry_id for m in found] == ["same"]
    assert all(m.score >= between + 0.01 for m in found)
    assert await index.search("s", OTHER, limit=5, min_score=0.9999, now=NOW) != []
    assert await index.search("s", near(OTHER, 1.5, 9), limit=5, min_score=0.9999, now=NOW) == []


async def test_re_adding_replaces_the_point(index: VectorIndex) -> None:
    await add(index, "s", BASE, "e1", text="first", expires_at=NOW - 1)
    await add(index, "s", OTHER, "e1", text="second", expires_at=LATER)
    found = await index.search("s", OTHER, limit=5, min_score=-1.0, now=NOW)
    assert [(m.entry_id, m.text) for m in found] == [("e1", "second")]
    assert found[0].score == pytest.approx(1.0, abs=1e-4)
    assert await index.sweep(NOW) == 0


async def test_close_is_idempotent_and_final(index: VectorIndex) -> None:
    await add(index, "s", BASE, "e1")
    await index.close()
    await index.close()
    with pytest.raises(RuntimeError, match="closed"):
        await index.search("s", BASE, limit=1, min_score=0.0, now=NOW)


async def test_edge_index_persists_under_its_path(tmp_path: Path) -> None:
    first = EdgeVectorIndex.open(tmp_path / "v", DIMS)
    await add(first, "s", BASE, "kept")
    await first.close()
    second = EdgeVectorIndex.open(tmp_path / "v", DIMS)
    try:
        assert [m.entry_id for m in await second.search("s", BASE, limit=1, min_score=0.5, now=NOW)] == ["kept"]
    finally:
        await second.close()


async def test_edge_temporary_index_is_removed_on_close() -> None:
    index = EdgeVectorIndex.open(None, DIMS)
    where = index._path
    await add(index, "s", BASE, "e1")
    assert where.exists()
    await index.close()
    assert not where.exists()


async def test_qdrant_refuses_a_collection_of_other_dimensions() -> None:
    client = AsyncQdrantClient(location=":memory:")
    await QdrantVectorIndex(client, DIMS, "c").ensure_collection()
    with pytest.raises(RuntimeError, match="size 8"):
        await QdrantVectorIndex(client, DIMS * 2, "c").ensure_collection()
    await client.close()
