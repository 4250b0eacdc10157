"""End-to-end fixtures: gateways as real processes in front of the mock upstream, driven by the
real ``openai`` SDK."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.processes import MASTER_KEY, Process, start_gateway

#: The credential the gateway sends upstream; it must never reach a client, a log or an error body.
UPSTREAM_KEY = "sk-upstream-secret-abc123"


def deployment(alias: str, model: str, base: str, **params: Any) -> dict[str, Any]:
    model_info = params.pop("model_info", None)
    params = {"model": model, "api_base": base, "api_key": UPSTREAM_KEY, **params}
    entry: dict[str, Any] = {"model_name": alias, "litellm_params": params}
    if model_info:
        entry["model_info"] = model_info
    return entry


def ask(client: openai.OpenAI, text: str, model: str = "cached", headers: dict[str, str] | None = None,
        **params: Any) -> tuple[str, Any]:
    """(x-gateway-cache, parsed completion)."""
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], extra_headers=headers, **params)
    return raw.headers.get("x-gateway-cache", ""), raw.parse()


def until(outcome: str, attempt: Callable[[], tuple[str, Any]], within: float = 10.0) -> Any:
    """Repeat ``attempt`` until the gateway says ``outcome`` (cache writes land just after a response)."""
    deadline = time.monotonic() + within
    while True:
        said, result = attempt()
        if said == outcome:
            return result
        assert time.monotonic() < deadline, f"never {outcome!r}; last said {said!r}"
        time.sleep(0.05)


def main_config(mock_url: str) -> dict[str, Any]:
    """One routing file holding an alias per scenario; the mock's behaviour is in the model name."""
    v1 = f"{mock_url}/v1"
    return {
        "model_list": [
            deployment("echo", "openai/mock", v1, model_info={"id": "echo-native"}),
            deployment("echo-litellm", "openai/mock", v1, engine="litellm", model_info={"id": "echo-litellm"}),
            deployment("claude", "anthropic/claude-mock", mock_url, model_info={"id": "claude-mock"}),
            deployment("claude-tools", "anthropic/claude-mock+tool", mock_url),
            deployment("claude-429", "anthropic/claude-mock+status=429+retry_after=7", mock_url),
            deployment("tools", "openai/mock+tool", v1),
            deployment("tools-litellm", "openai/mock+tool", v1, engine="litellm"),
            deployment("embed", "openai/mock-embed", v1, model_info={"mode": "embedding"}),
            deployment("embed-litellm", "openai/mock-embed", v1, engine="litellm"),
            deployment("status-400", "openai/mock+status=400", v1),
            deployment("status-401", "openai/mock+status=401", v1),
            deployment("status-404", "openai/mock+status=404", v1),
            deployment("status-429", "openai/mock+status=429+retry_after=30", v1),
            deployment("status-500", "openai/mock+status=500", v1),
            deployment("status-503", "openai/mock+status=503", v1),
            deployment("status-500-litellm", "openai/mock+status=500", v1, engine="litellm"),
            deployment("hang", "openai/mock+hang", v1, timeout=0.5),
            deployment("hang-long", "openai/mock+hang+id=disconnect", v1, timeout=60),
            deployment("cut", "openai/mock+cut=3", v1),
            deployment("cut-litellm", "openai/mock+cut=3", v1, engine="litellm"),
            deployment("malformed", "openai/mock+malformed", v1),
            deployment("slow-stream", "openai/mock+chunks=200+chunk_delay=50+id=slowstream", v1),
            deployment("retry-once", "openai/mock+fail_first=1+id=retry-once", v1),
            deployment("retry-once-stream", "openai/mock+fail_first=1+id=retry-once-stream", v1),
            deployment("ratelimited-once", "openai/mock+fail_first=1+status=429+retry_after=1+id=rl1", v1),
            deployment("primary-down", "openai/mock+status=503+id=primary", v1),
            deployment("ctx-small", "openai/mock+context=30", v1),
            deployment("ctx-large", "openai/mock+context=100000+id=large", v1),
            deployment("ordered", "openai/mock+id=ordered-2", v1, order=2, model_info={"id": "ordered-2"}),
            deployment("ordered", "openai/mock+status=500+id=ordered-1", v1, order=1, model_info={"id": "ordered-1"}),
            deployment("spread", "openai/mock+id=spread-a", v1, model_info={"id": "spread-a"}),
            deployment("spread", "openai/mock+id=spread-b", v1, model_info={"id": "spread-b"}),
        ],
        "router_settings": {
            "num_retries": 2,
            # Fault aliases are hit on purpose over and over; cooldowns are tested on their own gateway.
            "allowed_fails": 100000,
            "cooldown_time": 1,
            "fallbacks": [{"primary-down": ["echo"]}],
            "context_window_fallbacks": [{"ctx-small": ["ctx-large"]}],
        },
    }


@pytest.fixture(scope="session")
def gateway(workdir: Path, mock_upstream: Process) -> Iterator[Process]:
    process = start_gateway(workdir, main_config(mock_upstream.url),
                            env={"GATEWAY_MAX_BODY_BYTES": str(256 * 1024)})
    yield process
    process.stop()


@pytest.fixture
def client(gateway: Process) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=30) as c:
        yield c


@pytest.fixture
async def aclient(gateway: Process) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, max_retries=0,
                                  timeout=30) as c:
        yield c
