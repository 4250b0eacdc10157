"""Who may do what to whose keys on the admin API, against a live gateway: the caller, endpoint and
owner matrix of gateway/keys/policy.py, the no-escalation rules for team admins, and the per-address
abuse limits (GATEWAY_ADMIN_RATE_LIMIT, GATEWAY_AUTH_FAILURE_LIMIT)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import deployment
from tests.processes import MASTER_KEY, Process, free_port, start_gateway

GENEROUS = {"GATEWAY_ADMIN_RATE_LIMIT": "100000/minute", "GATEWAY_AUTH_FAILURE_LIMIT": "100000/minute"}
MASTER = {"authorization": f"Bearer {MASTER_KEY}"}
TEAM_A, TEAM_B = "team-a", "team-b"
#: Well-formed, never issued.
WRONG_KEY = "sk-gw-" + "W" * 43
NOW = datetime.now(UTC)
#: Team A's admin holds these; everything it grants must stay within them.
ADMIN_A_LIMITS: dict[str, Any] = {
    "allowed_models": ["echo", "other"], "rpm": 100, "tpm": 10_000, "max_parallel": 5, "budget_usd": 50.0,
    "expires_at": (NOW + timedelta(days=30)).isoformat(),
}
#: A grant inside team A's admin's limits.
MODEST: dict[str, Any] = {
    "allowed_models": ["echo"], "rpm": 10, "tpm": 1_000, "max_parallel": 1, "budget_usd": 5.0,
    "expires_at": (NOW + timedelta(days=1)).isoformat(),
}


def routing(mock: Process) -> dict[str, Any]:
    v1 = f"{mock.url}/v1"
    return {"model_list": [deployment(alias, "openai/mock", v1) for alias in ("echo", "other", "third")]}


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def create(gateway: Process, headers: dict[str, str] = MASTER, **fields: Any) -> dict[str, Any]:
    response = httpx.post(f"{gateway.url}/admin/keys", headers=headers, json=fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def show(gateway: Process, key_id: str) -> dict[str, Any]:
    response = httpx.get(f"{gateway.url}/admin/keys/{key_id}", headers=MASTER)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_error(response: httpx.Response, status: int, *, code: str | None = None, param: str | None = None) -> None:
    assert response.status_code == status, f"{response.status_code} (wanted {status}): {response.text}"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param


@pytest.fixture(scope="module")
def authz_gateway(workdir: Path, mock_upstream: Process) -> Iterator[Process]:
    process = start_gateway(workdir, routing(mock_upstream), env=GENEROUS)
    yield process
    process.stop()


@dataclass(frozen=True)
class Callers:
    headers: dict[str, dict[str, str]]
    admin_a: dict[str, Any]


@pytest.fixture(scope="module")
def callers(authz_gateway: Process) -> Callers:
    admin_a = create(authz_gateway, alias="admin-a", team=TEAM_A, role="admin", **ADMIN_A_LIMITS)
    admin_b = create(authz_gateway, alias="admin-b", team=TEAM_B, role="admin")
    user_a = create(authz_gateway, alias="user-a", team=TEAM_A, **MODEST)
    return Callers(headers={
        "master": MASTER, "admin_a": bearer(admin_a["key"]), "admin_b": bearer(admin_b["key"]),
        "user_a": bearer(user_a["key"]), "no_key": {}, "wrong_key": bearer(WRONG_KEY),
    }, admin_a=admin_a)


# --- the matrix ---------------------------------------------------------------------------------

CALLERS = ("master", "admin_a", "admin_b", "user_a", "no_key", "wrong_key")
ENDPOINTS = ("create", "list", "show", "update", "revoke", "rotate", "usage", "audit")
OWN_TEAM = {"admin_a": TEAM_A, "admin_b": TEAM_B}


def expected_status(caller: str, endpoint: str, team: str | None) -> int:
    """What gateway/keys/policy.py promises for this caller, endpoint and target team."""
    if caller in ("no_key", "wrong_key"):
        return 401
    if caller == "user_a":
        return 403
    if endpoint == "reload":
        return 200 if caller == "master" else 403
    if caller == "master" or OWN_TEAM[caller] == team:
        return 201 if endpoint == "create" else 200
    # Another team's key is invisible (404); filtering or minting for another team is refused (403).
    return 403 if endpoint in ("create", "list") else 404


def send(gateway: Process, endpoint: str, target: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    url = f"{gateway.url}/admin"
    key = f"{url}/keys/{target['id']}"
    requests: dict[str, tuple[str, str, dict[str, Any]]] = {
        "create": ("POST", f"{url}/keys", {"json": {"alias": "minted", "team": target["team"], **MODEST}}),
        "list": ("GET", f"{url}/keys", {"params": {"team": target["team"], "limit": 500}}),
        "show": ("GET", key, {}),
        "update": ("PATCH", key, {"json": {"alias": "patched"}}),
        "revoke": ("DELETE", key, {}),
        "rotate": ("POST", f"{key}/rotate", {"json": {"grace_seconds": 0}}),
        "usage": ("GET", f"{key}/usage", {}),
        "audit": ("GET", f"{url}/audit", {"params": {"key_id": target["id"], "limit": 500}}),
        "reload": ("POST", f"{url}/reload", {}),
    }
    method, address, options = requests[endpoint]
    return httpx.request(method, address, headers=headers, timeout=30, **options)


def assert_effect(endpoint: str, body: dict[str, Any], target: dict[str, Any], after: dict[str, Any]) -> None:
    """A 2xx must also have done what it says, to the right key."""
    if endpoint == "create":
        assert body["team"] == target["team"] and body["key"].startswith("sk-gw-")
    elif endpoint == "list":
        assert {k["team"] for k in body["data"]} == {target["team"]}
        assert target["id"] in {k["id"] for k in body["data"]}
    elif endpoint == "audit":
        assert body["data"] and {e["key_id"] for e in body["data"]} == {target["id"]}
    elif endpoint == "usage":
        assert body["key_id"] == target["id"]
    elif endpoint == "reload":
        assert body["status"] == "applied"
    else:
        assert body["id"] == target["id"]
    changed = {"update": after["alias"] == "patched", "revoke": after["revoked_at"] is not None,
               "rotate": after["key_prefix"] != target["key_prefix"]}
    assert changed.get(endpoint, True), f"{endpoint} answered 2xx but the key did not change"


CASES = [
    pytest.param(caller, endpoint, team, id=f"{caller}-{endpoint}-{team}")
    for caller in CALLERS for endpoint in ENDPOINTS for team in (TEAM_A, TEAM_B)
] + [pytest.param(caller, "reload", None, id=f"{caller}-reload") for caller in CALLERS]


@pytest.mark.parametrize(("caller", "endpoint", "team"), CASES)
def test_matrix(authz_gateway: Process, callers: Callers, caller: str, endpoint: str, team: str | None) -> None:
    target = create(authz_gateway, alias="target", team=team or TEAM_A, **MODEST)
    before = show(authz_gateway, target["id"])
    response = send(authz_gateway, endpoint, target, callers.headers[caller])
    status = expected_status(caller, endpoint, team)
    after = show(authz_gateway, target["id"])
    if status >= 400:
        codes = {401: "invalid_api_key", 403: "permission_denied", 404: "not_found"}
        assert_error(response, status, code=codes[status])
        assert after == before, "a refused request changed the key"
    else:
        assert response.status_code == status, response.text
        assert_effect(endpoint, response.json(), target, after)


# --- what a team admin may grant ----------------------------------------------------------------

def test_team_admin_mints_within_its_limits_and_its_team_by_default(authz_gateway: Process,
                                                                      callers: Callers) -> None:
    minted = create(authz_gateway, callers.headers["admin_a"], alias="minted-default", **MODEST)
    assert minted["team"] == TEAM_A and minted["role"] == "user"
    assert minted["allowed_models"] == ["echo"] and minted["rpm"] == 10
    entries = httpx.get(f"{authz_gateway.url}/admin/audit", headers=MASTER, params={"key_id": minted["id"]}).json()
    assert [(e["action"], e["actor"], e["actor_team"]) for e in entries["data"]] == [
        ("create", callers.admin_a["id"], TEAM_A)]


def team_size(gateway: Process, team: str) -> int:
    response = httpx.get(f"{gateway.url}/admin/keys", headers=MASTER, params={"team": team, "limit": 500})
    return len(response.json()["data"])


def test_team_admin_cannot_mint_for_another_team(authz_gateway: Process, callers: Callers) -> None:
    before = team_size(authz_gateway, TEAM_B)
    response = httpx.post(f"{authz_gateway.url}/admin/keys", headers=callers.headers["admin_a"],
                          json={**MODEST, "team": TEAM_B})
    assert_error(response, 403, code="permission_denied", param="team")
    assert team_size(authz_gateway, TEAM_B) == before


@pytest.mark.parametrize("models", [
    pytest.param(["echo", "third"], id="one-model-outside-its-list"),
    pytest.param(["third"], id="only-a-model-outside-its-list"),
    pytest.param([], id="every-model"),
])
def test_team_admin_cannot_grant_models_it_does_not_have(authz_gateway: Process, callers: Callers,
                                                         models: list[str]) -> None:
    response = httpx.post(f"{authz_gateway.url}/admin/keys", headers=callers.headers["admin_a"],
                          json={**MODEST, "allowed_models": models})
    assert_error(response, 403, code="permission_denied", param="allowed_models")


@pytest.mark.parametrize(("field", "value"), [
    ("rpm", 101), ("tpm", 10_001), ("max_parallel", 6), ("budget_usd", 50.01),
    ("rpm", None), ("tpm", None), ("max_parallel", None), ("budget_usd", None),
])
def test_team_admin_cannot_grant_more_than_it_holds(authz_gateway: Process, callers: Callers, field: str,
                                                    value: Any) -> None:
    # None is "unlimited", which is more than any limit the admin holds.
    response = httpx.post(f"{authz_gateway.url}/admin/keys", headers=callers.headers["admin_a"],
                          json={**MODEST, field: value})
    assert_error(response, 403, code="permission_denied", param=field)


@pytest.mark.parametrize("expires_at", [(NOW + timedelta(days=31)).isoformat(), None])
def test_team_admin_cannot_grant_a_later_expiry(authz_gateway: Process, callers: Callers,
                                                expires_at: str | None) -> None:
    response = httpx.post(f"{authz_gateway.url}/admin/keys", headers=callers.headers["admin_a"],
                          json={**MODEST, "expires_at": expires_at})
    assert_error(response, 403, code="permission_denied", param="expires_at")


def test_grants_at_exactly_the_admins_own_limits_are_allowed(authz_gateway: Process, callers: Callers) -> None:
    minted = create(authz_gateway, callers.headers["admin_a"], **ADMIN_A_LIMITS)
    assert minted["rpm"] == 100 and minted["budget_usd"] == 50.0


def test_team_admin_cannot_raise_a_key_above_its_limits_by_patch(authz_gateway: Process, callers: Callers) -> None:
    target = create(authz_gateway, team=TEAM_A, **MODEST)
    before = show(authz_gateway, target["id"])
    url = f"{authz_gateway.url}/admin/keys/{target['id']}"
    for change, param in (({"rpm": 1000}, "rpm"), ({"allowed_models": ["third"]}, "allowed_models"),
                          ({"expires_at": None}, "expires_at"), ({"team": TEAM_B}, "team")):
        assert_error(httpx.patch(url, headers=callers.headers["admin_a"], json=change), 403, param=param)
    assert show(authz_gateway, target["id"]) == before


@pytest.mark.parametrize(("offset", "status"), [pytest.param(timedelta(days=1), 200, id="within-own-expiry"),
                                                pytest.param(timedelta(days=60), 403, id="after-own-expiry")])
def test_team_admin_patch_with_an_expiry_without_offset_is_read_as_utc(authz_gateway: Process, callers: Callers,
                                                                       offset: timedelta, status: int) -> None:
    # KeyCreate reads a naive expiry as UTC; a PATCH must be judged the same way against the admin's own.
    target = create(authz_gateway, team=TEAM_A, **MODEST)
    naive = (NOW + offset).replace(tzinfo=None).isoformat()
    response = httpx.patch(f"{authz_gateway.url}/admin/keys/{target['id']}", headers=callers.headers["admin_a"],
                           json={"expires_at": naive})
    assert response.status_code == status, f"{response.status_code}: {response.text}"


def test_team_admin_cannot_raise_its_own_limits_but_can_lower_them(authz_gateway: Process) -> None:
    own = create(authz_gateway, alias="self-admin", team=TEAM_A, role="admin", **ADMIN_A_LIMITS)
    headers, url = bearer(own["key"]), f"{authz_gateway.url}/admin/keys/{own['id']}"
    for change, param in (({"rpm": 101}, "rpm"), ({"budget_usd": 1000.0}, "budget_usd"),
                          ({"allowed_models": ["echo", "other", "third"]}, "allowed_models"),
                          ({"expires_at": (NOW + timedelta(days=365)).isoformat()}, "expires_at"),
                          ({"rpm": None}, "rpm")):
        assert_error(httpx.patch(url, headers=headers, json=change), 403, code="permission_denied", param=param)
    assert show(authz_gateway, own["id"])["rpm"] == 100
    lowered = httpx.patch(url, headers=headers, json={"rpm": 50, "allowed_models": ["echo"], "budget_usd": 10.0})
    assert lowered.status_code == 200, lowered.text
    assert (lowered.json()["rpm"], lowered.json()["allowed_models"]) == (50, ["echo"])
    # Lowering is one-way: the key now holds 50, so 100 is above its own limit.
    assert_error(httpx.patch(url, headers=headers, json={"rpm": 100}), 403, param="rpm")
    assert show(authz_gateway, own["id"])["rpm"] == 50


# --- what a team admin may see ------------------------------------------------------------------

def test_team_admin_listing_shows_only_its_team(authz_gateway: Process, callers: Callers) -> None:
    mine, theirs, teamless = (create(authz_gateway, team=TEAM_A, **MODEST), create(authz_gateway, team=TEAM_B),
                              create(authz_gateway))
    listed: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        page = httpx.get(f"{authz_gateway.url}/admin/keys", headers=callers.headers["admin_a"], params=params)
        assert page.status_code == 200, page.text
        listed += page.json()["data"]
        if not page.json()["next_cursor"]:
            break
        params["cursor"] = page.json()["next_cursor"]
    ids = {k["id"] for k in listed}
    assert {k["team"] for k in listed} == {TEAM_A}
    assert mine["id"] in ids and theirs["id"] not in ids and teamless["id"] not in ids
    assert all("key" not in k and "key_hash" not in k for k in listed)
    everything = httpx.get(f"{authz_gateway.url}/admin/keys", headers=MASTER, params={"limit": 500}).json()["data"]
    assert {theirs["id"], teamless["id"]} <= {k["id"] for k in everything}, "the master sees every team"


def test_team_admin_audit_shows_only_its_team(authz_gateway: Process, callers: Callers) -> None:
    mine = create(authz_gateway, team=TEAM_A, **MODEST)
    theirs = create(authz_gateway, team=TEAM_B)
    httpx.patch(f"{authz_gateway.url}/admin/keys/{theirs['id']}", headers=callers.headers["admin_b"],
                json={"alias": "b-change"})
    entries = httpx.get(f"{authz_gateway.url}/admin/audit", headers=callers.headers["admin_a"],
                        params={"limit": 500}).json()["data"]
    assert entries and {e["team"] for e in entries} == {TEAM_A}
    key_ids = {e["key_id"] for e in entries}
    assert mine["id"] in key_ids and theirs["id"] not in key_ids
    assert all(e["action"] != "reload" for e in entries), "reloads concern no team"
    master_view = httpx.get(f"{authz_gateway.url}/admin/audit", headers=MASTER, params={"key_id": theirs["id"]})
    assert [e["action"] for e in master_view.json()["data"]] == ["update", "create"]


# --- abuse limits -------------------------------------------------------------------------------

def assert_rate_limited(response: httpx.Response, message: str) -> None:
    assert_error(response, 429, code="rate_limit_exceeded")
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert message in response.json()["error"]["message"]
    assert 1 <= int(response.headers["retry-after"]) <= 60


def client_from(address: str) -> httpx.Client:
    """Loopback has every 127.x address: each one is a separate client for the per-address limits."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def test_abuse_limits_answer_429_and_hold_the_address_back(workdir: Path, mock_upstream: Process) -> None:
    gateway = start_gateway(workdir, routing(mock_upstream),
                            env={"GATEWAY_AUTH_FAILURE_LIMIT": "3/minute", "GATEWAY_ADMIN_RATE_LIMIT": "5/minute"})
    try:
        with client_from("127.0.0.2") as admin, client_from("127.0.0.3") as guesser, \
                client_from("127.0.0.4") as bystander:
            # The admin API: five requests a minute from one address, even with the master key.
            for _ in range(5):
                assert admin.get(f"{gateway.url}/admin/keys", headers=MASTER).status_code == 200
            assert_rate_limited(admin.get(f"{gateway.url}/admin/keys", headers=MASTER), "too many admin requests")
            # Failed authentications: three, then the address is refused before its key is looked at.
            for _ in range(3):
                assert_error(guesser.get(f"{gateway.url}/v1/models", headers=bearer(WRONG_KEY)), 401)
            assert_rate_limited(guesser.get(f"{gateway.url}/v1/models", headers=bearer(WRONG_KEY)),
                                "too many failed authentications")
            assert_rate_limited(guesser.get(f"{gateway.url}/v1/models", headers=MASTER),
                                "too many failed authentications")
            # Other addresses are not held back by either.
            assert bystander.get(f"{gateway.url}/v1/models", headers=MASTER).status_code == 200
            assert bystander.get(f"{gateway.url}/admin/keys", headers=MASTER).status_code == 200
    finally:
        gateway.stop()


