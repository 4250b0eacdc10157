"""``llm-gateway serve | check-config | mock-upstream | keys | cache``.

Imports are deferred to the command that needs them: ``check-config`` and ``mock-upstream`` must not
pay for importing litellm.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import logging.config
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path


def _check_config(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config
    from gateway.routing.deployments import build_deployments

    try:
        config = load_config(Path(args.file))
    except ConfigError as error:
        print(f"{error.source}: {len(error.problems)} problem(s)", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    deployments = [d for group in build_deployments(config).values() for d in group]
    native = sum(d.engine == "native" for d in deployments)
    print(f"{args.file}: OK — {len(build_deployments(config))} model aliases, {len(deployments)} deployments "
          f"({native} native, {len(deployments) - native} through litellm)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    overrides = {"GATEWAY_CONFIG": args.config, "GATEWAY_HOST": args.host,
                 "GATEWAY_PORT": None if args.port is None else str(args.port),
                 "GATEWAY_WORKERS": None if args.workers is None else str(args.workers)}
    for name, value in overrides.items():
        if value is not None:
            os.environ[name] = value

    from gateway.settings import Settings

    settings = Settings()
    from gateway.observability.logs import logging_config

    # JSON lines or text (GATEWAY_LOG_FORMAT), secrets redacted, uvicorn's loggers included; uvicorn
    # applies the same dict in each worker. Its access log stays off: gateway.access writes one line.
    log_config = logging_config(settings.log_level, settings.log_format)
    logging.config.dictConfig(log_config)
    if settings.config is not None:
        from gateway.config import ConfigError, load_config

        try:
            load_config(settings.config)
        except ConfigError as error:
            print(f"refusing to start: {error.source}", file=sys.stderr)
            for problem in error.problems:
                print(f"  {problem}", file=sys.stderr)
            return 2
    if settings.workers > 1 and settings.redis_url is None:
        print("refusing to start: several workers need GATEWAY_REDIS_URL; the embedded store's limits and "
              "budgets hold within one process", file=sys.stderr)
        return 2
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its metrics to files here and /metrics adds them up (docs/metrics.md).
        import shutil
        import tempfile

        metrics_dir = tempfile.mkdtemp(prefix="llm-gateway-metrics-")
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    if settings.master_key is None:
        if not settings.demo:
            print("refusing to start: set GATEWAY_MASTER_KEY (at least 16 characters)", file=sys.stderr)
            return 2
        key = "sk-gw-master-" + secrets.token_urlsafe(24)
        os.environ["GATEWAY_MASTER_KEY"] = key
        print(f"Demo master key (shown once, set GATEWAY_MASTER_KEY to choose your own): {key}", flush=True)
    if settings.demo:
        base = f"http://{settings.host}:{settings.port}/v1"
        print(f"Demo mode: model 'demo' served by the built-in mock upstream at {base}", flush=True)

    import uvicorn

    uvicorn.run("gateway.app:create_app", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, loop="uvloop", http="httptools", access_log=False,
                log_config=log_config, log_level=settings.log_level.lower(), timeout_graceful_shutdown=10)
    return 0


def _mock_upstream(args: argparse.Namespace) -> int:
    from gateway.mock_upstream.server import run

    run(args.host, args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-gateway", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway (the demo when no config is given)")
    serve.add_argument("--config", help="routing file (GATEWAY_CONFIG)")
    serve.add_argument("--host", help="bind address (GATEWAY_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (GATEWAY_PORT, default 4000)")
    serve.add_argument("--workers", type=int, help="worker processes (GATEWAY_WORKERS, default 1)")
    serve.set_defaults(handler=_serve)

    check = commands.add_parser("check-config", help="validate a routing file and list every problem")
    check.add_argument("file")
    check.set_defaults(handler=_check_config)

    mock = commands.add_parser("mock-upstream", help="run the OpenAI-wire mock provider")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=9000)
    mock.set_defaults(handler=_mock_upstream)

    from gateway.cli_keys import add_keys_command

    add_keys_command(commands)
    from gateway.cli_cache import add_cache_command

    add_cache_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code
