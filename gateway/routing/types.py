"""What crosses the boundary between the router and its engines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.routing.deployments import Deployment, Operation

DONE_FRAME = b"data: [DONE]\n\n"

#: Told about each chunk a stream relays to the client: the chunk as the engine parsed it, and the
#: size in bytes of its SSE frame. It must not raise (the stream's own reads call it).
ChunkObserver = Callable[[dict[str, Any], int], None]


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def from_openai(cls, usage: dict[str, Any] | None) -> Usage | None:
        if not isinstance(usage, dict):
            return None
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return cls(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(prompt_details.get("cached_tokens") or 0),
            reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
        )


@dataclass(slots=True)
class UpstreamCall:
    """One client request, as the engines need it. ``body`` is the client's JSON, untouched."""

    operation: Operation
    body: dict[str, Any]
    stream: bool = False
    #: Did the client ask for the usage chunk at the end of its stream?
    client_wants_usage: bool = False
    request_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class UpstreamResponse:
    body: bytes
    usage: Usage | None
    response_model: str | None
    #: For traces: the provider's response id and each choice's finish reason.
    response_id: str | None = None
    finish_reasons: tuple[str, ...] = ()


def finish_reasons(choices: object) -> tuple[str, ...]:
    """The ``finish_reason`` of each choice that has one, in order."""
    if not isinstance(choices, list):
        return ()
    return tuple(str(c["finish_reason"]) for c in choices if isinstance(c, dict) and c.get("finish_reason"))


class UpstreamStream(Protocol):
    """An upstream stream that has already produced its first event (so it can still be retried
    until then). Iterating yields complete SSE frames ready for the client, several at a time when
    several events were already there (a blob that holds ``[DONE]`` ends with it and is the last);
    a failure after the first frame is reported as an error frame and no ``[DONE]``."""

    usage: Usage | None
    response_model: str | None
    response_id: str | None
    #: Every finish reason seen, in order (one per choice).
    finish_reasons: list[str]
    error: Exception | None
    #: Events relayed to the client so far ([DONE] included, error frames not).
    relayed: int
    #: True once ``[DONE]`` was relayed: the stream ended cleanly.
    finished: bool
    #: Set before iterating to be told about every chunk relayed (e.g. to record the stream).
    on_chunk: ChunkObserver | None

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Engine(Protocol):
    async def send(self, deployment: Deployment, call: UpstreamCall) -> UpstreamResponse: ...

    async def open_stream(self, deployment: Deployment, call: UpstreamCall) -> UpstreamStream: ...
