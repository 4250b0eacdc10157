"""Semantic-tier speed on the miss path: embedding, and the vector search at several index sizes.

    .venv/bin/python bench/cache_speed.py [--sizes 1000,10000,50000] [--queries 300] [--local-size 2000]

Embedding: the local embedder (LocalEmbedder.embed_sync, one call at a time) over the paraphrase set's
queries. Search: EdgeVectorIndex.search_sync with random unit vectors, scope filter and expiry filter on,
in two layouts (all points in the searched scope; points spread over 500 scopes), after the engine's
optimiser ran. qdrant-client's local mode (through QdrantVectorIndex over ``:memory:``) at a size
small enough to finish.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qdrant_client import AsyncQdrantClient  # noqa: E402

from gateway.cache.embedders import LocalEmbedder  # noqa: E402
from gateway.cache.types import EntryTags  # noqa: E402
from gateway.cache.vector_edge import EdgeVectorIndex  # noqa: E402
from gateway.cache.vector_qdrant import QdrantVectorIndex  # noqa: E402

DIMS = 384
NOW = 1e9
TAGS = EntryTags(key_id="bench", team=None, alias="bench")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, DIMS)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def embedding_row(queries: int) -> str:
    texts = [p["similar"] for p in json.loads((ROOT.parent / "shared/data/paraphrase_pairs_gptcache.json").read_text())]
    embedder = LocalEmbedder.load()
    for text in texts[:20]:
        embedder.embed_sync(text)
    samples = []
    for text in texts[:queries]:
        start = time.perf_counter()
        embedder.embed_sync(text)
        samples.append(time.perf_counter() - start)
    words = statistics.mean(len(t.split()) for t in texts[:queries])
    embedder.close()
    return (f"| embedding (local MiniLM int8, {queries} texts, mean {words:.0f} words) | n/a | "
            f"{pct(samples, 0.5):.2f} | {pct(samples, 0.95):.2f} |")


def edge_rows(size: int, scopes: int, queries: int) -> str:
    index = EdgeVectorIndex.open(None, DIMS)
    data = vectors(size, seed=size)
    batch = 2000
    for start in range(0, size, batch):
        index.add_many_sync([(f"scope-{i % scopes}", data[i].tolist(), f"e{i}", "cached text", NOW + 3600, TAGS)
                             for i in range(start, min(size, start + batch))])
    index.optimize()
    probes = vectors(queries, seed=7)
    for q in probes[:20]:
        index.search_sync("scope-0", q.tolist(), limit=2, min_score=0.0, now=NOW)
    samples = []
    for q in probes:
        listed = q.tolist()
        start = time.perf_counter()
        index.search_sync("scope-0", listed, limit=2, min_score=0.0, now=NOW)
        samples.append(time.perf_counter() - start)
    asyncio.run(index.close())
    return (f"| search, qdrant-edge, {size:,} points, {scopes} scope{'s' if scopes > 1 else ''} | "
            f"{size // scopes:,} | {pct(samples, 0.5):.2f} | {pct(samples, 0.95):.2f} |")


async def local_mode_row(size: int, scopes: int, queries: int) -> str:
    index = QdrantVectorIndex(AsyncQdrantClient(location=":memory:"), DIMS, "bench")
    data = vectors(size, seed=size)
    for i in range(size):
        await index.add(f"scope-{i % scopes}", data[i].tolist(), entry_id=f"e{i}", text="cached text",
                        expires_at=NOW + 3600, tags=TAGS)
    samples = []
    for q in vectors(queries, seed=7):
        listed = q.tolist()
        start = time.perf_counter()
        await index.search("scope-0", listed, limit=2, min_score=0.0, now=NOW)
        samples.append(time.perf_counter() - start)
    await index.close()
    return (f"| search, qdrant-client local mode, {size:,} points, {scopes} scope{'s' if scopes > 1 else ''} | "
            f"{size // scopes:,} | {pct(samples, 0.5):.2f} | {pct(samples, 0.95):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--local-size", type=int, default=2000)
    args = parser.parse_args()
    print("| what | points in the searched scope | p50 ms | p95 ms |")
    print("|---|---|---|---|")
    print(embedding_row(args.queries), flush=True)
    for size in (int(s) for s in args.sizes.split(",")):
        for scopes in (1, 500):
            print(edge_rows(size, scopes, args.queries), flush=True)
    for scopes in (1, 100):
        print(asyncio.run(local_mode_row(args.local_size, scopes, min(args.queries, 100))), flush=True)


if __name__ == "__main__":
    main()
