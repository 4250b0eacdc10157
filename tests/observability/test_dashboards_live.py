"""The proof that the dashboards show something: a real Prometheus scrapes a real gateway that served a
mixed workload (cache hits and misses, streams, upstream errors, retries, a fallback, a rate-limited
key, budgets), then every query of every panel of every dashboard must return data.

Needs the ``prometheus`` binary (Debian's package; .ci/run installs it). Without it the test fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from openai.types.chat import ChatCompletionMessageParam

from tests.e2e.conftest import ask as cache_ask
from tests.e2e.conftest import deployment, until
from tests.processes import MASTER_KEY, Process, free_port, start_gateway

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
#: Grafana's built-in variables, as a dashboard with a 1 s scrape interval would expand them.
BUILTINS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}
#: Every template variable set to "All", which Grafana expands to the variable's allValue.
ALL = ".*"
PRICES = {"input_per_million": 1000.0, "output_per_million": 2000.0}
SCRAPES_AFTER_WORKLOAD = 3


def _panels() -> list[Any]:
    params = []
    for path in DASHBOARDS:
        model = json.loads(path.read_text())
        for panel in model["panels"]:
            params.append(pytest.param(path.stem, panel, id=f"{path.stem}/{panel['title']}"))
    return params


def expand(expr: str, variables: dict[str, str]) -> str:
    for name, value in {**BUILTINS, **{f"${k}": v for k, v in variables.items()}}.items():
        expr = expr.replace("${" + name[1:] + "}", value).replace(name, value)
    return expr


class Prometheus:
    def __init__(self, workdir: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        assert binary, "the prometheus binary is missing: apt-get install -y prometheus (.ci/run does)"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        home = workdir / f"prometheus-{self.port}"
        home.mkdir()
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(ROOT / "deploy" / "prometheus" / "alerts.yml")],
                  "scrape_configs": [{"job_name": "llm-gateway", "static_configs": [{"targets": [target]}]}]}
        (home / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = home / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle"],
                stdout=log, stderr=subprocess.STDOUT, cwd=home)
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.1)

    def query(self, expr: str) -> list[Any]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{expr}\n{body}"
        result: list[Any] = body["data"]["result"]
        return result

    def wait_for_scrapes(self, after: float, count: int) -> None:
        """Until the gateway has been scraped ``count`` times since ``after`` (unix seconds)."""
        deadline = time.monotonic() + 20
        seen: set[str] = set()
        while len(seen) < count:
            targets = httpx.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            for target in targets:  # empty until the first discovery round
                assert target["health"] != "down", target
                if target["health"] == "up" and _unix(target["lastScrape"]) > after:
                    seen.add(target["lastScrape"])
            assert time.monotonic() < deadline, f"only {len(seen)} scrapes: {targets}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _unix(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def _config(mock_url: str) -> dict[str, Any]:
    v1 = f"{mock_url}/v1"
    return {
        "model_list": [
            deployment("chat", "openai/mock+id=live-chat", v1, model_info={"id": "chat-1"}),
            deployment("cached", "openai/mock+id=live-cached", v1, model_info={"id": "cached-1"}),
            deployment("primary", "openai/mock+status=503+id=live-primary", v1, model_info={"id": "primary-1"}),
            deployment("broken", "openai/mock+status=500+id=live-broken", v1, model_info={"id": "broken-1"}),
            deployment("cut", "openai/mock+cut=3+id=live-cut", v1, model_info={"id": "cut-1"}),
        ],
        "prices": {alias: PRICES for alias in ("chat", "cached", "primary", "broken", "cut")},
        "cache_settings": {"aliases": {"cached": {"mode": "semantic"}}},
        "router_settings": {"num_retries": 1, "allowed_fails": 100000, "cooldown_time": 1,
                            "fallbacks": [{"primary": ["chat"]}]},
    }


def _key(gateway: Process, **fields: Any) -> str:
    response = httpx.post(f"{gateway.url}/admin/keys", headers={"authorization": f"Bearer {MASTER_KEY}"},
                          json=fields, timeout=10)
    assert response.status_code == 201, response.text
    secret: str = response.json()["key"]
    return secret


def _workload(gateway: Process, keys: dict[str, str]) -> None:
    def client(name: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=keys[name], max_retries=0, timeout=30)

    def ask(text: str) -> list[ChatCompletionMessageParam]:
        return [{"role": "user", "content": text}]

    with client("svc") as svc, client("batch") as batch, client("tiny") as tiny:
        for who in (svc, batch):
            who.chat.completions.create(model="chat", messages=ask("hello from the live dashboard test"))
            chunks = list(who.chat.completions.create(model="chat", messages=ask("stream me a few words please"),
                                                      stream=True, stream_options={"include_usage": True}))
            assert chunks
            # Cache: a miss, the same request again until it is an exact hit (an entry is visible once its
            # write commits, ~10 ms after the answer; a hit in this wave is what the hit series of the next
            # one grows from), then a paraphrase (semantic tier).
            who.chat.completions.create(model="cached", messages=ask("What is the capital city of France?"))
            until("hit", lambda who=who: cache_ask(who, "What is the capital city of France?"))
            who.chat.completions.create(model="cached", messages=ask("What's the capital city of France?"))
            # A fallback: primary always answers 503, its fallback is chat.
            who.chat.completions.create(model="primary", messages=ask("fall back please"))
            with pytest.raises(openai.InternalServerError):
                who.chat.completions.create(model="broken", messages=ask("this fails upstream"))
            with pytest.raises(openai.APIError):
                list(who.chat.completions.create(model="cut", messages=ask("a stream that breaks off"),
                                                 stream=True))
        # The tiny key allows one request a minute: the rest are the limiter's 429s.
        refused = 0
        for _ in range(4):
            try:
                tiny.chat.completions.create(model="chat", messages=ask("one of many"))
            except openai.RateLimitError:
                refused += 1
        assert refused >= 3


@pytest.fixture(scope="module")
def prometheus(workdir: Path, mock_upstream: Process) -> Iterator[Prometheus]:
    gateway = start_gateway(workdir, _config(mock_upstream.url))
    server: Prometheus | None = None
    try:
        # Prometheus first, so the workload's increases fall inside its scrapes (rate() sees them).
        server = Prometheus(workdir, f"127.0.0.1:{gateway.port}")
        server.wait_for_scrapes(after=time.time(), count=1)
        keys = {"svc": _key(gateway, alias="svc", team="search", budget_usd=5.0, budget_period="monthly"),
                "batch": _key(gateway, alias="batch", team="data", budget_usd=50.0, budget_period="daily"),
                "tiny": _key(gateway, alias="tiny", team="search", rpm=1)}
        for _ in range(2):  # two waves: series created by the first grow in the second
            _workload(gateway, keys)
            if _ == 0:
                server.wait_for_scrapes(after=time.time(), count=1)
        httpx.get(f"{gateway.url}/readyz", timeout=5)
        server.wait_for_scrapes(after=time.time(), count=SCRAPES_AFTER_WORKLOAD)
        yield server
    finally:
        if server is not None:
            server.stop()
        gateway.stop()


@pytest.mark.parametrize(("dashboard", "panel"), _panels())
def test_every_panel_query_returns_data(prometheus: Prometheus, dashboard: str, panel: dict[str, Any]) -> None:
    variables = {"alias": ALL, "key": ALL, "team": ALL, "datasource": "prometheus"}
    for target in panel["targets"]:
        expr = expand(target["expr"], variables)
        assert "$" not in expr, expr
        result = prometheus.query(expr)
        assert result, f"{dashboard}/{panel['title']}: no data for\n  {expr}"
        # Not only series, numbers: a quantile over nothing, or 0/0, is NaN.
        values = [sample["value"][1] for sample in result]
        assert any(v != "NaN" for v in values), f"{dashboard}/{panel['title']}: only NaN for\n  {expr}"


#: Series the workload must have moved (value > 0), so that the panels above show the workload and
#: not only zeros: every part of the gateway the dashboards describe was exercised.
MOVED = [
    'sum(gateway_cache_requests_total{alias="cached",outcome="hit"})',
    'sum(gateway_cache_lookups_total{alias="cached",tier="exact",result="miss"})',
    'sum(gateway_cache_lookups_total{alias="cached",tier="semantic"})',
    'sum(gateway_cache_saved_usd_total{key_alias="svc",team="search"})',
    'sum(gateway_cache_lookup_duration_seconds_count{tier="exact"})',
    'sum(gateway_fallbacks_total{alias="primary"})',
    'sum(gateway_retries_total{alias="broken"})',
    'sum(gateway_upstream_errors_total{deployment="broken-1",code="upstream_error"})',
    'sum(gateway_upstream_errors_total{deployment="primary-1"})',
    'sum(gateway_stream_errors_total{alias="cut"})',
    'sum(gateway_limiter_rejections_total{key_alias="tiny",team="search",reason="rpm"})',
    'max(gateway_key_budget_used_ratio{key_alias="svc",team="search"})',
    'sum(gateway_cost_usd_total{key_alias="batch",team="data"})',
    'sum(gateway_time_to_first_token_seconds_count{alias="chat"})',
    'sum(gateway_time_per_output_token_seconds_count{alias="chat"})',
    'sum(gateway_upstream_duration_seconds_count{deployment="chat-1"})',
    'sum(gateway_requests_total{alias="broken",status="502"})',
    'min(gateway_store_up)',
]


@pytest.mark.parametrize("expr", MOVED)
def test_the_workload_moved_the_series(prometheus: Prometheus, expr: str) -> None:
    result = prometheus.query(expr)
    assert result and float(result[0]["value"][1]) > 0, f"{expr}: {result}"


def test_a_single_key_and_team_have_data(prometheus: Prometheus) -> None:
    """The variables filter as Grafana's would with one value chosen instead of All."""
    model = json.loads((ROOT / "dashboards" / "keys.json").read_text())
    [cost] = [p for p in model["panels"] if p["title"] == "Cost by key"]
    result = prometheus.query(expand(cost["targets"][0]["expr"], {"alias": "chat", "key": "svc", "team": "search"}))
    assert [r["metric"]["key_alias"] for r in result] == ["svc"]


def test_alert_rules_load_and_evaluate(prometheus: Prometheus) -> None:
    groups = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) >= 8
    assert all(rule["health"] == "ok" for rule in rules), [(r["name"], r.get("lastError")) for r in rules]
