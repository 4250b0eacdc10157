"""``python -m gateway.mock_upstream`` as a real process."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import aiohttp


async def test_module_entry_point_prints_its_address_and_serves() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.mock_upstream",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=10)).decode()
        match = re.fullmatch(r"mock upstream listening on http://127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{match.group(1)}/health") as response,
        ):
            assert response.status == 200
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
