"""Limiter benchmark: how exactly limits and budgets hold over two gateways sharing one Redis, and what
the limiter costs per request. Prints markdown tables.

    .venv/bin/python bench/limiter.py [--quick] [--rate RPS] [--duration S]

Both gateways are pinned to CPU 0; their own Redis (a redis-server on a free port), the mock upstream
and this script, which generates the load (open loop, alternating gateways), to CPU 1. Tables go to
stdout, progress to stderr. Everything listens on 127.0.0.1 and is stopped at the end, on Ctrl-C and
on SIGTERM too. See docs/benchmarks.md ("Limiter").
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import procstat
from children import Children, StartError, free_port, log, run_main
from load import GATEWAY_START_S, LOAD_CPU, MASTER_KEY, NOISE_CORE_FRACTION, TEST_CPU, python, start_mock

ROOT = Path(__file__).resolve().parent.parent
#: $0.01 per output token, prompts free: the mock echoes "one two three four" cut at max_tokens, so a
#: request with max_tokens=2 costs exactly $0.02 and one with max_tokens=8 costs $0.04 (4 words).
OUTPUT_PER_MILLION = 10_000.0
PROMPT = [{"role": "user", "content": "one two three four"}]
BUDGET_USD = 2.0
BUDGET_WAVE = 100  # concurrent requests per budget wave, half to each gateway
BUDGET_MAX_WAVES = 12
REDIS_START_S = 10.0



def routing(mock_port: int) -> str:
    """The routing file (JSON is YAML): `priced` answers at once, `priced-slow` after 100 ms."""
    base = {"api_base": f"http://127.0.0.1:{mock_port}/v1", "api_key": "sk-upstream-not-secret"}
    aliases = {"priced": "openai/mock", "priced-slow": "openai/mock+latency=100"}
    return json.dumps({
        "model_list": [{"model_name": alias, "litellm_params": {"model": model, **base}}
                       for alias, model in aliases.items()],
        "prices": {alias: {"input_per_million": 0, "output_per_million": OUTPUT_PER_MILLION} for alias in aliases},
    }, indent=2)


# --- the processes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    gateways: list[str]  # base URLs
    gateway_pids: list[int]
    redis_port: int
    redis_pid: int


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(children: Children, work_dir: Path) -> tuple[int, int]:
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(work_dir)]
    pid = children.start("redis", argv, LOAD_CPU)
    deadline = time.monotonic() + REDIS_START_S
    while not _redis_answers(port):
        if not children.alive(pid) or time.monotonic() > deadline:
            raise StartError(f"redis-server did not start:\n{children.log_tail('redis')}")
        time.sleep(0.05)
    return pid, port


def launch(children: Children, work_dir: Path) -> Stack:
    redis_pid, redis_port = start_redis(children, work_dir)
    _, mock_port = start_mock(children, LOAD_CPU)
    config = work_dir / "gateway.yaml"
    config.write_text(routing(mock_port))
    started = []
    for index in range(2):
        name, port = f"gateway-{index}", free_port()
        env = {"GATEWAY_MASTER_KEY": MASTER_KEY, "GATEWAY_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
               "GATEWAY_DATA_DIR": str(work_dir / name), "GATEWAY_ADMIN_RATE_LIMIT": "100000/minute"}
        argv = [python(), "-m", "gateway", "serve", "--config", str(config), "--host", "127.0.0.1",
                "--port", str(port), "--workers", "1"]
        started.append((name, port, children.start(name, argv, TEST_CPU, env=env)))
    for name, port, pid in started:  # both import litellm at once
        children.wait_ready(name, pid, f"http://127.0.0.1:{port}/readyz", GATEWAY_START_S)
    return Stack([f"http://127.0.0.1:{port}" for _, port, _ in started], [pid for _, _, pid in started],
                 redis_port, redis_pid)


def redis_info(port: int) -> dict[str, str]:
    """`INFO all` as a flat dict (commandstats lines keep their `calls=...,usec=...` value)."""
    done = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "info", "all"],
                          capture_output=True, text=True, timeout=10, check=True)
    return dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line and not line.startswith("#"))


def command_calls(info: dict[str, str]) -> Counter[str]:
    calls: Counter[str] = Counter()
    for key, value in info.items():
        if key.startswith("cmdstat_"):
            calls[key.removeprefix("cmdstat_")] = int(value.split(",")[0].removeprefix("calls="))
    return calls


# --- the load ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    gateway: int
    status: int  # 0: transport error
    code: str | None  # the OpenAI error code of a refusal
    latency_s: float


class Load:
    def __init__(self, session: aiohttp.ClientSession, stack: Stack) -> None:
        self._session = session
        self._stack = stack

    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        async with self._session.request(method, self._stack.gateways[0] + path, json=body,
                                         headers={"authorization": f"Bearer {MASTER_KEY}"}) as response:
            payload: dict[str, Any] = await response.json()
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: {response.status} {payload}")
            return payload

    async def create_key(self, **limits: Any) -> tuple[str, str]:
        created = await self.admin("POST", "/admin/keys", limits)
        return created["id"], created["key"]

    async def one(self, index: int, token: str, model: str = "priced", max_tokens: int = 2) -> Reply:
        gateway = index % 2
        body = {"model": model, "messages": PROMPT, "max_tokens": max_tokens}
        started = time.perf_counter()
        try:
            async with self._session.post(f"{self._stack.gateways[gateway]}/v1/chat/completions", json=body,
                                          headers={"authorization": f"Bearer {token}"}) as response:
                payload = await response.read()
                status = response.status
        except aiohttp.ClientError:
            return Reply(gateway, 0, None, time.perf_counter() - started)
        latency = time.perf_counter() - started
        code = None
        if status != 200:
            try:
                code = json.loads(payload)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "unparsed"
        return Reply(gateway, status, code, latency)

    async def at_rate(self, token: str, rate: float, count: int) -> list[Reply]:
        """`count` requests sent at `rate` per second whatever the replies do (an open loop)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for index in range(count):
            delay = start + index / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.one(index, token)))
        return list(await asyncio.gather(*tasks))

    async def settled(self, key_id: str, within_s: float = 5.0) -> dict[str, Any]:
        """The key's usage once nothing is reserved or in flight any more."""
        deadline = time.monotonic() + within_s
        while True:
            usage = await self.admin("GET", f"/admin/keys/{key_id}/usage")
            if (usage.get("reserved_usd") or 0) == 0 and usage.get("in_flight", 0) == 0:
                return usage
            if time.monotonic() > deadline:
                return usage
            await asyncio.sleep(0.1)


