"""CPU cost per upstream call of each way the gateway could reach a provider, as a markdown table.

    .venv/bin/python bench/engine_cost.py [--quick] [--n N] [--stream-n N] [--loop uvloop|asyncio]

Why: the gateway forwards OpenAI-wire deployments with its own aiohttp engine, sends the rest through
``litellm.acompletion``, and routes with its own small Router instead of ``litellm.Router``. This
script measures what each of those layers costs in CPU on this machine, in one process, with no HTTP
server in front, so that only the client side of the upstream call is counted.

How: the mock upstream runs as a child process pinned to CPU 1 (``taskset -c 1``); this process pins
itself to CPU 0. Each method makes sequential calls (one in flight) to the mock: a warm-up, then N
measured calls, and the CPU time of *this process* (``time.process_time()``: user + system, all of
its threads, so litellm's logging threads count too) is divided by N. The mock's own CPU is another
process and is not counted. Streams ask for 20 content chunks and are consumed to the end.

Methods (each row also runs streaming):
  1. bare aiohttp          one pooled ClientSession, POST JSON bytes, read the body / lines to [DONE]
  2. native engine         gateway.routing.native.NativeEngine
  3. Router + native       gateway.routing.router.Router over the native engine
  4. litellm engine        gateway.routing.litellm_engine.LitellmEngine on ``openai/mock``
  5. litellm.acompletion   called directly on ``openai/mock``
  6. litellm.Router        ``Router(model_list=...).acompletion(model=alias)``, num_retries=0
  7. litellm engine, anthropic   LitellmEngine on ``anthropic/claude-mock`` (translation both ways)
  8. Anthropic config, direct    litellm's ``AnthropicConfig`` called directly (``get_optional_params``,
                                 ``validate_environment``, ``transform_request``, our aiohttp POST,
                                 ``transform_response``): the translation alone, without
                                 ``acompletion``'s machinery; non-streaming only (a probe for issue #7)

Only 127.0.0.1 is contacted. The mock is stopped when the script ends, on errors, Ctrl-C and SIGTERM.
The table goes to stdout, progress to stderr.
"""

from __future__ import annotations

import os

# Before anything imports litellm: use the bundled price map instead of fetching one.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import argparse
import asyncio
import contextlib
import datetime
import gc
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
BENCH_CPU, MOCK_CPU = 0, 1
CHUNKS = 20
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
#: Other processes above this share of the benchmark's core during a window: the row is flagged.
NOISY_SHARE = 0.05
MOCK_START_S = 30.0
MESSAGES = [{"role": "user", "content": "Say hello to the benchmark, in a few words please."}]
MAX_TOKENS = 256
TIMES = "\N{MULTIPLICATION SIGN}"

CallFn = Callable[[], Awaitable[int]]


