"""/metrics on a real gateway: counters move by exactly what the requests did, a made-up model name
never becomes a label, and several workers add up to one view."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import deployment
from tests.processes import MASTER_KEY, Process, start_gateway

pytestmark = pytest.mark.e2e

REDIS_URL = "redis://127.0.0.1:6379/7"
MADE_UP = "no-such-model-xyz"
MASTER = {"key_alias": "master", "team": "none"}


def scrape(process: Process) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(f"{process.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def gateway(workdir: Path, mock_upstream: Process) -> Iterator[Process]:
    v1 = f"{mock_upstream.url}/v1"
    config = {"model_list": [deployment("echo", "openai/mock", v1, model_info={"id": "echo-1"}),
                             deployment("broken", "openai/mock+status=500", v1, model_info={"id": "broken-1"})],
              "router_settings": {"num_retries": 1, "allowed_fails": 100000, "cooldown_time": 1}}
    process = start_gateway(workdir, config)
    yield process
    process.stop()


@pytest.fixture
def client(gateway: Process) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=30) as c:
        yield c


def test_counters_move_by_exactly_the_requests_made(gateway: Process, client: openai.OpenAI) -> None:
    before = scrape(gateway)
    reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert reply.usage is not None
    chunks = list(client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, stream_options={"include_usage": True}))
    streamed = next(c.usage for c in chunks if c.usage is not None)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=MADE_UP, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "hi"}])
    assert failed.value.status_code == 502
    after = scrape(gateway)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("gateway_requests_total", route="chat", alias="echo", status="200", **MASTER) == 2
    assert moved("gateway_requests_total", route="chat", alias="unknown", status="404", **MASTER) == 1
    assert moved("gateway_requests_total", route="chat", alias="broken", status="502", **MASTER) == 1
    assert moved("gateway_request_duration_seconds_count", route="chat", alias="echo", status="200") == 2
    assert moved("gateway_time_to_first_token_seconds_count", alias="echo") == 1
    assert moved("gateway_tokens_total", alias="echo", type="input", **MASTER) == (
        reply.usage.prompt_tokens + streamed.prompt_tokens)
    assert moved("gateway_tokens_total", alias="echo", type="output", **MASTER) == (
        reply.usage.completion_tokens + streamed.completion_tokens)
    assert moved("gen_ai_client_operation_duration_seconds_count", gen_ai_operation_name="chat",
                 gen_ai_request_model="echo", gen_ai_provider_name="openai") == 2
    # Both failed attempts of the broken alias (a retry, then the give-up), each counted once.
    assert moved("gateway_upstream_errors_total", deployment="broken-1", code="upstream_error") == 2
    assert moved("gateway_retries_total", alias="broken") == 1
    assert moved("gateway_fallbacks_total", alias="broken") == 0
    assert sample(after, "gateway_requests_in_flight", route="chat") == 0
    assert sample(after, "gateway_deployment_cooling_down", deployment="echo-1") == 0
    assert not [key for key in after if any(MADE_UP in value for _, value in key[1])]
    assert MADE_UP not in httpx.get(f"{gateway.url}/metrics", timeout=10).text


def _pids(metrics_dir: Path) -> set[str]:
    """Workers that wrote a counter: prometheus-client names its files ``counter_<pid>.db``."""
    return {path.stem.rsplit("_", 1)[-1] for path in metrics_dir.glob("counter_*.db")}


@pytest.fixture
def clean_redis() -> None:
    with redis.Redis.from_url(REDIS_URL) as client:
        client.flushdb()


@pytest.mark.usefixtures("clean_redis")
def test_two_workers_add_up(workdir: Path, mock_upstream: Process, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    config = {"model_list": [deployment("echo", "openai/mock", f"{mock_upstream.url}/v1")]}
    process = start_gateway(workdir, config, env={"GATEWAY_WORKERS": "2", "GATEWAY_REDIS_URL": REDIS_URL,
                                                  "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    try:
        def one(_: int) -> int:
            # A fresh connection each time, so that both workers accept some.
            with httpx.Client(timeout=30) as http:
                return http.post(f"{process.url}/v1/chat/completions",
                                 headers={"authorization": f"Bearer {MASTER_KEY}"},
                                 json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}).status_code

        deadline = time.monotonic() + 30
        while process.logs().count("Application startup complete") < 2:  # once per worker
            assert time.monotonic() < deadline, process.logs()[-2000:]
            time.sleep(0.2)
        # The kernel hands connections to whichever worker accepts first: send rounds of 20 until
        # both have served some; every round, the scrape must add up to exactly what was sent.
        sent = 0
        for _ in range(5):
            with ThreadPoolExecutor(max_workers=10) as pool:
                assert list(pool.map(one, range(20))) == [200] * 20
            sent += 20
            for _ in range(3):  # whichever worker answers the scrape reads every worker's files
                samples = scrape(process)
                total = sum(v for (name, _labels), v in samples.items() if name == "gateway_requests_total")
                assert total == sent
                assert sample(samples, "gateway_requests_total", route="chat", alias="echo", status="200",
                              **MASTER) == sent
            if len(_pids(metrics_dir)) == 2:
                break
        assert len(_pids(metrics_dir)) == 2, "both workers served requests"
    finally:
        process.stop()
