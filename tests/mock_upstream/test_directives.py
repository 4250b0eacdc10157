"""The directive grammar and the token approximation, as plain functions."""

from __future__ import annotations

import pytest

from gateway.mock_upstream import tokens
from gateway.mock_upstream.behaviour import Behaviour, parse_behaviour
from gateway.mock_upstream.shaping import shape


def test_plain_name_has_default_behaviour() -> None:
    assert parse_behaviour("mock") == Behaviour()
    assert parse_behaviour("gpt-4o") == Behaviour()


def test_directives_combine_after_the_last_slash() -> None:
    parsed = parse_behaviour(
        "openai/a+b/mock+latency=250+ttft=100+chunk_delay=5+chunks=7+cut=3+status=429+retry_after=1.5"
        "+fail_first=2+context=100+dim=32+tool+hang+malformed+echo"
    )

    assert parsed == Behaviour(
        latency=0.25,
        ttft=0.1,
        chunk_delay=0.005,
        chunks=7,
        cut=3,
        status=429,
        retry_after=1.5,
        fail_first=2,
        context=100,
        dim=32,
        tool=True,
        hang=True,
        malformed=True,
    )
    assert parse_behaviour("openai/mock+tool").tool
    assert not parse_behaviour("mock+tool/other").tool


@pytest.mark.parametrize(
    "name",
    [
        "mock+unknown",
        "mock+latency=abc",
        "mock+status=200",
        "mock+status=9999",
        "mock+chunks=1.5",
        "mock+cut=-1",
    ],
)
def test_unknown_or_invalid_directives_are_ignored(name: str) -> None:
    assert parse_behaviour(name) == Behaviour()


def test_failure_status_defaults_to_500() -> None:
    assert parse_behaviour("m+fail_first=1").failure_status == 500
    assert parse_behaviour("m+fail_first=1+status=503").failure_status == 503


@pytest.mark.parametrize("text", ["Hello, world!", "  lead and trail  ", "a\nb\tc", "", "...", "naïve café"])
def test_pieces_rebuild_the_text_and_match_the_count(text: str) -> None:
    parts = tokens.pieces(text)

    assert "".join(parts) == text
    if tokens.count_tokens(text):
        assert len(parts) == tokens.count_tokens(text)


def test_token_counts() -> None:
    assert tokens.count_tokens("Hello, world!") == 4
    assert tokens.prompt_tokens(["Hello, world!"]) == 3 + 3 + 4


def test_spans_group_pieces_evenly() -> None:
    assert tokens.spans(5, 2) == [(0, 2), (2, 5)]
    assert tokens.spans(3, None) == [(0, 1), (1, 2), (2, 3)]
    assert tokens.spans(2, 5) == [(0, 1), (1, 2)]


def test_shape_pads_then_stops_then_truncates() -> None:
    padded = shape("hi", stops=[], max_tokens=None, chunks=4)
    stopped = shape("a b STOP c", stops=["STOP"], max_tokens=None, chunks=None)
    limited = shape("a b c d", stops=["d"], max_tokens=2, chunks=None)

    assert padded.text == "hi lorem ipsum dolor"
    assert (stopped.text, stopped.finish, stopped.stop_sequence) == ("a b ", "stop_sequence", "STOP")
    assert (limited.text, limited.finish) == ("a b", "length")
