"""The cache stage (gateway/cache/service.py) with real parts: Redis (scratch prefix) or SQLite entries,
Qdrant's in-process engine, the packaged local embedder."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from gateway.auth import Principal
from gateway.cache.entry_redis import RedisEntryStore
from gateway.cache.replay import ReplayStream, StreamRecorder, replay_frames
from gateway.cache.service import CacheLookup, ResponseCache, SemanticTier
from gateway.cache.types import CacheTier, EntryStore, PurgeFilter
from gateway.cache.vector_edge import EdgeVectorIndex
from gateway.config import parse_config
from gateway.errors import InvalidRequest
from gateway.limits.admission import BackgroundWork
from gateway.pipeline import RequestContext
from gateway.runtime import RoutingTable
from tests.cache.conftest import MemoEmbedder

ALICE = Principal(key_id="key_alice", alias="alice", role="user", team="red")
ALBERT = Principal(key_id="key_albert", alias="albert", role="user", team="red")  # Alice's teammate
BOB = Principal(key_id="key_bob", alias="bob", role="user", team="blue")
SOLO = Principal(key_id="key_solo", alias="solo", role="user")
LONER = Principal(key_id="key_loner", alias="loner", role="user")

QUESTION = "What is the capital city of France?"
PARAPHRASE = "Tell me the capital of France"
ANSWER = "Paris is the capital of France."


def config(**cache: Any) -> Any:
    base = "http://127.0.0.1:9/v1"
    return parse_config({
        "model_list": [{"model_name": name, "litellm_params": {"model": "openai/mock", "api_base": base}}
                       for name in ("sem", "exact", "other", "off")],
        "cache_settings": {"aliases": {"sem": {"mode": "semantic"}, "exact": {"mode": "exact"},
                                       "other": {"mode": "semantic"}, "off": {"mode": "off"}}, **cache},
        "prices": {"sem": {"input_per_million": 1000, "output_per_million": 2000}},
    }, environ={})


def completion(text: str = ANSWER) -> bytes:
    return orjson.dumps({"id": "chatcmpl-cached", "object": "chat.completion", "created": 1, "model": "mock",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                                      "logprobs": None, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})


def chat(text: str = QUESTION, *, system: str = "Answer briefly.", **params: Any) -> dict[str, Any]:
    return {"model": "sem", "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}],
            **params}


class Harness:
    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache
        self.errors: list[CacheTier] = []

    async def lookup(self, body: dict[str, Any], who: Principal = ALICE, alias: str = "sem",
                     headers: dict[str, str] | None = None, operation: Any = "chat") -> tuple[CacheLookup, Any]:
        ctx = RequestContext(request_id="req_test")
        found = await self.cache.lookup(ctx, who, alias, operation, body, headers or {})
        return found, ctx.cache

    async def fill(self, body: dict[str, Any], who: Principal = ALICE, alias: str = "sem",
                   headers: dict[str, str] | None = None, value: bytes | None = None) -> None:
        found, _ = await self.lookup(body, who, alias, headers)
        assert found.answer is None and found.write is not None
        await self.cache.store(found.write, value or completion())


def _harness(entries: EntryStore, index: EdgeVectorIndex, embedder: MemoEmbedder, **cache: Any) -> Harness:
    table = RoutingTable(config(**cache), {}, source=None)
    harness: Harness
    errors: list[CacheTier] = []
    service = ResponseCache(table, entries, SemanticTier(index=index, embedder=embedder), BackgroundWork(),
                            on_backend_error=errors.append)
    harness = Harness(service)
    harness.errors = errors
    return harness


@pytest.fixture(scope="module")
def memo(local_embedder: Any) -> MemoEmbedder:
    return MemoEmbedder(local_embedder)


@pytest.fixture(scope="module")
def module_index() -> Iterator[EdgeVectorIndex]:
    """One in-process index for the module (opening one costs ~0.2 s), emptied before each test."""
    index = EdgeVectorIndex.open(None, 384)
    yield index
    asyncio.run(index.close())


@pytest.fixture
async def edge_index(module_index: EdgeVectorIndex) -> EdgeVectorIndex:
    await module_index.purge(PurgeFilter())
    return module_index


@pytest.fixture
async def harness(entry_store: EntryStore, edge_index: EdgeVectorIndex, memo: MemoEmbedder) -> Harness:
    return _harness(entry_store, edge_index, memo)


async def test_exact_hit_after_a_store(harness: Harness) -> None:
    found, note = await harness.lookup(chat())
    assert (found.answer, note.outcome) == (None, "miss")
    assert set(note.lookup_seconds) == {"exact", "semantic"}
    await harness.cache.store(found.write, completion())  # type: ignore[arg-type]
    found, note = await harness.lookup(chat(stream=True, user="someone"))
    assert found.answer is not None and found.write is None
    assert (note.outcome, note.tier, found.answer.tier) == ("hit", "exact", "exact")
    assert found.answer.body["id"] == "chatcmpl-cached" and found.answer.body["created"] > 1
    # 10 prompt tokens at $1000/M and 5 completion tokens at $2000/M
    assert note.saved_cost_usd == pytest.approx(0.02)


async def test_semantic_hit_on_a_paraphrase(harness: Harness) -> None:
    await harness.fill(chat())
    found, note = await harness.lookup(chat(PARAPHRASE))
    assert found.answer is not None
    assert (note.outcome, note.tier) == ("semantic-hit", "semantic")
    assert note.similarity is not None and 0.8 < note.similarity < 1.0
    assert found.answer.body["choices"][0]["message"]["content"] == ANSWER


async def test_exact_only_alias_never_answers_a_paraphrase(harness: Harness) -> None:
    await harness.fill(chat(), alias="exact")
    found, note = await harness.lookup(chat(PARAPHRASE), alias="exact")
    assert found.answer is None and note.outcome == "miss" and "semantic" not in note.lookup_seconds
    assert (await harness.lookup(chat(), alias="exact"))[0].answer is not None


@pytest.mark.parametrize(("change", "kwargs"), [
    ("another team", {"who": BOB}),
    ("a key without a team", {"who": SOLO}),
    ("another alias", {"alias": "other"}),
    ("another temperature", {"body": chat(temperature=0.3)}),
    ("another max_tokens", {"body": chat(max_tokens=7)}),
    ("tools", {"body": chat(tools=[{"type": "function", "function": {"name": "f"}}])}),
    ("another system prompt", {"body": chat(system="Answer at length.")}),
    ("an earlier turn", {"body": {"messages": [{"role": "user", "content": "Hi there friend"},
                                               {"role": "assistant", "content": "Hello"},
                                               {"role": "user", "content": QUESTION}]}}),
])
async def test_each_scope_dimension_changed_alone_misses(harness: Harness, change: str, kwargs: dict[str, Any]) -> None:
    await harness.fill(chat())
    for text in (QUESTION, PARAPHRASE):
        body = kwargs.get("body", chat())
        body = {**body, "messages": [*body["messages"][:-1], {"role": "user", "content": text}]}
        found, _ = await harness.lookup(body, who=kwargs.get("who", ALICE), alias=kwargs.get("alias", "sem"))
        assert found.answer is None, f"{change}: {text!r} was answered from another scope"
    # The control: unchanged, both hit.
    assert (await harness.lookup(chat()))[0].answer is not None
    assert (await harness.lookup(chat(PARAPHRASE)))[0].answer is not None


async def test_a_teammate_shares_entries_and_keys_without_a_team_do_not(harness: Harness) -> None:
    await harness.fill(chat())
    assert (await harness.lookup(chat(), who=ALBERT))[0].answer is not None
    await harness.fill(chat(), who=SOLO)
    assert (await harness.lookup(chat(), who=LONER))[0].answer is None


async def test_share_across_keys_lets_keys_without_a_team_share(entry_store: EntryStore, edge_index: EdgeVectorIndex,
                                                               memo: MemoEmbedder) -> None:
    shared = _harness(entry_store, edge_index, memo, share_across_keys=True)
    await shared.fill(chat(), who=SOLO)
    assert (await shared.lookup(chat(), who=LONER))[0].answer is not None
    assert (await shared.lookup(chat(), who=BOB))[0].answer is None


PROMPTS = [
    ("What is the capital city of France?", "Tell me the capital of France"),
    ("How do I reverse a list in Python?", "What is the way to reverse a Python list?"),
    ("What is the boiling point of water at sea level?", "At sea level, what temperature does water boil at?"),
    ("Who wrote the novel Pride and Prejudice?", "Who is the author of Pride and Prejudice?"),
    ("How many days are there in a leap year?", "A leap year has how many days?"),
    ("Explain what a hash table is used for.", "What is a hash table used for?"),
    ("What is the tallest mountain in the world?", "Which mountain is the highest on Earth?"),
    ("Translate good morning into Spanish please.", "How do you say good morning in Spanish?"),
    ("What does HTTP status code 404 mean?", "Explain the meaning of the HTTP 404 status code"),
    ("How far is the Moon from the Earth?", "What is the distance between the Earth and the Moon?"),
]


async def test_a_thousand_cross_tenant_tries_get_nothing(harness: Harness) -> None:
    for question, _ in PROMPTS:
        await harness.fill(chat(question), who=ALICE)
    # The same entries are reachable where they should be: Alice's teammate, exact and paraphrased.
    teammate_hits = 0
    for question, paraphrase in PROMPTS:
        teammate_hits += (await harness.lookup(chat(question), who=ALBERT))[0].answer is not None
        teammate_hits += (await harness.lookup(chat(paraphrase), who=ALBERT))[0].answer is not None
    assert teammate_hits >= len(PROMPTS) + len(PROMPTS) // 2
    # Other teams, keys without a team, near-miss team names, and key ids spelled like the team.
    attackers = [Principal(key_id=f"key_x{i}" if i % 10 else "red", alias=f"x{i}", role="user", team=team)
                 for i, team in zip(range(50), itertools.cycle(["blue", None, "Red", "red ", "", "team:red"]),
                                    strict=False)]
    tries = hits = 0
    for attacker, (question, paraphrase) in itertools.product(attackers, PROMPTS):
        for text in (question, paraphrase):
            found, _ = await harness.lookup(chat(text), who=attacker)
            tries += 1
            hits += found.answer is not None
    assert tries == 1000
    assert hits == 0


async def test_expired_entries_and_dangling_vectors_are_misses(harness: Harness) -> None:
    await harness.fill(chat(), headers={"x-gateway-cache-ttl": "0.3"})
    assert (await harness.lookup(chat()))[0].answer is not None
    await asyncio.sleep(0.45)
    assert (await harness.lookup(chat()))[0].answer is None
    assert (await harness.lookup(chat(PARAPHRASE)))[0].answer is None
    # A vector whose response is gone (deleted behind the index's back) is a miss too.
    await harness.fill(chat())
    await harness.cache.entries.purge(PurgeFilter())
    found, note = await harness.lookup(chat(PARAPHRASE))
    assert found.answer is None and note.outcome == "miss"


async def test_no_cache_skips_the_lookup_and_still_stores(harness: Harness) -> None:
    await harness.fill(chat())
    found, note = await harness.lookup(chat(), headers={"x-gateway-cache": "no-cache"})
    assert found.answer is None and found.write is not None and note.outcome == "bypass"
    found, note = await harness.lookup(chat(), headers={"cache-control": "no-cache"})
    assert found.answer is None and note.outcome == "bypass"


async def test_no_store_looks_up_but_never_writes(harness: Harness) -> None:
    found, note = await harness.lookup(chat(), headers={"x-gateway-cache": "no-store"})
    assert found.write is None and note.outcome == "miss"
    await harness.fill(chat())
    found, note = await harness.lookup(chat(), headers={"x-gateway-cache": "no-store"})
    assert found.answer is not None and note.outcome == "hit"
    found, note = await harness.lookup(chat(), headers={"x-gateway-cache": "no-store, no-cache"})
    assert (found, note.outcome) == (CacheLookup(), "bypass")


@pytest.mark.parametrize(("body", "alias", "operation", "skipped"), [
    (chat(temperature=1.5), "sem", "chat", None),
    (chat(), "off", "chat", None),
    ({"model": "sem", "prompt": "Once upon a time", "stream": True}, "sem", "completion", None),
])
async def test_bypass(harness: Harness, body: dict[str, Any], alias: str, operation: Any, skipped: str | None) -> None:
    found, note = await harness.lookup(body, alias=alias, operation=operation)
    assert (found, note.outcome) == (CacheLookup(), "bypass")


async def test_semantic_skips_are_noted_and_exact_still_works(harness: Harness) -> None:
    body = chat("ok")
    await harness.fill(body)
    found, note = await harness.lookup(chat("ok"))
    assert found.answer is not None and note.semantic_skipped == "short"
    assert (await harness.lookup(chat(n=2)))[1].semantic_skipped == "n>1"


async def test_a_request_threshold_of_one_turns_paraphrases_away(harness: Harness) -> None:
    await harness.fill(chat())
    found, _ = await harness.lookup(chat(PARAPHRASE), headers={"x-gateway-cache-threshold": "1.0"})
    assert found.answer is None
    with pytest.raises(InvalidRequest):
        await harness.lookup(chat(), headers={"x-gateway-cache-threshold": "0.2"})


async def test_purge_by_key_team_alias_and_all(harness: Harness) -> None:
    await harness.fill(chat(), who=ALICE)
    await harness.fill(chat("What is the largest ocean on Earth?"), who=ALBERT)
    await harness.fill(chat(), who=BOB)
    await harness.fill(chat(), who=SOLO, alias="other")
    assert await harness.cache.purge(PurgeFilter(key_id="key_alice")) == {"exact": 1, "semantic": 1}
    assert (await harness.lookup(chat(), who=ALICE))[0].answer is None
    assert (await harness.lookup(chat("What is the largest ocean on Earth?"), who=ALICE))[0].answer is not None
    assert await harness.cache.purge(PurgeFilter(team="red")) == {"exact": 1, "semantic": 1}
    assert (await harness.lookup(chat(PARAPHRASE), who=BOB))[0].answer is not None
    assert await harness.cache.purge(PurgeFilter(alias="other")) == {"exact": 1, "semantic": 1}
    assert (await harness.lookup(chat(), who=BOB))[0].answer is not None
    assert await harness.cache.purge(PurgeFilter()) == {"exact": 1, "semantic": 1}
    assert (await harness.lookup(chat(), who=BOB))[0].answer is None


@pytest.fixture
async def dead_redis() -> AsyncIterator[RedisEntryStore]:
    store = RedisEntryStore(aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2))
    yield store
    await store.close()


async def test_a_dead_backend_is_a_miss_with_a_log_line(dead_redis: RedisEntryStore, edge_index: EdgeVectorIndex,
                                                        memo: MemoEmbedder, caplog: pytest.LogCaptureFixture) -> None:
    harness = _harness(dead_redis, edge_index, memo)
    with caplog.at_level(logging.WARNING, logger="gateway.cache"):
        found, note = await harness.lookup(chat())
        assert found.answer is None and note.outcome == "miss" and found.write is not None
        await harness.cache._store_quietly(found.write, completion())  # logged, never raised
        again, _ = await harness.lookup(chat(PARAPHRASE))  # within the breaker: no wait on the dead store
    assert again.answer is None
    assert "exact" in harness.errors
    assert any("backend failed" in r.message for r in caplog.records)
    assert any("could not store" in r.message for r in caplog.records)


def test_replayed_frames_assemble_back_into_the_cached_completion() -> None:
    body = orjson.loads(completion())
    tool_body = {**body, "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
        "role": "assistant", "content": None, "refusal": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
            {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}}]}
    for original in (body, tool_body):
        frames = replay_frames(original, include_usage=True)
        replayed = ReplayStream(frames)
        recorder = StreamRecorder(replayed)

        async def drain(stream: ReplayStream = replayed) -> bytes:
            return b"".join([frame async for frame in stream])

        assert asyncio.run(drain()) == b"".join(frames)
        assert replayed.finished and replayed.relayed == len(frames)
        assembled = recorder.assembled()
        assert assembled is not None
        assert assembled["choices"][0]["message"] == original["choices"][0]["message"]
        assert assembled["usage"] == original["usage"]
        assert len(replay_frames(original, include_usage=False)) == len(frames) - 1


async def test_the_sweep_task_removes_expired_vectors(entry_store: EntryStore, edge_index: EdgeVectorIndex,
                                                      memo: MemoEmbedder) -> None:
    harness = _harness(entry_store, edge_index, memo, sweep_seconds=0.05)
    await harness.fill(chat(), headers={"x-gateway-cache-ttl": "0.1"})
    await harness.fill(chat("What is the largest ocean on Earth?"))
    assert edge_index.count() == 2
    sweeper = asyncio.create_task(harness.cache.sweep_forever())
    try:
        deadline = asyncio.get_running_loop().time() + 3
        while edge_index.count() > 1 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
    finally:
        sweeper.cancel()
    assert edge_index.count() == 1
