"""Schemathesis against the live admin API: every /admin operation, generated from /openapi.json,
sent with the master key; no response may be a 5xx, and status, content type, headers and body must
match the schema.

Path ids are swapped for ids of real keys (a fresh one per example) so that generated PATCH, rotate
and revoke bodies reach the store instead of stopping at 404. Checks left out, on purpose:
``positive_data_acceptance`` (rules the schema cannot express answer 400 to schema-valid data: an
admin-role key needs a team, a revoked key cannot be rotated), ``negative_data_rejection``
(pydantic's lax mode takes ``false`` for 0 and FastAPI ignores unknown query parameters) and
``unsupported_method`` (Starlette's 405 lists only the first matching route's methods in ``Allow``).
The regressions below pin what fuzzing found, so they fail the same way on every run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import deployment
from tests.processes import MASTER_KEY, Process, start_gateway

MASTER = {"authorization": f"Bearer {MASTER_KEY}"}
GENEROUS = {"GATEWAY_ADMIN_RATE_LIMIT": "100000/minute", "GATEWAY_AUTH_FAILURE_LIMIT": "100000/minute"}
KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_gateway(workdir: Path, mock_upstream: Process) -> Iterator[Process]:
    v1 = f"{mock_upstream.url}/v1"
    routing = {"model_list": [deployment("echo", "openai/mock", v1), deployment("other", "openai/mock", v1)]}
    process = start_gateway(workdir, routing, env=GENEROUS)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def admin_schema(fuzz_gateway: Process) -> Any:
    config = schemathesis.Config.from_dict({
        "headers": {"Authorization": f"Bearer {MASTER_KEY}"},
        "generation": {"max-examples": 30},
    })
    return schemathesis.openapi.from_url(f"{fuzz_gateway.url}/openapi.json", config=config)


@pytest.fixture(scope="module")
def admin_session(fuzz_gateway: Process) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_gateway.url, headers=MASTER, timeout=30) as client:
        yield client


def fresh_key_id(client: httpx.Client) -> str:
    response = client.post("/admin/keys", json={"alias": "fuzz-target", "team": "fuzz"})
    assert response.status_code == 201, response.text
    key_id: str = response.json()["id"]
    return key_id


schema = schemathesis.pytest.from_fixture("admin_schema").include(path_regex=r"^/admin/")


@schema.parametrize()
def test_admin_api_has_no_server_errors(case: schemathesis.Case, admin_session: httpx.Client) -> None:
    key_id = (case.path_parameters or {}).get("key_id")
    if isinstance(key_id, str) and KEY_ID.match(key_id):
        case.path_parameters = {**(case.path_parameters or {}), "key_id": fresh_key_id(admin_session)}
    case.call_and_validate(checks=CHECKS)


# --- regressions found by the fuzzer --------------------------------------------------------------
# One-shot requests: after an unhandled error the server drops the connection, which would turn the
# next request on a pooled connection into a reset instead of an answer.

def admin(gateway: Process, method: str, path: str, **options: Any) -> httpx.Response:
    return httpx.request(method, f"{gateway.url}{path}", headers=MASTER, timeout=30, **options)


def assert_client_error(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text}"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("path", ["/admin/keys", "/admin/audit"])
@pytest.mark.parametrize("cursor", ["", "not-a-cursor", "123:", "²", "9" * 23, "9" * 23 + ":key_x"])
def test_a_malformed_cursor_is_a_client_error(fuzz_gateway: Process, path: str, cursor: str) -> None:
    assert_client_error(admin(fuzz_gateway, "GET", path, params={"cursor": cursor}))


@pytest.mark.parametrize("field", ["role", "enabled", "metadata", "allowed_models"])
def test_patching_a_required_field_to_null_leaves_the_key_readable(fuzz_gateway: Process, field: str) -> None:
    created = admin(fuzz_gateway, "POST", "/admin/keys", json={"alias": "null-patch", "team": "fuzz-null"})
    key_id = created.json()["id"]
    response = admin(fuzz_gateway, "PATCH", f"/admin/keys/{key_id}", json={field: None})
    assert response.status_code < 500, f"PATCH {{{field!r}: null}} -> {response.status_code}"
    shown = admin(fuzz_gateway, "GET", f"/admin/keys/{key_id}")
    assert shown.status_code == 200, f"the key is unreadable after the PATCH: {shown.text}"
    assert shown.json()[field] is not None
    listed = admin(fuzz_gateway, "GET", "/admin/keys", params={"team": "fuzz-null", "limit": 500})
    assert listed.status_code == 200, f"its team can no longer be listed: {listed.text}"
