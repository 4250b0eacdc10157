"""Between a stored ``chat.completion`` and a stream, both ways.

``replay_frames`` turns a cached completion into the SSE frames a live stream would have carried,
in a live stream's order and with its fields: per choice a role chunk, the content (or tool-call header and arguments)
chunk, a finish chunk; then the usage chunk only when the client asked for it; then ``[DONE]``.

``StreamRecorder`` watches the chunks an upstream stream relays (as the engine parsed them: nothing is
parsed twice) and at the end assembles them into one ``chat.completion`` — only for a stream that
ended with ``[DONE]`` and no error, so a cut or failed stream is never cached.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.routing.types import DONE_FRAME, ChunkObserver, UpstreamStream, Usage

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
    """A cached answer as an ``UpstreamStream``, so the SSE response relays it like a live one: all its
    frames at once, since they are all there. It reports no usage: nothing was used upstream."""

    def __init__(self, frames: list[bytes]) -> None:
        self._frames = frames
        self.usage: Usage | None = None
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: list[str] = []
        self.error: Exception | None = None
        self.relayed = 0
        self.finished = False
        self.on_chunk: ChunkObserver | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        if self.on_chunk is not None:
            for frame in self._frames:
                if frame != DONE_FRAME:
                    self.on_chunk(orjson.loads(frame[len(b"data: "):]), len(frame))
        yield b"".join(self._frames)
        self.relayed += len(self._frames)
        self.finished = bool(self._frames) and self._frames[-1] == DONE_FRAME

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
    """Records a stream through its ``on_chunk`` hook (set here, before the stream is iterated)."""

    def __init__(self, stream: UpstreamStream) -> None:
        self._stream = stream
        self._size = 0
        #: False once the stream passed MAX_RECORDED_BYTES or relayed something unexpected.
        self._recording = True
        self._head: dict[str, Any] | None = None
        self._choices: dict[int, _Choice] = {}
        self._usage: Any = None
        stream.on_chunk = self._add

    def _add(self, chunk: dict[str, Any], size: int) -> None:
        if not self._recording:
            return
        self._size += size
        if self._size > MAX_RECORDED_BYTES or "error" in chunk:
            self._stop()
            return
        try:
            if self._head is None:
                self._head = chunk
            if chunk.get("usage"):
                self._usage = chunk["usage"]
            for entry in chunk.get("choices") or []:
                index = int(entry.get("index", 0))
                choice = self._choices.get(index)
                if choice is None:
                    choice = self._choices[index] = _Choice(index)
                choice.add(entry)
        except (AttributeError, TypeError, ValueError):  # a shape the client may accept, the cache does not
            self._stop()

    def _stop(self) -> None:
        self._recording = False
        self._head, self._choices, self._usage = None, {}, None

    def assembled(self) -> dict[str, Any] | None:
        """The stream as one chat.completion, or None when it did not end cleanly with [DONE]."""
        stream = self._stream
        if not stream.finished or stream.error is not None or not self._recording:
            return None
        head, choices = self._head, self._choices
        if head is None or not choices or any(c.finish is None for c in choices.values()):
            return None
        usage = self._usage
        if usage is None and stream.usage is not None:
            usage = _usage_block(stream.usage)
        body: dict[str, Any] = {"id": head.get("id"), "object": "chat.completion", "created": head.get("created"),
                                "model": head.get("model"), "choices": [choices[i].render() for i in sorted(choices)]}
        if usage is not None:
            body["usage"] = usage
        for name in ("service_tier", "system_fingerprint"):
            if head.get(name) is not None:
                body[name] = head[name]
        return body
