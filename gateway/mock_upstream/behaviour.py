"""Parse the behaviour directives encoded in a mock model name.

Grammar: ``[provider/...]/base+directive+directive...``. Only the part after the last ``/`` is
read; it is split on ``+``; the first segment is a free name and every later segment is a
directive, either a flag (``tool``, ``hang``, ``malformed``, ``echo``) or ``key=value`` with a
numeric value. Unknown directives and unparsable values are ignored, so a typo degrades to the
default echo behaviour instead of failing the request.
"""

from __future__ import annotations

from dataclasses import dataclass

_FLAGS = frozenset({"tool", "hang", "malformed", "echo"})
_MILLISECONDS = frozenset({"latency", "ttft", "chunk_delay"})
_COUNTS = frozenset({"chunks", "cut", "status", "fail_first", "context", "dim"})


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What the mock should do for one model name; the defaults mean "echo promptly"."""

    latency: float = 0.0
    """Seconds to wait before answering (before the headers, for streams)."""
    ttft: float = 0.0
    """Seconds to wait after the stream headers, before the first chunk."""
    chunk_delay: float = 0.0
    """Seconds between content chunks of a stream."""
    chunks: int | None = None
    """Exact number of content chunks per choice (content padded with filler if short)."""
    cut: int | None = None
    """Abort the connection after this many content chunks."""
    status: int | None = None
    """Fail with this HTTP status, 400-599 (always, or only the first ``fail_first`` requests)."""
    retry_after: float | None = None
    """Seconds to advertise in ``Retry-After`` on injected failures."""
    fail_first: int = 0
    """Fail this many requests for the exact model name, then succeed."""
    context: int | None = None
    """Context window in tokens; longer prompts are rejected with 400."""
    dim: int | None = None
    """Embedding dimension."""
    tool: bool = False
    hang: bool = False
    malformed: bool = False

    @property
    def failure_status(self) -> int:
        """The status injected failures use: ``status=`` or 500."""
        return self.status if self.status is not None else 500


def _number(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")) or value < 0:
        return None
    return value


def parse_behaviour(model: str) -> Behaviour:
    """Read the directives of ``model``; never raises."""
    segments = model.rsplit("/", 1)[-1].split("+")
    values: dict[str, float | int | bool] = {}
    for segment in segments[1:]:
        key, sep, raw = segment.strip().partition("=")
        key = key.strip().lower()
        if not sep:
            if key in _FLAGS and key != "echo":
                values[key] = True
            continue
        number = _number(raw.strip())
        if number is None:
            continue
        if key in _MILLISECONDS:
            values[key] = number / 1000.0
        elif key == "retry_after":
            values[key] = number
        elif key in _COUNTS and number == int(number):
            values[key] = int(number)
    return _build(values)


def _build(values: dict[str, float | int | bool]) -> Behaviour:
    chunks = values.get("chunks")
    dim = values.get("dim")
    status = values.get("status")
    return Behaviour(
        latency=float(values.get("latency", 0.0)),
        ttft=float(values.get("ttft", 0.0)),
        chunk_delay=float(values.get("chunk_delay", 0.0)),
        chunks=int(chunks) if chunks else None,
        cut=int(values["cut"]) if "cut" in values else None,
        status=int(status) if status and 400 <= int(status) <= 599 else None,
        retry_after=float(values["retry_after"]) if "retry_after" in values else None,
        fail_first=int(values.get("fail_first", 0)),
        context=int(values["context"]) if "context" in values else None,
        dim=int(dim) if dim else None,
        tool=bool(values.get("tool", False)),
        hang=bool(values.get("hang", False)),
        malformed=bool(values.get("malformed", False)),
    )
