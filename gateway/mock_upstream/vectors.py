"""Deterministic unit-norm embedding vectors derived from a hash of the input.

Values are rounded to float32 before they are returned, so the JSON float list and the base64
little-endian float32 encoding of the same input decode to identical numbers.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct


def embed(data: bytes, dim: int) -> list[float]:
    """A unit vector of ``dim`` float32 values; the same ``data`` always gives the same vector."""
    raw = hashlib.shake_256(data).digest(4 * dim)
    ints = struct.unpack(f"<{dim}I", raw)
    centred = [value / 2147483648.0 - 1.0 for value in ints]
    norm = math.sqrt(sum(x * x for x in centred)) or 1.0
    unit = [x / norm for x in centred]
    return list(struct.unpack(f"<{dim}f", struct.pack(f"<{dim}f", *unit)))


def to_base64(vector: list[float]) -> str:
    """Base64 of the little-endian float32 array, as OpenAI's ``encoding_format: base64``."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def input_bytes(item: str | list[int]) -> bytes:
    """The bytes an input item is hashed from (text as UTF-8, token ids as an int64 array)."""
    if isinstance(item, str):
        return b"s" + item.encode()
    return b"t" + struct.pack(f"<{len(item)}q", *item)
