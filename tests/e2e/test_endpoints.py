"""Completions, embeddings, models, health, and the admin reload."""

from __future__ import annotations

import base64
import struct

import httpx
import openai
import pytest

from tests.processes import MASTER_KEY, Process


@pytest.mark.parametrize("alias", ["echo", "echo-litellm", "claude"])
def test_completions(client: openai.OpenAI, alias: str) -> None:
    completion = client.completions.create(model=alias, prompt="complete me please", max_tokens=50)
    assert completion.object == "text_completion"
    assert completion.choices[0].text.strip() == "complete me please"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0


@pytest.mark.parametrize("alias", ["echo", "echo-litellm"])
def test_completions_stream(client: openai.OpenAI, alias: str) -> None:
    stream = client.completions.create(model=alias, prompt="stream this prompt", stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "stream this prompt"
    assert chunks[-1].usage is not None


@pytest.mark.parametrize("alias", ["embed", "embed-litellm"])
def test_embeddings_float_and_base64_agree(client: openai.OpenAI, alias: str) -> None:
    floats = client.embeddings.create(model=alias, input=["first text", "second text"], encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1]
    vector = floats.data[0].embedding
    assert len(vector) == 64
    assert abs(sum(v * v for v in vector) - 1) < 1e-3
    assert floats.data[0].embedding != floats.data[1].embedding
    # The SDK decodes base64 itself; compare with the raw body as well.
    raw = client.embeddings.with_raw_response.create(model=alias, input="first text", encoding_format="base64")
    encoded = raw.http_response.json()["data"][0]["embedding"]
    decoded = struct.unpack(f"<{len(encoded) * 3 // 4 // 4}f", base64.b64decode(encoded))
    assert decoded == pytest.approx(vector, abs=1e-6)
    assert floats.usage.prompt_tokens > 0


def test_embeddings_are_deterministic(client: openai.OpenAI) -> None:
    a = client.embeddings.create(model="embed", input="same input").data[0].embedding
    b = client.embeddings.create(model="embed", input="same input").data[0].embedding
    assert a == b


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "echo" in ids
    assert "claude" in ids
    assert "spread" in ids
    assert ids.count("spread") == 1
    assert client.models.retrieve("echo").id == "echo"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_health_and_readiness(gateway: Process) -> None:
    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/readyz").json()
    assert ready["status"] == "ready"
    assert "echo" in ready["aliases"]


def test_openapi_documents_the_routes(gateway: Process) -> None:
    spec = httpx.get(f"{gateway.url}/openapi.json").json()
    chat = spec["paths"]["/v1/chat/completions"]["post"]
    schema = chat["requestBody"]["content"]["application/json"]["schema"]
    assert "messages" in schema["required"]
    assert "429" in chat["responses"]
    assert "502" in chat["responses"]
    assert "/admin/reload" in spec["paths"]


def test_langchain_chat_openai(gateway: Process) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="echo", base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)  # type: ignore[arg-type]
    assert llm.invoke("hello langchain").content == "hello langchain"
    assert "".join(str(c.content) for c in llm.stream("streamed langchain")) == "streamed langchain"
