"""Deterministic OpenAI-style ``logprobs`` entries for the mock's reply pieces."""

from __future__ import annotations

from typing import Any

_ALTERNATIVES = ("lorem", "ipsum", "dolor", "sit", "amet")


def entries(parts: list[str], top: int, start: int = 0) -> list[dict[str, Any]]:
    """One ``{token, logprob, bytes, top_logprobs}`` entry per piece; piece ``i`` is ``start + i``.

    The chosen token is always the most likely of its ``top`` alternatives, so clients that check
    ``top_logprobs[0].token == token`` hold.
    """
    result: list[dict[str, Any]] = []
    for offset, token in enumerate(parts):
        logprob = -round(0.01 * (1 + (start + offset) % 10), 4)
        alternatives = [{"token": token, "logprob": logprob, "bytes": list(token.encode())}]
        for rank in range(1, top):
            other = _ALTERNATIVES[rank - 1] if rank <= len(_ALTERNATIVES) else f"alt{rank}"
            alternatives.append(
                {"token": other, "logprob": round(logprob - 1.5 * rank, 4), "bytes": list(other.encode())}
            )
        result.append(
            {
                "token": token,
                "logprob": logprob,
                "bytes": list(token.encode()),
                "top_logprobs": alternatives[:top],
            }
        )
    return result
