"""Canonicalisation, scope and eligibility (gateway/cache/request_key.py) and header controls."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.auth import Principal
from gateway.cache.controls import parse_controls
from gateway.cache.request_key import (
    SemanticQuery,
    SemanticSkip,
    exact_key,
    semantic_query,
    tenant_of,
)
from gateway.config import CacheSettings
from gateway.errors import InvalidRequest

json_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=12)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)
words = st.text(alphabet="abcdefghij ", min_size=1, max_size=40)

#: Output-changing parameters, each with two different values.
OUTPUT_PARAMS: dict[str, tuple[Any, Any]] = {
    "temperature": (0.2, 0.3),
    "top_p": (0.9, 1.0),
    "max_tokens": (10, 11),
    "max_completion_tokens": (10, 11),
    "seed": (1, 2),
    "stop": ("\n", ["\n", "END"]),
    "n": (1, 2),
    "tools": ([{"type": "function", "function": {"name": "a"}}], [{"type": "function", "function": {"name": "b"}}]),
    "tool_choice": ("auto", "required"),
    "parallel_tool_calls": (True, False),
    "response_format": ({"type": "text"}, {"type": "json_object"}),
    "reasoning_effort": ("low", "high"),
    "logit_bias": ({"50256": -100}, {"50256": 100}),
    "presence_penalty": (0.0, 0.5),
    "frequency_penalty": (0.0, 0.5),
    "logprobs": (False, True),
    "top_logprobs": (1, 2),
    "a_field_added_next_year": (1, 2),
}
NON_OUTPUT = {"stream": True, "stream_options": {"include_usage": True}, "user": "u-1", "metadata": {"a": "b"},
              "store": True, "model": "client-spelling"}


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's keys in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


def chat(last: str = "what is the capital of france", **params: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": "hello there friend"},
                                       {"role": "assistant", "content": "hi"},
                                       {"role": "user", "content": last}], **params}


def scope(body: dict[str, Any], tenant: str = "team:a", alias: str = "m", embedder: str = "e1") -> str:
    query = semantic_query(tenant, "chat", alias, body, embedder, min_words=3)
    assert isinstance(query, SemanticQuery), query
    return query.scope


@settings(max_examples=200, deadline=None)
@given(body=st.dictionaries(st.text(max_size=8), json_values, max_size=6), seed=st.integers())
def test_key_order_never_matters(body: dict[str, Any], seed: int) -> None:
    body["messages"] = [{"role": "user", "content": "one two three", "name": "x"}]
    other = shuffled(body, random.Random(seed))
    assert exact_key("t", "chat", "m", body) == exact_key("t", "chat", "m", other)
    assert semantic_query("t", "chat", "m", body, "e", min_words=1) == \
        semantic_query("t", "chat", "m", other, "e", min_words=1)


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(sorted(OUTPUT_PARAMS)), base=st.dictionaries(
    st.sampled_from(sorted(OUTPUT_PARAMS)), json_scalars, max_size=5))
def test_any_output_changing_parameter_changes_the_exact_key_and_the_scope(name: str, base: dict[str, Any]) -> None:
    first, second = OUTPUT_PARAMS[name]
    base.pop("n", None)
    one, two = chat(**{**base, name: first}), chat(**{**base, name: second})
    assert exact_key("t", "chat", "m", one) != exact_key("t", "chat", "m", two)
    if name != "n":  # n > 1 never reaches the semantic tier
        assert scope(one) != scope(two)


@settings(max_examples=100, deadline=None)
@given(extra=st.fixed_dictionaries({}, optional={k: st.just(v) for k, v in NON_OUTPUT.items()}))
def test_fields_that_cannot_change_the_answer_are_not_in_the_key(extra: dict[str, Any]) -> None:
    assert exact_key("t", "chat", "m", chat()) == exact_key("t", "chat", "m", chat(**extra))
    assert scope(chat()) == scope(chat(**extra))


@settings(max_examples=100, deadline=None)
@given(a=words, b=words)
def test_the_message_list_is_in_the_exact_key(a: str, b: str) -> None:
    assert (exact_key("t", "chat", "m", chat(a)) == exact_key("t", "chat", "m", chat(b))) == (a == b)


def test_tenant_endpoint_and_alias_are_in_the_exact_key() -> None:
    body = chat()
    base = exact_key("team:a", "chat", "m", body)
    assert base != exact_key("team:b", "chat", "m", body)
    assert base != exact_key("key:k1", "chat", "m", body)
    assert base != exact_key("team:a", "completion", "m", body)
    assert base != exact_key("team:a", "chat", "m2", body)
    assert exact_key("team:a", "embedding", "e", {"input": "x"}) != \
        exact_key("team:a", "embedding", "e", {"input": "y"})


def _dimension_changes() -> dict[str, dict[str, Any]]:
    body = chat()

    def with_messages(change: Any) -> dict[str, Any]:
        changed = chat()
        change(changed["messages"])
        return {"body": changed}

    return {
        "tenant": {"tenant": "team:b"},
        "alias": {"alias": "m2"},
        "embedder": {"embedder": "e2"},
        "parameter": {"body": {**body, "temperature": 0.5}},
        "system prompt": with_messages(lambda m: m[0].update(content="be verbose")),
        "earlier user turn": with_messages(lambda m: m[1].update(content="hello there enemy")),
        "earlier assistant turn": with_messages(lambda m: m[2].update(content="hey")),
        "turn dropped": with_messages(lambda m: m.pop(2)),
        "last turn's name": with_messages(lambda m: m[3].update(name="bob")),
    }


@pytest.mark.parametrize(("dimension", "change"), list(_dimension_changes().items()))
def test_each_scope_dimension_changed_alone_changes_the_scope(dimension: str, change: dict[str, Any]) -> None:
    base: dict[str, Any] = {"body": chat(), "tenant": "team:a", "alias": "m", "embedder": "e1"}
    assert scope(**base) != scope(**{**base, **change}), dimension


@settings(max_examples=100, deadline=None)
@given(a=st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=8), min_size=3, max_size=8).map(" ".join),
       b=st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=8), min_size=3, max_size=8).map(" ".join))
def test_the_last_user_message_is_the_vector_not_the_scope(a: str, b: str) -> None:
    one = semantic_query("t", "chat", "m", chat(a), "e", min_words=3)
    two = semantic_query("t", "chat", "m", chat(b), "e", min_words=3)
    assert isinstance(one, SemanticQuery) and isinstance(two, SemanticQuery)
    assert one.scope == two.scope
    assert (one.text, two.text) == (a, b)


@pytest.mark.parametrize(("body", "reason"), [
    (chat(n=2), "n>1"),
    (chat("ok"), "short"),
    (chat("continue please"), "short"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "what is in this picture"},
                                                {"type": "image_url", "image_url": {"url": "data:,"}}]}]},
     "multimodal"),
    ({"messages": [{"role": "user", "content": "call the weather tool now"},
                   {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
                   {"role": "tool", "tool_call_id": "c1", "content": "sunny and warm today"}]}, "tool-turn"),
    ({"messages": [{"role": "user", "content": "write me a poem please"},
                   {"role": "assistant", "content": "Roses are"}]}, "no-user-turn"),
])
def test_requests_the_semantic_tier_skips(body: dict[str, Any], reason: str) -> None:
    assert semantic_query("t", "chat", "m", body, "e", min_words=3) == SemanticSkip(reason)


def test_text_parts_are_joined_and_other_endpoints_skip() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "tell me"},
                                                       {"type": "text", "text": "a short joke"}]}]}
    query = semantic_query("t", "chat", "m", body, "e", min_words=3)
    assert isinstance(query, SemanticQuery) and query.text == "tell me\na short joke"
    assert semantic_query("t", "completion", "m", {"prompt": "one two three"}, "e", min_words=1) == \
        SemanticSkip("endpoint")


def test_tenant_is_the_team_else_the_key_unless_shared() -> None:
    teamed = Principal(key_id="k1", alias="a", role="user", team="blue")
    solo = Principal(key_id="k2", alias="b", role="user")
    assert tenant_of(teamed, share_across_keys=False) == tenant_of(teamed, share_across_keys=True) == "team:blue"
    assert tenant_of(solo, share_across_keys=False) == "key:k2"
    assert tenant_of(solo, share_across_keys=True) == "shared"
    assert tenant_of(Principal(key_id="k3", alias="c", role="user"), share_across_keys=False) != "key:k2"


SETTINGS = CacheSettings(min_threshold=0.8, max_threshold=0.99, max_ttl_seconds=600)


def test_controls_from_headers() -> None:
    assert parse_controls({}, SETTINGS).no_cache is False
    both = parse_controls({"x-gateway-cache": "No-Cache, no-store"}, SETTINGS)
    assert (both.no_cache, both.no_store) == (True, True)
    assert parse_controls({"cache-control": "max-age=0, no-store"}, SETTINGS).no_store is True
    assert parse_controls({"x-gateway-cache-ttl": "30"}, SETTINGS).ttl_seconds == 30
    assert parse_controls({"x-gateway-cache-ttl": "99999"}, SETTINGS).ttl_seconds == 600
    assert parse_controls({"x-gateway-cache-threshold": "0.9"}, SETTINGS).threshold == 0.9


@pytest.mark.parametrize("headers", [
    {"x-gateway-cache": "no-cache, sometimes"},
    {"x-gateway-cache": ""},
    {"x-gateway-cache-ttl": "soon"},
    {"x-gateway-cache-ttl": "0"},
    {"x-gateway-cache-ttl": "nan"},
    {"x-gateway-cache-threshold": "0.5"},
    {"x-gateway-cache-threshold": "1.0"},
    {"x-gateway-cache-threshold": "inf"},
])
def test_unusable_controls_are_a_400_naming_the_header(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_controls(headers, SETTINGS)
    assert raised.value.param == next(iter(headers))
