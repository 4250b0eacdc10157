"""Semantic-cache hit latency through the real gateway, the embedding included (issue #7: p50 ≤ 20 ms).

    .venv/bin/python bench/semantic_hit.py [--pairs 200] [--gateway-cpu 0] [--load-cpu 1]

Starts `python -m gateway serve --workers 1` with the embedded defaults (SQLite response store, Qdrant
edge vectors under a temporary data dir, the local MiniLM embedder) pinned to one core, and the mock
upstream (zero latency) on the other core with this client. The alias `chat` is in mode `semantic`.

For each origin/paraphrase pair of ../shared/data/paraphrase_pairs_gptcache.json, one at a time over a
keep-alive connection with a virtual key:

1. send the origin (a miss that stores; a pair whose origin is already answered from the cache, a
   duplicate or near-duplicate of an earlier origin, is skipped);
2. re-send the origin until it is an exact `hit` (an entry becomes visible when its group commit
   ran, ~10 ms after the response), bounded by --visible-timeout;
3. send the paraphrase once: its wall-clock latency and `x-gateway-cache` are the measurement;
4. for reference, the origin again (an exact hit) and a fresh unique prompt: a sentence of a pair not
   measured, with a nonce, sent with `x-gateway-cache: no-store` (a full miss: exact lookup, embedding,
   vector search, the mock; no entry written, so later lookups see only the origins). The dataset has
   near-duplicates, so a few of these are answered from the cache: they are counted, not timed.

Latency is the client's wall clock from sending the request to the last body byte. Prints a markdown
table (kind, count, p50/p95/p99 ms), the paraphrases' semantic hit rate and whether the p50 goal is met.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import procstat
from children import Children, StartError, free_port
from compare_targets import MASTER_KEY, create_key, gateway_argv, python

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ROOT.parent / "shared" / "data" / "paraphrase_pairs_gptcache.json"
ALIAS = "chat"
GOAL_P50_MS = 20.0
START_S = {"mock": 30.0, "gateway": 120.0}
WARMUP_PAIRS = 10  # taken from the end of the file, never measured
_CACHE_DUR = re.compile(r"cache;dur=([0-9.]+)")


@dataclass(frozen=True)
class Reply:
    status: int
    cache: str  # x-gateway-cache, "" when absent
    seconds: float  # wall clock, request sent to last body byte
    cache_ms: float | None  # Server-Timing cache;dur


@dataclass
class Samples:
    semantic: list[float] = field(default_factory=list)
    semantic_lookup_ms: list[float] = field(default_factory=list)
    exact: list[float] = field(default_factory=list)
    miss: list[float] = field(default_factory=list)
    paraphrase_outcomes: Counter[str] = field(default_factory=Counter)
    other: Counter[str] = field(default_factory=Counter)  # reference requests with an unexpected outcome
    skipped: Counter[str] = field(default_factory=Counter)  # origin already answered from the cache, by outcome
    not_visible: int = 0  # pairs whose origin never became an exact hit in time
    visible_ms: list[float] = field(default_factory=list)


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile of seconds, in ms (as bench/cache_speed.py)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def gateway_config(mock_base: str) -> dict[str, object]:
    return {
        "model_list": [{"model_name": ALIAS,
                        "litellm_params": {"model": "openai/mock", "api_base": f"{mock_base}/v1",
                                           "api_key": "sk-upstream-not-secret"},
                        "model_info": {"mode": "chat"}}],
        "cache_settings": {"aliases": {ALIAS: {"mode": "semantic"}}},
        "prices": {ALIAS: {"input_per_million": 0, "output_per_million": 0}},
    }


class Client:
    """One keep-alive HTTP/1.1 connection to the gateway (reopened if the server closes it)."""

    def __init__(self, port: int, token: str) -> None:
        self._port = port
        self._headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def chat(self, prompt: str, *, no_store: bool = False) -> Reply:
        body = json.dumps({"model": ALIAS, "messages": [{"role": "user", "content": prompt}]}).encode()
        headers = {**self._headers, "x-gateway-cache": "no-store"} if no_store else self._headers
        try:
            response, seconds = self._send(body, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self._conn.close()  # the server closed the kept-alive connection: one retry on a new one
            self._conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
            response, seconds = self._send(body, headers)
        timing = _CACHE_DUR.search(response.getheader("server-timing") or "")
        return Reply(response.status, response.getheader("x-gateway-cache") or "", seconds,
                     float(timing.group(1)) if timing else None)

    def _send(self, body: bytes, headers: dict[str, str]) -> tuple[http.client.HTTPResponse, float]:
        start = time.perf_counter()
        self._conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        response = self._conn.getresponse()
        response.read()
        return response, time.perf_counter() - start

    def close(self) -> None:
        self._conn.close()


def wait_visible(client: Client, origin: str, timeout_s: float) -> float | None:
    """Re-send `origin` until it is an exact hit; the seconds it took, or None when time ran out."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        time.sleep(0.002)
        if client.chat(origin).cache == "hit":
            return time.perf_counter() - start
    return None


