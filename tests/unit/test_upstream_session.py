"""The shared upstream session carries nothing from one request to the next."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import _upstream_session


async def test_a_providers_cookie_is_never_sent_back() -> None:
    seen: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("__cf_bm", "set-by-the-provider-for-one-tenant", path="/")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    async with TestServer(app, host="127.0.0.1") as server, _upstream_session() as session:
        for _ in range(2):
            # A host name, not an IP address: aiohttp's default jar ignores cookies from IP hosts.
            url = f"http://localhost:{server.port}/v1/chat/completions"
            async with session.post(url, json={}) as response:
                assert response.status == 200
                assert "__cf_bm" in response.headers.get("set-cookie", "")
    assert seen == [None, None]
