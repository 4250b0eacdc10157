"""Key secrets: generation, hashing and the shapes we recognise.

Only ``hash_secret(secret)`` and ``display_prefix(secret)`` are ever stored; the plaintext lives in
one response. SHA-256 without a salt is enough here because a secret carries 256 random bits: there
is nothing to brute-force, and an unsalted hash is what lets authentication be one index lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

SECRET_PREFIX = "sk-gw-"  # noqa: S105  (a public prefix, not a secret)
#: ``token_urlsafe(32)`` gives 43 characters; accept a little more so a longer format can follow.
_SECRET_RE = re.compile(r"sk-gw-[A-Za-z0-9_-]{43,128}")
_DISPLAY_CHARS = 10


def new_secret() -> str:
    """A fresh key secret: the prefix and 256 random bits, url-safe base64 (43 characters)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The stored form of a secret: SHA-256, lowercase hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, key_hash: str) -> bool:
    """Constant-time check of a secret against a stored hash."""
    return hmac.compare_digest(hash_secret(secret), key_hash)


def display_prefix(secret: str) -> str:
    """Enough of the secret for a person to tell keys apart (``sk-gw-AbCd…``), far too little to use."""
    return secret[:_DISPLAY_CHARS] + "…"


def new_key_id() -> str:
    """A random, non-secret key id: ``key_`` and 16 hex characters."""
    return "key_" + secrets.token_hex(8)


def looks_like_gateway_key(token: str) -> bool:
    """Whether a bearer token has the shape of a key this gateway issued (says nothing of validity)."""
    return _SECRET_RE.fullmatch(token) is not None
