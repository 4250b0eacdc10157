"""What start-up loads and what each request costs in threads: guards for the memory budget (docs/benchmarks.md)."""

from __future__ import annotations

import inspect
import subprocess
import sys

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from gateway.api import admin, cache_admin, health, metrics_route, openai

#: Loaded only by the semantic cache tier (local embedder, in-process Qdrant): never by the gateway at import.
SEMANTIC_ONLY = ("numpy", "onnxruntime", "tokenizers", "qdrant_edge", "qdrant_client")


def _calls(dependant: Dependant) -> list[object]:
    found: list[object] = []
    for sub in dependant.dependencies:
        found.append(sub.call)
        found += _calls(sub)
    return found


def test_no_route_dependency_runs_in_the_thread_pool() -> None:
    # FastAPI runs a plain `def` dependency in its thread pool: a thread hop per request, and under load
    # one idle worker thread (with its stack and malloc arena) per concurrent request.
    modules = (admin, cache_admin, health, metrics_route, openai)
    routes = [r for m in modules for r in m.router.routes if isinstance(r, APIRoute)]
    assert any(r.path == "/v1/chat/completions" for r in routes)
    sync = sorted({f"{r.path}: {getattr(call, '__name__', call)}" for r in routes for call in _calls(r.dependant)
                   if call is not None and not inspect.iscoroutinefunction(call)})
    assert sync == []


def test_importing_the_app_leaves_the_semantic_tier_unloaded() -> None:
    code = "import sys, gateway.app; print(' '.join(m for m in sys.argv[1:] if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code, *SEMANTIC_ONLY], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.split() == []
