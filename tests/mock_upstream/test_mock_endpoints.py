"""Legacy completions, embeddings and the model list."""

from __future__ import annotations

import json
import math

import pytest
from openai import AsyncOpenAI

from .harness import Mock


async def test_legacy_completion_echoes_each_prompt(client: AsyncOpenAI) -> None:
    single = await client.completions.create(model="mock", prompt="say this")
    several = await client.completions.create(model="mock", prompt=["a b", "c"], n=2, max_tokens=1)

    assert single.object == "text_completion"
    assert single.id.startswith("cmpl-")
    assert single.choices[0].text == "say this"
    assert single.choices[0].finish_reason == "stop"
    assert single.usage is not None
    assert (single.usage.prompt_tokens, single.usage.completion_tokens) == (2, 2)
    assert [(c.index, c.text, c.finish_reason) for c in several.choices] == [
        (0, "a", "length"),
        (1, "a", "length"),
        (2, "c", "stop"),
        (3, "c", "stop"),
    ]


async def test_legacy_completion_stream_with_usage(client: AsyncOpenAI, mock: Mock) -> None:
    stream = await client.completions.create(
        model="mock", prompt="one two three", stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    raw = await mock.call("/v1/completions", {"model": "mock", "prompt": "x", "stream": True})

    assert "".join(c.choices[0].text for c in chunks if c.choices) == "one two three"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert raw.events()[-1] == (None, "[DONE]")
    assert all("usage" not in json.loads(d) for _, d in raw.events()[:-1])


async def test_embeddings_float_and_base64_agree(client: AsyncOpenAI, mock: Mock) -> None:
    # The SDK asks for base64 by default and decodes it; the raw call asks for floats.
    decoded = await client.embeddings.create(model="emb", input=["hello", "world", "hello"])
    floats = await mock.call(
        "/v1/embeddings", {"model": "emb", "input": ["hello", "world"], "encoding_format": "float"}
    )

    vectors = [d.embedding for d in decoded.data]
    assert [d.index for d in decoded.data] == [0, 1, 2]
    assert len(vectors[0]) == 64
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]
    assert math.isclose(math.fsum(x * x for x in vectors[0]), 1.0, rel_tol=1e-5)
    assert [d["embedding"] for d in floats.json()["data"]] == vectors[:2]
    assert decoded.usage.prompt_tokens == 3
    assert decoded.usage.total_tokens == 3


@pytest.mark.parametrize(
    ("model", "extra", "size"),
    [("emb+dim=8", {}, 8), ("emb+dim=8", {"dimensions": 16}, 16), ("emb", {"dimensions": 3}, 3)],
)
async def test_embedding_dimension(mock: Mock, model: str, extra: dict[str, int], size: int) -> None:
    raw = await mock.call("/v1/embeddings", {"model": model, "input": "x", **extra})

    assert len(raw.json()["data"][0]["embedding"]) == size


async def test_embedding_token_inputs(mock: Mock) -> None:
    ids = await mock.call("/v1/embeddings", {"model": "emb", "input": [1, 2, 3]})
    batch = await mock.call("/v1/embeddings", {"model": "emb", "input": [[1, 2, 3], [4]]})
    empty = await mock.call("/v1/embeddings", {"model": "emb", "input": []})

    assert len(ids.json()["data"]) == 1
    assert ids.json()["usage"]["prompt_tokens"] == 3
    assert batch.json()["data"][0]["embedding"] == ids.json()["data"][0]["embedding"]
    assert batch.json()["usage"]["prompt_tokens"] == 4
    assert empty.status == 400
    assert empty.json()["error"]["param"] == "input"


async def test_models_list(client: AsyncOpenAI) -> None:
    page = await client.models.list()
    one = await client.models.retrieve("openai/mock+tool")

    ids = [m.id for m in page.data]
    assert "mock" in ids
    assert len(ids) >= 3
    assert one.id == "openai/mock+tool"
