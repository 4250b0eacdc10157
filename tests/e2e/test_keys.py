"""Virtual keys end to end, on both stores: create → use → revoke, rotation, expiry, allow-lists,
restart persistence, cross-replica revocation, and canary secrets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from tests.e2e.conftest import deployment
from tests.processes import MASTER_KEY, Process, start_gateway

REDIS_URL = "redis://127.0.0.1:6379/9"
MASTER = {"authorization": f"Bearer {MASTER_KEY}"}
HELLO: list[Any] = [{"role": "user", "content": "hello"}]


def routing(mock: Process) -> dict[str, Any]:
    v1 = f"{mock.url}/v1"
    return {"model_list": [deployment("echo", "openai/mock", v1), deployment("other", "openai/mock", v1)]}


def flush_redis() -> None:
    with redis.Redis.from_url(REDIS_URL) as client:
        client.flushdb()


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture(scope="module")
def data_dir(workdir: Path, store_kind: str) -> Path:
    return workdir / f"keys-{store_kind}"


def _start(workdir: Path, mock: Process, store_kind: str, data_dir: Path, **env: str) -> Process:
    settings = {"GATEWAY_DATA_DIR": str(data_dir), **env}
    if store_kind == "redis":
        settings["GATEWAY_REDIS_URL"] = REDIS_URL
    return start_gateway(workdir, routing(mock), env=settings)


@pytest.fixture(scope="module")
def keyed(workdir: Path, mock_upstream: Process, store_kind: str, data_dir: Path) -> Iterator[Process]:
    if store_kind == "redis":
        flush_redis()
    process = _start(workdir, mock_upstream, store_kind, data_dir)
    yield process
    process.stop()


def create_key(gateway: Process, headers: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    response = httpx.post(f"{gateway.url}/admin/keys", headers=headers or MASTER, json=fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def chat(gateway: Process, key: str, model: str = "echo") -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": model, "messages": HELLO}, timeout=30)


def test_create_use_revoke(keyed: Process) -> None:
    created = create_key(keyed, alias="svc-a", team="alpha", metadata={"owner": "me"})
    secret = created["key"]
    assert secret.startswith("sk-gw-") and len(secret) >= 6 + 32
    assert created["key_prefix"] != secret and secret.startswith(created["key_prefix"].rstrip("…"))
    assert "key_hash" not in created
    with openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=secret, max_retries=0) as client:
        assert client.chat.completions.create(model="echo", messages=HELLO).choices[0].message.content == "hello"
    shown = httpx.get(f"{keyed.url}/admin/keys/{created['id']}", headers=MASTER).json()
    assert "key" not in shown and shown["alias"] == "svc-a" and shown["metadata"] == {"owner": "me"}
    assert httpx.delete(f"{keyed.url}/admin/keys/{created['id']}", headers=MASTER).status_code == 200
    response = chat(keyed, secret)
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]
    assert secret not in response.text


def test_rotation_without_grace(keyed: Process) -> None:
    created = create_key(keyed, alias="rot-now")
    rotated = httpx.post(f"{keyed.url}/admin/keys/{created['id']}/rotate", headers=MASTER, json={}).json()
    assert rotated["key"] != created["key"] and rotated["id"] == created["id"]
    assert chat(keyed, created["key"]).status_code == 401
    assert chat(keyed, rotated["key"]).status_code == 200


def test_rotation_with_grace(keyed: Process) -> None:
    created = create_key(keyed, alias="rot-grace")
    rotated = httpx.post(f"{keyed.url}/admin/keys/{created['id']}/rotate", headers=MASTER,
                         json={"grace_seconds": 2}).json()
    assert chat(keyed, created["key"]).status_code == 200, "the old secret works during the grace period"
    assert chat(keyed, rotated["key"]).status_code == 200
    time.sleep(2.5)
    assert chat(keyed, created["key"]).status_code == 401
    assert chat(keyed, rotated["key"]).status_code == 200


def test_expiry(keyed: Process) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    created = create_key(keyed, alias="short-lived", expires_at=soon)
    assert chat(keyed, created["key"]).status_code == 200
    time.sleep(2.5)
    response = chat(keyed, created["key"])
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]
    past = create_key(keyed, expires_at=(datetime.now(UTC) - timedelta(hours=1)).isoformat())
    assert chat(keyed, past["key"]).status_code == 401


def test_model_allow_list(keyed: Process) -> None:
    created = create_key(keyed, allowed_models=["echo"])
    assert chat(keyed, created["key"], "echo").status_code == 200
    denied = chat(keyed, created["key"], "other")
    assert denied.status_code == 403
    assert denied.json()["error"]["type"] == "permission_error"
    with openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=created["key"], max_retries=0) as client:
        assert [m.id for m in client.models.list()] == ["echo"]
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="other", messages=HELLO)


def test_disabled_key_and_patch(keyed: Process) -> None:
    created = create_key(keyed)
    patched = httpx.patch(f"{keyed.url}/admin/keys/{created['id']}", headers=MASTER, json={"enabled": False})
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    assert chat(keyed, created["key"]).status_code == 401
    httpx.patch(f"{keyed.url}/admin/keys/{created['id']}", headers=MASTER, json={"enabled": True, "rpm": 10})
    assert chat(keyed, created["key"]).status_code == 200
    assert httpx.get(f"{keyed.url}/admin/keys/{created['id']}", headers=MASTER).json()["rpm"] == 10


def test_user_keys_cannot_reach_admin(keyed: Process) -> None:
    user = create_key(keyed)
    response = httpx.get(f"{keyed.url}/admin/keys", headers={"authorization": f"Bearer {user['key']}"})
    assert response.status_code == 403


def test_listing_filters_and_pages(keyed: Process) -> None:
    for index in range(5):
        create_key(keyed, alias=f"page-{index}", team="paging")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"team": "paging", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = httpx.get(f"{keyed.url}/admin/keys", headers=MASTER, params=params).json()
        seen += [k["alias"] for k in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"page-{i}" for i in range(5)]
    by_alias = httpx.get(f"{keyed.url}/admin/keys", headers=MASTER, params={"alias": "page-3"}).json()
    assert [k["alias"] for k in by_alias["data"]] == ["page-3"]


def test_audit_log_records_changes_without_secrets(keyed: Process) -> None:
    created = create_key(keyed, alias="audited", team="audit-team")
    httpx.patch(f"{keyed.url}/admin/keys/{created['id']}", headers=MASTER, json={"rpm": 5})
    rotated = httpx.post(f"{keyed.url}/admin/keys/{created['id']}/rotate", headers=MASTER, json={}).json()
    httpx.delete(f"{keyed.url}/admin/keys/{created['id']}", headers=MASTER)
    entries = httpx.get(f"{keyed.url}/admin/audit", headers=MASTER, params={"key_id": created["id"]}).json()["data"]
    assert [e["action"] for e in entries] == ["revoke", "rotate", "update", "create"]
    assert entries[2]["changes"] == {"rpm": 5}
    assert all(e["actor"] == "master" for e in entries)
    text = str(entries)
    assert created["key"] not in text and rotated["key"] not in text


def test_usage_endpoint_schema(keyed: Process) -> None:
    created = create_key(keyed, budget_usd=10, budget_period="monthly")
    usage = httpx.get(f"{keyed.url}/admin/keys/{created['id']}/usage", headers=MASTER).json()
    assert usage["key_id"] == created["id"]
    assert usage["budget_usd"] == 10 and usage["budget_period"] == "monthly"
    assert isinstance(usage["rows"], list)


def test_bad_admin_bodies_are_400_naming_the_field(keyed: Process) -> None:
    response = httpx.post(f"{keyed.url}/admin/keys", headers=MASTER, json={"rpm": -1})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "rpm"
    response = httpx.post(f"{keyed.url}/admin/keys", headers=MASTER, json={"budget_period": "hourly"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "budget_period"
    response = httpx.post(f"{keyed.url}/admin/keys", headers=MASTER, json={"nope": 1})
    assert response.status_code == 400 and response.json()["error"]["param"] == "nope"
    assert httpx.get(f"{keyed.url}/admin/keys/key_doesnotexist", headers=MASTER).status_code == 404


def test_revocation_reaches_another_replica_within_a_second(workdir: Path, mock_upstream: Process,
                                                            store_kind: str, keyed: Process,
                                                            data_dir: Path) -> None:
    if store_kind == "sqlite":
        # The embedded store serves one process: a second gateway on the same directory is refused.
        with pytest.raises(RuntimeError, match="already used by"):
            _start(workdir, mock_upstream, store_kind, data_dir)
        return
    replica = _start(workdir, mock_upstream, store_kind, data_dir)
    try:
        created = create_key(keyed, alias="replicated")
        for _ in range(3):  # warm both replicas' caches
            assert chat(keyed, created["key"]).status_code == 200
            assert chat(replica, created["key"]).status_code == 200
        assert httpx.delete(f"{keyed.url}/admin/keys/{created['id']}", headers=MASTER).status_code == 200
        revoked_at = time.monotonic()
        while chat(replica, created["key"]).status_code == 200:
            assert time.monotonic() - revoked_at < 1.0, "the other replica still accepts a revoked key"
            time.sleep(0.02)
    finally:
        replica.stop()


def test_canary_secrets_stay_out_of_logs_and_bodies(keyed: Process) -> None:
    canary = "sk-gw-CANARY" + "x" * 40
    for path, method in (("/v1/chat/completions", "POST"), ("/v1/models", "GET"), ("/admin/keys", "GET")):
        response = httpx.request(method, f"{keyed.url}{path}", headers={"authorization": f"Bearer {canary}"},
                                 json={"model": "echo", "messages": HELLO})
        assert response.status_code == 401
        assert canary not in response.text
    created = create_key(keyed, alias="canary-owner")
    chat(keyed, created["key"])
    logs = keyed.logs()
    assert canary not in logs
    assert created["key"] not in logs
    assert MASTER_KEY not in logs


def test_keys_survive_a_restart(workdir: Path, mock_upstream: Process, store_kind: str, keyed: Process,
                                data_dir: Path) -> None:
    """Runs last in this module: it stops the module's gateway and starts another on the same store."""
    created = create_key(keyed, alias="durable")
    revoked = create_key(keyed, alias="revoked-before-restart")
    httpx.delete(f"{keyed.url}/admin/keys/{revoked['id']}", headers=MASTER)
    keyed.stop()
    second = _start(workdir, mock_upstream, store_kind, data_dir)
    try:
        assert chat(second, created["key"]).status_code == 200
        assert chat(second, revoked["key"]).status_code == 401
        entries = httpx.get(f"{second.url}/admin/audit", headers=MASTER, params={"key_id": revoked["id"]}).json()
        assert [e["action"] for e in entries["data"]] == ["revoke", "create"]
    finally:
        second.stop()
