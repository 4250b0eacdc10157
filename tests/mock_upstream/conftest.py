"""A real mock upstream on a free port per test, plus the clients that talk to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from openai import AsyncOpenAI

from gateway.mock_upstream.server import start

from .harness import Mock


@pytest.fixture
async def mock() -> AsyncIterator[Mock]:
    runner, port = await start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Mock(port, http)
    finally:
        await runner.cleanup()


@pytest.fixture
async def client(mock: Mock) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=f"{mock.base}/v1", api_key="sk-test", max_retries=0) as openai_client:
        yield openai_client
