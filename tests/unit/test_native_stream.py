"""The native engine's stream relay against a raw aiohttp server that sends its bytes in chosen pieces:
events that arrive together are relayed together, events split across reads are put back together,
and the accounting (events relayed, usage, finish reasons) and the error rules hold either way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.cache.replay import StreamRecorder
from gateway.config import parse_config
from gateway.errors import UpstreamBadResponse, UpstreamError
from gateway.routing import native
from gateway.routing.deployments import Deployment, build_deployments
from gateway.routing.native import NativeEngine, NativeStream
from gateway.routing.types import DONE_FRAME, UpstreamCall

Script = list[bytes]
"""What the server writes, one ``write`` per item, with a short pause between items."""


def event(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def chunk(content: str | None = None, finish: str | None = None, role: str | None = None) -> bytes:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return event({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m-2024",
                  "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                  "usage": None})


WORDS = ["the", " quick", " brown", " fox", " jumps"]
CONTENT = [chunk("", role="assistant"), *(chunk(w) for w in WORDS), chunk(finish="stop")]
USAGE = event({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m-2024", "choices": [],
               "usage": {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}})
ERROR = event({"error": {"message": "the model fell over", "type": "server_error"}})


class Upstream:
    def __init__(self) -> None:
        self.script: Script = []
        self.finish = True  # False: close the connection after the script instead of ending the body

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for piece in self.script:
            await response.write(piece)
            await asyncio.sleep(0.002)  # so that each piece arrives in a read of its own
        if not self.finish:
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, Deployment]]:
    server = Upstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    config = parse_config({"model_list": [{"model_name": "m", "litellm_params": {
        "model": "openai/m", "api_base": f"http://127.0.0.1:{port}/v1", "api_key": "sk-upstream"}}]}, environ={})
    try:
        yield server, build_deployments(config)["m"][0]
    finally:
        await runner.cleanup()


async def relay(deployment: Deployment, *, usage: bool = False,
                before: Callable[[NativeStream], object] | None = None) -> tuple[NativeStream, list[bytes]]:
    """Open a stream as the pipeline does and read every blob the relay yields."""
    call = UpstreamCall(operation="chat", body={"model": "m", "stream": True,
                                               "messages": [{"role": "user", "content": "the quick brown fox jumps"}]},
                        stream=True, client_wants_usage=usage)
    async with aiohttp.ClientSession() as session:
        stream = await NativeEngine(session).open_stream(deployment, call)
        if before is not None:
            before(stream)
        blobs = [blob async for blob in stream]
    return stream, blobs


@pytest.mark.parametrize("usage", [True, False])
async def test_events_that_arrive_together_are_relayed_as_one_blob(upstream: tuple[Upstream, Deployment],
                                                                  usage: bool) -> None:
    server, deployment = upstream
    server.script = [b"".join([*CONTENT, USAGE, DONE_FRAME])]
    stream, blobs = await relay(deployment, usage=usage)
    expected = [*CONTENT, USAGE] if usage else CONTENT
    assert blobs == [b"".join([*expected, DONE_FRAME])]
    assert stream.relayed == len(expected) + 1  # events, [DONE] included
    assert stream.finished and stream.error is None
    assert stream.usage is not None and stream.usage.completion_tokens == 5  # read even when not relayed
    assert stream.finish_reasons == ["stop"]
    assert (stream.response_model, stream.response_id) == ("m-2024", "chatcmpl-1")


def pieces(data: bytes, size: int) -> Script:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [5, 64])
async def test_events_split_across_reads_mid_line_are_put_back_together(upstream: tuple[Upstream, Deployment],
                                                                       size: int) -> None:
    server, deployment = upstream
    whole = b"".join([*CONTENT, USAGE, DONE_FRAME])
    # CRLF line ends and a comment line are legal SSE; they must not leak into or break the relay.
    server.script = pieces(whole.replace(b"\n\n", b"\r\n\r\n").replace(USAGE[:10], b": keep-alive\n" + USAGE[:10]),
                           size)
    stream, blobs = await relay(deployment, usage=False)
    assert b"".join(blobs) == b"".join([*CONTENT, DONE_FRAME])
    assert len(blobs) > 1
    assert all(blob.endswith(b"\n\n") for blob in blobs), "a blob holds whole events only"
    assert blobs[-1].endswith(DONE_FRAME)
    assert stream.relayed == len(CONTENT) + 1
    assert stream.finished and stream.usage is not None


async def test_a_done_without_its_line_end_still_ends_the_stream(upstream: tuple[Upstream, Deployment]) -> None:
    server, deployment = upstream
    server.script = [b"".join(CONTENT), b"data: [DONE]"]
    stream, blobs = await relay(deployment)
    assert blobs == [b"".join(CONTENT), DONE_FRAME]
    assert stream.finished


async def test_an_error_inside_a_blob_ends_with_an_error_frame_after_the_events_before_it(
        upstream: tuple[Upstream, Deployment]) -> None:
    server, deployment = upstream
    server.script = [b"".join([*CONTENT[:3], ERROR, *CONTENT[3:], DONE_FRAME])]
    stream, blobs = await relay(deployment)
    assert len(blobs) == 2
    assert blobs[0] == b"".join(CONTENT[:3])
    assert orjson.loads(blobs[1].removeprefix(b"data: "))["error"]["message"] == "the model fell over"
    assert DONE_FRAME not in b"".join(blobs)
    assert isinstance(stream.error, UpstreamError)
    assert stream.relayed == 3 and not stream.finished


async def test_a_malformed_event_after_the_first_ends_with_an_error_frame(
        upstream: tuple[Upstream, Deployment]) -> None:
    server, deployment = upstream
    server.script = [CONTENT[0], b"data: {not json\n\n" + CONTENT[1] + DONE_FRAME]
    stream, blobs = await relay(deployment)
    assert blobs[0] == CONTENT[0] and len(blobs) == 2
    assert isinstance(stream.error, UpstreamBadResponse) and stream.relayed == 1


async def test_an_error_in_the_first_event_fails_the_attempt(upstream: tuple[Upstream, Deployment]) -> None:
    server, deployment = upstream
    server.script = [ERROR + b"".join(CONTENT) + DONE_FRAME]
    with pytest.raises(UpstreamError, match="fell over"):
        await relay(deployment)  # before the first byte reached the client: the router may retry


@pytest.mark.parametrize("cut", [True, False])
async def test_a_stream_without_done_ends_with_an_error_frame(upstream: tuple[Upstream, Deployment],
                                                              cut: bool) -> None:
    server, deployment = upstream
    # Cut: the connection drops inside an event; not cut: the body ends cleanly, but before [DONE].
    server.script = [b"".join(CONTENT[:4]), CONTENT[4][:20]] if cut else [b"".join(CONTENT[:4])]
    server.finish = not cut
    stream, blobs = await relay(deployment)
    assert blobs[0] == b"".join(CONTENT[:4]) and len(blobs) == 2
    assert (b"closed the connection mid-response" if cut else b"ended the stream before [DONE]") in blobs[1]
    assert isinstance(stream.error, UpstreamBadResponse) and stream.relayed == 4 and not stream.finished


async def test_the_recorder_sees_the_chunks_read_before_it_was_attached(upstream: tuple[Upstream, Deployment]) -> None:
    server, deployment = upstream
    server.script = [b"".join([*CONTENT, USAGE, DONE_FRAME])]  # all of it is read while the stream is primed
    recorders: list[StreamRecorder] = []
    await relay(deployment, before=lambda stream: recorders.append(StreamRecorder(stream)))
    assembled = recorders[0].assembled()
    assert assembled is not None
    assert assembled["choices"][0]["message"]["content"] == "".join(WORDS)
    assert assembled["choices"][0]["finish_reason"] == "stop"
    assert assembled["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}
    assert assembled["model"] == "m-2024" and assembled["id"] == "chatcmpl-1"


async def test_the_recorder_keeps_nothing_from_a_failed_stream(upstream: tuple[Upstream, Deployment]) -> None:
    server, deployment = upstream
    server.script = [b"".join([*CONTENT[:3], ERROR, *CONTENT[3:], DONE_FRAME])]
    recorders: list[StreamRecorder] = []
    await relay(deployment, before=lambda stream: recorders.append(StreamRecorder(stream)))
    assert recorders[0].assembled() is None


async def test_an_event_that_never_ends_is_refused(upstream: tuple[Upstream, Deployment],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "MAX_EVENT_BYTES", 1000)
    server, deployment = upstream
    server.script = [CONTENT[0], b'data: {"choices": [{"delta": {"content": "', *[b"x" * 300] * 5]
    stream, blobs = await relay(deployment)
    assert blobs[0] == CONTENT[0] and b"over 1000 bytes" in blobs[1]
    assert isinstance(stream.error, UpstreamBadResponse)
