"""OpenAI endpoints other than chat: legacy ``/v1/completions``, ``/v1/embeddings``, ``/v1/models``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
from aiohttp import web

from gateway.mock_upstream import sse, tokens, vectors
from gateway.mock_upstream.behaviour import Behaviour, parse_behaviour
from gateway.mock_upstream.errors import openai_response
from gateway.mock_upstream.faults import before_response, cut_body, malformed_response, openai_context_fault
from gateway.mock_upstream.openai_chat import FINGERPRINT, chat_completions, usage_block
from gateway.mock_upstream.params import InvalidParam, model_name, optional_int
from gateway.mock_upstream.shaping import shape, stop_list
from gateway.mock_upstream.stats import BODY

DEFAULT_DIM = 64
MODEL_IDS = ("mock", "mock+tool", "mock-embedding", "claude-mock")
_BAD_BODY = "We could not parse the JSON body of your request. Expected a JSON object."


def _is_token_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 1 << 32 for t in value)
    )


def _inputs(value: Any, param: str) -> list[str | list[int]]:
    """Normalise a prompt/input field: string, strings, token ids, or lists of token ids."""
    if isinstance(value, str):
        return [value]
    if _is_token_list(value):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) or _is_token_list(v) for v in value):
        return list(value)
    raise InvalidParam(param, f"'{param}' must be a string, an array of strings, or token arrays.")


def _token_count(item: str | list[int]) -> int:
    return tokens.count_tokens(item) if isinstance(item, str) else len(item)


def _start(request: web.Request) -> tuple[dict[str, Any], str, Behaviour]:
    """The body, model name and behaviour of a request; raises :class:`InvalidParam`."""
    body = request[BODY]
    if body is None:
        raise InvalidParam("body", _BAD_BODY)
    model = model_name(body)
    return body, model, parse_behaviour(model)


async def completions(request: web.Request) -> web.StreamResponse:
    """Legacy text completion: each prompt is echoed back, ``n`` times."""
    try:
        body, model, behaviour = _start(request)
        prompts = _inputs(body.get("prompt"), "prompt")
        n = optional_int(body, "n", low=1, high=128) or 1
        max_tokens = optional_int(body, "max_tokens", low=1, high=1 << 30)
    except InvalidParam as exc:
        return openai_response(exc.fault)
    prompt_tokens = sum(_token_count(p) for p in prompts)
    fault = await before_response(request, behaviour, model)
    if fault is None:
        fault = openai_context_fault(behaviour, prompt_tokens, "prompt")
    if fault is not None:
        return openai_response(fault)
    stops = stop_list(body.get("stop"))
    texts: list[tuple[str, str]] = []
    for prompt in prompts:
        echo = prompt if isinstance(prompt, str) else " ".join(str(t) for t in prompt)
        shaped = shape(echo, stops=stops, max_tokens=max_tokens, chunks=behaviour.chunks)
        finish = "length" if shaped.finish == "length" else "stop"
        texts.extend((shaped.text, finish) for _ in range(n))
    completion_tokens = sum(tokens.count_tokens(text) for text, _ in texts)
    usage = usage_block(prompt_tokens, completion_tokens)
    completion_id = f"cmpl-{uuid.uuid4().hex[:24]}"
    base = {
        "id": completion_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": FINGERPRINT,
    }
    streaming = body.get("stream") is True
    if behaviour.malformed:
        if streaming:
            broken = (b'data: {"id": "' + completion_id.encode() + b'", "choices": [\n\n', True)
            return await sse.stream(request, behaviour, [broken, sse.DONE])
        return malformed_response()
    if streaming:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        events = _completion_events(base, texts, behaviour, usage if include_usage else None)
        return await sse.stream(request, behaviour, events)
    choices = [
        {"text": text, "index": i, "logprobs": None, "finish_reason": finish}
        for i, (text, finish) in enumerate(texts)
    ]
    payload = orjson.dumps({**base, "choices": choices, "usage": usage})
    if behaviour.cut is not None:
        return await cut_body(request, payload)
    return web.Response(body=payload, content_type="application/json")


def _completion_events(
    base: dict[str, Any], texts: list[tuple[str, str]], behaviour: Behaviour, usage: dict[str, Any] | None
) -> Iterator[sse.Event]:
    head = {**base, "usage": None} if usage is not None else base
    for index, (text, finish) in enumerate(texts):
        parts = tokens.pieces(text)
        for start, end in tokens.spans(len(parts), behaviour.chunks):
            choice = {
                "text": "".join(parts[start:end]),
                "index": index,
                "logprobs": None,
                "finish_reason": None,
            }
            yield sse.data({**head, "choices": [choice]}, content=True)
        choice = {"text": "", "index": index, "logprobs": None, "finish_reason": finish}
        yield sse.data({**head, "choices": [choice]})
    if usage is not None:
        yield sse.data({**base, "choices": [], "usage": usage})
    yield sse.DONE


async def embeddings(request: web.Request) -> web.StreamResponse:
    """Deterministic unit vectors, one per input, as floats or base64 float32."""
    try:
        body, model, behaviour = _start(request)
        items = _inputs(body.get("input"), "input")
        dim = optional_int(body, "dimensions", low=1, high=65536) or behaviour.dim or DEFAULT_DIM
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise InvalidParam("encoding_format", "'encoding_format' must be 'float' or 'base64'.")
    except InvalidParam as exc:
        return openai_response(exc.fault)
    prompt_tokens = sum(_token_count(item) for item in items)
    fault = await before_response(request, behaviour, model)
    if fault is None:
        fault = openai_context_fault(behaviour, prompt_tokens, "input")
    if fault is not None:
        return openai_response(fault)
    if behaviour.malformed:
        return malformed_response()
    data = []
    for index, item in enumerate(items):
        vector = vectors.embed(vectors.input_bytes(item), dim)
        encoded: list[float] | str = vectors.to_base64(vector) if encoding == "base64" else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    payload = orjson.dumps(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
    )
    if behaviour.cut is not None:
        return await cut_body(request, payload)
    return web.Response(body=payload, content_type="application/json")


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "mock-upstream"}


async def list_models(request: web.Request) -> web.Response:
    """A short fixed list; any other name works too, since directives live in the name."""
    return web.json_response(
        {"object": "list", "data": [_model(m) for m in MODEL_IDS]}, dumps=lambda o: orjson.dumps(o).decode()
    )


async def get_model(request: web.Request) -> web.Response:
    """Every model exists (its name only selects behaviour)."""
    return web.json_response(_model(request.match_info["model"]), dumps=lambda o: orjson.dumps(o).decode())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)