# -- the mock upstream ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Mock:
    """The mock upstream as a child process in its own session, pinned to MOCK_CPU."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.gettempdir()) / f"engine_cost_mock_{os.getpid()}.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                ["taskset", "-c", str(MOCK_CPU), sys.executable, "-m", "gateway.mock_upstream",
                 "--host", "127.0.0.1", "--port", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                start_new_session=True,
            )
        deadline = time.monotonic() + MOCK_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the mock upstream exited during start-up:\n{self._tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=2) as response:  # noqa: S310 (127.0.0.1)
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the mock upstream was not ready after {MOCK_START_S:.0f} s:\n{self._tail()}")

    def _tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if proc.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            self.log.unlink()


# -- the methods ----------------------------------------------------------------------------------


@dataclass
class Method:
    name: str
    call: CallFn
    stream: CallFn | None


@dataclass
class Result:
    name: str
    cpu_ms: dict[str, float] = field(default_factory=dict)
    wall_ms: dict[str, float] = field(default_factory=dict)
    #: Share of the benchmark's core used by other processes during each window.
    others: dict[str, float] = field(default_factory=dict)


def _openai_body(model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _check_chunks(name: str, chunks: int) -> int:
    if chunks < CHUNKS:
        raise RuntimeError(f"{name}: the stream ended after {chunks} chunks, expected at least {CHUNKS}")
    return chunks


def _content_of_chunk(chunk: Any) -> bool:
    """Did a litellm stream chunk carry content? (Counted to check that the stream was read whole.)"""
    choices = getattr(chunk, "choices", None) or ()
    return any(getattr(getattr(c, "delta", None), "content", None) for c in choices)


async def build_methods(session: aiohttp.ClientSession, mock_base: str) -> tuple[list[Method], Any]:
    """The eight methods; also returns an object whose ``aclose`` releases litellm's clients."""
    import litellm
    from litellm.router import Router as LitellmRouter

    from gateway.config import parse_config
    from gateway.routing.deployments import build_deployments
    from gateway.routing.health import HealthBook
    from gateway.routing.litellm_engine import LitellmEngine
    from gateway.routing.native import NativeEngine
    from gateway.routing.router import Router
    from gateway.routing.types import UpstreamCall

    openai_base = f"{mock_base}/v1"
    stream_model = f"mock+chunks={CHUNKS}"
    config = parse_config(
        {
            "model_list": [
                {"model_name": "native", "litellm_params": {
                    "model": "openai/mock", "api_base": openai_base, "api_key": "x"}},
                {"model_name": "native-stream", "litellm_params": {
                    "model": f"openai/{stream_model}", "api_base": openai_base, "api_key": "x"}},
                {"model_name": "via-litellm", "litellm_params": {
                    "model": "openai/mock", "api_base": openai_base, "api_key": "x", "engine": "litellm"}},
                {"model_name": "via-litellm-stream", "litellm_params": {
                    "model": f"openai/{stream_model}", "api_base": openai_base, "api_key": "x",
                    "engine": "litellm"}},
                {"model_name": "anthropic", "litellm_params": {
                    "model": "anthropic/claude-mock", "api_base": mock_base, "api_key": "x"}},
                {"model_name": "anthropic-stream", "litellm_params": {
                    "model": f"anthropic/claude-mock+chunks={CHUNKS}", "api_base": mock_base,
                    "api_key": "x"}},
            ],
            # No retries on either router: on the success path retries cost nothing, but keep it equal.
            "router_settings": {"num_retries": 0},
        },
        source="<engine_cost>", environ={},
    )
    deployments = build_deployments(config)
    dep = {alias: group[0] for alias, group in deployments.items()}
    assert dep["native"].engine == "native"
    assert dep["via-litellm"].engine == "litellm"
    assert dep["anthropic"].engine == "litellm"

    native = NativeEngine(session)
    via_litellm = LitellmEngine()
    router = Router(config, deployments, {"native": native, "litellm": via_litellm},
                    HealthBook(allowed_fails=3, cooldown_time=30.0))
    lite_router = LitellmRouter(
        model_list=[
            {"model_name": "alias", "litellm_params": {
                "model": "openai/mock", "api_base": openai_base, "api_key": "x"}},
            {"model_name": "alias-stream", "litellm_params": {
                "model": f"openai/{stream_model}", "api_base": openai_base, "api_key": "x"}},
        ],
        num_retries=0,
    )

    def ucall(model: str, stream: bool) -> UpstreamCall:
        # client_wants_usage=True: every method asks the mock for the same frames, usage chunk included.
        return UpstreamCall(operation="chat", body=_openai_body(model, stream), stream=stream,
                            client_wants_usage=stream)

    # 1. bare aiohttp
    url = f"{openai_base}/chat/completions"
    headers = {"content-type": "application/json", "authorization": "Bearer x"}
    bare_body = orjson.dumps(_openai_body("mock", False))
    bare_stream_body = orjson.dumps(_openai_body(stream_model, True))

    async def bare_call() -> int:
        async with session.post(url, data=bare_body, headers=headers) as response:
            response.raise_for_status()
            return len(await response.read())

    async def bare_stream() -> int:
        chunks = 0
        async with session.post(url, data=bare_stream_body, headers=headers) as response:
            response.raise_for_status()
            for _ in range(10_000):  # bounded: a 20-chunk stream is ~25 lines plus blanks
                line = await response.content.readline()
                if not line or line.startswith(b"data: [DONE]"):
                    break
                if line.startswith(b"data:") and b'"content"' in line:
                    chunks += 1
        return _check_chunks("bare aiohttp", chunks)

    # 2., 3., 4., 7.: our engines and Router
    def engine_methods(engine: Any, nonstream_alias: str, stream_alias: str, model: str
                       ) -> tuple[CallFn, CallFn]:
        deployment, stream_deployment = dep[nonstream_alias], dep[stream_alias]
        label = f"engine {nonstream_alias}"

        async def call() -> int:
            response = await engine.send(deployment, ucall(model, False))
            return len(response.body)

        async def stream() -> int:
            upstream = await engine.open_stream(stream_deployment, ucall(model, True))
            async for _frames in upstream:  # one item may carry several events (the native engine batches)
                pass
            if upstream.error is not None:
                raise RuntimeError(f"{label}: stream failed: {upstream.error}")
            return _check_chunks(label, upstream.relayed)

        return call, stream

    native_call, native_stream = engine_methods(native, "native", "native-stream", "mock")
    lite_call, lite_stream = engine_methods(via_litellm, "via-litellm", "via-litellm-stream", "mock")
    anth_call, anth_stream = engine_methods(via_litellm, "anthropic", "anthropic-stream", "claude-mock")

    async def router_call() -> int:
        routed = await router.send("native", ucall("native", False))
        return len(routed.value.body)

    async def router_stream() -> int:
        routed = await router.open_stream("native-stream", ucall("native-stream", True))
        try:
            async for _frames in routed.value:
                pass
        finally:
            router.stream_finished(routed.deployment, None)
        return _check_chunks("Router + native", routed.value.relayed)

    # 5. and 6.: litellm directly
    async def litellm_call() -> int:
        response = await litellm.acompletion(model="openai/mock", api_base=openai_base, api_key="x",
                                             messages=MESSAGES, max_tokens=MAX_TOKENS)
        return len(response.choices[0].message.content or "")

    async def litellm_stream() -> int:
        response = await litellm.acompletion(model=f"openai/{stream_model}", api_base=openai_base,
                                             api_key="x", messages=MESSAGES, max_tokens=MAX_TOKENS,
                                             stream=True, stream_options={"include_usage": True})
        chunks = 0
        async for chunk in response:
            chunks += _content_of_chunk(chunk)
        return _check_chunks("litellm.acompletion", chunks)

    async def lite_router_call() -> int:
        response = await lite_router.acompletion(model="alias", messages=MESSAGES, max_tokens=MAX_TOKENS)
        return len(response.choices[0].message.content or "")

    async def lite_router_stream() -> int:
        response = await lite_router.acompletion(model="alias-stream", messages=MESSAGES,
                                                 max_tokens=MAX_TOKENS, stream=True,
                                                 stream_options={"include_usage": True})
        chunks = 0
        async for chunk in response:
            chunks += _content_of_chunk(chunk)
        return _check_chunks("litellm.Router", chunks)

    # 8.: the Anthropic translation alone, litellm's provider config called directly
    from litellm.types.utils import LlmProviders, ModelResponse
    from litellm.utils import ProviderConfigManager, get_optional_params

    anthropic_config = ProviderConfigManager.get_provider_chat_config(model="claude-mock",
                                                                      provider=LlmProviders.ANTHROPIC)
    assert anthropic_config is not None
    messages_url = f"{mock_base}/v1/messages"

    class _NoLogging:  # transform_response reports to litellm's logging object; nothing listens here
        def post_call(self, *args: Any, **kwargs: Any) -> None:
            pass

    no_logging: Any = _NoLogging()

    async def anthropic_direct_call() -> int:
        messages: Any = list(MESSAGES)  # litellm types them as its own message TypedDicts
        optional = get_optional_params(model="claude-mock", custom_llm_provider="anthropic", max_tokens=MAX_TOKENS,
                                       messages=messages)
        params = {"api_base": messages_url}
        request_headers = anthropic_config.validate_environment(
            headers={}, model="claude-mock", messages=messages, optional_params=optional,
            litellm_params=params, api_key="x", api_base=messages_url)
        data = anthropic_config.transform_request(model="claude-mock", messages=messages,
                                                  optional_params=optional, litellm_params=params,
                                                  headers=request_headers)
        async with session.post(messages_url, data=orjson.dumps(data), headers=request_headers) as answer:
            answer.raise_for_status()
            raw = httpx.Response(answer.status, headers=dict(answer.headers), content=await answer.read(),
                                 request=httpx.Request("POST", messages_url))
        response = anthropic_config.transform_response(
            model="claude-mock", raw_response=raw, model_response=ModelResponse(), logging_obj=no_logging,
            request_data=data, messages=messages, optional_params=optional, litellm_params=params,
            encoding=None, api_key="x")
        return len(response.choices[0].message.content or "")

    methods = [
        Method("1. bare aiohttp (floor)", bare_call, bare_stream),
        Method("2. our native engine", native_call, native_stream),
        Method("3. our Router + native engine", router_call, router_stream),
        Method("4. our litellm engine (openai/mock)", lite_call, lite_stream),
        Method("5. litellm.acompletion (openai/mock)", litellm_call, litellm_stream),
        Method("6. litellm.Router.acompletion", lite_router_call, lite_router_stream),
        Method("7. our litellm engine (anthropic/claude-mock)", anth_call, anth_stream),
        Method("8. litellm's Anthropic config called directly (claude-mock)", anthropic_direct_call, None),
    ]
    return methods, lite_router


