"""Request validation: the first offending field is named as OpenAI's ``param``; nothing else escapes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from gateway.api.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, validate_body
from gateway.errors import InvalidRequest

USER = {"role": "user", "content": "hi"}


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [USER], **fields}


def _param(model: type[BaseModel], body: Any) -> str | None:
    with pytest.raises(InvalidRequest) as caught:
        validate_body(model, body)
    error = caught.value
    assert error.status == 400
    assert error.envelope()["error"]["param"] == error.param
    if error.param is not None:
        assert f"'{error.param}'" in error.message
    return error.param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"messages": [USER]}, "model"),
        ({"model": "", "messages": [USER]}, "model"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"model": "m", "messages": [USER, {"content": "x"}]}, "messages.1.role"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        (_chat(temperature=3), "temperature"),
        (_chat(temperature="hot"), "temperature"),
        (_chat(top_p=1.5), "top_p"),
        (_chat(n=0), "n"),
        (_chat(max_tokens=0), "max_tokens"),
        (_chat(stop=["a", "b", "c", "d", "e"]), "stop"),
        (_chat(tools=[{"type": "function", "function": {"name": "bad name"}}]), "tools.0.function.name"),
        (_chat(tools=[{"type": "function", "function": {}}]), "tools.0.function.name"),
        (_chat(tools=[{"type": "retrieval", "function": {"name": "f"}}]), "tools.0.type"),
        (_chat(response_format={"type": "yaml"}), "response_format.type"),
        (_chat(stream="maybe"), "stream"),
    ],
)
def test_chat_errors_name_the_field(body: dict[str, Any], param: str) -> None:
    assert _param(ChatCompletionRequest, body) == param


def test_missing_field_message() -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_body(ChatCompletionRequest, {"model": "m"})
    assert caught.value.message == "invalid value for 'messages': this field is required"


@pytest.mark.parametrize("body", [[], "text", 3, None, [{"model": "m"}]])
def test_body_must_be_an_object(body: Any) -> None:
    assert _param(ChatCompletionRequest, body) is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "input"),
        ({"model": "m", "input": ""}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": {"text": "x"}}, "input"),
        ({"model": "m", "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"model": "m", "input": "x", "dimensions": 0}, "dimensions"),
    ],
)
def test_embedding_errors_name_the_field(body: dict[str, Any], param: str) -> None:
    assert _param(EmbeddingRequest, body) == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "prompt"),
        ({"model": "m", "prompt": "x", "logprobs": 6}, "logprobs"),
        ({"model": "m", "prompt": {"a": 1}}, "prompt"),
    ],
)
def test_completion_errors_name_the_field(body: dict[str, Any], param: str) -> None:
    assert _param(CompletionRequest, body) == param


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (ChatCompletionRequest, _chat()),
        (ChatCompletionRequest, _chat(
            messages=[{"role": "system", "content": "be brief"},
                      {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                      {"role": "assistant", "content": None,
                       "tool_calls": [{"id": "c1", "type": "function",
                                       "function": {"name": "f", "arguments": "{}"}}]},
                      {"role": "tool", "tool_call_id": "c1", "content": "42"}],
            tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
            tool_choice="auto", stream=True, stream_options={"include_usage": True},
            response_format={"type": "json_object"}, stop="\n", temperature=0, top_p=1, n=2)),
        (EmbeddingRequest, {"model": "m", "input": ["a", "b"]}),
        (EmbeddingRequest, {"model": "m", "input": [1, 2, 3]}),
        (EmbeddingRequest, {"model": "m", "input": [[1, 2], [3]]}),
        (CompletionRequest, {"model": "m", "prompt": ["a", "b"], "max_tokens": 0}),
    ],
)
def test_valid_bodies(model: type[BaseModel], body: dict[str, Any]) -> None:
    assert validate_body(model, body) is None


def test_extra_fields_are_allowed_everywhere() -> None:
    body = _chat(
        messages=[{"role": "user", "content": "hi", "cache_control": {"type": "ephemeral"}}],
        tools=[{"type": "function", "function": {"name": "f", "strict": True}, "x-vendor": 1}],
        reasoning_effort="low", metadata={"trace": "abc"}, logit_bias={"50256": -100},
        stream_options={"include_usage": True, "continuous_usage_stats": True},
    )
    assert validate_body(ChatCompletionRequest, body) is None
    assert validate_body(EmbeddingRequest, {"model": "m", "input": "x", "input_type": "query"}) is None


def test_validation_does_not_change_the_body() -> None:
    body = _chat(temperature=1, extra={"nested": [1, 2]})
    before = repr(body)
    validate_body(ChatCompletionRequest, body)
    assert repr(body) == before


# -- property: only InvalidRequest can come out ---------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                      max_size=4),
    max_leaves=20,
)

ROLES = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "robot", ""])
MESSAGE = st.dictionaries(
    st.sampled_from(["role", "content", "name", "tool_call_id", "tool_calls", "extra"]),
    JSON | ROLES,
    max_size=5,
) | st.fixed_dictionaries({"role": ROLES}, optional={"content": JSON})
FIELDS = st.dictionaries(
    st.sampled_from(["temperature", "top_p", "n", "stop", "tools", "tool_choice", "stream",
                     "stream_options", "response_format", "max_tokens", "logprobs", "seed", "x"]),
    JSON, max_size=4)


def _only_invalid_request(model: type[BaseModel], body: Any) -> None:
    """validate_body returns None or raises InvalidRequest; any other exception fails the test."""
    error: InvalidRequest | None = None
    try:
        result = validate_body(model, body)
    except InvalidRequest as caught:
        error = caught
    if error is None:
        assert result is None
        assert isinstance(body, dict)
    else:
        assert error.message
        assert error.status == 400
        assert error.param is None or isinstance(error.param, str)


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_any_json_value_is_accepted_or_rejected_as_invalid_request(body: Any) -> None:
    for model in (ChatCompletionRequest, CompletionRequest, EmbeddingRequest):
        _only_invalid_request(model, body)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20) | JSON, st.lists(MESSAGE | JSON, max_size=4) | JSON, FIELDS)
def test_chat_bodies_with_random_messages(model: Any, messages: Any, fields: dict[str, Any]) -> None:
    _only_invalid_request(ChatCompletionRequest, {**fields, "model": model, "messages": messages})