# --- (a) rpm accuracy ----------------------------------------------------------------------------------


async def rpm_accuracy(load: Load, rpm: int, rate: float) -> str:
    _, token = await load.create_key(rpm=rpm)
    count = 2 * rpm
    log(f"rpm accuracy: rpm={rpm}, {count} requests at {rate:.0f}/s over both gateways ...")
    started = time.monotonic()
    replies = await load.at_rate(token, rate, count)
    elapsed = time.monotonic() - started
    admitted = [r for r in replies if r.status == 200]
    refused = [r for r in replies if r.status == 429 and r.code == "rate_limit_exceeded"]
    other = len(replies) - len(admitted) - len(refused)
    # Send order: a refusal before the limit was reached means the window lost a slot.
    nth = [i for i, r in enumerate(replies) if r.status == 200]
    early = sum(1 for r in replies[: nth[rpm - 1] if len(nth) >= rpm else len(replies)] if r.status == 429)
    split = " / ".join(str(sum(1 for r in admitted if r.gateway == g)) for g in (0, 1))
    log(f"  admitted {len(admitted)} of {count} in {elapsed:.1f} s (limit {rpm})")
    header = ["limit (rpm)", "sent", "over", "admitted", "admitted - limit", "refused (429)", "refused early",
              "other", "admitted per gateway"]
    row = [f"{rpm:,}", f"{count:,}", f"{elapsed:.1f} s", f"{len(admitted):,}", f"{len(admitted) - rpm:+d}",
           f"{len(refused):,}", str(early), str(other), split]
    return table("(a) RPM accuracy across two gateways", [header, row],
                 "refused early: 429s sent before the limit's last admitted request (a lost slot); "
                 "should be 0, as should admitted - limit.")


