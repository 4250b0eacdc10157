"""Semantic-cache quality: precision, recall and hit rate over a threshold sweep, with and without guards.

Runs the gateway's own lookup (gateway.cache.semantic.find_hit: embedder + vector index + guards) and
builds scopes with gateway.cache.request_key.semantic_query, the function the gateway uses.

  paraphrase set  ../shared/data/paraphrase_pairs_gptcache.json: every origin cached in one scope, every
                  paraphrase queried; a hit on its own origin (or an identical text) is correct.
  near-miss suite bench/data/near_miss.json: per pair, ``a`` cached and ``b`` queried, each in the scope
                  its own system prompt and earlier turns give; ``same`` pairs should hit, others miss.

    .venv/bin/python bench/semantic_cache_eval.py [--thresholds 0.80,0.85,...] [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.cache.embedders import LocalEmbedder  # noqa: E402
from gateway.cache.request_key import SemanticQuery, semantic_query  # noqa: E402
from gateway.cache.semantic import find_hit  # noqa: E402
from gateway.cache.types import EntryTags  # noqa: E402
from gateway.cache.vector_edge import EdgeVectorIndex  # noqa: E402

PARAPHRASES = ROOT.parent / "shared" / "data" / "paraphrase_pairs_gptcache.json"
NEAR_MISS = ROOT / "bench" / "data" / "near_miss.json"
ALIAS = "eval-model"
MIN_WORDS = 3  # cache_settings.min_semantic_words' default
FOREVER = 4e9
NOW = 1e9


class MemoEmbedder:
    """The real embedder, asked once per distinct text: the sweep repeats the same queries."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner = inner
        self.id = inner.id
        self.dimensions = inner.dimensions
        self.default_threshold = inner.default_threshold
        self._memo: dict[str, list[float]] = {}

    async def embed(self, text: str) -> list[float]:
        if text not in self._memo:
            self._memo[text] = await self.inner.embed(text)
        return self._memo[text]


def body_for(text: str, system: str | None, history: list[dict[str, str]]) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    messages.extend(history)
    messages.append({"role": "user", "content": text})
    return {"model": ALIAS, "messages": messages, "temperature": 0}


def query_of(tenant: str, text: str, context: dict[str, Any] | None, embedder_id: str) -> SemanticQuery | None:
    context = context or {}
    found = semantic_query(tenant, "chat", ALIAS, body_for(text, context.get("system"), context.get("history", [])),
                           embedder_id, min_words=MIN_WORDS)
    return found if isinstance(found, SemanticQuery) else None


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    n: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / self.n if self.n else 1.0

    @property
    def hit_rate(self) -> float:
        return (self.tp + self.fp) / self.n if self.n else 0.0


async def paraphrase_scores(embedder: MemoEmbedder, thresholds: list[float], guards: bool) -> dict[float, Score]:
    pairs = json.loads(PARAPHRASES.read_text())
    index = EdgeVectorIndex.open(None, embedder.dimensions)
    tags = EntryTags(key_id="eval", team=None, alias=ALIAS)
    scope = None
    for i, pair in enumerate(pairs):
        q = query_of("team:eval", pair["origin"], None, embedder.id)
        assert q is not None, pair
        scope = q.scope
        await index.add(q.scope, await embedder.embed(pair["origin"]), entry_id=str(i), text=pair["origin"],
                        expires_at=FOREVER, tags=tags)
    scores = {}
    for threshold in thresholds:
        score = Score(n=len(pairs))
        for i, pair in enumerate(pairs):
            q = query_of("team:eval", pair["similar"], None, embedder.id)
            if q is None:
                score.fn += 1
                continue
            assert q.scope == scope
            hit = await find_hit(index, embedder, q.scope, q.text, threshold, NOW, guards=guards)
            if hit is None:
                score.fn += 1
            elif hit.entry_id == str(i) or hit.text == pair["origin"]:
                score.tp += 1
            else:
                score.fp += 1
        scores[threshold] = score
    await index.close()
    return scores


