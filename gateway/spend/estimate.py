"""Token estimates for admission: prompt tokens from litellm's token counter, completion tokens from
the request's own cap (or the configured default), times ``n``. Settlement replaces them by the
provider's real counts, so an estimate only has to be a sensible reservation.

Chat prompts are counted with litellm's own counting steps, but with the per-model part (choosing
the tokenizer and the per-message rule from the model's name) done once per model rather than per
request: the same count as ``litellm.token_counter`` at a fraction of its CPU (about 7 µs against
45 µs for a short prompt).
"""

from __future__ import annotations

import functools
from typing import Any

import litellm
from litellm.litellm_core_utils.token_counter import _count_extra, _count_messages, _MessageCountParams

from gateway.routing.deployments import Operation

#: The tokenizer used for estimates when the model is unknown to litellm (cl100k-class counts).
FALLBACK_TOKENIZER_MODEL = "gpt-4o-mini"


def _count(model: str, **content: Any) -> int:
    try:
        return int(litellm.token_counter(model=model, **content))
    except Exception:  # an estimate must never fail a request
        return int(litellm.token_counter(model=FALLBACK_TOKENIZER_MODEL, **content))


@functools.lru_cache(maxsize=256)
def _message_rules(model: str) -> _MessageCountParams:
    """litellm's tokenizer and per-message rule for ``model`` (what token_counter rebuilds per call)."""
    return _MessageCountParams(model, None)


def _count_chat(model: str, messages: list[Any]) -> int:
    """``litellm.token_counter(model=model, messages=messages)``, with the per-model part cached."""
    try:
        rules = _message_rules(model)
        system = any(isinstance(m, dict) and m.get("role") == "system" for m in messages)
        return int(_count_messages(rules, messages, False, None)
                   + _count_extra(rules.count_function, None, None, system, rules.tool_section))
    except Exception:  # an estimate must never fail a request
        return _count(model, messages=messages)


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
        messages = body.get("messages") or []
        prompt = _count_chat(model, messages) if isinstance(messages, list) else _count(model, messages=messages)
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
    else:
        prompt = _count(model, text=_text(body.get("prompt", "")))
        cap = body.get("max_tokens")
    choices = body.get("n") or 1
    completion = (cap if isinstance(cap, int) and cap > 0 else default_completion_tokens) * choices
    return prompt, completion