# --- (b) budget accuracy -------------------------------------------------------------------------------


async def budget_accuracy(load: Load) -> str:
    rows = [["reservation", "budget", "real cost/req", "reserved/req", "waves", "sent", "admitted", "refused",
             "spent", "overspend", "left unspent"]]
    for label, max_tokens, cost in (("= real cost", 2, 0.02), ("2 x real cost", 8, 0.04)):
        key_id, token = await load.create_key(budget_usd=BUDGET_USD, budget_period="total")
        log(f"budget accuracy ({label}): ${BUDGET_USD:.2f}, waves of {BUDGET_WAVE} concurrent requests ...")
        sent = admitted = refused = waves = 0
        while waves < BUDGET_MAX_WAVES:
            waves += 1
            replies = await asyncio.gather(*(load.one(i, token, model="priced-slow", max_tokens=max_tokens)
                                             for i in range(BUDGET_WAVE)))
            sent += len(replies)
            wave_admitted = sum(1 for r in replies if r.status == 200)
            admitted += wave_admitted
            refused += sum(1 for r in replies if r.code == "insufficient_quota")
            await load.settled(key_id)
            if wave_admitted == 0:
                break
        usage = await load.settled(key_id)
        spent = float(usage["spent_usd"])
        log(f"  admitted {admitted}, spent ${spent:.2f} of ${BUDGET_USD:.2f} in {waves} waves")
        rows.append([label, f"${BUDGET_USD:.2f}", f"${cost:.2f}", f"${max_tokens * 0.01:.2f}", str(waves),
                     str(sent), str(admitted), str(refused), f"${spent:.2f}", f"${max(0.0, spent - BUDGET_USD):.2f}",
                     f"${BUDGET_USD - spent:.2f}"])
    return table("(b) Budget accuracy: concurrent waves until a whole wave is refused", rows,
                 f"Each wave: {BUDGET_WAVE} requests at once (half to each gateway) to an alias whose upstream "
                 "answers after 100 ms, so they overlap; the next wave starts after the previous one settled. "
                 "spent: the key's ledger (`GET /admin/keys/{id}/usage`). Admission reserves the request's "
                 "worst case (max_tokens at the output price) and settles the real cost, so a budget can end "
                 "with less than one reservation left unspent, never overspent.")


# --- (c) cost per request ------------------------------------------------------------------------------


