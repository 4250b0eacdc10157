"""Between a stored ``chat.completion`` and a stream, both ways.

``replay_frames`` turns a cached completion into the SSE frames a live stream would have carried,
in a live stream's order and with its fields: per choice a role chunk, the content (or tool-call header and arguments)
chunk, a finish chunk; then the usage chunk only when the client asked for it; then ``[DONE]``.

``StreamRecorder`` sits between an upstream stream and the client, copies its frames, and at the end
assembles them into one ``chat.completion`` — only for a stream that ended with ``[DONE]`` and no
error, so a cut or failed stream is never cached.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.routing.types import DONE_FRAME, UpstreamStream, Usage

#: Streams larger than this are relayed but not recorded.
MAX_RECORDED_BYTES = 1 << 20


def _frame(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def refreshed(body: dict[str, Any]) -> dict[str, Any]:
    """A cached response as sent again: same id (it is the same completion), a fresh ``created``."""
    return {**body, "created": int(time.time())} if "created" in body else body


def _choice_chunks(choice: dict[str, Any]) -> list[tuple[dict[str, Any], Any, Any]]:
    """(delta, logprobs, finish_reason) for one choice, in a live stream's order."""
    message = choice.get("message") or {}
    steps: list[tuple[dict[str, Any], Any, Any]] = []
    calls = message.get("tool_calls") or []
    content = message.get("content")
    if calls:
        for position, call in enumerate(calls):
            function = call.get("function") or {}
            header = {"index": position, "id": call.get("id"), "type": call.get("type", "function"),
                      "function": {"name": function.get("name"), "arguments": ""}}
            delta: dict[str, Any] = {"tool_calls": [header]}
            if position == 0:
                delta = {"role": "assistant", "content": content, "refusal": None, **delta}
            steps.append((delta, None, None))
            if function.get("arguments"):
                steps.append(({"tool_calls": [{"index": position, "function": {"arguments": function["arguments"]}}]},
                              None, None))
    else:
        steps.append(({"role": "assistant", "content": "", "refusal": None}, None, None))
        if content:
            steps.append(({"content": content}, choice.get("logprobs"), None))
    if message.get("refusal"):
        steps.append(({"refusal": message["refusal"]}, None, None))
    steps.append(({}, None, choice.get("finish_reason") or "stop"))
    return steps


def replay_frames(body: dict[str, Any], *, include_usage: bool) -> list[bytes]:
    """The SSE frames of a live stream that would have produced ``body`` (a chat.completion)."""
    base: dict[str, Any] = {"id": body.get("id"), "object": "chat.completion.chunk", "created": body.get("created"),
                            "model": body.get("model")}
    for name in ("service_tier", "system_fingerprint"):
        if name in body:
            base[name] = body[name]
    # Live chunks carry "usage": null whether or not the client asked for usage: the gateway asks the
    # provider for it on every stream (to account for it) and drops only the final usage chunk.
    base["usage"] = None
    frames = []
    for choice in body.get("choices") or []:
        for delta, logprobs, finish in _choice_chunks(choice):
            entry = {"index": choice.get("index", 0), "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            frames.append(_frame({**base, "choices": [entry]}))
    if include_usage:
        frames.append(_frame({**base, "choices": [], "usage": body.get("usage")}))
    frames.append(DONE_FRAME)
    return frames


class ReplayStream:
    """A cached answer as an ``UpstreamStream``, so the SSE response relays it like a live one. It
    reports no usage: nothing was used upstream."""

    def __init__(self, frames: list[bytes]) -> None:
        self._frames = frames
        self.usage: Usage | None = None
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: list[str] = []
        self.error: Exception | None = None
        self.relayed = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        for frame in self._frames:
            yield frame
            self.relayed += 1

    async def aclose(self) -> None:
        return None


def _usage_block(usage: Usage) -> dict[str, Any]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens}


class _Choice:
    def __init__(self, index: int) -> None:
        self.index = index
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.logprobs: list[Any] | None = None
        self.finish: str | None = None

    def add(self, entry: dict[str, Any]) -> None:
        delta = entry.get("delta") or {}
        if isinstance(delta.get("content"), str):
            self.content.append(delta["content"])
        if isinstance(delta.get("refusal"), str):
            self.refusal.append(delta["refusal"])
        for call in delta.get("tool_calls") or []:
            slot = self.calls.setdefault(int(call.get("index", 0)),
                                         {"id": None, "type": "function", "function": {"name": None, "arguments": ""}})
            if call.get("id"):
                slot["id"] = call["id"]
            function = call.get("function") or {}
            if function.get("name"):
                slot["function"]["name"] = function["name"]
            slot["function"]["arguments"] += function.get("arguments") or ""
        logprobs = entry.get("logprobs")
        if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
            self.logprobs = (self.logprobs or []) + logprobs["content"]
        if entry.get("finish_reason"):
            self.finish = entry["finish_reason"]

    def render(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant",
                                   "content": "".join(self.content) if self.content or not self.calls else None,
                                   "refusal": "".join(self.refusal) if self.refusal else None}
        if self.calls:
            message["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
        logprobs = {"content": self.logprobs, "refusal": None} if self.logprobs is not None else None
        return {"index": self.index, "message": message, "logprobs": logprobs, "finish_reason": self.finish}


class StreamRecorder:
    """An ``UpstreamStream`` that relays another one and keeps a copy of its frames."""

    def __init__(self, inner: UpstreamStream) -> None:
        self._inner = inner
        self._frames: list[bytes] | None = []
        self._size = 0
        self._done = False
        self.usage: Usage | None = None
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: list[str] = []
        self.error: Exception | None = None
        self.relayed = 0
        self._sync()

    def _sync(self) -> None:
        """Mirror what the inner stream learnt so far (readers of an ``UpstreamStream`` read attributes)."""
        inner = self._inner
        self.usage, self.response_model, self.response_id = inner.usage, inner.response_model, inner.response_id
        self.finish_reasons, self.error, self.relayed = inner.finish_reasons, inner.error, inner.relayed

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        try:
            async for frame in self._inner:
                if frame == DONE_FRAME:
                    self._done = True
                elif self._frames is not None:
                    self._size += len(frame)
                    if self._size > MAX_RECORDED_BYTES:
                        self._frames = None
                    else:
                        self._frames.append(frame)
                self._sync()
                yield frame
        finally:
            self._sync()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._sync()

    def assembled(self) -> dict[str, Any] | None:
        """The stream as one chat.completion, or None when it did not end cleanly with [DONE]."""
        if not self._done or self._frames is None or self._inner.error is not None:
            return None
        head: dict[str, Any] | None = None
        choices: dict[int, _Choice] = {}
        usage: Any = None
        for frame in self._frames:
            for line in frame.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                try:
                    chunk = orjson.loads(line[5:].strip())
                except orjson.JSONDecodeError:
                    return None
                if not isinstance(chunk, dict) or "error" in chunk:
                    return None
                head = head or chunk
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for entry in chunk.get("choices") or []:
                    index = int(entry.get("index", 0))
                    choices.setdefault(index, _Choice(index)).add(entry)
        if head is None or not choices or any(c.finish is None for c in choices.values()):
            return None
        if usage is None and self._inner.usage is not None:
            usage = _usage_block(self._inner.usage)
        body: dict[str, Any] = {"id": head.get("id"), "object": "chat.completion", "created": head.get("created"),
                                "model": head.get("model"), "choices": [choices[i].render() for i in sorted(choices)]}
        if usage is not None:
            body["usage"] = usage
        for name in ("service_tier", "system_fingerprint"):
            if head.get(name) is not None:
                body[name] = head[name]
        return body
