"""Anthropic's Messages API: ``POST /v1/messages`` (streamed or not) and ``/v1/messages/count_tokens``.

Mirrors the real API's shapes: ``max_tokens`` is required, errors use
``{"type": "error", "error": {...}}``, and a stream is the documented event sequence
``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``...,
``content_block_stop``, ``message_delta``, ``message_stop``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from gateway.mock_upstream import conversation, sse, tokens
from gateway.mock_upstream.behaviour import Behaviour, parse_behaviour
from gateway.mock_upstream.errors import Fault, anthropic_response
from gateway.mock_upstream.faults import (
    anthropic_context_fault,
    before_response,
    cut_body,
    malformed_response,
)
from gateway.mock_upstream.params import InvalidParam, model_name, optional_int, required_list
from gateway.mock_upstream.shaping import shape, stop_list
from gateway.mock_upstream.stats import BODY
from gateway.mock_upstream.tool_calls import PlannedCall, plan_anthropic

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence"}


@dataclass(frozen=True, slots=True)
class Reply:
    """A computed Messages reply: one text block, or tool_use blocks."""

    id: str
    model: str
    text: str
    calls: tuple[PlannedCall, ...]
    stop_reason: str
    stop_sequence: str | None
    input_tokens: int

    @property
    def output_tokens(self) -> int:
        if self.calls:
            return sum(tokens.count_tokens(f"{c.name} {c.arguments_json}") for c in self.calls)
        return tokens.count_tokens(self.text)

    def usage(self, output_tokens: int) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }


def build_reply(body: dict[str, Any], model: str, behaviour: Behaviour, input_tokens: int) -> Reply:
    """Compute the reply; raises :class:`InvalidParam` on bad fields."""
    messages = body["messages"]
    max_tokens = optional_int(body, "max_tokens", low=1, high=1 << 30)
    query = conversation.last_user_text(messages)
    tool_result = conversation.anthropic_tool_result(messages)
    calls = plan_anthropic(body, behaviour.tool, tool_result is not None, query)
    reply_id = f"msg_01{uuid.uuid4().hex[:22]}"
    if calls:
        return Reply(reply_id, model, "", tuple(calls), "tool_use", None, input_tokens)
    text = query if tool_result is None else f"tool result received: {tool_result}"
    shaped = shape(
        text, stops=stop_list(body.get("stop_sequences")), max_tokens=max_tokens, chunks=behaviour.chunks
    )
    return Reply(
        reply_id,
        model,
        shaped.text,
        (),
        _STOP_REASONS[shaped.finish],
        shaped.stop_sequence,
        input_tokens,
    )


def _blocks(reply: Reply) -> list[dict[str, Any]]:
    if reply.calls:
        return [
            {"type": "tool_use", "id": f"toolu_01{c.id_suffix[:22]}", "name": c.name, "input": c.arguments}
            for c in reply.calls
        ]
    return [{"type": "text", "text": reply.text}]


def message_object(reply: Reply) -> dict[str, Any]:
    """The non-streamed ``message`` object."""
    return {
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": _blocks(reply),
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": reply.usage(reply.output_tokens),
    }


def stream_events(reply: Reply, behaviour: Behaviour) -> Iterator[sse.Event]:
    """The Messages stream, one content block per text reply or per tool call."""
    start = {**message_object(reply), "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = reply.usage(1)
    yield sse.named("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(_blocks(reply)):
        if block["type"] == "tool_use":
            opening = {**block, "input": {}}
            kind, field = "input_json_delta", "partial_json"
            parts = ["", *tokens.pieces(orjson.dumps(block["input"]).decode())]
            ranges = [(i, i + 1) for i in range(len(parts))]
        else:
            opening = {"type": "text", "text": ""}
            kind, field = "text_delta", "text"
            parts = tokens.pieces(reply.text)
            ranges = tokens.spans(len(parts), behaviour.chunks)
        yield sse.named(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": opening}
        )
        if index == 0:
            yield sse.named("ping", {"type": "ping"})
        for begin, end in ranges:
            delta = {"type": kind, field: "".join(parts[begin:end])}
            payload = {"type": "content_block_delta", "index": index, "delta": delta}
            yield sse.named("content_block_delta", payload, content=True)
        yield sse.named("content_block_stop", {"type": "content_block_stop", "index": index})
    yield sse.named(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
            "usage": {"output_tokens": reply.output_tokens},
        },
    )
    yield sse.named("message_stop", {"type": "message_stop"})


def _validate(body: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    if body is None:
        raise InvalidParam("body", "Request body must be a JSON object.")
    model = model_name(body)
    required_list(body, "messages")
    if optional_int(body, "max_tokens", low=1, high=1 << 30) is None:
        raise InvalidParam("max_tokens", "max_tokens: Field required")
    return body, model


async def messages(request: web.Request) -> web.StreamResponse:
    """Handle one Messages request according to its model's directives."""
    try:
        body, model = _validate(request[BODY])
    except InvalidParam as exc:
        return anthropic_response(exc.fault)
    behaviour = parse_behaviour(model)
    input_tokens = conversation.anthropic_prompt_tokens(body.get("system"), body["messages"])
    reply = build_reply(body, model, behaviour, input_tokens)
    fault = await before_response(request, behaviour, model)
    if fault is None:
        fault = anthropic_context_fault(behaviour, input_tokens)
    if fault is not None:
        return anthropic_response(fault)
    streaming = body.get("stream") is True
    if behaviour.malformed:
        if streaming:
            broken = (b'event: content_block_delta\ndata: {"type": "content_block_delta", \n\n', True)
            return await sse.stream(request, behaviour, [broken])
        return malformed_response()
    if streaming:
        return await sse.stream(request, behaviour, stream_events(reply, behaviour))
    payload = orjson.dumps(message_object(reply))
    if behaviour.cut is not None:
        return await cut_body(request, payload)
    return web.Response(body=payload, content_type="application/json")


async def count_tokens(request: web.Request) -> web.Response:
    """``{"input_tokens": N}`` with the same count ``/v1/messages`` reports."""
    body = request[BODY]
    if body is None or not isinstance(body.get("messages"), list):
        return anthropic_response(Fault(400, message="messages: Field required"))
    input_tokens = conversation.anthropic_prompt_tokens(body.get("system"), body["messages"])
    return web.Response(body=orjson.dumps({"input_tokens": input_tokens}), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