def load_pairs(count: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[str]]:
    """`count` measured pairs from the start of the file (no text repeated), warm-up pairs from its end, and
    the sentences of the pairs left over (for the misses)."""
    raw = [(p["origin"], p["similar"]) for p in json.loads(PAIRS.read_text())]
    warmup = raw[-WARMUP_PAIRS:]
    seen = {text for pair in warmup for text in pair}
    pairs: list[tuple[str, str]] = []
    for origin, similar in raw[:-WARMUP_PAIRS]:
        if origin in seen or similar in seen or origin == similar:
            continue
        seen.update((origin, similar))
        pairs.append((origin, similar))
    leftover = [text for pair in pairs[count:] for text in pair]
    return pairs[:count], warmup, leftover


def measure(client: Client, pairs: list[tuple[str, str]], unrelated: list[str], visible_timeout_s: float) -> Samples:
    samples = Samples()
    for index, (origin, similar) in enumerate(pairs):
        first = client.chat(origin)
        if first.status != 200:
            raise RuntimeError(f"origin of pair {index}: HTTP {first.status}")
        if first.cache != "miss":
            samples.skipped[first.cache] += 1
            continue
        visible = wait_visible(client, origin, visible_timeout_s)
        if visible is None:
            samples.not_visible += 1
            continue
        samples.visible_ms.append(visible)

        para = client.chat(similar)
        samples.paraphrase_outcomes[para.cache if para.status == 200 else f"HTTP {para.status}"] += 1
        if para.status == 200 and para.cache == "semantic-hit":
            samples.semantic.append(para.seconds)
            if para.cache_ms is not None:
                samples.semantic_lookup_ms.append(para.cache_ms / 1000)

        exact = client.chat(origin)
        if exact.status == 200 and exact.cache == "hit":
            samples.exact.append(exact.seconds)
        else:
            samples.other[f"exact: {exact.cache or exact.status}"] += 1

        miss = client.chat(f"{unrelated[index % len(unrelated)]} ({uuid.uuid4().hex})", no_store=True)
        if miss.status == 200 and miss.cache == "miss":
            samples.miss.append(miss.seconds)
        else:
            samples.other[f"miss: {miss.cache or miss.status}"] += 1
    return samples


def row(kind: str, values: list[float]) -> str:
    if not values:
        return f"| {kind} | 0 | — | — | — |"
    return (f"| {kind} | {len(values)} | {percentile(values, 0.5):.2f} | {percentile(values, 0.95):.2f} | "
            f"{percentile(values, 0.99):.2f} |")


