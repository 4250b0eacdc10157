"""The native engine: forward the client's body to an OpenAI-wire deployment and relay the bytes.

Only what accounting needs is read from the response (usage, model); the JSON the client receives is
the provider's own. A stream is parsed event by event so that a malformed event, a provider error
event or a cut connection is reported to the client as an error event instead of a clean ``[DONE]``;
the events that arrived together are relayed together.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from gateway.errors import (
    GatewayError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_from_upstream_status,
)
from gateway.routing.deployments import Deployment, Operation
from gateway.routing.relay import FrameRelay
from gateway.routing.sse import parse_retry_after, scrub
from gateway.routing.types import DONE_FRAME, UpstreamCall, UpstreamResponse, Usage, finish_reasons

PATHS: dict[Operation, str] = {
    "chat": "/chat/completions",
    "completion": "/completions",
    "embedding": "/embeddings",
}

#: A stream event (one ``data:`` line) longer than this ends the stream with an error.
MAX_EVENT_BYTES = 4 << 20


def _target(deployment: Deployment, operation: Operation) -> tuple[str, dict[str, str]]:
    headers = {"content-type": "application/json"}
    if deployment.params.extra_headers:
        headers.update(deployment.params.extra_headers)
    key = deployment.api_key.get_secret_value() if deployment.api_key else None
    base = deployment.api_base or ""
    if deployment.provider == "azure":
        url = (f"{base}/openai/deployments/{deployment.upstream_model}{PATHS[operation]}"
               f"?api-version={deployment.params.api_version or '2024-10-21'}")
        if key:
            headers["api-key"] = key
        return url, headers
    if key:
        headers["authorization"] = f"Bearer {key}"
    if deployment.params.organization:
        headers["openai-organization"] = deployment.params.organization
    return base + PATHS[operation], headers


def _upstream_body(deployment: Deployment, call: UpstreamCall) -> bytes:
    body = dict(call.body)
    body["model"] = deployment.upstream_model
    if call.stream and not call.client_wants_usage:
        # Ask for usage anyway so every stream can be accounted; the extra chunk is not relayed.
        options = dict(body.get("stream_options") or {})
        options["include_usage"] = True
        body["stream_options"] = options
    return orjson.dumps(body)


async def _raise_for_status(response: aiohttp.ClientResponse, deployment: Deployment) -> None:
    if response.status < 400:
        return
    raw = await response.read()
    message, code, param = f"upstream returned HTTP {response.status}", None, None
    try:
        error = orjson.loads(raw).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    if isinstance(error, dict):
        message = str(error.get("message") or message)
        code = error.get("code") if isinstance(error.get("code"), str) else None
        param = error.get("param") if isinstance(error.get("param"), str) else None
    raise error_from_upstream_status(
        response.status, scrub(message, deployment), code=code, param=param,
        retry_after=parse_retry_after(response.headers),
    )


def transport_error(error: BaseException, deployment: Deployment) -> GatewayError:
    name = deployment.describe()
    if isinstance(error, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamTimeout(f"deployment {name} timed out")
    if isinstance(error, aiohttp.ClientConnectorError):
        return UpstreamUnavailable(f"cannot connect to deployment {name}")
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return UpstreamBadResponse(f"deployment {name} closed the connection mid-response")
    return UpstreamError(f"deployment {name} failed: {type(error).__name__}")


class NativeEngine:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def send(self, deployment: Deployment, call: UpstreamCall) -> UpstreamResponse:
        url, headers = _target(deployment, call.operation)
        headers.update(call.headers)
        timeout = aiohttp.ClientTimeout(total=deployment.timeout)
        try:
            async with self._session.post(url, data=_upstream_body(deployment, call), headers=headers,
                                          timeout=timeout) as response:
                await _raise_for_status(response, deployment)
                raw = await response.read()
        except GatewayError:
            raise
        except (TimeoutError, aiohttp.ClientError) as error:
            raise transport_error(error, deployment) from error
        try:
            parsed: dict[str, Any] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamBadResponse(f"deployment {deployment.describe()} sent malformed JSON") from None
        if not isinstance(parsed, dict) or "error" in parsed:
            raise UpstreamBadResponse(f"deployment {deployment.describe()} sent an unexpected body")
        response_id = parsed.get("id")
        return UpstreamResponse(raw, Usage.from_openai(parsed.get("usage")), parsed.get("model"),
                                response_id if isinstance(response_id, str) else None,
                                finish_reasons(parsed.get("choices")))

    async def open_stream(self, deployment: Deployment, call: UpstreamCall) -> NativeStream:
        url, headers = _target(deployment, call.operation)
        headers.update(call.headers)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=deployment.timeout,
                                        sock_read=deployment.stream_timeout)
        try:
            response = await self._session.post(url, data=_upstream_body(deployment, call),
                                                headers=headers, timeout=timeout)
        except (TimeoutError, aiohttp.ClientError) as error:
            raise transport_error(error, deployment) from error
        stream = NativeStream(response, deployment, call.client_wants_usage)
        try:
            await _raise_for_status(response, deployment)
            await stream.prime()
        except BaseException as error:
            response.close()
            if isinstance(error, aiohttp.ClientError | asyncio.TimeoutError):
                raise transport_error(error, deployment) from error
            raise
        return stream


class NativeStream(FrameRelay):
    """Relays an OpenAI SSE stream (see ``UpstreamStream``). Each read relays every complete event
    already received, checked one by one, as one blob of frames."""

    def __init__(self, response: aiohttp.ClientResponse, deployment: Deployment,
                 client_wants_usage: bool) -> None:
        super().__init__()
        self._response = response
        self._deployment = deployment
        self._client_wants_usage = client_wants_usage
        #: The start of a line whose end has not arrived yet.
        self._partial: list[bytes] = []
        self._partial_size = 0
        #: A failure found after some frames of the same read: raised by the next read.
        self._failure: GatewayError | None = None

    def _lines(self, data: bytes) -> list[bytes]:
        """The lines ``data`` completes, a line may span several reads; at the end of the
        connection (``data`` empty), the unterminated rest."""
        if not data:
            rest = b"".join(self._partial)
            self._partial, self._partial_size = [], 0
            return [rest]
        if b"\n" not in data:
            self._partial.append(data)
            self._partial_size += len(data)
            if self._partial_size > MAX_EVENT_BYTES:
                raise UpstreamBadResponse(
                    f"deployment {self._deployment.describe()} sent a stream event over {MAX_EVENT_BYTES} bytes")
            return []
        if self._partial:
            self._partial.append(data)
            data = b"".join(self._partial)
            self._partial, self._partial_size = [], 0
        lines = data.split(b"\n")
        tail = lines.pop()
        if tail:
            self._partial, self._partial_size = [tail], len(tail)
        return lines

    def _frame(self, payload: bytes) -> bytes | None:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamBadResponse(
                f"deployment {self._deployment.describe()} sent a malformed stream event") from None
        if not isinstance(chunk, dict):
            raise UpstreamBadResponse(f"deployment {self._deployment.describe()} sent an unexpected event")
        error = chunk.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise UpstreamError(scrub(str(message or "upstream stream error"), self._deployment))
        if self.response_model is None:
            self.response_model = chunk.get("model")
            self.response_id = chunk.get("id")
        choices = chunk.get("choices")
        if choices and isinstance(choices, list):
            for choice in choices:  # finish_reasons(), without a tuple per chunk
                reason = choice.get("finish_reason") if isinstance(choice, dict) else None
                if reason:
                    self.finish_reasons.append(str(reason))
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_openai(usage)
            if not self._client_wants_usage and not choices:
                return None
        frame = b"data: " + payload + b"\n\n"
        self._observe(chunk, len(frame))
        return frame

    async def _read(self) -> tuple[bytes, int]:
        if self._failure is not None:
            raise self._failure
        frames: list[bytes] = []
        content = self._response.content
        while not frames:
            try:
                data = await content.readany()
            except (TimeoutError, aiohttp.ClientError) as error:
                raise transport_error(error, self._deployment) from error
            try:
                for line in self._lines(data):
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        frames.append(DONE_FRAME)
                        return b"".join(frames), len(frames)
                    frame = self._frame(payload)
                    if frame is not None:
                        frames.append(frame)
                if not data:
                    raise UpstreamBadResponse(
                        f"deployment {self._deployment.describe()} ended the stream before [DONE]")
            except GatewayError as error:
                if not frames:
                    raise
                self._failure = error
        return b"".join(frames), len(frames)

    async def aclose(self) -> None:
        # release() returns a finished connection to the pool; close() drops one mid-stream, which
        # is how the upstream learns that the client went away.
        if self.finished:
            self._response.release()
        else:
            self._response.close()
