"""The part of an upstream stream both engines share: prime the first frame, relay the rest, and
end a failure with an error frame instead of ``[DONE]``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from gateway.errors import GatewayError
from gateway.routing.sse import error_frame
from gateway.routing.types import DONE_FRAME, Usage


class FrameRelay(ABC):
    """Implements ``UpstreamStream`` over ``_read_frame``, which returns one SSE frame for the client
    (``DONE_FRAME`` at the end) or raises a GatewayError."""

    def __init__(self) -> None:
        self._first: bytes | None = None
        #: True once [DONE] was relayed: the upstream connection finished cleanly.
        self._finished = False
        self.usage: Usage | None = None
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: list[str] = []
        self.error: Exception | None = None
        #: Frames relayed to the client, [DONE] and error frames excepted (for accounting a stream
        #: that ended without a usage block).
        self.relayed = 0

    @abstractmethod
    async def _read_frame(self) -> bytes: ...

    @abstractmethod
    async def aclose(self) -> None: ...

    async def prime(self) -> None:
        """Read the first frame, so that a stream failing before its first byte can be retried."""
        self._first = await self._read_frame()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[bytes]:
        frame = self._first
        try:
            while frame is not None:
                yield frame
                self.relayed += 1
                if frame is DONE_FRAME:
                    self._finished = True
                    return
                frame = await self._read_frame()
        except GatewayError as error:
            self.error = error
            yield error_frame(error)
        finally:
            await self.aclose()
