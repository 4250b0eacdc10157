"""Token estimates for admission: prompt tokens from litellm's token counter, completion tokens from
the request's own cap (or the configured default), times ``n``. Settlement replaces them by the
provider's real counts, so an estimate only has to be a sensible reservation."""

from __future__ import annotations

from typing import Any

import litellm

from gateway.routing.deployments import Operation

#: The tokenizer used for estimates when the model is unknown to litellm (cl100k-class counts).
FALLBACK_TOKENIZER_MODEL = "gpt-4o-mini"


def _count(model: str, **content: Any) -> int:
    try:
        return int(litellm.token_counter(model=model, **content))
    except Exception:  # an estimate must never fail a request
        return int(litellm.token_counter(model=FALLBACK_TOKENIZER_MODEL, **content))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text(item) for item in value)
    return str(value)


def estimate_tokens(operation: Operation, body: dict[str, Any], model: str,
                    default_completion_tokens: int) -> tuple[int, int]:
    """(prompt tokens, completion tokens) this request may use at most, as far as can be told."""
    if operation == "embedding":
        return _count(model, text=_text(body.get("input", ""))), 0
    if operation == "chat":
        prompt = _count(model, messages=body.get("messages") or [])
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
    else:
        prompt = _count(model, text=_text(body.get("prompt", "")))
        cap = body.get("max_tokens")
    choices = body.get("n") or 1
    completion = (cap if isinstance(cap, int) and cap > 0 else default_completion_tokens) * choices
    return prompt, completion
