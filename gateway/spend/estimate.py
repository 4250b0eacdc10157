"""Token estimates for admission, without a tokenizer: prompt tokens from the size of the prompt,
completion tokens from the request's own cap (or the configured default), times ``n``. Settlement
replaces both by the provider's real counts, so an estimate only sizes a reservation.

Why no tokenizer: an exact count needs the model's BPE tables in every worker (``o200k_base`` and
``cl100k_base`` together are about 100 MB of RSS, measured in bench/memory.py), costs 8-45 µs per
request, differs per provider anyway, and litellm's counter fetches ``image_url`` images
synchronously, on the event loop. One token per ``BYTES_PER_TOKEN`` UTF-8 bytes over-reserves
English prose (about 4.9 bytes a token with OpenAI's tokenizers) and code (about 4.2), and
under-reserves only digit runs and some scripts (about 2); the settlement corrects either within
the request.
"""

from __future__ import annotations

from typing import Any

from gateway.routing.deployments import Operation

BYTES_PER_TOKEN = 3
#: OpenAI's chat format: each message is wrapped in a few tokens (role, separators) ...
TOKENS_PER_MESSAGE = 4
#: ... and the reply is primed with a few more.
TOKENS_PER_REPLY = 3
#: An image part, whatever its size: OpenAI's count for a high-detail 512x512 tile plus its base.
TOKENS_PER_IMAGE = 255
IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})


def _size(value: Any) -> tuple[int, int]:
    """(UTF-8 bytes of every string in ``value``, number of image parts), walking lists and objects.

    Token arrays (lists of ints, accepted by completions and embeddings) count one token each, as
    ``BYTES_PER_TOKEN`` bytes."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass")), 0
    if isinstance(value, bool) or value is None:
        return 0, 0
    if isinstance(value, int | float):
        return BYTES_PER_TOKEN, 0
    if isinstance(value, dict):
        if value.get("type") in IMAGE_PARTS:
            return 0, 1
        items: Any = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return 0, 0
    size = images = 0
    for item in items:
        item_size, item_images = _size(item)
        size += item_size
        images += item_images
    return size, images


def _tokens(*values: Any) -> int:
    size = images = 0
    for value in values:
        value_size, value_images = _size(value)
        size += value_size
        images += value_images
    return -(-size // BYTES_PER_TOKEN) + images * TOKENS_PER_IMAGE


def estimate_tokens(operation: Operation, body: dict[str, Any], default_completion_tokens: int) -> tuple[int, int]:
    """(prompt tokens, completion tokens) to reserve for this request."""
    if operation == "embedding":
        return _tokens(body.get("input")), 0
    if operation == "chat":
        messages = body.get("messages")
        count = len(messages) if isinstance(messages, list) else 1
        prompt = (_tokens(messages, body.get("tools"), body.get("functions"))
                  + count * TOKENS_PER_MESSAGE + TOKENS_PER_REPLY)
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
    else:
        prompt = _tokens(body.get("prompt"), body.get("suffix"))
        cap = body.get("max_tokens")
    choices = body.get("n")
    choices = choices if isinstance(choices, int) and choices > 0 else 1
    completion = (cap if isinstance(cap, int) and cap > 0 else default_completion_tokens) * choices
    return prompt, completion
