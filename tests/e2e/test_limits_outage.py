"""When Redis is slow or down (docs/limits.md): killed mid-load and restarted, no request waits on the
dead store, rate limits fall back to the process, budgets fail closed, and budgeted keys are served
again within about a second of Redis coming back; frozen (SIGSTOP), no request waits for seconds.

The Redis here is this module's own server (AOF, fsync always), so the keys survive its SIGKILL.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import deployment
from tests.processes import MASTER_KEY, Process, free_port, start_gateway

MASTER = {"authorization": f"Bearer {MASTER_KEY}"}
BODY = {"model": "priced", "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 2}
#: The mock answers at once; a request slower than this waited on the store.
MAX_LATENCY_S = 0.5
#: After Redis answers again, the shared limiter is probed at most a second later.
RECOVERY_S = 1.5
#: The load: a wave of requests every WAVE_S for LOAD_S; Redis dies at KILL_AT_S for DOWN_S.
WAVE_S, LOAD_S, KILL_AT_S, DOWN_S = 0.02, 6.0, 1.5, 2.0
#: Concurrent requests per key before the load.
BURST = 16


class RedisServer:
    """A redis-server of our own on a free port, restartable on the same port and AOF directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        with (self.directory / "redis.log").open("ab") as log:
            self._process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory),
                 "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"redis-server exited:\n{(self.directory / 'redis.log').read_text()[-2000:]}")
            if self._pong():
                return
            time.sleep(0.01)
        raise RuntimeError(f"redis-server not ready on port {self.port}")

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to clients; what was fsynced to the AOF survives."""
        if self._process is not None and self.running:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    def pause(self, paused: bool) -> None:
        """SIGSTOP/SIGCONT: a frozen Redis keeps its connections open and answers nothing."""
        if self._process is not None and self.running:
            self._process.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    def stop(self) -> None:
        if self._process is not None and self.running:
            self._process.send_signal(signal.SIGCONT)
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    directory = Path(tempfile.mkdtemp(prefix="gw-redis-outage-"))
    server = RedisServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def gateway(workdir: Path, mock_upstream: Process, redis_server: RedisServer) -> Iterator[Process]:
    routing = {
        "model_list": [deployment("priced", "openai/mock", f"{mock_upstream.url}/v1")],
        "prices": {"priced": {"input_per_million": 0, "output_per_million": 10_000.0}},  # $0.02 a request
    }
    process = start_gateway(workdir, routing, env={"GATEWAY_REDIS_URL": redis_server.url})
    yield process
    process.stop()


@pytest.fixture
def running_redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    """Redis up at the start of the test and again at its end, whatever the test did to it."""
    if not redis_server.running:
        redis_server.start()
    yield redis_server
    if not redis_server.running:
        redis_server.start()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    # A generous client timeout: a request that hangs on the dead store shows as a latency, not a hang.
    async with httpx.AsyncClient(timeout=5, limits=limits) as client:
        yield client


def create_key(gateway: Process, **fields: Any) -> str:
    response = httpx.post(f"{gateway.url}/admin/keys", headers=MASTER, json=fields)
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


@pytest.fixture(scope="module")
def tokens(gateway: Process) -> dict[str, str]:
    """Every key the module uses, made while Redis is healthy: creating keys is not under test here."""
    return {"rpm": create_key(gateway, rpm=100_000),
            "budget": create_key(gateway, budget_usd=1000, budget_period="daily"),
            "rpm=5": create_key(gateway, rpm=5),
            "master": MASTER_KEY}


@dataclass(frozen=True)
class Sample:
    who: str
    sent: float  # seconds since the load began
    latency: float
    status: int  # 0: no response within the client's timeout, or a transport error
    response: httpx.Response | None

    def __str__(self) -> str:
        text = f"{self.who} sent at {self.sent:.3f} s: {self.status} in {self.latency * 1000:.0f} ms"
        if self.response is not None and self.status != 200:
            text += f" ({self.response.text[:200]})"
        return text


async def call(http: httpx.AsyncClient, gateway: Process, who: str, token: str, origin: float,
               timeout: float = 5) -> Sample:
    started = time.monotonic()
    try:
        response: httpx.Response | None = await http.post(
            f"{gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {token}"}, json=BODY,
            timeout=timeout)
    except httpx.HTTPError:
        response = None
    latency = time.monotonic() - started
    return Sample(who, started - origin, latency, response.status_code if response else 0, response)


async def served(http: httpx.AsyncClient, gateway: Process, who: str, token: str) -> None:
    """Wait until ``token`` is served. The test before may have left the gateway in its fallback
    (for a second after a store error) or holding connections to a Redis it restarted."""
    deadline = time.monotonic() + 5
    while (sample := await call(http, gateway, who, token, time.monotonic())).status != 200:
        assert time.monotonic() < deadline, sample
        await asyncio.sleep(0.2)


async def warm(http: httpx.AsyncClient, gateway: Process, keys: dict[str, str]) -> None:
    """A few requests per key, so the key cache holds every record when the store goes away; then a
    burst, so the gateway holds as many Redis connections as a busy one would when Redis dies."""
    origin = time.monotonic()
    for who, token in keys.items():
        await served(http, gateway, who, token)
    for _ in range(2):
        for who, token in keys.items():
            sample = await call(http, gateway, who, token, origin)
            assert sample.status == 200, sample
    burst = await asyncio.gather(*(call(http, gateway, who, token, origin)
                                   for who, token in keys.items() for _ in range(BURST)))
    assert all(s.status == 200 for s in burst), listing([s for s in burst if s.status != 200])


def listing(samples: list[Sample]) -> str:
    return "; ".join(str(s) for s in samples[:8]) + (f"; ... {len(samples)} in all" if len(samples) > 8 else "")


def timeline(samples: list[Sample]) -> str:
    """Runs of equal status in sending order, e.g. ``1.501-3.498 s: 503 x200``."""
    runs: list[list[Sample]] = []
    for sample in sorted(samples, key=lambda s: s.sent):
        if runs and runs[-1][-1].status == sample.status:
            runs[-1].append(sample)
        else:
            runs.append([sample])
    return ", ".join(f"{r[0].sent:.3f}-{r[-1].sent:.3f} s: {r[0].status} x{len(r)}" for r in runs)


async def test_a_frozen_redis_holds_no_request(gateway: Process, running_redis: RedisServer,
                                               http: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    """The "slow" half of the policy: every Redis call has a short timeout (0.25 s), so a Redis that
    accepts nothing and answers nothing costs a request a fraction of a second, never seconds."""
    token = tokens["rpm"]
    await served(http, gateway, "rpm", token)
    origin = time.monotonic()
    running_redis.pause(True)
    try:
        samples = await asyncio.gather(call(http, gateway, "master", MASTER_KEY, origin, timeout=2),
                                       call(http, gateway, "rpm", token, origin, timeout=2))
    finally:
        running_redis.pause(False)
    slow = [s for s in samples if s.latency > 2 * MAX_LATENCY_S]
    assert not slow, listing(slow)
    assert all(s.status == 200 for s in samples), listing(samples)


async def test_redis_killed_mid_load_and_restarted(gateway: Process, running_redis: RedisServer,
                                                   http: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    keys = {who: tokens[who] for who in ("rpm", "budget", "master")}
    await warm(http, gateway, keys)
    log_start = len(gateway.logs())
    wave = ["rpm", "rpm", "budget", "budget", "master"]
    events: dict[str, float] = {}
    samples: list[Sample] = []
    waves: list[list[Sample]] = []
    origin = time.monotonic()

    async def outage() -> None:
        await asyncio.sleep(KILL_AT_S)
        events["killing"] = time.monotonic() - origin
        await asyncio.to_thread(running_redis.kill)
        events["killed"] = time.monotonic() - origin
        await asyncio.sleep(DOWN_S)
        events["restarting"] = time.monotonic() - origin
        await asyncio.to_thread(running_redis.start)  # off the loop: the load keeps its pace
        events["up"] = time.monotonic() - origin

    chaos = asyncio.create_task(outage())
    try:
        due = 0.0
        while (now := time.monotonic() - origin) < LOAD_S:
            await asyncio.sleep(max(0.0, due - now))
            batch = await asyncio.gather(*(call(http, gateway, who, keys[who], origin) for who in wave))
            samples += batch
            waves.append(batch)
            due = max(due + WAVE_S, time.monotonic() - origin)  # a late wave is not caught up
        await chaos
    finally:
        chaos.cancel()

    killed, restarting, up = events["killed"], events["restarting"], events["up"]
    budget = [s for s in samples if s.who == "budget"]
    warnings = [line for line in gateway.logs()[log_start:].splitlines() if "WARNING" in line or "ERROR" in line]
    story = (f"Redis killed at {killed:.3f} s, up again at {up:.3f} s; budget key: {timeline(budget)}; "
             f"the gateway's warnings: {warnings[:10]}")
    # The master key never touches the store, so it is each wave's control: a keyed request that
    # took MAX_LATENCY_S longer than its wave's master-key request waited on the store. (A hiccup of
    # the whole machine delays the control too; a frozen gateway is caught by the absolute bound.)
    slow = [s for batch in waves for s in batch
            if s.latency - next(c.latency for c in batch if c.who == "master") > MAX_LATENCY_S
            or s.latency > 2 * MAX_LATENCY_S]
    assert not slow, f"requests waited on the store: {listing(slow)}; {story}"
    for who in ("rpm", "master"):
        refused = [s for s in samples if s.who == who and s.status != 200]
        assert not refused, f"{who} key refused: {listing(refused)}; {story}"

    before = [s for s in budget if s.sent + s.latency < events["killing"]]
    assert before and all(s.status == 200 for s in before), listing([s for s in before if s.status != 200])
    down = [s for s in budget if s.sent > killed and s.sent + s.latency < restarting]
    assert len(down) > 20, f"only {len(down)} budget requests while Redis was down"
    wrong = [s for s in down if s.status != 503]
    assert not wrong, f"budgets must fail closed while Redis is down: {listing(wrong)}; {story}"
    for sample in down:
        assert sample.response is not None
        assert int(sample.response.headers["retry-after"]) >= 1
        error = sample.response.json()["error"]
        assert error["code"] == "service_unavailable"
        assert error["type"] == "api_error"
        assert error["message"]

    first_served = next((s for s in budget if s.sent >= up and s.status == 200), None)
    assert first_served is not None, f"budget key never served again; {story}"
    assert first_served.sent - up <= RECOVERY_S, f"recovery took {first_served.sent - up:.3f} s; {story}"
    late = [s for s in budget if s.sent >= up + RECOVERY_S and s.status != 200]
    assert not late, f"budget key still refused {RECOVERY_S} s after Redis came back: {story}"
    assert [s for s in budget if s.sent >= up + RECOVERY_S], "the load ended too soon after recovery"

    assert gateway.process.poll() is None, "the gateway died"
    log = gateway.logs()[log_start:]
    assert "Traceback" not in log, log[log.index("Traceback"):][:3000]


async def test_rpm_holds_per_process_while_redis_is_down(gateway: Process, running_redis: RedisServer,
                                                         http: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    token = tokens["rpm=5"]
    origin = time.monotonic()
    await served(http, gateway, "rpm=5", token)  # one of the five of the shared window
    await asyncio.to_thread(running_redis.kill)
    samples = await asyncio.gather(*(call(http, gateway, "rpm=5", token, origin) for _ in range(10)))
    passed = [s for s in samples if s.status == 200]
    refused = [s for s in samples if s.status != 200]
    assert 1 <= len(passed) <= 5, listing(samples)
    assert all(s.status == 429 for s in refused), listing(refused)
    for sample in refused:
        assert sample.response is not None
        assert sample.response.json()["error"]["code"] == "rate_limit_exceeded"
    slow = [s for s in samples if s.latency > MAX_LATENCY_S]
    assert not slow, listing(slow)

