"""A bare forwarder: the floor that the gateway's per-request cost is compared against.

It relays POST /v1/chat/completions (and /PREFIX/v1/chat/completions, to the same path) bytes to an
upstream and the upstream's bytes back, streaming included, with one pooled aiohttp session and nothing
else: no parsing, no auth, no logging. Whatever the gateway costs above this is the price of its own work.

    python bench/forwarder.py --upstream http://127.0.0.1:9000 --port 9100
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

# Hop-by-hop and length headers are the server's to set; everything else is relayed as is.
_DROPPED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"})


def create_app(upstream: str) -> FastAPI:
    base = upstream.rstrip("/")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
            app.state.session = session
            yield

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/health")
    async def health() -> Response:
        return Response(b"ok", media_type="text/plain")

    async def relay(request: Request, target: str) -> Response:
        session: aiohttp.ClientSession = request.app.state.session
        body = await request.body()
        headers = {"content-type": request.headers.get("content-type", "application/json")}
        upstream_response = await session.post(target, data=body, headers=headers)
        relayed = {k: v for k, v in upstream_response.headers.items() if k.lower() not in _DROPPED_HEADERS}
        if not upstream_response.content_type.startswith("text/event-stream"):
            async with upstream_response:
                payload = await upstream_response.read()
            return Response(payload, status_code=upstream_response.status, headers=relayed)

        async def chunks() -> AsyncIterator[bytes]:
            async with upstream_response:
                async for chunk in upstream_response.content.iter_any():
                    yield chunk

        return StreamingResponse(chunks(), status_code=upstream_response.status, headers=relayed)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await relay(request, base + "/v1/chat/completions")

    @app.post("/{prefix}/v1/chat/completions")
    async def prefixed_chat_completions(request: Request, prefix: str) -> Response:
        # bench/compare.py's nginx mock picks its answer by path: /stream/v1/..., /slow/v1/...
        return await relay(request, f"{base}/{prefix}/v1/chat/completions")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="base URL of the upstream, e.g. http://127.0.0.1:9000")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        workers=1,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
