"""Who is calling: bearer token → Principal.

The master key is compared as a SHA-256 digest with ``hmac.compare_digest``; virtual keys are looked
up by their SHA-256 (``gateway/keys/authenticator.py``), so no stored value reveals a key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import SecretStr

from gateway.errors import AuthenticationFailed

if TYPE_CHECKING:
    from gateway.keys.models import KeyRecord

Role = Literal["master", "admin", "user"]


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    alias: str
    role: Role
    team: str | None = None
    #: Aliases this caller may use; empty means every alias.
    allowed_models: frozenset[str] = field(default_factory=frozenset)
    #: The virtual key behind this caller (None for the master key).
    record: KeyRecord | None = None

    def may_use(self, alias: str) -> bool:
        return not self.allowed_models or alias in self.allowed_models


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> Principal: ...


def bearer_token(authorization: str | None, api_key_header: str | None = None) -> str:
    """The presented key, from ``Authorization: Bearer …`` or ``api-key`` (Azure-style clients)."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        raise AuthenticationFailed("the Authorization header must be 'Bearer <key>'")
    if api_key_header and api_key_header.strip():
        return api_key_header.strip()
    raise AuthenticationFailed("no API key provided: send 'Authorization: Bearer <key>'")


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


MASTER = Principal(key_id="master", alias="master", role="master")


class MasterKeyAuthenticator:
    def __init__(self, master_key: SecretStr) -> None:
        self._digest = digest(master_key.get_secret_value())

    def is_master(self, token: str) -> bool:
        return hmac.compare_digest(digest(token), self._digest)

    async def authenticate(self, token: str) -> Principal:
        if self.is_master(token):
            return MASTER
        raise AuthenticationFailed("invalid API key")
