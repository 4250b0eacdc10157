"""The response cache end to end: real gateway processes (Redis DB 10, and the demo's embedded
stores), the mock upstream, the real ``openai`` SDK and the ``llm-gateway cache`` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from tests.e2e.conftest import ask, deployment, until
from tests.processes import MASTER_KEY, ROOT, Process, start_gateway

REDIS_URL = "redis://127.0.0.1:6379/10"
MASTER = {"authorization": f"Bearer {MASTER_KEY}"}
#: $1 per thousand prompt tokens, $2 per thousand completion tokens: every answer costs something.
PRICE = {"input_per_million": 1000.0, "output_per_million": 2000.0}


def routing(mock: Process) -> dict[str, Any]:
    v1 = f"{mock.url}/v1"
    return {
        "model_list": [
            deployment("cached", "openai/mock", v1),
            deployment("cached-chunky", "openai/mock+chunks=6", v1),
            deployment("cached-tools", "openai/mock+tool", v1),
            deployment("exact-only", "openai/mock", v1),
            deployment("uncached", "openai/mock", v1),
            deployment("vectors", "openai/mock-embed", v1, model_info={"mode": "embedding"}),
        ],
        "cache_settings": {
            "aliases": {"cached": {"mode": "semantic"}, "cached-chunky": {"mode": "semantic"},
                        "cached-tools": {"mode": "semantic"}, "exact-only": {"mode": "exact"},
                        "vectors": {"mode": "exact"}},
            "max_ttl_seconds": 600,
        },
        "prices": {alias: PRICE for alias in ("cached", "cached-chunky", "cached-tools", "exact-only", "uncached")},
    }


@pytest.fixture(scope="module")
def gateway(workdir: Path, mock_upstream: Process) -> Iterator[Process]:
    with redis.Redis.from_url(REDIS_URL) as client:
        client.flushdb()
    process = start_gateway(workdir, routing(mock_upstream),
                            env={"GATEWAY_REDIS_URL": REDIS_URL, "GATEWAY_ADMIN_RATE_LIMIT": "10000/minute"})
    yield process
    process.stop()


def sdk(gateway: Process, key: str = MASTER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=30)


def create_key(gateway: Process, **fields: Any) -> dict[str, Any]:
    response = httpx.post(f"{gateway.url}/admin/keys", headers=MASTER, json=fields)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def unique(text: str) -> str:
    """``text`` made unique for this run by a number: the semantic tier's number guard then keeps two
    such questions apart (a hex suffix of letters only let a paraphrase-level match through)."""
    return f"{text} (ref {uuid.uuid4().int % 10**12})"


def test_exact_hit_is_the_cached_completion_with_a_fresh_created(gateway: Process) -> None:
    with sdk(gateway) as client:
        question = unique("What is the capital city of France?")
        said, first = ask(client, question)
        assert said == "miss"
        again = until("hit", lambda: ask(client, question))
        assert again.id == first.id and again.choices[0].message.content == first.choices[0].message.content
        assert again.created >= first.created
        assert again.usage.total_tokens == first.usage.total_tokens  # what the answer cost, reported
        raw = client.chat.completions.with_raw_response.create(
            model="cached", messages=[{"role": "user", "content": question}], extra_headers={"x-request-id": "mine-1"})
        assert raw.headers["x-request-id"] == "mine-1" and "x-gateway-deployment" not in raw.headers


def test_a_paraphrase_is_a_semantic_hit_with_its_similarity(gateway: Process) -> None:
    tag = uuid.uuid4().hex[:6]
    with sdk(gateway) as client:
        assert ask(client, f"How do I reverse a list in Python? ref {tag}")[0] == "miss"
        until("hit", lambda: ask(client, f"How do I reverse a list in Python? ref {tag}"))
        paraphrase = f"What is the way to reverse a Python list? ref {tag}"
        raw = client.chat.completions.with_raw_response.create(
            model="cached", messages=[{"role": "user", "content": paraphrase}])
        assert raw.headers["x-gateway-cache"] == "semantic-hit"
        assert 0.8 < float(raw.headers["x-gateway-cache-similarity"]) < 1.0
        assert (raw.parse().choices[0].message.content or "").startswith("How do I reverse")
        # The exact-only alias answers the same words only.
        assert ask(client, f"How do I reverse a list in Python? ref {tag}", model="exact-only")[0] == "miss"
        until("hit", lambda: ask(client, f"How do I reverse a list in Python? ref {tag}", model="exact-only"))
        assert ask(client, f"What is the way to reverse a Python list? ref {tag}", model="exact-only")[0] == "miss"


def test_uncached_aliases_and_hot_requests_bypass(gateway: Process) -> None:
    with sdk(gateway) as client:
        assert ask(client, "Is this cached at all, then?", model="uncached")[0] == "bypass"
        question = unique("A hot sample, please, of words")
        assert ask(client, question, temperature=1.5)[0] == "bypass"
        assert ask(client, question, temperature=1.5)[0] == "bypass"


def test_no_cache_no_store_ttl_and_expiry(gateway: Process) -> None:
    with sdk(gateway) as client:
        question = unique("Name three primary colours for me")
        assert ask(client, question, headers={"x-gateway-cache": "no-store"})[0] == "miss"
        time.sleep(0.3)
        assert ask(client, question, headers={"x-gateway-cache": "no-store"})[0] == "miss"  # nothing was written
        assert ask(client, question, headers={"x-gateway-cache-ttl": "1"})[0] == "miss"
        until("hit", lambda: ask(client, question, headers={"x-gateway-cache": "no-store"}))
        # no-cache skips the lookup but still stores (here with the same short TTL).
        assert ask(client, question, headers={"x-gateway-cache": "no-cache", "x-gateway-cache-ttl": "1"})[0] == "bypass"
        assert ask(client, question, headers={"cache-control": "no-cache", "x-gateway-cache-ttl": "1"})[0] == "bypass"
        time.sleep(1.2)
        assert ask(client, question, headers={"x-gateway-cache": "no-store"})[0] == "miss"  # expired


@pytest.mark.parametrize(("headers", "param"), [
    ({"x-gateway-cache-threshold": "0.2"}, "x-gateway-cache-threshold"),
    ({"x-gateway-cache-threshold": "close enough"}, "x-gateway-cache-threshold"),
    ({"x-gateway-cache-ttl": "-5"}, "x-gateway-cache-ttl"),
    ({"x-gateway-cache": "please"}, "x-gateway-cache"),
])
def test_a_bad_cache_header_is_a_400_in_openai_format(gateway: Process, headers: dict[str, str], param: str) -> None:
    with sdk(gateway) as client, pytest.raises(openai.BadRequestError) as raised:
        ask(client, "Does this header pass?", headers=headers)
    assert raised.value.status_code == 400
    error = raised.value.body
    assert isinstance(error, dict) and error["param"] == param and error["code"] == "invalid_request"


def signature(chunks: list[Any]) -> list[tuple[Any, ...]]:
    """Each chunk's field names (top level, choice, delta, tool call) with repeats collapsed: a live
    stream carries many content chunks where a replay carries one."""
    shapes: list[tuple[Any, ...]] = []
    for chunk in chunks:
        data = chunk.model_dump(exclude_unset=True)
        choice = data["choices"][0] if data.get("choices") else {}
        delta = choice.get("delta", {})
        calls = delta.get("tool_calls") or [{}]
        shape = (tuple(sorted(data)), tuple(sorted(choice)), tuple(sorted(delta)), tuple(sorted(calls[0])),
                 tuple(sorted(calls[0].get("function", {}))), choice.get("finish_reason"), data.get("usage") is None)
        if not shapes or shapes[-1] != shape:
            shapes.append(shape)
    return shapes


def assembled(chunks: list[Any]) -> tuple[str, list[tuple[str, str]], Any]:
    text, calls = "", dict[int, tuple[str, str]]()
    usage = None
    for chunk in chunks:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                name, arguments = calls.get(call.index, ("", ""))
                calls[call.index] = (name + (call.function.name or ""), arguments + (call.function.arguments or ""))
    return text, [calls[i] for i in sorted(calls)], usage


def stream(client: openai.OpenAI, model: str, text: str, include_usage: bool) -> tuple[str, list[Any]]:
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], stream=True,
        stream_options={"include_usage": True} if include_usage else None)
    return raw.headers.get("x-gateway-cache", ""), list(raw.parse())


@pytest.mark.parametrize("model", ["cached-chunky", "cached-tools"])
@pytest.mark.parametrize("include_usage", [True, False])
def test_a_replayed_stream_has_the_live_stream_shape(gateway: Process, model: str, include_usage: bool) -> None:
    question = unique("What is the weather like in Paris today?")
    with sdk(gateway) as client:
        said, live = stream(client, model, question, include_usage)
        assert said == "miss"
        replay = until("hit", lambda: stream(client, model, question, include_usage))
        assert signature(replay) == signature(live)
        assert assembled(replay) == assembled(live)
        assert [c.id for c in replay] == [live[0].id] * len(replay)
        # A JSON request meets the entry the stream left, and a stream replays a JSON answer.
        said, completion = ask(client, question, model=model)
        assert said == "hit"
        message = completion.choices[0].message
        text, calls, _ = assembled(live)
        assert (message.content or "") == text
        assert [(c.function.name, c.function.arguments) for c in message.tool_calls or []] == calls


def test_embeddings_are_exact_cached(gateway: Process) -> None:
    with sdk(gateway) as client:
        text = unique("embed me")
        first = client.embeddings.with_raw_response.create(model="vectors", input=text)
        assert first.headers["x-gateway-cache"] == "miss"

        def again() -> tuple[str, Any]:
            raw = client.embeddings.with_raw_response.create(model="vectors", input=text)
            return raw.headers["x-gateway-cache"], raw.parse()

        assert until("hit", again).data[0].embedding == first.parse().data[0].embedding


def key_usage(gateway: Process, key_id: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{gateway.url}/admin/keys/{key_id}/usage", headers=MASTER).json()
    return body


def test_hits_cost_no_budget_and_no_tokens_but_count_a_request(gateway: Process) -> None:
    team = f"t-{uuid.uuid4().hex[:6]}"
    warmer = create_key(gateway, alias="warmer", team=team)
    payer = create_key(gateway, alias="payer", team=team, rpm=100, tpm=100000, budget_usd=5, budget_period="daily")
    question = unique("Which planet is the largest in the solar system?")
    with sdk(gateway, warmer["key"]) as warm, sdk(gateway, payer["key"]) as paying:
        assert ask(warm, question)[0] == "miss"
        until("hit", lambda: ask(warm, question))
        said, hit = ask(paying, question)
        assert said == "hit"
        assert hit.usage.total_tokens > 0  # the cached usage is reported…
        deadline = time.monotonic() + 5
        while (report := key_usage(gateway, payer["id"]))["rows"] == [] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert report["spent_usd"] == 0 and report["tokens_last_minute"] == 0  # …and charged nothing
        assert report["requests_last_minute"] == 1
        (row,) = report["rows"]
        assert (row["requests"], row["input_tokens"], row["output_tokens"], row["cost_usd"]) == (1, 0, 0, 0)
        assert row["saved_usd"] == pytest.approx(hit.usage.prompt_tokens / 1000 + hit.usage.completion_tokens / 500)
        # A miss of the same key is charged as usual.
        assert ask(paying, unique("And which planet is the smallest one?"))[0] == "miss"
        deadline = time.monotonic() + 5
        while (after := key_usage(gateway, payer["id"]))["spent_usd"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert after["spent_usd"] > 0 and after["tokens_last_minute"] > 0 and after["requests_last_minute"] == 2


def purge(gateway: Process, **filters: str) -> dict[str, Any]:
    response = httpx.delete(f"{gateway.url}/admin/cache", headers=MASTER, params=filters)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_purge_by_key_team_alias_and_everything(gateway: Process) -> None:
    suffix = uuid.uuid4().hex[:6]
    red1 = create_key(gateway, alias="red1", team=f"red-{suffix}")
    red2 = create_key(gateway, alias="red2", team=f"red-{suffix}")
    blue = create_key(gateway, alias="blue", team=f"blue-{suffix}")
    questions = {"red1": unique("How tall is the Eiffel Tower in metres?"),
                 "red2": unique("How long is the river Nile in kilometres?"),
                 "blue": unique("How deep is the Pacific Ocean at most?")}
    clients = {name: sdk(gateway, key["key"]) for name, key in (("red1", red1), ("red2", red2), ("blue", blue))}
    try:
        for name, client in clients.items():
            for model in ("cached", "exact-only"):
                ask(client, questions[name], model=model)
                until("hit", lambda c=client, q=questions[name], m=model: ask(c, q, model=m,  # type: ignore[misc]
                                                                             headers={"x-gateway-cache": "no-store"}))

        def alive() -> dict[str, list[str]]:
            return {name: [ask(client, questions[name], model=model, headers={"x-gateway-cache": "no-store"})[0]
                           for model in ("cached", "exact-only")] for name, client in clients.items()}

        assert purge(gateway, key_id=red1["id"]) == {"exact": 2, "semantic": 1, "key_id": red1["id"], "team": None,
                                                     "alias": None}
        audit = httpx.get(f"{gateway.url}/admin/audit", headers=MASTER, params={"key_id": red1["id"]}).json()
        purged = audit["data"][0]  # newest first
        assert (purged["action"], purged["actor"], purged["key_id"]) == ("cache_purge", "master", red1["id"])
        assert purged["changes"] == {"alias": None, "exact": 2, "semantic": 1}
        assert alive() == {"red1": ["miss", "miss"], "red2": ["hit", "hit"], "blue": ["hit", "hit"]}
        assert purge(gateway, alias="exact-only", team=f"red-{suffix}")["exact"] == 1
        assert alive() == {"red1": ["miss", "miss"], "red2": ["hit", "miss"], "blue": ["hit", "hit"]}
        assert purge(gateway, team=f"red-{suffix}")["exact"] == 1
        assert alive() == {"red1": ["miss", "miss"], "red2": ["miss", "miss"], "blue": ["hit", "hit"]}
        result = subprocess.run([sys.executable, "-m", "gateway", "cache", "purge", "--alias", "exact-only"],
                                capture_output=True, text=True, cwd=ROOT, timeout=60,
                                env={**os.environ, "GATEWAY_MASTER_KEY": MASTER_KEY, "GATEWAY_URL": gateway.url})
        assert result.returncode == 0, result.stderr
        assert result.stdout.split()[:2] == ["TIER", "PURGED"] and "exact" in result.stdout
        assert alive() == {"red1": ["miss", "miss"], "red2": ["miss", "miss"], "blue": ["hit", "miss"]}
        everything = purge(gateway)
        assert everything["exact"] >= 1 and everything["semantic"] >= 1
        assert alive()["blue"] == ["miss", "miss"]
    finally:
        for client in clients.values():
            client.close()


def test_purge_needs_the_master_key(gateway: Process) -> None:
    team_admin = create_key(gateway, alias="team-admin", team="ops", role="admin")
    response = httpx.delete(f"{gateway.url}/admin/cache", headers={"authorization": f"Bearer {team_admin['key']}"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    env = {**os.environ, "GATEWAY_MASTER_KEY": "", "GATEWAY_URL": gateway.url}
    result = subprocess.run([sys.executable, "-m", "gateway", "cache", "purge"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60, env=env)
    assert result.returncode == 2 and "GATEWAY_MASTER_KEY" in result.stderr


def test_the_demo_answers_a_paraphrase_from_the_semantic_tier(workdir: Path) -> None:
    demo = start_gateway(workdir, None)
    try:
        with sdk(demo) as client:
            assert ask(client, "What is the capital of France?", model="demo")[0] == "miss"
            until("hit", lambda: ask(client, "What is the capital of France?", model="demo"))
            said, answer = ask(client, "Tell me the capital city of France", model="demo")
            assert said == "semantic-hit"
            assert answer.choices[0].message.content == "What is the capital of France?"  # the mock echoes
    finally:
        demo.stop()
