"""Who is calling: bearer parsing and the master key."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from gateway.auth import MASTER, MasterKeyAuthenticator, Principal, bearer_token, digest
from gateway.errors import AuthenticationFailed

MASTER_KEY = "sk-gw-master-0123456789abcdef"


def _refused(authorization: str | None, api_key: str | None = None) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as caught:
        bearer_token(authorization, api_key)
    assert caught.value.status == 401
    assert caught.value.code == "invalid_api_key"
    return caught.value


@pytest.mark.parametrize(
    ("authorization", "token"),
    [("Bearer sk-abc", "sk-abc"), ("bearer sk-abc", "sk-abc"), ("BEARER sk-abc", "sk-abc"),
     ("Bearer   sk-abc  ", "sk-abc")],
)
def test_bearer_token(authorization: str, token: str) -> None:
    assert bearer_token(authorization) == token


def test_missing_key() -> None:
    error = _refused(None)
    assert error.message == "no API key provided: send 'Authorization: Bearer <key>'"
    assert _refused("").message == error.message
    assert _refused(None, "   ").message == error.message


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwYXNz", "Token sk-abc", "Bearer", "Bearer    ",
                                           "sk-abc"])
def test_wrong_scheme(authorization: str) -> None:
    assert _refused(authorization).message == "the Authorization header must be 'Bearer <key>'"


def test_api_key_header_fallback() -> None:
    assert bearer_token(None, "sk-azure") == "sk-azure"
    assert bearer_token("", " sk-azure ") == "sk-azure"


def test_authorization_wins_over_api_key_header() -> None:
    assert bearer_token("Bearer sk-a", "sk-b") == "sk-a"
    # A malformed Authorization header is an error even if api-key is also sent.
    _refused("Basic xyz", "sk-b")


def test_error_message_never_echoes_the_token() -> None:
    assert "sk-secret-value" not in _refused("Token sk-secret-value").message


async def test_master_key_is_accepted() -> None:
    auth = MasterKeyAuthenticator(SecretStr(MASTER_KEY))
    principal = await auth.authenticate(MASTER_KEY)
    assert principal is MASTER
    assert principal.role == "master"
    assert auth.is_master(MASTER_KEY)


@pytest.mark.parametrize("token", ["", "sk-wrong", MASTER_KEY + "x", MASTER_KEY[:-1], MASTER_KEY.upper(),
                                   f" {MASTER_KEY}", "sk-\udc80"])
async def test_other_keys_are_rejected(token: str) -> None:
    auth = MasterKeyAuthenticator(SecretStr(MASTER_KEY))
    assert not auth.is_master(token)
    with pytest.raises(AuthenticationFailed) as caught:
        await auth.authenticate(token)
    assert caught.value.message == "invalid API key"
    assert caught.value.status == 401


def test_digest_is_sha256() -> None:
    assert len(digest("x")) == 32
    assert digest("a") != digest("b")
    assert digest("a") == digest("a")


def test_principal_may_use() -> None:
    assert MASTER.may_use("anything")
    limited = Principal(key_id="k1", alias="team-key", role="user", allowed_models=frozenset({"gpt-4o"}))
    assert limited.may_use("gpt-4o")
    assert not limited.may_use("claude")
