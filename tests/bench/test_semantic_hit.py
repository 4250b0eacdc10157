"""bench/semantic_hit.py's pure parts: its routing file passes the gateway's own validation, pairs, percentiles."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import semantic_hit

from gateway.config import parse_config


def test_routing_file_is_valid_and_turns_the_semantic_tier_on() -> None:
    config = parse_config(semantic_hit.gateway_config("http://127.0.0.1:9"))
    assert config.cache_for(semantic_hit.ALIAS).mode == "semantic"


def test_percentile_is_nearest_rank_in_ms() -> None:
    samples = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert semantic_hit.percentile(samples, 0.5) == pytest.approx(51.0)
    assert semantic_hit.percentile(samples, 0.99) == pytest.approx(100.0)
    assert semantic_hit.percentile([0.002], 0.95) == pytest.approx(2.0)


def test_measured_warmup_and_miss_texts_never_overlap() -> None:
    pairs, warmup, unrelated = semantic_hit.load_pairs(50)
    assert len(pairs) == 50 and len(warmup) == semantic_hit.WARMUP_PAIRS and unrelated
    measured = [text for pair in pairs for text in pair]
    assert len(set(measured)) == len(measured)
    assert not set(measured) & {text for pair in warmup for text in pair}
    assert not set(measured) & set(unrelated)
