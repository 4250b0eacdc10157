"""The OpenAI-compatible endpoints (/v1/*): parse, call the pipeline, render JSON or SSE."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from gateway.api.deps import ServicesDep, services_of
from gateway.api.http import (
    EventStreamResponse,
    cancel_on_disconnect,
    context_for,
    dumps,
    gateway_headers,
    json_response,
    read_json,
)
from gateway.api.openapi import ERROR_RESPONSES, body_schema
from gateway.api.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelCard,
    ModelList,
    validate_body,
)
from gateway.errors import ModelNotFound
from gateway.pipeline import JsonResult
from gateway.routing.deployments import Operation
from gateway.services import Services

router = APIRouter(prefix="/v1", tags=["openai"], responses=ERROR_RESPONSES)


async def _handle(request: Request, services: Services, operation: Operation,
                  schema: type[BaseModel]) -> Response:
    ctx = context_for(request)
    ctx.operation = operation
    services.observer.request_started(ctx)
    await services.authenticate(request, ctx)
    pipeline = services.pipeline
    body: Any = await read_json(request, services.settings.max_body_bytes)
    validate_body(schema, body)
    pipeline.authorize(ctx, body["model"])
    stream = bool(body.get("stream")) and operation != "embedding"
    result = await cancel_on_disconnect(request, pipeline.call(ctx, operation, body, stream=stream,
                                                               headers=request.headers))
    if isinstance(result, JsonResult):
        services.observe(ctx, 200, None)
        return json_response(result.body, gateway_headers(ctx))
    return EventStreamResponse(result, gateway_headers(ctx, finished=False),
                               on_closed=lambda: services.observe(ctx, 200, None))


async def chat_completions(request: Request) -> Response:
    return await _handle(request, services_of(request), "chat", ChatCompletionRequest)


async def completions(request: Request) -> Response:
    return await _handle(request, services_of(request), "completion", CompletionRequest)


async def embeddings(request: Request) -> Response:
    return await _handle(request, services_of(request), "embedding", EmbeddingRequest)


@dataclass(frozen=True)
class DataRoute:
    """One POST endpoint of the data plane: its path, handler, documented body and summary."""

    path: str
    endpoint: Callable[[Request], Awaitable[Response]]
    body: type[BaseModel]
    summary: str


#: Served as plain Starlette routes. Their handlers read, validate and answer the body themselves,
#: so FastAPI's per-request machinery (solving the endpoint's parameters and dependencies) would buy
#: them nothing, and it was a tenth of a request's CPU (docs/benchmarks.md, bench/ab.py). They are
#: documented from the same functions (``documented``); the control plane stays on FastAPI routes.
DATA_PLANE = (
    DataRoute("/v1/chat/completions", chat_completions, ChatCompletionRequest,
              "Create a chat completion (JSON or SSE stream)"),
    DataRoute("/v1/completions", completions, CompletionRequest, "Create a (legacy) text completion"),
    DataRoute("/v1/embeddings", embeddings, EmbeddingRequest, "Create embeddings"),
)


class DataPlaneRoute(Route):
    """A Starlette route that names itself in the scope, as FastAPI's do: the server span and the
    access log are named after the route's template."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def data_plane() -> list[DataPlaneRoute]:
    return [DataPlaneRoute(r.path, r.endpoint, methods=["POST"], include_in_schema=False) for r in DATA_PLANE]


def documented() -> list[APIRoute]:
    """The data plane as FastAPI would describe it, for the OpenAPI document only (never mounted)."""
    return [APIRoute(r.path, r.endpoint, methods=["POST"], tags=["openai"], responses=ERROR_RESPONSES,
                     summary=r.summary, openapi_extra=body_schema(r.body)) for r in DATA_PLANE]


@router.get("/models", response_model=ModelList, summary="List the models this key may use")
async def list_models(request: Request, services: ServicesDep) -> Response:
    ctx = context_for(request)
    principal = await services.authenticate(request, ctx)
    pipeline = services.pipeline
    cards = [ModelCard(id=alias, created=pipeline.loaded_at, owned_by="llm-gateway").model_dump()
             for alias in pipeline.visible_aliases(principal)]
    return json_response(dumps({"object": "list", "data": cards}), {"x-request-id": ctx.request_id})


@router.get("/models/{model:path}", response_model=ModelCard, summary="Describe one model")
async def retrieve_model(model: str, request: Request, services: ServicesDep) -> Response:
    ctx = context_for(request)
    principal = await services.authenticate(request, ctx)
    pipeline = services.pipeline
    if model not in pipeline.visible_aliases(principal):
        raise ModelNotFound(f"The model '{model}' does not exist or you do not have access to it.",
                            param="model")
    card = ModelCard(id=model, created=pipeline.loaded_at, owned_by="llm-gateway")
    return json_response(dumps(card.model_dump()), {"x-request-id": ctx.request_id})