# -- measuring ------------------------------------------------------------------------------------


def _core_busy_s(cpu: int) -> float:
    """Seconds core ``cpu`` has been busy since boot, per /proc/stat (everything but idle and iowait)."""
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith(f"cpu{cpu} "):
                ticks = [int(v) for v in line.split()[1:]]
                return (sum(ticks[:8]) - ticks[3] - ticks[4]) * _TICK_S
    return 0.0


async def measure(fn: CallFn, n: int, warmup: int) -> tuple[float, float, float]:
    """CPU ms and wall ms per call over ``n`` sequential calls, after ``warmup`` unmeasured ones, and the
    share of BENCH_CPU that other processes used during the window (they skew what is measured)."""
    for _ in range(warmup):
        if await fn() <= 0:
            raise RuntimeError("empty response")
    await asyncio.sleep(0.05)  # let background work of the warm-up (litellm's logging) settle
    gc.collect()
    busy0, cpu0, wall0 = _core_busy_s(BENCH_CPU), time.process_time(), time.perf_counter()
    for _ in range(n):
        await fn()
    busy1, cpu1, wall1 = _core_busy_s(BENCH_CPU), time.process_time(), time.perf_counter()
    others = max(0.0, (busy1 - busy0) - (cpu1 - cpu0)) / (wall1 - wall0)
    return (cpu1 - cpu0) * 1000 / n, (wall1 - wall0) * 1000 / n, others


