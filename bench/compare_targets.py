"""What bench/compare.py runs: the nginx mock, the bare forwarder, the gateway, LiteLLM Proxy, Portkey.

Every target is started once per run, pinned to the test core, and kept until the end; rounds and
scenarios then take turns over the live processes. A target is told which upstream route a scenario
uses (`chat`, `stream`, `slow` or `anthropic`, see upstream_nginx.py) and answers with the URL, model
name, body shape and headers to send it.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import peers
import upstream_nginx
from children import Children, free_port

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
MASTER_KEY = "sk-bench-master-key-0123456789abcdef"  # a fixed key for throwaway local processes
UPSTREAM_KEY = "sk-upstream-not-secret"
START_S = {"nginx": 15.0, "sink": 30.0, "forwarder": 30.0, "gateway": 120.0, "litellm": 180.0, "portkey": 60.0}

LABELS = {
    "mock": "mock direct (nginx)",
    "forwarder": "bare forwarder (FastAPI + aiohttp)",
    "gateway": "llm-gateway",
    "litellm": f"LiteLLM Proxy {peers.LITELLM_VERSION}",
    "portkey": f"Portkey {peers.PORTKEY_VERSION}",
}
#: Upstream route → (path prefix on the mock, the alias the gateway and LiteLLM Proxy give it).
ROUTES = {"chat": ("", "bench"), "stream": ("/stream", "bench-stream"), "slow": ("/slow", "bench-slow"),
          "anthropic": ("", "bench-anthropic")}


@dataclass(frozen=True)
class Request:
    url: str
    body: dict[str, object]  # `@N@` in a prompt is made unique per request by chat.lua
    token: str | None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class Target:
    name: str
    base: str  # http://127.0.0.1:PORT
    pid: int  # root of the process tree under test
    token: str | None = None
    mock_base: str = ""  # the upstream, for Portkey's custom-host header
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return LABELS[self.name]

    def supports(self, route: str) -> bool:
        return not (route == "anthropic" and self.name == "forwarder")

    def request(self, route: str, prompt: str, stream: bool) -> Request:
        prefix, alias = ROUTES[route]
        messages = [{"role": "user", "content": prompt}]
        if route == "anthropic":
            body: dict[str, object] = {"model": alias, "messages": messages, "max_tokens": 64}
            if self.name == "mock":
                return Request(f"{self.base}/v1/messages",
                               {**body, "model": upstream_nginx.ANTHROPIC_MODEL}, None)
            if self.name == "portkey":
                headers = (("x-portkey-provider", "anthropic"), ("x-portkey-custom-host", f"{self.mock_base}/v1"))
                return Request(f"{self.base}/v1/chat/completions",
                               {**body, "model": upstream_nginx.ANTHROPIC_MODEL}, UPSTREAM_KEY, headers)
        else:
            body = {"model": alias, "messages": messages}
        if stream:
            body["stream"] = True
        if self.name in ("mock", "forwarder"):
            return Request(f"{self.base}{prefix}/v1/chat/completions", {**body, "model": upstream_nginx.MODEL}, None)
        if self.name == "portkey":
            headers = (("x-portkey-provider", "openai"), ("x-portkey-custom-host", f"{self.mock_base}{prefix}/v1"))
            return Request(f"{self.base}/v1/chat/completions", {**body, "model": upstream_nginx.MODEL},
                           UPSTREAM_KEY, headers)
        return Request(f"{self.base}/v1/chat/completions", body, self.token)


# --- configs -------------------------------------------------------------------------------------------


def model_list(mock_base: str) -> list[dict[str, object]]:
    """The same four aliases for the gateway and LiteLLM Proxy: litellm's model_list format."""
    entries: list[dict[str, object]] = []
    for route, (prefix, alias) in ROUTES.items():
        if route == "anthropic":
            params = {"model": f"anthropic/{upstream_nginx.ANTHROPIC_MODEL}", "api_base": mock_base,
                      "api_key": UPSTREAM_KEY}
        else:
            params = {"model": f"openai/{upstream_nginx.MODEL}", "api_base": f"{mock_base}{prefix}/v1",
                      "api_key": UPSTREAM_KEY}
        entries.append({"model_name": alias, "litellm_params": params})
    return entries


def gateway_config(mock_base: str) -> dict[str, object]:
    # The exact cache is on for every alias; the prompts are unique, so each request is a lookup and a miss.
    aliases = {alias: {"mode": "exact"} for _, alias in ROUTES.values()}
    return {"model_list": model_list(mock_base), "cache_settings": {"aliases": aliases}}


