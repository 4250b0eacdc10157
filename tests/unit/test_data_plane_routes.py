"""The data plane (POST /v1/chat/completions, /v1/completions, /v1/embeddings) is served by plain Starlette
routes, without FastAPI's per-request dependency solving, and still documented like FastAPI's routes."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Match

from gateway.api.openai import DATA_PLANE, DataPlaneRoute
from gateway.app import create_app
from gateway.settings import Settings


def _app() -> FastAPI:
    return create_app(Settings(master_key="sk-test-master-key-0123456789", demo=True))


def test_each_data_plane_path_is_served_by_a_plain_route_and_nothing_else() -> None:
    app = _app()
    for entry in DATA_PLANE:
        served = [r for r in app.router.routes if getattr(r, "path", None) == entry.path]
        assert len(served) == 1 and isinstance(served[0], DataPlaneRoute), entry.path
        assert served[0].endpoint is entry.endpoint and served[0].methods == {"POST"}
    included = [r for r in app.routes if isinstance(r, APIRoute)]
    assert not any(r.path in {e.path for e in DATA_PLANE} for r in included)


def test_the_openapi_document_describes_the_data_plane_bodies_and_errors() -> None:
    paths = _app().openapi()["paths"]
    for entry in DATA_PLANE:
        post = paths[entry.path]["post"]
        assert post["summary"] == entry.summary
        schema = post["requestBody"]["content"]["application/json"]["schema"]
        assert "model" in schema["required"]
        assert {"400", "401", "429", "502"} <= set(post["responses"])
    assert "/v1/models" in paths and "/admin/keys" in paths  # the FastAPI routes are still there


def test_the_route_names_itself_in_the_scope_for_spans_and_logs() -> None:
    route = DataPlaneRoute("/v1/embeddings", DATA_PLANE[2].endpoint, methods=["POST"])
    scope = {"type": "http", "method": "POST", "path": "/v1/embeddings", "root_path": ""}
    match, child = route.matches(scope)
    assert match is Match.FULL and child["route"] is route
    miss, other = route.matches({**scope, "path": "/v1/embeddingsX"})
    assert miss is Match.NONE and "route" not in other