async def run(args: argparse.Namespace, mock_base: str) -> list[Result]:
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
    # The same session settings as the gateway's (gateway/app.py).
    session = aiohttp.ClientSession(connector=connector, read_bufsize=2**20, auto_decompress=True,
                                    raise_for_status=False, trust_env=False)
    results: list[Result] = []
    try:
        methods, _lite_router = await build_methods(session, mock_base)
        selected = [m for i, m in enumerate(methods, 1) if not args.only or i in args.only]
        for method in selected:
            result = Result(method.name)
            for mode, fn, n in (("call", method.call, args.n), ("stream", method.stream, args.stream_n)):
                if fn is None:
                    continue
                warmup = max(5, n // 10)
                print(f"{method.name}: {mode} x{n} (warm-up {warmup}) ...", file=sys.stderr, flush=True)
                cpu, wall, others = await measure(fn, n, warmup)
                result.cpu_ms[mode], result.wall_ms[mode], result.others[mode] = cpu, wall, others
                print(f"    {cpu:.3f} CPU ms, {wall:.3f} wall ms per {mode}; others used {others:.0%} of "
                      f"CPU {BENCH_CPU}", file=sys.stderr, flush=True)
            results.append(result)
    finally:
        await session.close()
        await asyncio.sleep(0.1)
    return results


# -- reporting ------------------------------------------------------------------------------------


def _ms(values: dict[str, float], mode: str) -> str:
    return f"{values[mode]:.3f}" if mode in values else "n/a"


def _ratio(value: float, floor: float | None) -> str:
    return f"{value / floor:.1f}{TIMES}" if floor else "-"


def report(results: list[Result], args: argparse.Namespace, loop_name: str) -> str:
    floor = next((r for r in results if r.name.startswith("1.")), None)
    floor_call = floor.cpu_ms["call"] if floor else None
    floor_stream = floor.cpu_ms["stream"] if floor else None
    lines = [
        f"| method | CPU ms/call (non-stream) | {TIMES} bare | CPU ms/stream ({CHUNKS} chunks) | {TIMES} bare "
        f"| wall ms/call | wall ms/stream | others on CPU {BENCH_CPU} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        streamed = "stream" in r.cpu_ms
        lines.append(
            f"| {r.name} | {r.cpu_ms['call']:.3f} | {_ratio(r.cpu_ms['call'], floor_call)} "
            f"| {_ms(r.cpu_ms, 'stream')} | {_ratio(r.cpu_ms['stream'], floor_stream) if streamed else 'n/a'} "
            f"| {r.wall_ms['call']:.3f} | {_ms(r.wall_ms, 'stream')} "
            f"| {max(r.others.values()):.0%}{' (noisy)' if max(r.others.values()) > NOISY_SHARE else ''} |"
        )
    by_number = {r.name.split(".", 1)[0]: r for r in results}
    derived = []
    for label, top, bottom in (("our Router over the native engine", "3", "2"),
                               ("litellm.Router over litellm.acompletion", "6", "5"),
                               ("our litellm engine over litellm.acompletion", "4", "5"),
                               ("anthropic translation over openai via our litellm engine", "7", "4"),
                               ("litellm's Anthropic config called directly over our litellm engine", "8", "7")):
        if top in by_number and bottom in by_number:
            a, b = by_number[top].cpu_ms, by_number[bottom].cpu_ms
            per_stream = (f", {a['stream'] - b['stream']:+.3f} ms/stream" if "stream" in a and "stream" in b
                          else "")
            derived.append(f"- {label}: {a['call'] - b['call']:+.3f} ms/call{per_stream}")
    lines += ["", "Differences (CPU ms):", *derived] if derived else []
    lines += [
        "",
        f"- python {platform.python_version()}, litellm {version('litellm')}, aiohttp {aiohttp.__version__}, "
        f"event loop {loop_name}, {os.cpu_count()} CPUs ({platform.machine()})",
        f"- N = {args.n} non-streaming, {args.stream_n} streaming calls per method, sequential, "
        f"after a warm-up of max(5, N/10); benchmark on CPU {BENCH_CPU}, mock upstream on CPU {MOCK_CPU}",
        f"- command: `{_command_line()}`",
        f"- others on CPU {BENCH_CPU}: the largest share of that core other processes used during the row's "
        "two windows (from /proc/stat); above "
        f"{NOISY_SHARE:.0%} the row is marked noisy: CPU time is still this process's own, but shares caches "
        "and, for wall times, the core",
        f"- at: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
    ]
    return "\n".join(lines)


def _command_line() -> str:
    """The command as typed from the project root: the interpreter relative to it when inside it."""
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(ROOT)
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    return shlex.join([python.as_posix(), script.as_posix(), *sys.argv[1:]])


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N=50 for both modes (a smoke run)")
    parser.add_argument("--n", type=int, default=None, help="non-streaming calls per method (300)")
    parser.add_argument("--stream-n", type=int, default=None, help="streams per method (150)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="event loop; the gateway runs on uvloop (default)")
    parser.add_argument("--only", type=int, nargs="+", choices=range(1, 9), metavar="K",
                        help="run only these methods (1-8); ratios need method 1")
    args = parser.parse_args(argv)
    default = 50 if args.quick else None
    args.n = args.n or default or 300
    args.stream_n = args.stream_n or default or 150
    if not (1 <= args.n <= 100_000 and 1 <= args.stream_n <= 100_000):
        parser.error("N must be between 1 and 100000")
    return args


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    os.sched_setaffinity(0, {BENCH_CPU})
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    mock = Mock()
    try:
        mock.start()
        print(f"mock upstream on {mock.base} (CPU {MOCK_CPU}), benchmark on CPU {BENCH_CPU}",
              file=sys.stderr, flush=True)
        if args.loop == "uvloop":
            import uvloop

            results = uvloop.run(run(args, mock.base))
        else:
            results = asyncio.run(run(args, mock.base))
    finally:
        mock.stop()
    print(report(results, args, args.loop))
    return 0


if __name__ == "__main__":
    sys.exit(main())