def litellm_config(mock_base: str) -> dict[str, object]:
    return {"model_list": model_list(mock_base), "general_settings": {"master_key": MASTER_KEY},
            "litellm_settings": {"telemetry": False}}


# --- starting them -------------------------------------------------------------------------------------


def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def start_mock(children: Children, cpu: int, work_dir: Path) -> Target:
    port = free_port()
    mock_dir = work_dir / f"nginx-{port}"
    mock_dir.mkdir()
    pid = upstream_nginx.start(children, port, cpu, mock_dir, START_S["nginx"])
    return Target("mock", f"http://127.0.0.1:{port}", pid)


def start_sink(children: Children, cpu: int) -> str:
    port = free_port()
    pid = children.start("otlp-sink", [python(), str(BENCH / "otlp_sink.py"), "--port", str(port)], cpu)
    children.wait_ready("otlp-sink", pid, f"http://127.0.0.1:{port}/health", START_S["sink"])
    return f"http://127.0.0.1:{port}"


def start_forwarder(children: Children, cpu: int, mock_base: str) -> Target:
    port = free_port()
    argv = [python(), str(BENCH / "forwarder.py"), "--port", str(port), "--upstream", mock_base]
    pid = children.start("forwarder", argv, cpu)
    children.wait_ready("forwarder", pid, f"http://127.0.0.1:{port}/health", START_S["forwarder"])
    return Target("forwarder", f"http://127.0.0.1:{port}", pid)


def gateway_env(work_dir: Path, sink: str) -> dict[str, str]:
    return {
        "GATEWAY_MASTER_KEY": MASTER_KEY,
        "GATEWAY_DATA_DIR": str(work_dir / "gateway-data"),
        "GATEWAY_LOG_LEVEL": "WARNING",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
        "OTEL_SERVICE_NAME": "llm-gateway-bench",
    }


def gateway_argv(config: Path, port: int) -> list[str]:
    return [python(), "-m", "gateway", "serve", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1"]


def create_key(base: str) -> str:
    """A virtual key with rpm and tpm far above any load here, made through the admin API."""
    body = json.dumps({"alias": "bench", "rpm": 100_000_000, "tpm": 1_000_000_000_000}).encode()
    headers = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
    request = urllib.request.Request(f"{base}/admin/keys", data=body, method="POST", headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (a 127.0.0.1 URL we built)
        key: str = json.load(response)["key"]
    return key


def start_gateway(children: Children, cpu: int, mock_base: str, sink: str, work_dir: Path, *,
                  name: str = "gateway", cache: bool = True, traces: bool = True, virtual_key: bool = True) -> Target:
    """The gateway as bench/compare.py runs it, in ``work_dir``; bench/feature_cost.py turns the exact
    cache, the traces or the virtual key (the master key instead) off."""
    config = gateway_config(mock_base)
    if not cache:
        config.pop("cache_settings")
    config_file = work_dir / f"{name}.json"  # JSON is YAML
    config_file.write_text(json.dumps(config, indent=2))
    env = gateway_env(work_dir, sink)
    if not traces:
        env = {k: v for k, v in env.items() if not k.startswith("OTEL_EXPORTER")} | {"OTEL_TRACES_EXPORTER": "none"}
    port = free_port()
    pid = children.start(name, gateway_argv(config_file, port), cpu, env=env)
    base = f"http://127.0.0.1:{port}"
    children.wait_ready(name, pid, f"{base}/readyz", START_S["gateway"])
    return Target("gateway", base, pid, token=create_key(base) if virtual_key else MASTER_KEY)


def start_litellm(children: Children, cpu: int, mock_base: str, work_dir: Path) -> Target:
    bin_dir = peers.install_litellm()
    config = work_dir / "litellm.json"
    config.write_text(json.dumps(litellm_config(mock_base), indent=2))
    port = free_port()
    argv = [str(bin_dir / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", "1"]
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False",
           "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    pid = children.start("litellm", argv, cpu, env=env)
    base = f"http://127.0.0.1:{port}"
    children.wait_ready("litellm", pid, f"{base}/health/liveliness", START_S["litellm"])
    return Target("litellm", base, pid, token=MASTER_KEY)


def start_portkey(children: Children, cpu: int, mock_base: str) -> Target:
    server = peers.install_portkey()
    port = free_port()
    pid = children.start("portkey", ["node", str(server), f"--port={port}", "--headless"], cpu,
                         env={"NODE_ENV": "production"})
    base = f"http://127.0.0.1:{port}"
    children.wait_ready("portkey", pid, f"{base}/", START_S["portkey"])
    return Target("portkey", base, pid, mock_base=mock_base)