def report(samples: Samples, pairs: int, window: procstat.WindowStats, elapsed_s: float) -> str:
    asked = sum(samples.paraphrase_outcomes.values())
    hits = samples.paraphrase_outcomes["semantic-hit"]
    lines = ["| kind | count | p50 ms | p95 ms | p99 ms |", "|---|--:|--:|--:|--:|",
             row("semantic hit (paraphrase)", samples.semantic),
             row("exact hit (origin again)", samples.exact),
             row("miss (unique prompt, mock at 0 ms)", samples.miss), ""]
    outcomes = ", ".join(f"{name or 'none'} {count}" for name, count in samples.paraphrase_outcomes.most_common())
    lines.append(f"Semantic hit rate among paraphrases: {hits}/{asked} = {hits / max(asked, 1):.1%} ({outcomes}); "
                 f"{pairs} pairs, {sum(samples.skipped.values())} skipped (origin already answered: "
                 f"{', '.join(f'{k} {v}' for k, v in samples.skipped.items()) or 'none'}), "
                 f"{samples.not_visible} not visible in time.  ")
    if samples.semantic_lookup_ms:
        lines.append(f"Of a semantic hit, the cache lookup (Server-Timing `cache;dur`, embedding + search + read) "
                     f"p50 {percentile(samples.semantic_lookup_ms, 0.5):.2f} ms, "
                     f"p95 {percentile(samples.semantic_lookup_ms, 0.95):.2f} ms.  ")
    if samples.visible_ms:
        lines.append(f"Origin visible as an exact hit after p50 {percentile(samples.visible_ms, 0.5):.1f} ms, "
                     f"max {max(samples.visible_ms) * 1000:.1f} ms.  ")
    if samples.other:
        lines.append("Unexpected reference outcomes: " + ", ".join(f"{k} {v}" for k, v in samples.other.items()) + "  ")
    if samples.semantic:
        p50 = percentile(samples.semantic, 0.5)
        lines.append(f"Goal (semantic hit p50 ≤ {GOAL_P50_MS:.0f} ms incl. embedding): "
                     f"{'met' if p50 <= GOAL_P50_MS else '**not met**'} ({p50:.2f} ms).  ")
    noisy = [f"{o.comm} (pid {o.pid}) {o.core_fraction:.0%}" for o in window.offenders if o.core_fraction > 0.1]
    lines.append(f"Window {elapsed_s:.1f} s: gateway CPU {window.cpu_s:.1f} s; "
                 f"{window.test_core_others:.0%} of the gateway's core went to other work; "
                 f"others above 10% of a core: {', '.join(noisy) or 'none'}.")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--gateway-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--visible-timeout", type=float, default=1.0, help="seconds to wait for an origin's entry")
    args = parser.parse_args()

    os.sched_setaffinity(0, {args.load_cpu})
    for name in ("GATEWAY_REDIS_URL", "GATEWAY_QDRANT_URL", "GATEWAY_CONFIG", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        os.environ.pop(name, None)  # the embedded defaults, no tracing export
    pairs, warmup, unrelated = load_pairs(args.pairs)
    if not unrelated:
        parser.error(f"--pairs {args.pairs} leaves no pair unused for the misses")
    print(f"loadavg {procstat.loadavg()}; {len(pairs)} pairs", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="semantic-hit-") as tmp, Children(Path(tmp), ROOT) as children:
        work = Path(tmp)
        mock_port, port = free_port(), free_port()
        mock_pid = children.start("mock-upstream", [python(), "-m", "gateway", "mock-upstream", "--port",
                                                    str(mock_port)], args.load_cpu)
        mock_base = f"http://127.0.0.1:{mock_port}"
        children.wait_ready("mock-upstream", mock_pid, f"{mock_base}/health", START_S["mock"])

        config = work / "gateway.json"  # JSON is YAML
        config.write_text(json.dumps(gateway_config(mock_base), indent=2))
        env = {"GATEWAY_MASTER_KEY": MASTER_KEY, "GATEWAY_DATA_DIR": str(work / "gateway-data"),
               "GATEWAY_LOG_LEVEL": "WARNING"}
        started = time.monotonic()
        pid = children.start("gateway", gateway_argv(config, port), args.gateway_cpu, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            children.wait_ready("gateway", pid, f"{base}/readyz", START_S["gateway"])
        except StartError as error:
            print(error, file=sys.stderr)
            return 1
        print(f"gateway ready in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)

        client = Client(port, create_key(base))
        measure(client, warmup, unrelated, args.visible_timeout)  # the embedder's first runs, connections, caches
        before = procstat.Snapshot.take()
        samples = measure(client, pairs, unrelated, args.visible_timeout)
        after = procstat.Snapshot.take()
        client.close()
        window = procstat.compare(before, after, under_test=pid, ours=os.getpid(),
                                  test_core=args.gateway_cpu, load_core=args.load_cpu)
        print(report(samples, len(pairs), window, after.at - before.at))
    return 0


if __name__ == "__main__":
    sys.exit(main())
