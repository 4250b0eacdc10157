"""The one hook the request path calls when a request is over, so that metrics (and later traces
and logs) read a finished RequestContext instead of being threaded through every stage."""

from __future__ import annotations

from typing import Protocol

from gateway.pipeline import RequestContext


class RequestObserver(Protocol):
    def request_started(self, ctx: RequestContext) -> None:
        """Called when a /v1 request enters its handler (for in-flight gauges)."""
        ...

    def request_finished(self, ctx: RequestContext, status: int, error_code: str | None) -> None:
        """Called exactly once per /v1 request: after a JSON response or an error is rendered, or
        when a stream has closed (``ctx.stream_failed`` says whether it ended in an error event)."""
        ...
