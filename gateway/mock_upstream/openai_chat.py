"""``POST /v1/chat/completions``: OpenAI's chat completion, streamed or not.

The reply is computed once (:func:`build_reply`, no I/O) and then rendered either as a
``chat.completion`` object or as ``chat.completion.chunk`` events, so both forms always carry
the same content, tool calls and usage.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from gateway.mock_upstream import conversation, logprobs, sse, tokens
from gateway.mock_upstream.behaviour import Behaviour, parse_behaviour
from gateway.mock_upstream.errors import Fault, openai_response
from gateway.mock_upstream.faults import before_response, cut_body, malformed_response, openai_context_fault
from gateway.mock_upstream.params import InvalidParam, model_name, optional_int, required_list
from gateway.mock_upstream.shaping import json_reply, shape, stop_list
from gateway.mock_upstream.stats import BODY
from gateway.mock_upstream.tool_calls import PlannedCall, plan_openai

FINGERPRINT = "fp_mock"
_BAD_BODY = "We could not parse the JSON body of your request. Expected a JSON object."


@dataclass(frozen=True, slots=True)
class Choice:
    """One choice: text (possibly empty) or tool calls."""

    text: str
    finish: str
    calls: tuple[PlannedCall, ...] = ()


@dataclass(frozen=True, slots=True)
class Reply:
    """Everything both renderings need."""

    id: str
    created: int
    model: str
    choices: tuple[Choice, ...]
    prompt_tokens: int
    top_logprobs: int | None
    """``None`` when logprobs were not requested."""

    @property
    def completion_tokens(self) -> int:
        return sum(_choice_tokens(choice) for choice in self.choices)

    def usage(self) -> dict[str, Any]:
        return usage_block(self.prompt_tokens, self.completion_tokens)


def usage_block(prompt: int, completion: int) -> dict[str, Any]:
    """OpenAI's ``usage`` object, with the detail blocks current SDKs expect."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _choice_tokens(choice: Choice) -> int:
    if choice.calls:
        return sum(tokens.count_tokens(f"{c.name} {c.arguments_json}") for c in choice.calls)
    return tokens.count_tokens(choice.text)


def build_reply(body: dict[str, Any], model: str, behaviour: Behaviour, prompt_tokens: int) -> Reply:
    """Compute the reply for a request; raises :class:`InvalidParam` on bad fields."""
    messages = required_list(body, "messages")
    n = optional_int(body, "n", low=1, high=128) or 1
    max_tokens = optional_int(body, "max_completion_tokens", low=1, high=1 << 30)
    if max_tokens is None:
        max_tokens = optional_int(body, "max_tokens", low=1, high=1 << 30)
    top = optional_int(body, "top_logprobs", low=0, high=20) or 0
    query = conversation.last_user_text(messages)
    tool_result = conversation.openai_tool_result(messages)
    choices: list[Choice] = []
    for _ in range(n):
        calls = plan_openai(body, behaviour.tool, tool_result is not None, query)
        if calls:
            choices.append(Choice("", "tool_calls", tuple(calls)))
            continue
        text = json_reply(body.get("response_format"), query)
        if text is None:
            text = query if tool_result is None else f"tool result received: {tool_result}"
        shaped = shape(
            text, stops=stop_list(body.get("stop")), max_tokens=max_tokens, chunks=behaviour.chunks
        )
        choices.append(Choice(shaped.text, "length" if shaped.finish == "length" else "stop"))
    return Reply(
        id=f"chatcmpl-{uuid.uuid4().hex[:24]}",
        created=int(time.time()),
        model=model,
        choices=tuple(choices),
        prompt_tokens=prompt_tokens,
        top_logprobs=top if body.get("logprobs") is True else None,
    )


def _tool_call(call: PlannedCall, index: int | None = None) -> dict[str, Any]:
    """A complete call, or with ``index`` the header delta of a streamed call (empty arguments)."""
    entry: dict[str, Any] = {"index": index} if index is not None else {}
    entry.update(
        {
            "id": f"call_{call.id_suffix}",
            "type": "function",
            "function": {"name": call.name, "arguments": "" if index is not None else call.arguments_json},
        }
    )
    return entry