@dataclass
class CostRow:
    label: str
    requests: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    gateway_cpu_ms: float = 0.0
    redis_cpu_ms: float = 0.0
    round_trips: float = 0.0
    commands: float = 0.0
    errors: int = 0
    per_command: dict[str, float] | None = None
    warning: str | None = None


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def cost_row(load: Load, stack: Stack, label: str, token: str, rate: float, duration_s: float,
                   warmup_s: float) -> CostRow:
    log(f"cost: {label}: {warmup_s:.0f} s warm-up + {duration_s:.0f} s at {rate:.0f}/s ...")
    await load.at_rate(token, rate, int(rate * warmup_s))
    await asyncio.sleep(0.3)
    info_before, before = redis_info(stack.redis_port), procstat.Snapshot.take()
    started = time.monotonic()
    replies = await load.at_rate(token, rate, int(rate * duration_s))
    elapsed = time.monotonic() - started
    await asyncio.sleep(0.3)  # settlements run just after each response
    after, info_after = procstat.Snapshot.take(), redis_info(stack.redis_port)

    def cpu_s(pid: int) -> procstat.WindowStats:
        return procstat.compare(before, after, under_test=pid, ours=os.getpid(), test_core=TEST_CPU,
                                load_core=LOAD_CPU)

    gateways = [cpu_s(pid) for pid in stack.gateway_pids]
    count = len(replies)
    calls = command_calls(info_after)
    calls.subtract(command_calls(info_before))
    calls = Counter({name: n for name, n in calls.items() if n > 0 and name != "info"})
    reads = int(info_after["total_reads_processed"]) - int(info_before["total_reads_processed"])
    latencies = [r.latency_s * 1000 for r in replies if r.status == 200] or [0.0]
    row = CostRow(
        label, requests=count, rps=count / elapsed, p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99),
        gateway_cpu_ms=sum(g.cpu_s for g in gateways) * 1000 / count,
        redis_cpu_ms=cpu_s(stack.redis_pid).cpu_s * 1000 / count,
        round_trips=max(reads - 2, 0) / count,  # less the INFO call of the second reading
        commands=sum(calls.values()) / count, errors=sum(1 for r in replies if r.status != 200),
        per_command={name: n / count for name, n in calls.items()},
    )
    window = after.at - before.at
    others = max(gateways[0].test_core_others - gateways[1].cpu_s / window, 0.0)
    noisy = [o for o in gateways[0].offenders if o.core_fraction > NOISE_CORE_FRACTION]
    if noisy or others > NOISE_CORE_FRACTION:
        names = ", ".join(f"{o.comm} (pid {o.pid}) {o.core_fraction:.0%}" for o in noisy[:5])
        row.warning = (f"noisy `{label}` window: {others:.0%} of CPU {TEST_CPU} (the gateways' core) went to other "
                       f"work; processes outside the benchmark above {NOISE_CORE_FRACTION:.0%} of a core: "
                       f"{names or 'none seen'}; loadavg before the window {before.loadavg}")
    log(f"  {row.rps:.0f} req/s, p50 {row.p50_ms:.1f} ms, p99 {row.p99_ms:.1f} ms, gateway CPU "
        f"{row.gateway_cpu_ms:.2f} ms/req, Redis {row.round_trips:.2f} round trips/req, errors {row.errors}")
    return row


async def limiter_cost(load: Load, stack: Stack, rate: float, duration_s: float, warmup_s: float) -> str:
    big = 10**9
    keys = [
        ("no limits", {}),
        ("rpm", {"rpm": big}),
        ("rpm + tpm + budget", {"rpm": big, "tpm": big, "budget_usd": 1e6, "budget_period": "monthly"}),
    ]
    rows = []
    for label, limits in keys:
        _, token = await load.create_key(**limits)
        rows.append(await cost_row(load, stack, label, token, rate, duration_s, warmup_s))
    header = ["key", "requests", "req/s", "p50 ms", "p99 ms", "gateway CPU ms/req", "Redis round trips/req",
              "Redis commands/req", "Redis CPU ms/req", "errors"]
    lines = [header]
    for row in rows:
        lines.append([row.label, f"{row.requests:,}", f"{row.rps:.0f}", f"{row.p50_ms:.2f}", f"{row.p99_ms:.1f}",
                      f"{row.gateway_cpu_ms:.2f}", f"{row.round_trips:.2f}", f"{row.commands:.2f}",
                      f"{row.redis_cpu_ms:.3f}", str(row.errors)])
    base = rows[0]
    notes = [f"Limits set far above the load, so every request is admitted; the same open-loop load of "
             f"{rate:.0f} req/s for {duration_s:.0f} s (after {warmup_s:.0f} s of warm-up) alternating between "
             "the two gateways. Differences against `no limits`: "
             + "; ".join(f"{r.label} {r.gateway_cpu_ms - base.gateway_cpu_ms:+.2f} CPU ms/req, "
                         f"{r.round_trips - base.round_trips:+.2f} round trips/req" for r in rows[1:]) + "."]
    text = table("(c) What the limiter costs per request", lines, notes[0])
    names = sorted({n for r in rows for n in (r.per_command or {})},
                   key=lambda n: -max((r.per_command or {}).get(n, 0.0) for r in rows))
    per_command = [["Redis command", *(r.label for r in rows)]]
    per_command += [[f"`{name}`", *(f"{(r.per_command or {}).get(name, 0.0):.3f}" for r in rows)] for name in names
                    if max((r.per_command or {}).get(name, 0.0) for r in rows) >= 0.001]
    text += "\n" + table("Redis commands per request, by command (`INFO commandstats` deltas)", per_command,
                         "Commands run inside the Lua scripts (`evalsha`) are counted under their own names too, "
                         "which is why commands/req exceeds round trips/req.")
    warnings = [r.warning for r in rows if r.warning]
    if warnings:
        text += "\n" + "\n".join(f"> **warning:** {w}  " for w in warnings) + "\n"
    return text


