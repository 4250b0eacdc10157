"""What makes two requests the same: the exact key, the semantic scope, and what may be cached at all.

Pure functions, no I/O. The exact key hashes every body field except a short list of fields that
cannot change the answer (``stream``, ``user``, ``metadata``…): a field we do not know about is
hashed, so a new output-changing parameter is never ignored by mistake, only cached less often.

The semantic scope hashes everything *except* the last user message's text: tenant, endpoint,
alias, every other body field, the system prompt and every earlier turn, and the embedder's id.
Two requests can only meet in the vector index when their scopes are byte-for-byte equal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from gateway.auth import Principal

Endpoint = Literal["chat", "completion", "embedding"]

#: Body fields that never change what the model answers; everything else is part of the key.
NON_OUTPUT_FIELDS = frozenset({
    "model",            # replaced by the resolved alias
    "stream",           # a cached answer is replayed in either form
    "stream_options",
    "user",
    "metadata",
    "store",
    "safety_identifier",
    "prompt_cache_key",
    "service_tier",
})

#: Content part types that are plain text; any other part (image, audio, file) is multimodal.
TEXT_PARTS = frozenset({"text", "input_text"})

KEY_VERSION = "v1"


def tenant_of(principal: Principal, share_across_keys: bool) -> str:
    """The team when the key has one; otherwise the key itself, or one shared tenant for every key
    without a team when the operator turns ``share_across_keys`` on."""
    if principal.team:
        return f"team:{principal.team}"
    return "shared" if share_across_keys else f"key:{principal.key_id}"


def _digest(*parts: Any) -> str:
    try:
        payload = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)
    except TypeError as error:  # only JSON values come from a parsed body; anything else is a bug
        raise ValueError(f"uncacheable value in the request: {error}") from None
    return hashlib.sha256(payload).hexdigest()


def output_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in body.items() if name not in NON_OUTPUT_FIELDS}


def exact_key(tenant: str, endpoint: Endpoint, alias: str, body: Mapping[str, Any]) -> str:
    """The entry id of the exact tier: equal exactly when tenant, endpoint, alias and every
    output-changing field (messages included) are equal, whatever the JSON key order."""
    return f"x{KEY_VERSION}:" + _digest("exact", KEY_VERSION, tenant, endpoint, alias, output_fields(body))


def message_text(content: Any) -> str | None:
    """The text of a message's content: a string, or the text parts of a list joined by newlines.
    None when the content has a part that is not text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in TEXT_PARTS:
                return None
            text = part.get("text")
            if not isinstance(text, str):
                return None
            texts.append(text)
        return "\n".join(texts)
    return None


@dataclass(frozen=True, slots=True)
class SemanticQuery:
    """A request the semantic tier may answer: the scope to search in and the text to embed."""

    scope: str
    text: str


@dataclass(frozen=True, slots=True)
class SemanticSkip:
    reason: str


def semantic_query(tenant: str, endpoint: Endpoint, alias: str, body: Mapping[str, Any], embedder_id: str,
                   *, min_words: int) -> SemanticQuery | SemanticSkip:
    """The semantic scope and text, or why this request may not use the semantic tier."""
    if endpoint != "chat":
        return SemanticSkip("endpoint")
    n = body.get("n")
    if n is not None and n != 1:
        return SemanticSkip("n>1")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return SemanticSkip("no-user-turn")
    for message in messages:
        if not isinstance(message, dict):
            return SemanticSkip("no-user-turn")
        content = message.get("content")
        if content is not None and message_text(content) is None:
            return SemanticSkip("multimodal")
    last = messages[-1]
    if last.get("role") in ("tool", "function"):
        return SemanticSkip("tool-turn")
    if last.get("role") != "user":
        return SemanticSkip("no-user-turn")
    text = message_text(last.get("content"))
    if text is None or len(text.split()) < min_words:
        return SemanticSkip("short")
    # Everything but the last turn's text: earlier turns (the system prompt among them), the last
    # turn's other fields (name…), every other body field, and who is asking.
    rest = output_fields(body)
    rest.pop("messages", None)
    last_meta = {name: value for name, value in last.items() if name != "content"}
    scope = "s" + KEY_VERSION + ":" + _digest("semantic", KEY_VERSION, tenant, endpoint, alias, embedder_id, rest,
                                              messages[:-1], last_meta)
    return SemanticQuery(scope=scope, text=text)


def temperature_of(body: Mapping[str, Any]) -> float | None:
    value = body.get("temperature")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
