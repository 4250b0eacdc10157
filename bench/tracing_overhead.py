"""CPU per request with tracing off and on (and the access log on or off), in process.

    .venv/bin/python bench/tracing_overhead.py [--requests 1500] [--rounds 3]

The app runs in this process behind httpx's ASGI transport; the mock upstream and the OTLP receiver
run in their own processes, so their CPU is not counted. ``thread`` is the CPU of the request path
(the event loop's thread); ``process`` adds the batch span processor's export thread (protobuf encoding
and the HTTP POST to the receiver). The client's own CPU is in every figure alike: compare differences.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.app import create_app
from gateway.observability.logs import ACCESS_LOGGER, JsonFormatter, RedactSecrets
from gateway.settings import Settings
from tests.processes import MASTER_KEY, free_port, start_mock

RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

OTEL = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED")


async def measure(workdir: Path, config: Path, requests: int, *, tracing: str | None, access_log: bool) -> tuple[
        float, float]:
    for name in OTEL:
        os.environ.pop(name, None)
    if tracing:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = tracing
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO if access_log else logging.WARNING)
    app = create_app(Settings(config=config, master_key=MASTER_KEY, data_dir=Path(tempfile.mkdtemp(dir=workdir)),
                              config_poll_seconds=0))
    body = {"model": "echo", "messages": [{"role": "user", "content": "hello there"}]}
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        assert (app.state.tracing is not None) == bool(tracing)
        for _ in range(100):  # warm up
            assert (await client.post("/v1/chat/completions", json=body, headers=headers)).status_code == 200
        thread_start, process_start = time.thread_time(), time.process_time()
        for _ in range(requests):
            await client.post("/v1/chat/completions", json=body, headers=headers)
        thread = time.thread_time() - thread_start
        if app.state.tracing is not None:
            app.state.tracing.provider.force_flush()  # the export of the last batch belongs to this run
        process = time.process_time() - process_start
    return thread / requests * 1000, process / requests * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the run)
    handler.addFilter(RedactSecrets())
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    workdir = Path(tempfile.mkdtemp(prefix="tracing-bench-"))
    mock = start_mock(workdir)
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        config = workdir / "gateway.yaml"
        config.write_text(yaml.safe_dump({"model_list": [{"model_name": "echo", "litellm_params": {
            "model": "openai/mock", "api_base": f"{mock.url}/v1", "api_key": "sk-bench"}}]}))
        variants = {"tracing off, no access log": (None, False), "tracing off, access log": (None, True),
                    "tracing on (OTLP), access log": (f"http://127.0.0.1:{port}", True)}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, (tracing, access_log) in variants.items():
                results[name].append(await measure(workdir, config, args.requests, tracing=tracing,
                                                   access_log=access_log))
        print(f"{args.requests} sequential non-streaming chats per run, {args.rounds} rounds, medians (ms CPU/request)")
        for name, runs in results.items():
            print(f"  {name:32s} thread {statistics.median(r[0] for r in runs):.3f}   "
                  f"process {statistics.median(r[1] for r in runs):.3f}")
    finally:
        receiver.terminate()
        mock.stop()


if __name__ == "__main__":
    asyncio.run(main())