# --- output --------------------------------------------------------------------------------------------


def table(title: str, rows: list[list[str]], note: str = "") -> str:
    header, *body = rows
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|---|" + "--:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def preamble(argv: list[str]) -> str:
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "unknown CPU")
    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False).stdout.split()
    version = next((word.removeprefix("v=") for word in redis if word.startswith("v=")), "unknown")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"Run {now} on {os.cpu_count()} x {cpu_model}, Python {platform.python_version()}, Redis {version}, "
            f"commit {commit or 'none'} (with uncommitted changes, if any).  \n"
            f"Command: `{shlex.join(argv)}`  \n"
            f"Two gateways (`--workers 1` each) on CPU {TEST_CPU}; their Redis, the mock upstream and this script "
            f"(the load generator) on CPU {LOAD_CPU}.\n")


# --- the run -------------------------------------------------------------------------------------------


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


async def run(stack: Stack, args: argparse.Namespace) -> list[str]:
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=400)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        load = Load(session, stack)
        return [
            await rpm_accuracy(load, args.rpm, args.rpm_rate),
            await budget_accuracy(load),
            await limiter_cost(load, stack, args.rate, args.duration, args.warmup),
        ]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: rpm=300, 3 s cost windows")
    parser.add_argument("--rpm", type=int, help="(a) the key's rpm; 2 x rpm requests are sent (600; 300 quick)")
    parser.add_argument("--rpm-rate", type=float, default=120.0, help="(a) requests per second (120)")
    parser.add_argument("--rate", type=float, default=300.0, help="(c) requests per second (300)")
    parser.add_argument("--duration", type=float, help="(c) measured seconds per key (10; 3 quick)")
    parser.add_argument("--warmup", type=float, help="(c) warm-up seconds per key (2; 1 quick)")
    args = parser.parse_args(argv)
    args.rpm = args.rpm or (300 if args.quick else 600)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    if not (1 <= args.rpm <= 10_000 and 1 <= args.rpm_rate <= 1000 and 1 <= args.rate <= 1000
            and 0 < args.duration <= 60 and 0 <= args.warmup <= 30):
        parser.error("keep it bounded: rpm 1-10000, rates 1-1000/s, duration ≤ 60 s, warm-up ≤ 30 s")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if (os.cpu_count() or 0) < 2:
        log("this benchmark pins processes to CPUs 0 and 1 and needs at least 2 cores")
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    os.sched_setaffinity(0, {LOAD_CPU})  # the load generator stays off the gateways' core
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llm-gateway-bench-limiter-") as tmp, \
            Children(Path(tmp), cwd=ROOT) as children:
        log("starting redis, the mock upstream and two gateways ...")
        try:
            stack = launch(children, Path(tmp))
        except StartError as error:
            log(str(error))
            return 1
        sections = asyncio.run(run(stack, args))
        for name, pid in zip(("gateway-0", "gateway-1"), stack.gateway_pids, strict=True):
            if not children.alive(pid):
                log(f"{name} exited during the run:\n{children.log_tail(name)}")
                return 1
            if "Traceback" in children.log_path(name).read_text(errors="replace"):
                log(f"warning: {name} logged a traceback; see its log:\n{children.log_tail(name, 60)}")
    print("## Limiter benchmark\n")
    print(preamble([".venv/bin/python", "bench/limiter.py", *argv]))
    for section in sections:
        print(section)
    log(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
