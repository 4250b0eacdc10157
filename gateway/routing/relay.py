"""The part of an upstream stream both engines share: prime the first frames, relay the rest, and
end a failure with an error frame instead of ``[DONE]``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any

from gateway.errors import GatewayError
from gateway.routing.sse import error_frame
from gateway.routing.types import DONE_FRAME, ChunkObserver, Usage


class FrameRelay(ABC):
    """Implements ``UpstreamStream`` over ``_read``, which returns one or more complete SSE frames
    for the client (the last read ends with ``DONE_FRAME``) or raises a GatewayError.

    An engine hands over everything it already has in one read (several events that arrived in one
    TCP segment, say): one trip through the relay, the response and the ASGI stack per read instead
    of per event.
    """

    def __init__(self) -> None:
        self._first: tuple[bytes, int] | None = None
        #: True once [DONE] was relayed: the upstream connection finished cleanly.
        self.finished = False
        self.usage: Usage | None = None
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: list[str] = []
        self.error: Exception | None = None
        #: Events relayed to the client, [DONE] included, error frames excepted (for accounting a
        #: stream that ended without a usage block).
        self.relayed = 0
        self.on_chunk: ChunkObserver | None = None
        #: Chunks parsed while priming, before anyone could set ``on_chunk``: told on the first frames.
        self._held: list[tuple[dict[str, Any], int]] | None = []

    @abstractmethod
    async def _read(self) -> tuple[bytes, int]:
        """The next complete SSE frames for the client and how many events they hold. Frames read
        before a failure are returned first; the failure is raised by the next call."""

    @abstractmethod
    async def aclose(self) -> None: ...

    def _observe(self, chunk: dict[str, Any], size: int) -> None:
        """Engines call this for each chunk they relay, with the size of its frame."""
        if self._held is not None:
            self._held.append((chunk, size))
        elif self.on_chunk is not None:
            self.on_chunk(chunk, size)

    async def prime(self) -> None:
        """Read the first frames, so that a stream failing before its first byte can be retried."""
        self._first = await self._read()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[bytes]:
        assert self._first is not None, "open_stream primes the stream"
        frames, events = self._first
        held, self._first, self._held = self._held or [], None, None
        if self.on_chunk is not None:
            for chunk, size in held:
                self.on_chunk(chunk, size)
        try:
            while True:
                yield frames
                self.relayed += events
                if frames.endswith(DONE_FRAME):  # [DONE] is always an engine's last event
                    self.finished = True
                    return
                frames, events = await self._read()
        except GatewayError as error:
            self.error = error
            yield error_frame(error)
        finally:
            await self.aclose()
