"""Structured logs: redaction of every record, the JSON and text formatters, and the access line."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app import create_app
from gateway.observability.logs import (
    _SECRET,
    ACCESS_LOGGER,
    JsonFormatter,
    RedactSecrets,
    TextFormatter,
    _redact_value,
    _replace,
    logging_config,
    redact,
    resolve_format,
)
from gateway.settings import Settings
from tests.processes import MASTER_KEY, Process

CANARY = "sk-gw-CANARY" + "q" * 40


@pytest.mark.parametrize(("text", "expected"), [
    (f"Authorization: Bearer {CANARY}", "Authorization: Bearer [REDACTED]"),
    ("headers={'authorization': 'Bearer abc.def'}", "headers={'authorization': 'Bearer [REDACTED]'}"),
    (f"calling with key {CANARY} now", "calling with key sk-[REDACTED] now"),
    ("url?api_key=0123456789abcdef&x=1", "url?api_key=[REDACTED]&x=1"),
    ('{"api-key": "0123456789abcdef"}', '{"api-key": "[REDACTED]"}'),
    ("x-api-key: AKIA0123", "x-api-key: [REDACTED]"),
    # A stored key prefix (sk-gw- plus three characters) identifies a key without revealing it.
    ("key sk-gw-abc revoked", "key sk-gw-abc revoked"),
    ("POST /v1/chat/completions 200 12.5ms", "POST /v1/chat/completions 200 12.5ms"),
])
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def _record(msg: str, *args: Any, exc: BaseException | None = None, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("gateway.test", logging.ERROR, __file__, 1, msg, args,
                               (type(exc), exc, exc.__traceback__) if exc else None)
    for name, value in extra.items():
        setattr(record, name, value)
    return record


#: Pieces that make secrets, near-misses and the characters the regex folds onto ASCII letters.
_PIECES = st.sampled_from(["sk-", "SK-", "\u017fk-", "bearer ", "Bearer\t", "authorization: ", "x-api-key=",
                           "ap\u0131_key=", "access_token:", "PASSWORD=", "secret", "Secret=", "=", ": ", "\u212a",
                           "abcdefgh", "0123456789", "req_1f", " ", "\"", ",", ";", "/v1/chat", "é", "-", "_"])
_TEXTS = st.lists(_PIECES | st.text(max_size=6), max_size=12).map("".join)


@settings(max_examples=400)
@given(_TEXTS)
def test_the_quick_check_never_changes_what_is_redacted(text: str) -> None:
    """redact() skips the regex when no trigger word is in the text; the result must be the regex's."""
    assert redact(text) == _SECRET.sub(_replace, text)


@settings(max_examples=200)
@given(st.dictionaries(st.sampled_from(["path", "key_alias", "team", "alias", "n"]),
                       _TEXTS | st.integers(), max_size=5))
def test_access_fields_are_redacted_as_each_value_would_be(fields: dict[str, Any]) -> None:
    expected = {k: _SECRET.sub(_replace, v) if isinstance(v, str) else v for k, v in fields.items()}
    assert _redact_value(fields) == expected


def test_the_filter_redacts_message_arguments_traceback_and_extras() -> None:
    try:
        raise ValueError(f"upstream said: bad key {CANARY}")
    except ValueError as error:
        record = _record("request with %s failed", f"Bearer {CANARY}", exc=error, request_id=f"id {CANARY}",
                         fields={"key": f"api_key={CANARY}"})
    assert RedactSecrets().filter(record) is True
    for formatter in (JsonFormatter(), TextFormatter()):
        line = formatter.format(record)
        assert CANARY not in line
        assert "[REDACTED]" in line
        assert "ValueError" in line


def test_json_lines_carry_the_extras_flat() -> None:
    record = _record("POST %s %d", "/v1/chat/completions", 200, fields={"status": 200, "alias": "echo"},
                     request_id="req-1")
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["msg"] == "POST /v1/chat/completions 200"
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "gateway.test"
    assert entry["status"] == 200 and entry["alias"] == "echo" and entry["request_id"] == "req-1"
    assert entry["ts"].endswith("+00:00")


def test_text_lines_are_for_people() -> None:
    line = TextFormatter().format(_record("POST /v1/models 200", fields={"alias": "echo", "team": None}))
    assert line.endswith("ERROR gateway.test: POST /v1/models 200 alias=echo")


def test_auto_format_is_text_on_a_terminal_and_json_elsewhere() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert resolve_format("auto", Tty()) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("text", io.StringIO()) == "text"
    config = logging_config("info", "json")
    assert config["root"]["level"] == "INFO"
    assert config["handlers"]["main"]["filters"] == ["redact"]
    assert config["loggers"]["uvicorn.access"]["propagate"] is False


class Capture(logging.Handler):
    """What ``llm-gateway serve`` installs, writing to a list instead of stderr."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(RedactSecrets())
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def access() -> Iterator[Capture]:
    handler = Capture()
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_one_access_line_per_request(tmp_path: Path, mock_upstream: Process, access: Capture) -> None:
    run = uuid.uuid4().hex[:8]
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"model_list": [
        {"model_name": "echo", "litellm_params": {"model": f"openai/mock+id={run}",
                                                  "api_base": f"{mock_upstream.url}/v1",
                                                  "api_key": "sk-upstream-secret-logs-1"},
         "model_info": {"id": "echo-1"}}]}))
    exporter = InMemorySpanExporter()
    app = create_app(Settings(config=config, master_key=MASTER_KEY, data_dir=tmp_path / "data",
                              config_poll_seconds=0), span_exporter=exporter)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as client:
        ok = await client.post("/v1/chat/completions", headers={"authorization": f"Bearer {MASTER_KEY}",
                                                                "x-request-id": "logs-1"},
                               json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
        refused = await client.post("/v1/chat/completions", headers={"authorization": f"Bearer {CANARY}"},
                                    json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
        probe = await client.get("/healthz")
    assert (ok.status_code, refused.status_code, probe.status_code) == (200, 401, 200)
    entries = [orjson.loads(line) for line in access.lines]
    assert [(e["path"], e["status"], e["level"]) for e in entries] == [
        ("/v1/chat/completions", 200, "INFO"), ("/v1/chat/completions", 401, "INFO"), ("/healthz", 200, "DEBUG")]
    first = entries[0]
    server = next(s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    usage = ok.json()["usage"]
    assert first["logger"] == ACCESS_LOGGER
    assert first["request_id"] == "logs-1"
    assert first["trace_id"] == f"{server.context.trace_id:032x}"
    assert first["span_id"] == f"{server.context.span_id:016x}"
    assert first["key_id"] == "master" and first["key_alias"] == "master"
    assert first["alias"] == "echo" and first["deployment"] == "echo-1" and first["attempts"] == 1
    assert first["prompt_tokens"] == usage["prompt_tokens"]
    assert first["completion_tokens"] == usage["completion_tokens"]
    assert first["stream"] is False
    assert 0 < first["upstream_ms"] <= first["latency_ms"]
    assert entries[1]["error"] == "invalid_api_key"
    assert "key_id" not in entries[1]
    assert CANARY not in "\n".join(access.lines) and MASTER_KEY not in "\n".join(access.lines)
