"""Directive-driven misbehaviour shared by every route: delay, hang, injected errors, cut, garbage.

Routes call :func:`before_response` first; a returned :class:`Fault` is rendered in the route's
own error envelope. ``cut`` and ``malformed`` need the response under way, so they are helpers
the routes call at the right moment.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.mock_upstream.behaviour import Behaviour
from gateway.mock_upstream.errors import Fault
from gateway.mock_upstream.stats import ATTEMPT, STATE

MALFORMED_BODY = b'{"id": "mock-malformed", "object": "chat.completion", "choices": [{"index": 0, '
"""A 200 body that is cut inside a JSON object, so every JSON parser rejects it."""


async def before_response(request: web.Request, behaviour: Behaviour, model: str) -> Fault | None:
    """Apply ``latency`` and ``hang``; return the injected failure (``status``/``fail_first``), if any.

    ``hang`` waits until the handler is cancelled, which aiohttp does when the client disconnects
    (the server runs with ``handler_cancellation=True``) or when the server shuts down.
    """
    if behaviour.latency > 0:
        await asyncio.sleep(behaviour.latency)
    if behaviour.hang:
        await asyncio.Event().wait()
    if behaviour.fail_first:
        if request[ATTEMPT] > behaviour.fail_first:
            return None
    elif behaviour.status is None:
        return None
    status = behaviour.failure_status
    message = None
    if status == 404:
        message = f"The model `{model}` does not exist or you do not have access to it."
    return Fault(status, message=message, retry_after=behaviour.retry_after)


def openai_context_fault(behaviour: Behaviour, prompt_tokens: int, param: str) -> Fault | None:
    """OpenAI's ``context_length_exceeded`` when the prompt is longer than ``context=N``."""
    limit = behaviour.context
    if limit is None or prompt_tokens <= limit:
        return None
    return Fault(
        400,
        message=(
            f"This model's maximum context length is {limit} tokens. However, your messages "
            f"resulted in {prompt_tokens} tokens. Please reduce the length of the messages."
        ),
        param=param,
        code="context_length_exceeded",
    )


def anthropic_context_fault(behaviour: Behaviour, prompt_tokens: int) -> Fault | None:
    """Anthropic's ``prompt is too long`` when the prompt is longer than ``context=N``."""
    limit = behaviour.context
    if limit is None or prompt_tokens <= limit:
        return None
    return Fault(400, message=f"prompt is too long: {prompt_tokens} tokens > {limit} maximum")


def malformed_response() -> web.Response:
    """A 200 ``application/json`` response whose body is not valid JSON."""
    return web.Response(body=MALFORMED_BODY, content_type="application/json")


async def cut_body(request: web.Request, body: bytes) -> web.StreamResponse:
    """Send the headers (with the full ``Content-Length``) and half of ``body``, then hang up."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    hang_up(request)
    return response


def hang_up(request: web.Request) -> None:
    """Close the connection after what was written is flushed, and count the abort.

    ``transport.close()`` (unlike ``abort()``) still sends the buffered bytes, so the client sees
    exactly the chunks before the cut and then an incomplete body.
    """
    request.app[STATE].aborted += 1
    transport = request.transport
    if transport is not None:
        transport.close()
