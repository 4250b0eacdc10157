"""``llm-gateway keys …`` as a user runs it: a subprocess against a live gateway, checked through
its output, its exit code, and what the admin API then holds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import deployment
from tests.processes import MASTER_KEY, ROOT, Process, free_port, start_gateway

MASTER = {"authorization": f"Bearer {MASTER_KEY}"}
GENEROUS = {"GATEWAY_ADMIN_RATE_LIMIT": "100000/minute", "GATEWAY_AUTH_FAILURE_LIMIT": "100000/minute"}
SECRET = re.compile(r"sk-gw-[A-Za-z0-9_-]{43}")


@pytest.fixture(scope="module")
def cli_gateway(workdir: Path, mock_upstream: Process) -> Iterator[Process]:
    v1 = f"{mock_upstream.url}/v1"
    routing = {"model_list": [deployment("echo", "openai/mock", v1), deployment("other", "openai/mock", v1)]}
    process = start_gateway(workdir, routing, env=GENEROUS)
    yield process
    process.stop()


def keys(gateway: Process, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    full_env = {**clean, "GATEWAY_URL": gateway.url, "GATEWAY_MASTER_KEY": MASTER_KEY, "PYTHONIOENCODING": "utf-8",
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "gateway", "keys", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=60, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def api_get(gateway: Process, path: str, **params: Any) -> Any:
    response = httpx.get(f"{gateway.url}{path}", headers=MASTER, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def table_rows(text: str) -> list[list[str]]:
    """Rows of an aligned table, header first, split on the runs of spaces between columns."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


def details(text: str) -> dict[str, str]:
    """The FIELD/VALUE table of one key (before the blank line that precedes a secret)."""
    head = text.split("\n\n")[0]
    return {row[0]: row[1] for row in table_rows(head)[1:]}