def test_an_unreachable_redis_does_not_turn_the_abuse_guard_into_500s(workdir: Path, mock_upstream: Process) -> None:
    # The abuse counters live in Redis when it is configured. With Redis down, the store-down policy of
    # gateway/keys/authenticator.py must still hold: the master key (no store needed) works, an unknown
    # key is 503 with Retry-After, and the admin API says 503 rather than crashing.
    port = free_port()
    config = workdir / f"redis-down-{port}.yaml"
    config.write_text(yaml.safe_dump(routing(mock_upstream)))
    env = {"GATEWAY_MASTER_KEY": MASTER_KEY, "GATEWAY_DATA_DIR": str(workdir / f"data-{port}"),
           "GATEWAY_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", **GENEROUS}
    # /readyz is 503 by design while the store is down, so wait for liveness only.
    gateway = Process([sys.executable, "-m", "gateway", "serve", "--port", str(port), "--config", str(config)],
                      "/healthz", port, workdir / f"gateway-{port}.log", env=env)
    try:
        assert httpx.get(f"{gateway.url}/readyz").status_code == 503
        models = httpx.get(f"{gateway.url}/v1/models", headers=MASTER)
        assert models.status_code == 200, models.text
        unknown = httpx.get(f"{gateway.url}/v1/models", headers=bearer(WRONG_KEY))
        assert_error(unknown, 503, code="service_unavailable")
        assert unknown.headers["retry-after"] == "1"
        assert_error(httpx.get(f"{gateway.url}/admin/keys", headers=MASTER), 503, code="service_unavailable")
    finally:
        gateway.stop()
