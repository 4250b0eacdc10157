"""The OpenAI-compatible endpoints (/v1/*): parse, call the pipeline, render JSON or SSE."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from gateway.api.deps import ServicesDep
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


@router.post("/chat/completions", openapi_extra=body_schema(ChatCompletionRequest),
             summary="Create a chat completion (JSON or SSE stream)")
async def chat_completions(request: Request, services: ServicesDep) -> Response:
    return await _handle(request, services, "chat", ChatCompletionRequest)


@router.post("/completions", openapi_extra=body_schema(CompletionRequest),
             summary="Create a (legacy) text completion")
async def completions(request: Request, services: ServicesDep) -> Response:
    return await _handle(request, services, "completion", CompletionRequest)


@router.post("/embeddings", openapi_extra=body_schema(EmbeddingRequest), summary="Create embeddings")
async def embeddings(request: Request, services: ServicesDep) -> Response:
    return await _handle(request, services, "embedding", EmbeddingRequest)


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