def create_via_api(gateway: Process, **fields: Any) -> dict[str, Any]:
    response = httpx.post(f"{gateway.url}/admin/keys", headers=MASTER, json=fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# --- create -------------------------------------------------------------------------------------

def test_create_prints_the_key_and_its_secret_exactly_once(cli_gateway: Process) -> None:
    result = keys(cli_gateway, "create", "--alias", "cli-made", "--team", "cli", "--model", "echo", "--model", "other",
                  "--rpm", "7", "--tpm", "700", "--max-parallel", "2", "--budget-usd", "12.5", "--budget-period",
                  "monthly", "--expires-at", "2031-01-01T00:00:00Z", "--metadata", '{"owner": "search"}')
    out = ok(result)
    secrets = SECRET.findall(out)
    assert len(secrets) == 1, out
    assert "only time" in result.stderr and "only time" not in out
    fields = details(out)
    assert (fields["alias"], fields["team"], fields["allowed_models"], fields["status"]) == (
        "cli-made", "cli", "echo,other", "active")
    stored = api_get(cli_gateway, f"/admin/keys/{fields['id']}")
    assert (stored["rpm"], stored["tpm"], stored["max_parallel"], stored["budget_usd"], stored["budget_period"]) == (
        7, 700, 2, 12.5, "monthly")
    assert stored["metadata"] == {"owner": "search"} and stored["expires_at"] == "2031-01-01T00:00:00Z"
    models = httpx.get(f"{cli_gateway.url}/v1/models", headers={"authorization": f"Bearer {secrets[0]}"})
    assert models.status_code == 200 and {m["id"] for m in models.json()["data"]} == {"echo", "other"}


def test_create_json_is_the_servers_body(cli_gateway: Process) -> None:
    out = ok(keys(cli_gateway, "create", "--alias", "cli-json", "--disabled", "--json"))
    body = json.loads(out)
    assert body["alias"] == "cli-json" and body["enabled"] is False and body["id"].startswith("key_")
    assert SECRET.fullmatch(body["key"]) and out.count(body["key"]) == 1
    assert api_get(cli_gateway, f"/admin/keys/{body['id']}")["enabled"] is False


# --- list / show --------------------------------------------------------------------------------

def test_list_filters_and_follows_pages(cli_gateway: Process) -> None:
    made = [create_via_api(cli_gateway, alias=f"paged-{i}", team="cli-paging") for i in range(5)]
    create_via_api(cli_gateway, alias="elsewhere", team="cli-other")
    first = keys(cli_gateway, "list", "--team", "cli-paging", "--limit", "2")
    rows = table_rows(ok(first))
    assert rows[0][:3] == ["ID", "ALIAS", "TEAM"]
    assert [r[1] for r in rows[1:]] == ["paged-0", "paged-1"]
    assert "--all" in first.stderr and "--cursor" in first.stderr
    every = table_rows(ok(keys(cli_gateway, "list", "--team", "cli-paging", "--limit", "2", "--all")))
    assert [r[0] for r in every[1:]] == [k["id"] for k in made]
    assert {r[2] for r in every[1:]} == {"cli-paging"}
    as_json = json.loads(ok(keys(cli_gateway, "list", "--team", "cli-paging", "--limit", "2", "--all", "--json")))
    assert [k["alias"] for k in as_json["data"]] == [f"paged-{i}" for i in range(5)]
    assert as_json["next_cursor"] is None
    by_alias = table_rows(ok(keys(cli_gateway, "list", "--alias", "paged-3")))
    assert [r[0] for r in by_alias[1:]] == [made[3]["id"]]


def test_secrets_never_appear_in_list_or_show(cli_gateway: Process) -> None:
    created = json.loads(ok(keys(cli_gateway, "create", "--alias", "quiet", "--team", "cli-quiet", "--json")))
    outputs = [ok(keys(cli_gateway, "list", "--team", "cli-quiet")), ok(keys(cli_gateway, "list", "--json", "--all")),
               ok(keys(cli_gateway, "show", created["id"])), ok(keys(cli_gateway, "show", created["id"], "--json"))]
    for out in outputs:
        assert created["id"] in out
        assert created["key"] not in out and not SECRET.search(out)


def test_show_matches_the_api(cli_gateway: Process) -> None:
    created = create_via_api(cli_gateway, alias="shown", team="cli", rpm=3, metadata={"a": 1})
    fields = details(ok(keys(cli_gateway, "show", created["id"])))
    assert (fields["id"], fields["alias"], fields["rpm"], fields["metadata"]) == (created["id"], "shown", "3",
                                                                                   '{"a": 1}')
    assert fields["tpm"] == "-" and fields["key_prefix"] == created["key_prefix"]
    assert json.loads(ok(keys(cli_gateway, "show", created["id"], "--json"))) == api_get(
        cli_gateway, f"/admin/keys/{created['id']}")


# --- update / rotate / revoke -------------------------------------------------------------------

def test_update_sends_only_what_was_given(cli_gateway: Process) -> None:
    created = create_via_api(cli_gateway, alias="before", team="cli", rpm=5, tpm=500, allowed_models=["echo"])
    fields = details(ok(keys(cli_gateway, "update", created["id"], "--alias", "after")))
    assert fields["alias"] == "after"
    stored = api_get(cli_gateway, f"/admin/keys/{created['id']}")
    assert (stored["rpm"], stored["tpm"], stored["allowed_models"], stored["team"]) == (5, 500, ["echo"], "cli")
    ok(keys(cli_gateway, "update", created["id"], "--rpm", "none", "--all-models", "--disabled"))
    stored = api_get(cli_gateway, f"/admin/keys/{created['id']}")
    assert (stored["rpm"], stored["tpm"], stored["allowed_models"], stored["enabled"]) == (None, 500, [], False)
    audit = api_get(cli_gateway, "/admin/audit", key_id=created["id"])["data"]
    assert [e["changes"] for e in audit[:2]] == [{"rpm": None, "allowed_models": [], "enabled": False},
                                                 {"alias": "after"}]


def chat(gateway: Process, secret: str) -> int:
    return httpx.post(f"{gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                      json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}, timeout=30).status_code


def test_rotate_prints_the_new_secret_once_and_honours_grace(cli_gateway: Process) -> None:
    created = create_via_api(cli_gateway, alias="rotating")
    result = keys(cli_gateway, "rotate", created["id"], "--grace-seconds", "300")
    out = ok(result)
    assert len(SECRET.findall(out)) == 1 and created["key"] not in out
    assert "only time" in result.stderr
    new_secret = SECRET.findall(out)[0]
    assert details(out)["previous_valid_until"] != "-"
    assert chat(cli_gateway, created["key"]) == 200 and chat(cli_gateway, new_secret) == 200
    rotated = json.loads(ok(keys(cli_gateway, "rotate", created["id"], "--json")))
    assert chat(cli_gateway, rotated["key"]) == 200
    assert chat(cli_gateway, new_secret) == 401, "without grace the previous secret stops at once"


def test_revoke(cli_gateway: Process) -> None:
    created = create_via_api(cli_gateway, alias="doomed")
    assert chat(cli_gateway, created["key"]) == 200
    out = ok(keys(cli_gateway, "revoke", created["id"]))
    assert out.startswith(f"revoked {created['id']} at ")
    assert chat(cli_gateway, created["key"]) == 401
    assert details(ok(keys(cli_gateway, "show", created["id"])))["status"] == "revoked"
    again = keys(cli_gateway, "rotate", created["id"])
    assert again.returncode == 1 and "revoked key cannot be rotated" in again.stderr


# --- usage / audit ------------------------------------------------------------------------------

def test_usage(cli_gateway: Process) -> None:
    created = create_via_api(cli_gateway, alias="spender", budget_usd=10, budget_period="weekly")
    out = ok(keys(cli_gateway, "usage", created["id"]))
    fields = details(out)
    assert (fields["key_id"], fields["budget_usd"], fields["budget_period"]) == (created["id"], "10.0", "weekly")
    as_json = json.loads(ok(keys(cli_gateway, "usage", created["id"], "--json")))
    assert as_json == api_get(cli_gateway, f"/admin/keys/{created['id']}/usage")
    assert ("no usage recorded" in out) == (as_json["rows"] == [])


def test_audit_newest_first_across_pages(cli_gateway: Process) -> None:
    created = json.loads(ok(keys(cli_gateway, "create", "--alias", "audited", "--json")))
    ok(keys(cli_gateway, "update", created["id"], "--rpm", "9"))
    ok(keys(cli_gateway, "revoke", created["id"]))
    rows = table_rows(ok(keys(cli_gateway, "audit", "--key-id", created["id"])))
    assert rows[0] == ["AT", "ACTION", "KEY", "TEAM", "ACTOR", "CHANGES"]
    assert [r[1] for r in rows[1:]] == ["revoke", "update", "create"]
    assert {r[2] for r in rows[1:]} == {created["id"]} and {r[4] for r in rows[1:]} == {"master"}
    paged = json.loads(ok(keys(cli_gateway, "audit", "--key-id", created["id"], "--limit", "1", "--all", "--json")))
    assert [e["action"] for e in paged["data"]] == ["revoke", "update", "create"]
    one = json.loads(ok(keys(cli_gateway, "audit", "--key-id", created["id"], "--limit", "1", "--json")))
    assert [e["action"] for e in one["data"]] == ["revoke"] and one["next_cursor"]


# --- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["show", "key_doesnotexist"], "no key with id 'key_doesnotexist'"),
    (["update", "key_doesnotexist", "--rpm", "3"], "no key with id 'key_doesnotexist'"),
    (["revoke", "key_doesnotexist"], "no key with id 'key_doesnotexist'"),
    (["create", "--rpm", "0"], "rpm"),
    (["create", "--team", "bad/team"], "team"),
    (["create", "--role", "admin"], "an admin-role key must belong to a team"),
    (["rotate", "key_doesnotexist", "--grace-seconds", "999999999"], "grace_seconds"),
])
def test_server_refusals_exit_1_with_the_servers_message(cli_gateway: Process, args: list[str],
                                                         message: str) -> None:
    result = keys(cli_gateway, *args)
    assert result.returncode == 1, result
    assert message in result.stderr and result.stderr.startswith("error: ")
    assert result.stdout == ""


