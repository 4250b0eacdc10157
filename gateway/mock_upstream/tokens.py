"""A cheap, deterministic stand-in for a tokenizer.

One token per word or punctuation mark. A text's *pieces* are its tokens with the whitespace that
follows each (leading whitespace goes to the first piece), so ``"".join(pieces(t)) == t`` and
``len(pieces(t)) == count_tokens(t)`` whenever ``t`` has a token. Streams send one piece per chunk,
which keeps streamed and non-streamed usage identical.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECE = re.compile(r"(?:\w+|[^\w\s])\s*")
_FILLER = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")

PER_MESSAGE = 3
"""Tokens of framing added per chat message, as OpenAI's own accounting does."""
PRIMING = 3
"""Tokens added once per chat prompt for the assistant's reply header."""


def count_tokens(text: str) -> int:
    """Number of tokens in ``text``."""
    return len(_TOKEN.findall(text))


def prompt_tokens(texts: Iterable[str]) -> int:
    """Tokens of a chat prompt whose messages have the given texts."""
    total = PRIMING
    for text in texts:
        total += PER_MESSAGE + count_tokens(text)
    return total


def pieces(text: str) -> list[str]:
    """Split ``text`` into one-token pieces whose concatenation is ``text``."""
    found = _PIECE.findall(text)
    if not found:
        return [text] if text else []
    lead = len(text) - len(text.lstrip())
    if lead:
        found[0] = text[:lead] + found[0]
    return found


def truncate(text: str, max_tokens: int) -> tuple[str, bool]:
    """Keep the first ``max_tokens`` tokens; the flag says whether anything was cut."""
    parts = pieces(text)
    if count_tokens(text) <= max_tokens:
        return text, False
    return "".join(parts[:max_tokens]).rstrip(), True


def pad(text: str, tokens: int) -> str:
    """Append filler words until ``text`` has at least ``tokens`` tokens."""
    missing = tokens - count_tokens(text)
    if missing <= 0:
        return text
    filler = " ".join(_FILLER[i % len(_FILLER)] for i in range(missing))
    if text and not text[-1].isspace():
        return f"{text} {filler}"
    return text + filler


def spans(count: int, chunks: int | None) -> list[tuple[int, int]]:
    """``[start, end)`` ranges splitting ``count`` pieces into ``chunks`` even, non-empty groups.

    One range per piece when ``chunks`` is unset or not smaller than ``count``.
    """
    if chunks is None or chunks >= count:
        return [(i, i + 1) for i in range(count)]
    return [(k * count // chunks, (k + 1) * count // chunks) for k in range(chunks)]
