"""Helpers shared by the mock upstream tests."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@dataclass(frozen=True)
class Raw:
    """A fully read HTTP response."""

    status: int
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[tuple[str | None, str]]:
        """The body's SSE events as ``(event name, data)`` pairs."""
        found: list[tuple[str | None, str]] = []
        for block in self.body.decode().split("\n\n"):
            if not block.strip():
                continue
            name = None
            data = []
            for line in block.split("\n"):
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: "):
                    data.append(line[len("data: ") :])
            found.append((name, "\n".join(data)))
        return found


@dataclass(frozen=True)
class Mock:
    """Where the mock listens and a session to poke it with raw HTTP."""

    port: int
    http: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def call(self, path: str, body: dict[str, Any] | None, **kwargs: Any) -> Raw:
        """POST ``body`` (or the raw ``data=`` given) and read the whole answer."""
        if body is not None:
            kwargs["json"] = body
        async with self.http.post(self.base + path, **kwargs) as response:
            return Raw(response.status, CIMultiDict(response.headers), await response.read())

    async def stats(self) -> dict[str, Any]:
        async with self.http.get(self.base + "/mock/stats") as response:
            result: dict[str, Any] = await response.json()
            return result

    async def wait_for_stats(self, key: str, value: int, timeout: float = 3.0) -> dict[str, Any]:
        """Poll ``/mock/stats`` until ``key`` reaches ``value`` (the server notices disconnects async)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            stats = await self.stats()
            if stats[key] == value or asyncio.get_running_loop().time() > deadline:
                return stats
            await asyncio.sleep(0.02)
