"""Who is calling: bearer token → Principal.

Until virtual keys exist, the master key is the only accepted key. Tokens are compared as SHA-256
digests with ``hmac.compare_digest`` so that neither the comparison time nor a stored value reveals
the key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import SecretStr

from gateway.errors import AuthenticationFailed

Role = Literal["master", "admin", "user"]


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    alias: str
    role: Role
    team: str | None = None
    #: Aliases this caller may use; empty means every alias.
    allowed_models: frozenset[str] = field(default_factory=frozenset)

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
