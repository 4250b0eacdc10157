"""OpenAPI documentation for routes that read their body themselves (for speed) and for errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorEnvelope, "description": "Malformed JSON or a field that fails validation"},
    401: {"model": ErrorEnvelope, "description": "Missing or invalid API key"},
    403: {"model": ErrorEnvelope, "description": "The key may not use this model or route"},
    404: {"model": ErrorEnvelope, "description": "Unknown model"},
    413: {"model": ErrorEnvelope, "description": "Body larger than GATEWAY_MAX_BODY_BYTES"},
    429: {"model": ErrorEnvelope, "description": "Rate limited (Retry-After says when to come back)"},
    502: {"model": ErrorEnvelope, "description": "The provider failed or answered badly"},
    503: {"model": ErrorEnvelope, "description": "No deployment available"},
    504: {"model": ErrorEnvelope, "description": "The provider timed out"},
}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as the JSON request body (our schemas are not recursive)."""
    schema = model.model_json_schema()
    inlined = _inline(schema, schema.get("$defs", {}))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inlined}}}}
