"""What start-up loads and what each request costs in threads: guards for the memory budget (docs/benchmarks.md)."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

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
    assert any(r.path == "/v1/models" for r in routes)
    sync = sorted({f"{r.path}: {getattr(call, '__name__', call)}" for r in routes for call in _calls(r.dependant)
                   if call is not None and not inspect.iscoroutinefunction(call)})
    assert sync == []


def test_importing_the_app_leaves_the_semantic_tier_unloaded() -> None:
    code = "import sys, gateway.app; print(' '.join(m for m in sys.argv[1:] if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code, *SEMANTIC_ONLY], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.split() == []


def test_the_embedded_default_never_loads_redis(tmp_path: Path) -> None:
    """redis-py is about 16 MB of RSS and 0.7 s of start-up; without GATEWAY_REDIS_URL nothing needs it,
    neither at start-up nor on the paths that talk to stores (keys, limits, the abuse guard)."""
    code = """
import asyncio, sys, httpx
from pathlib import Path
from gateway.app import create_app
from gateway.settings import Settings

MASTER = {"authorization": "Bearer sk-test-master-key-0123456789"}

async def main(data_dir):
    app = create_app(Settings(data_dir=Path(data_dir), master_key=MASTER["authorization"][7:],
                              config_poll_seconds=0))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as client:
        assert (await client.get("/readyz")).status_code == 200
        key = (await client.post("/admin/keys", headers=MASTER, json={"rpm": 5})).json()["key"]
        assert (await client.get("/v1/models", headers={"authorization": f"Bearer {key}"})).status_code == 200
        wrong = await client.get("/v1/models", headers={"authorization": "Bearer sk-gw-not-a-key-000000000000"})
        assert wrong.status_code == 401, wrong.text

asyncio.run(main(sys.argv[1]))
print(" ".join(sorted(m for m in sys.modules if m == "redis" or m.startswith("redis."))))
"""
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "data")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == []


def test_start_up_freezes_the_import_heap_and_collects_young_objects_less_often(tmp_path: Path) -> None:
    """Full collections skip what start-up built, and young collections run every YOUNG_COLLECTION_EVERY
    allocations (docs/benchmarks.md, "Garbage collection")."""
    code = """
import asyncio, gc, sys
from pathlib import Path
from gateway.app import create_app
from gateway.process_tuning import YOUNG_COLLECTION_EVERY
from gateway.settings import Settings

async def main(data_dir):
    before = (gc.get_threshold()[0], gc.get_freeze_count())
    app = create_app(Settings(data_dir=Path(data_dir), master_key="sk-test-master-key-0123456789",
                              config_poll_seconds=0))
    async with app.router.lifespan_context(app):
        print(*before, gc.get_threshold()[0], gc.get_freeze_count(), YOUNG_COLLECTION_EVERY)

asyncio.run(main(sys.argv[1]))
"""
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "data")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    threshold_before, frozen_before, threshold, frozen, wanted = map(int, done.stdout.split())
    assert (threshold_before, frozen_before) == (700, 0)
    assert threshold == wanted > threshold_before
    assert frozen > 100_000  # litellm alone leaves a few hundred thousand objects