@pytest.mark.parametrize("args", [
    ["create", "--rpm", "many"],
    ["create", "--metadata", "[1, 2]"],
    ["create", "--metadata", "{not json"],
    ["create", "--budget-period", "hourly"],
    ["create", "--expires-at", "next tuesday"],
    ["create", "--role", "owner"],
    ["create", "--disabled", "--enabled"],
    ["update", "key_x"],
    ["show"],
    ["frobnicate"],
])
def test_usage_errors_exit_2_before_sending_anything(cli_gateway: Process, args: list[str]) -> None:
    before = len(api_get(cli_gateway, "/admin/audit", limit=500)["data"])
    result = keys(cli_gateway, *args)
    assert result.returncode == 2, result
    assert "error" in result.stderr and result.stdout == ""
    assert len(api_get(cli_gateway, "/admin/audit", limit=500)["data"]) == before


def test_the_secret_comes_from_the_environment(cli_gateway: Process) -> None:
    missing = keys(cli_gateway, "list", env={"GATEWAY_MASTER_KEY": ""})
    assert missing.returncode == 2 and "GATEWAY_MASTER_KEY" in missing.stderr
    admin = create_via_api(cli_gateway, alias="cli-admin", team="cli-env", role="admin")
    create_via_api(cli_gateway, alias="cli-env-user", team="cli-env")
    listed = keys(cli_gateway, "list", "--key-env", "TEAM_ADMIN_KEY", "--all",
                  env={"GATEWAY_MASTER_KEY": "", "TEAM_ADMIN_KEY": admin["key"]})
    rows = table_rows(ok(listed))
    assert {r[2] for r in rows[1:]} == {"cli-env"} and len(rows) == 3
    wrong = keys(cli_gateway, "list", env={"GATEWAY_MASTER_KEY": "sk-gw-" + "x" * 43})
    assert wrong.returncode == 1 and "invalid API key" in wrong.stderr


def test_an_unreachable_gateway_is_a_clear_error(cli_gateway: Process) -> None:
    result = keys(cli_gateway, "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "cannot reach the gateway" in result.stderr and "Traceback" not in result.stderr


def test_the_cli_does_not_import_the_server() -> None:
    probe = ("import sys; from gateway.cli import build_parser; build_parser(); import gateway.cli_keys; "
             "print(sorted(m for m in ('litellm', 'fastapi', 'pydantic', 'uvicorn') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=True)
    assert result.stdout.strip() == "[]"
