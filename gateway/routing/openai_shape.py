"""Make litellm's response objects look exactly like OpenAI's on the wire.

litellm's pydantic models carry fields of their own (``provider_specific_fields``, ``citations``,
``obfuscation`` …) and spell absent values as nulls that OpenAI omits. A client must not be able to
tell which engine answered, so both are removed here.
"""

from __future__ import annotations

from typing import Any

LITELLM_ONLY = frozenset({"provider_specific_fields", "citations", "moderation", "obfuscation",
                          "thinking_blocks", "_hidden_params", "_response_ms"})
#: Keys OpenAI sends as an explicit null.
KEEP_NULL = frozenset({"content", "logprobs", "finish_reason", "refusal"})
#: Keys OpenAI always sends as a string (a text-completion chunk's ``text`` is "" at the end).
NEVER_NULL_TEXT = frozenset({"text"})


def openai_shape(node: Any) -> Any:
    if isinstance(node, dict):
        shaped = {key: openai_shape(value) for key, value in node.items()
                  if key not in LITELLM_ONLY and (value is not None or key in KEEP_NULL)}
        for key in NEVER_NULL_TEXT & node.keys():
            if node[key] is None:
                shaped[key] = ""
        return shaped
    if isinstance(node, list):
        return [openai_shape(item) for item in node]
    return node
