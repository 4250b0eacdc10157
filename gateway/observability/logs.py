"""Structured logs: a JSON or text formatter, a filter that redacts secrets from every record, the
logging configuration ``llm-gateway serve`` hands to uvicorn, and the one access-log line per request.

The filter sits on the handler, so it sees every record that reaches it: the gateway's, uvicorn's and
litellm's (docs/logging.md).
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson

if TYPE_CHECKING:  # kept light: the CLI imports this module before the app
    from gateway.pipeline import RequestContext

ACCESS_LOGGER = "gateway.access"
REDACTED = "[REDACTED]"
#: Health probes and scrapes are logged at DEBUG: at INFO they would drown the requests.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

_SECRET = re.compile(
    r"(?P<bearer>\bbearer\s+)[^\s\"',;]+"
    r"|\bsk-[A-Za-z0-9_\-]{8,}"
    r"|(?P<name>\b(?:authorization|proxy-authorization|x-api-key|api[-_]?key|access[-_]?token|password|secret)"
    r"[\"']?\s*[:=]\s*[\"']?)(?!bearer\s)[^\s\"',;&}]+",
    re.IGNORECASE,
)
#: Attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _replace(match: re.Match[str]) -> str:
    if match.group("bearer"):
        return match.group("bearer") + REDACTED
    if match.group("name"):
        return match.group("name") + REDACTED
    return "sk-" + REDACTED


#: Every match of _SECRET contains one of these (lowercased): "bearer", "sk-", or a field name.
_TRIGGERS = ("bearer", "sk-", "authorization", "api", "access", "password", "secret")


def _may_hold_secret(text: str) -> bool:
    """False only when _SECRET cannot match: no trigger in the text. Substring tests take well under a
    microsecond where the regex scans a line at several. Non-ASCII text goes to the regex, whose case
    folding is wider than ``lower()`` (the long s U+017F matches ``s``, the dotless i U+0131 matches ``i``)."""
    if not text.isascii():
        return True
    lowered = text.lower()
    return any(trigger in lowered for trigger in _TRIGGERS)


def redact(text: str) -> str:
    """Bearer tokens, ``sk-…`` keys and the values of authorization / api_key-like fields, replaced."""
    return _SECRET.sub(_replace, text) if text and _may_hold_secret(text) else text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        # The access line's fields (a dozen short ids and names): one check over all of them first,
        # since almost always none can match; a value that could alone still can in the joined text.
        texts = [v for v in value.values() if isinstance(v, str)]
        if not any(isinstance(v, dict) for v in value.values()) and not _may_hold_secret("\n".join(texts)):
            return value
        return {k: redact(v) if isinstance(v, str) else _redact_value(v) if isinstance(v, dict) else v
                for k, v in value.items()}
    return value


class RedactSecrets(logging.Filter):
    """Rewrites a record so that no secret survives in its message, arguments, traceback or extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in vars(record).items():
            if name not in _STANDARD and isinstance(value, str | dict):
                setattr(record, name, _redact_value(value))
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    for name, value in vars(record).items():
        if name in _STANDARD or name.startswith("_") or name == "color_message":
            continue
        if name == "fields" and isinstance(value, dict):
            extras.update(value)
        else:
            extras[name] = value
    return extras


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the record's extras, and exc when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value …`` for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items() if v is not None and v != "")
        return f"{line} {extras}" if extras else line


def resolve_format(choice: str, stream: Any = None) -> Literal["json", "text"]:
    if choice in ("json", "text"):
        return choice  # type: ignore[return-value]
    stream = sys.stderr if stream is None else stream
    return "text" if getattr(stream, "isatty", lambda: False)() else "json"


def logging_config(level: str, choice: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict: one stderr handler with the redacting filter, and
    uvicorn's loggers sent to it (uvicorn applies the dict again in each worker process)."""
    fmt = resolve_format(choice)
    formatter = "gateway.observability.logs.JsonFormatter" if fmt == "json" else \
        "gateway.observability.logs.TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "gateway.observability.logs.RedactSecrets"}},
        "formatters": {"main": {"()": formatter}},
        "handlers": {"main": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                              "formatter": "main", "filters": ["redact"]}},
        "root": {"level": level.upper(), "handlers": ["main"]},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            # The gateway writes its own access line (gateway.access); uvicorn's would repeat it.
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
        },
    }


def access_fields(ctx: RequestContext | None, method: str, path: str, status: int, seconds: float,
                  trace_ids: tuple[str, str] | None) -> dict[str, Any]:
    """The access line's fields: who, what, where it went, how it ended, what it cost. Never a secret."""
    fields: dict[str, Any] = {"method": method, "path": path, "status": status,
                              "latency_ms": round(seconds * 1000, 2)}
    if trace_ids is not None:
        fields["trace_id"], fields["span_id"] = trace_ids
    if ctx is None:
        return fields
    fields["request_id"] = ctx.request_id
    principal = ctx.principal
    if principal is not None:
        fields["key_id"] = principal.key_id
        fields["key_alias"] = principal.alias
        fields["team"] = principal.team
    if ctx.alias is not None:
        fields["alias"] = ctx.alias
    if ctx.operation is not None:
        fields["stream"] = ctx.stream
    if ctx.deployment is not None:
        fields["deployment"] = ctx.deployment.id
    if ctx.attempts:
        fields["attempts"] = ctx.attempts
        fields["upstream_ms"] = round(ctx.upstream_seconds * 1000, 2)
    if ctx.stream and ctx.first_frame_at is not None:
        fields["ttft_ms"] = round((ctx.first_frame_at - ctx.started) * 1000, 2)
    if ctx.cache is not None:
        fields["cache"] = ctx.cache.outcome
    if ctx.usage is not None:
        fields["prompt_tokens"] = ctx.usage.prompt_tokens
        fields["completion_tokens"] = ctx.usage.completion_tokens
    if ctx.cost_usd:
        fields["cost_usd"] = ctx.cost_usd
    if ctx.error_code is not None:
        fields["error"] = ctx.error_code
    elif ctx.stream_failed:
        fields["error"] = "stream_failed"
    return fields


def log_access(logger: logging.Logger, ctx: RequestContext | None, method: str, path: str, status: int,
               seconds: float, trace_ids: tuple[str, str] | None) -> None:
    level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
    if not logger.isEnabledFor(level):
        return
    fields = access_fields(ctx, method, path, status, seconds, trace_ids)
    # makeRecord + handle is what Logger.log does, less findCaller's walk up the stack: the line's
    # origin is always this function, and no formatter here prints it.
    record = logger.makeRecord(logger.name, level, __file__, 0, "%s %s %d %.1fms",
                               (method, path, status, seconds * 1000), None, extra={"fields": fields})
    logger.handle(record)
