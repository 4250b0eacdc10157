"""Write a server-sent-event stream with the pacing and cutting the directives ask for.

Routes build their events as plain bytes (no I/O); :func:`stream` owns the timing: ``ttft`` before
the first event, ``chunk_delay`` before every content event after the first, and ``cut=N`` hangs
up once N content events are out. Unpaced streams are written in large batches, because one
``write`` per token costs more than the whole reply is worth in a benchmark.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import MappingProxyType
from typing import Any

import orjson
from aiohttp import web

from gateway.mock_upstream.behaviour import Behaviour
from gateway.mock_upstream.faults import hang_up

Event = tuple[bytes, bool]
"""An encoded event and whether it carries content (the unit ``chunk_delay`` and ``cut`` count)."""

DONE: Event = (b"data: [DONE]\n\n", False)
_FLUSH_AT = 64 * 1024
_HEADERS = MappingProxyType({"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"})


def data(obj: Any, *, content: bool = False) -> Event:
    """An OpenAI-style ``data: {...}`` event."""
    return b"data: " + orjson.dumps(obj) + b"\n\n", content


def named(name: str, obj: Any, *, content: bool = False) -> Event:
    """An Anthropic-style ``event: name`` / ``data: {...}`` event."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n", content


async def stream(request: web.Request, behaviour: Behaviour, events: Iterable[Event]) -> web.StreamResponse:
    """Send ``events`` as a 200 ``text/event-stream`` response, honouring the timing directives.

    With ``cut=N`` the connection closes after ``min(N, content events)`` content events, so the
    terminal events (finish chunk, ``[DONE]``, ``message_stop``) are never sent.
    """
    listed = list(events)
    cut = behaviour.cut
    if cut is not None:
        cut = min(cut, sum(1 for _, content in listed if content))
    response = web.StreamResponse(headers=_HEADERS)
    await response.prepare(request)
    paced = behaviour.ttft > 0 or behaviour.chunk_delay > 0
    buffer: list[bytes] = []
    size = 0
    sent_content = 0
    first = True
    for payload, content in listed:
        if cut is not None and sent_content >= cut:
            await _flush(response, buffer)
            hang_up(request)
            return response
        pause = behaviour.ttft if first else behaviour.chunk_delay if content and sent_content else 0.0
        first = False
        if pause > 0:
            await _flush(response, buffer)
            size = 0
            await asyncio.sleep(pause)
        buffer.append(payload)
        size += len(payload)
        sent_content += content
        if paced or size >= _FLUSH_AT:
            await _flush(response, buffer)
            size = 0
    await _flush(response, buffer)
    await response.write_eof()
    return response


async def _flush(response: web.StreamResponse, buffer: list[bytes]) -> None:
    if buffer:
        joined = b"".join(buffer)
        buffer.clear()
        await response.write(joined)
