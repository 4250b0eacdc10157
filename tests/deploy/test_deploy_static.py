"""The deploy files agree with each other and with the gateway: mounts exist, names and ports match the
settings, Prometheus accepts its config and rules, and every dashboard panel has a query.

Nothing here needs Docker; promtool comes from Debian's ``prometheus`` package (.ci/run installs it)
and its absence is a failure, not a skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.app import create_app
from gateway.config import load_config
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
GATEWAY_ENV: dict[str, str] = SERVICES["gateway"]["environment"]
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: apt-get install -y prometheus (.ci/run does)"
    return path


def _bind_mounts() -> list[tuple[str, str, str]]:
    mounts = []
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                mounts.append((name, source, target))
    return mounts


@pytest.mark.parametrize(("service", "source", "target"), _bind_mounts())
def test_every_mounted_file_exists(service: str, source: str, target: str) -> None:
    assert (ROOT / source).exists(), f"{service} mounts {source} at {target}, which does not exist"


def test_build_context_and_dockerfile_exist() -> None:
    build = SERVICES["gateway"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, flags=re.MULTILINE):
        for path in copied.split():
            assert (ROOT / path).exists(), f"the Dockerfile copies {path}, which does not exist"


def test_gateway_environment_names_are_settings() -> None:
    prefix = Settings.model_config.get("env_prefix", "")
    assert prefix == "GATEWAY_"
    fields = {prefix + name.upper() for name in Settings.model_fields}
    names = [name for name in GATEWAY_ENV if name.startswith(prefix)]
    names += re.findall(r"\b(GATEWAY_[A-Z_]+)=", DOCKERFILE)
    unknown = sorted(set(names) - fields)
    assert not unknown, f"not gateway settings: {unknown}"


def test_ports_agree() -> None:
    port = int(GATEWAY_ENV["GATEWAY_PORT"])
    assert f"GATEWAY_PORT={port}" in DOCKERFILE
    assert re.search(rf"^EXPOSE {port}$", DOCKERFILE, flags=re.MULTILINE)
    assert any(mapping.endswith(f":{port}") for mapping in SERVICES["gateway"]["ports"])
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in prometheus["scrape_configs"] if j["job_name"] == "llm-gateway"]
    [sd] = job["dns_sd_configs"]
    assert sd["names"] == ["gateway"] and sd["port"] == port
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert f"127.0.0.1:{port}/readyz" in DOCKERFILE
    # The gateway listens on every interface inside its container, or nothing could reach it.
    assert GATEWAY_ENV["GATEWAY_HOST"] == "0.0.0.0"


def test_service_urls_name_compose_services() -> None:
    redis = urlsplit(GATEWAY_ENV["GATEWAY_REDIS_URL"])
    assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)
    qdrant = urlsplit(GATEWAY_ENV["GATEWAY_QDRANT_URL"])
    assert (qdrant.hostname, qdrant.port) == ("qdrant", 6333)
    otlp = urlsplit(GATEWAY_ENV["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert otlp.hostname in SERVICES and otlp.port == 4318
    collector = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    exporter = collector["exporters"]["otlp/tempo"]["endpoint"]
    assert exporter.split(":")[0] in SERVICES
    tempo = yaml.safe_load((DEPLOY / "tempo.yaml").read_text())
    assert tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(
        exporter.split(":")[1])
    assert "--appendonly" in SERVICES["redis"]["command"]


def test_grafana_provisioning_matches_mounts() -> None:
    grafana = DEPLOY / "grafana" / "provisioning"
    sources = yaml.safe_load((grafana / "datasources" / "datasources.yml").read_text())["datasources"]
    by_type = {s["type"]: s for s in sources}
    assert set(by_type) >= {"prometheus", "tempo"}
    for source in sources:
        url = urlsplit(source["url"])
        assert url.hostname in SERVICES, source
    assert urlsplit(by_type["tempo"]["url"]).port == tempo_http_port()
    providers = yaml.safe_load((grafana / "dashboards" / "dashboards.yml").read_text())["providers"]
    targets = {target for service, source, target in _bind_mounts() if source == "./dashboards"}
    assert {p["options"]["path"] for p in providers} <= targets


def tempo_http_port() -> int:
    port: int = yaml.safe_load((DEPLOY / "tempo.yaml").read_text())["server"]["http_listen_port"]
    return port


def test_healthcheck_path_is_served_by_the_app() -> None:
    [path] = re.findall(r"127\.0\.0\.1:\d+(/[a-z]+)", DOCKERFILE)
    served = create_app(Settings()).openapi()["paths"]
    assert "get" in served[path]
    assert "get" in served["/metrics"]


def test_dockerfile_runs_as_non_root_with_locked_dependencies() -> None:
    assert re.search(r"^USER (?!root)\S+$", DOCKERFILE, flags=re.MULTILINE)
    assert "uv sync --frozen" in DOCKERFILE
    assert "HEALTHCHECK" in DOCKERFILE
    makefile_uv = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    assert makefile_uv and f'"uv=={makefile_uv.group(1)}"' in DOCKERFILE


def test_sample_routing_file_is_valid() -> None:
    [mount] = [s for name, s, t in _bind_mounts() if name == "gateway" and t == GATEWAY_ENV["GATEWAY_CONFIG"]]
    config = load_config(ROOT / mount)
    for group in config.model_list:
        base = group.litellm_params.api_base
        assert base is None or urlsplit(base).hostname in SERVICES


def test_promtool_accepts_config_rules_and_rule_tests() -> None:
    tool = promtool()
    prometheus = DEPLOY / "prometheus"
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"],
                 ["test", "rules", "alerts_test.yml"]):
        done = subprocess.run([tool, *args], cwd=prometheus, capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


def test_there_are_dashboards() -> None:
    names = {path.stem for path in DASHBOARDS}
    assert names >= {"overview", "keys", "cache", "providers", "limits"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_panels_have_datasource_and_query(path: Path) -> None:
    model = json.loads(path.read_text())
    assert model["uid"] and model["title"] and 36 <= model["schemaVersion"] <= 41
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name, variable in variables.items():
        if name != "datasource":
            assert variable["type"] == "query" and variable["includeAll"]
            assert variable["query"]["query"].startswith("label_values(")
    ids = [panel["id"] for panel in model["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in model["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target.get("datasource", panel["datasource"])["uid"] == "${datasource}"
        used = set(re.findall(r"\$(\w+)", json.dumps(panel["targets"]))) - {"__rate_interval", "__range",
                                                                            "__interval", "datasource"}
        assert used <= set(variables), f"{panel['title']} uses undefined variables {used - set(variables)}"
