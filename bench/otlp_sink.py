"""A trace sink for benchmarks: accepts OTLP/HTTP `POST /v1/traces`, counts, answers 200, keeps nothing.

    python bench/otlp_sink.py --port 4318

The gateway under test gets `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:PORT`, so its exporter does
all of its work (batching, encoding, one HTTP call per batch) without a collector on the machine.
`GET /stats` tells how many export calls and bytes arrived.
"""

from __future__ import annotations

import argparse

from aiohttp import web


def create_app() -> web.Application:
    counts = {"exports": 0, "bytes": 0}

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()
        counts["exports"] += 1
        counts["bytes"] += len(body)
        # An empty ExportTraceServiceResponse is an empty protobuf message, which is zero bytes.
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(counts)

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/stats", stats)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