def completion_object(reply: Reply) -> dict[str, Any]:
    """The non-streamed ``chat.completion`` object."""
    choices = []
    for index, choice in enumerate(reply.choices):
        message: dict[str, Any] = {"role": "assistant", "refusal": None, "annotations": []}
        lp: dict[str, Any] | None = None
        if choice.calls:
            message["content"] = None
            message["tool_calls"] = [_tool_call(call) for call in choice.calls]
        else:
            message["content"] = choice.text
            if reply.top_logprobs is not None:
                content = logprobs.entries(tokens.pieces(choice.text), reply.top_logprobs)
                lp = {"content": content, "refusal": None}
        choices.append({"index": index, "message": message, "logprobs": lp, "finish_reason": choice.finish})
    return {
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": choices,
        "usage": reply.usage(),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def chunk_events(reply: Reply, behaviour: Behaviour, include_usage: bool) -> Iterator[sse.Event]:
    """The ``chat.completion.chunk`` events of a stream, ending with ``[DONE]``."""
    base: dict[str, Any] = {
        "id": reply.id,
        "object": "chat.completion.chunk",
        "created": reply.created,
        "model": reply.model,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    if include_usage:
        base["usage"] = None

    def chunk(index: int, delta: dict[str, Any], content: bool, **extra: Any) -> sse.Event:
        entry = {"index": index, "delta": delta, "logprobs": None, "finish_reason": None, **extra}
        return sse.data({**base, "choices": [entry]}, content=content)

    for index, choice in enumerate(reply.choices):
        if choice.calls:
            yield from _tool_call_chunks(index, choice.calls, chunk)
        else:
            yield chunk(index, {"role": "assistant", "content": "", "refusal": None}, False)
            parts = tokens.pieces(choice.text)
            entries = logprobs.entries(parts, reply.top_logprobs) if reply.top_logprobs is not None else None
            for start, end in tokens.spans(len(parts), behaviour.chunks):
                lp = {"content": entries[start:end], "refusal": None} if entries is not None else None
                yield chunk(index, {"content": "".join(parts[start:end])}, True, logprobs=lp)
        yield chunk(index, {}, False, finish_reason=choice.finish)
    if include_usage:
        yield sse.data({**base, "choices": [], "usage": reply.usage()})
    yield sse.DONE


def _tool_call_chunks(
    index: int, calls: tuple[PlannedCall, ...], chunk: Callable[[int, dict[str, Any], bool], sse.Event]
) -> Iterator[sse.Event]:
    """OpenAI's tool-call deltas: a header per call, then argument fragments with only ``index``."""
    for position, call in enumerate(calls):
        delta: dict[str, Any] = {"tool_calls": [_tool_call(call, position)]}
        if position == 0:
            delta = {"role": "assistant", "content": None, "refusal": None, **delta}
        yield chunk(index, delta, True)
        for fragment in tokens.pieces(call.arguments_json):
            yield chunk(
                index, {"tool_calls": [{"index": position, "function": {"arguments": fragment}}]}, True
            )


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Handle one chat completion request according to its model's directives."""
    body = request[BODY]
    if body is None:
        return openai_response(Fault(400, message=_BAD_BODY))
    try:
        model = model_name(body)
        behaviour = parse_behaviour(model)
        prompt = conversation.openai_prompt_tokens(required_list(body, "messages"))
        reply = build_reply(body, model, behaviour, prompt)
    except InvalidParam as exc:
        return openai_response(exc.fault)
    fault = await before_response(request, behaviour, model)
    if fault is None:
        fault = openai_context_fault(behaviour, prompt, "messages")
    if fault is not None:
        return openai_response(fault)
    streaming = body.get("stream") is True
    if behaviour.malformed:
        if streaming:
            broken = (b'data: {"id": "' + reply.id.encode() + b'", "choices": [{"delta": \n\n', True)
            return await sse.stream(request, behaviour, [broken, sse.DONE])
        return malformed_response()
    if streaming:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        return await sse.stream(request, behaviour, chunk_events(reply, behaviour, include_usage))
    payload = orjson.dumps(completion_object(reply))
    if behaviour.cut is not None:
        return await cut_body(request, payload)
    return web.Response(body=payload, content_type="application/json")