async def near_miss_scores(embedder: MemoEmbedder, thresholds: list[float], guards: bool,
                           ) -> tuple[dict[float, Score], dict[float, Counter[str]], dict[float, list[str]]]:
    pairs = json.loads(NEAR_MISS.read_text())
    index = EdgeVectorIndex.open(None, embedder.dimensions)
    cached: dict[str, str | None] = {}
    for pair in pairs:
        # A tenant per pair keeps the pairs apart; inside a pair, scopes differ only by context.
        q = query_of(f"team:pair-{pair['id']}", pair["a"], pair.get("a_context"), embedder.id)
        cached[pair["id"]] = None if q is None else q.scope
        if q is not None:
            await index.add(q.scope, await embedder.embed(q.text), entry_id=pair["id"], text=q.text,
                            expires_at=FOREVER, tags=EntryTags(key_id="eval", team=None, alias=ALIAS))
    scores: dict[float, Score] = {}
    false_hits: dict[float, Counter[str]] = {}
    failures: dict[float, list[str]] = {}
    for threshold in thresholds:
        score, wrong, missed = Score(), Counter[str](), []
        for pair in pairs:
            q = query_of(f"team:pair-{pair['id']}", pair["b"], pair.get("b_context"), embedder.id)
            hit = None if q is None else await find_hit(index, embedder, q.scope, q.text, threshold, NOW,
                                                        guards=guards)
            if pair["same"]:
                score.n += 1
                if hit is not None:
                    score.tp += 1
                else:
                    score.fn += 1
                    missed.append(f"miss  {pair['id']}: {pair['a']!r} / {pair['b']!r}")
            elif hit is not None:
                score.fp += 1
                wrong[pair["kind"]] += 1
                missed.append(f"FALSE {pair['id']} ({pair['kind']}): {pair['a']!r} / {pair['b']!r}")
        scores[threshold], false_hits[threshold], failures[threshold] = score, wrong, missed
    await index.close()
    return scores, false_hits, failures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thresholds", default="0.70,0.75,0.78,0.80,0.82,0.84,0.86,0.88,0.90,0.92,0.95")
    parser.add_argument("--show", type=float, help="list the near-miss failures at this threshold")
    args = parser.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    if args.show is not None and args.show not in thresholds:
        thresholds.append(args.show)
    embedder = MemoEmbedder(LocalEmbedder.load())
    pairs = json.loads(NEAR_MISS.read_text())
    kinds = Counter(p["kind"] for p in pairs)
    print(f"embedder {embedder.id}, default threshold {embedder.default_threshold}")
    print(f"near-miss suite: {len(pairs)} pairs, {sum(p['same'] for p in pairs)} positive; kinds {dict(kinds)}\n")
    print("| guards | threshold | paraphrase precision | paraphrase recall | paraphrase hit rate "
          "| near-miss false hits | near-miss recall (positives) |")
    print("|---|---|---|---|---|---|---|")
    shown: list[str] = []
    for guards in (False, True):
        para = await paraphrase_scores(embedder, thresholds, guards)
        near, wrong, failures = await near_miss_scores(embedder, thresholds, guards)
        for t in thresholds:
            p, n = para[t], near[t]
            by_kind = ", ".join(f"{k} {v}" for k, v in sorted(wrong[t].items()))
            mark = " **(default)**" if t == embedder.default_threshold else ""
            print(f"| {'on' if guards else 'off'} | {t:.2f}{mark} | {p.precision:.3f} | {p.recall:.3f} "
                  f"| {p.hit_rate:.3f} | {n.fp}{f' ({by_kind})' if by_kind else ''} | {n.recall:.3f} |")
        if args.show is not None:
            shown += [f"[guards {'on' if guards else 'off'}] {line}" for line in failures[args.show]]
    if shown:
        print(f"\nnear-miss failures at {args.show}:")
        print("\n".join(shown))
    embedder.inner.close()


if __name__ == "__main__":
    asyncio.run(main())
