"""HealthBook: cooldowns, the failure window, latency and in-flight counts, on a fake clock."""

from __future__ import annotations

import pytest

from gateway.errors import (
    ContextWindowExceeded,
    InvalidRequest,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejectedRequest,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.routing.health import FAILURE_WINDOW_SECONDS, LATENCY_ALPHA, HealthBook


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def book(clock: Clock) -> HealthBook:
    return HealthBook(allowed_fails=2, cooldown_time=30.0, monotonic=clock)


def test_a_new_deployment_is_available(book: HealthBook) -> None:
    assert book.available("d")
    assert book.cooling_down() == []
    state = book.state("d")
    assert (state.in_flight, state.latency_ewma) == (0, None)


def test_allowed_fails_then_cooldown(book: HealthBook, clock: Clock) -> None:
    assert book.failed("d", UpstreamError("x")) is False
    assert book.failed("d", UpstreamError("x")) is False
    assert book.available("d")

    assert book.failed("d", UpstreamTimeout("x")) is True  # the third, more than allowed_fails=2

    assert not book.available("d")
    assert book.cooling_down() == ["d"]
    clock.advance(29.9)
    assert not book.available("d")
    clock.advance(0.1)
    assert book.available("d")
    assert book.cooling_down() == []


def test_a_cooldown_starts_a_fresh_count(book: HealthBook, clock: Clock) -> None:
    for _ in range(3):
        book.failed("d", UpstreamError("x"))
    clock.advance(30)
    assert book.available("d")
    assert book.failed("d", UpstreamError("x")) is False
    assert book.available("d")


def test_allowed_fails_zero_cools_down_at_the_first_failure(clock: Clock) -> None:
    book = HealthBook(allowed_fails=0, cooldown_time=5.0, monotonic=clock)
    assert book.failed("d", UpstreamUnavailable("x")) is True
    assert not book.available("d")


def test_failures_are_per_deployment(book: HealthBook) -> None:
    book.failed("a", UpstreamError("x"))
    book.failed("a", UpstreamError("x"))
    book.failed("b", UpstreamError("x"))
    assert book.failed("b", UpstreamError("x")) is False
    assert book.failed("a", UpstreamError("x")) is True
    assert book.cooling_down() == ["a"]
    assert book.available("b")


def test_failures_older_than_the_window_are_forgotten(book: HealthBook, clock: Clock) -> None:
    assert FAILURE_WINDOW_SECONDS == 60.0
    book.failed("d", UpstreamError("x"))
    book.failed("d", UpstreamError("x"))
    clock.advance(61)
    assert book.failed("d", UpstreamError("x")) is False
    assert book.available("d")
    assert len(book.state("d").failures) == 1


def test_failures_within_the_window_count(book: HealthBook, clock: Clock) -> None:
    book.failed("d", UpstreamError("x"))
    clock.advance(30)
    book.failed("d", UpstreamError("x"))
    clock.advance(29)
    assert book.failed("d", UpstreamError("x")) is True


def test_window_slides(book: HealthBook, clock: Clock) -> None:
    book.failed("d", UpstreamError("x"))  # t=0
    clock.advance(40)
    book.failed("d", UpstreamError("x"))  # t=40
    clock.advance(25)  # t=65: the first one has left the window
    assert book.failed("d", UpstreamError("x")) is False
    clock.advance(30)  # t=95: t=40 and t=65 are still inside
    assert book.failed("d", UpstreamError("x")) is True


def test_rate_limit_with_retry_after_cools_down_for_that_long(book: HealthBook, clock: Clock) -> None:
    assert book.failed("d", UpstreamRateLimited("slow", retry_after=5)) is True
    assert not book.available("d")
    clock.advance(4.9)
    assert not book.available("d")
    clock.advance(0.1)
    assert book.available("d")


def test_rate_limit_without_retry_after_cools_down_for_cooldown_time(book: HealthBook,
                                                                     clock: Clock) -> None:
    assert book.failed("d", UpstreamRateLimited("slow")) is True
    clock.advance(29)
    assert not book.available("d")
    clock.advance(1)
    assert book.available("d")


def test_a_short_retry_after_does_not_shorten_a_cooldown(book: HealthBook, clock: Clock) -> None:
    book.failed("d", UpstreamRateLimited("slow", retry_after=20))
    book.failed("d", UpstreamRateLimited("slow", retry_after=1))
    clock.advance(10)
    assert not book.available("d")
    clock.advance(10)
    assert book.available("d")


def test_rate_limits_do_not_count_as_failures(book: HealthBook) -> None:
    book.failed("d", UpstreamRateLimited("slow", retry_after=0))
    assert len(book.state("d").failures) == 0


def test_auth_failure_cools_down_at_once(book: HealthBook, clock: Clock) -> None:
    assert book.failed("d", UpstreamAuthFailed("bad key")) is True
    assert not book.available("d")
    clock.advance(30)
    assert book.available("d")


@pytest.mark.parametrize("error", [InvalidRequest("x"), UpstreamRejectedRequest("x"),
                                   ContextWindowExceeded("x")])
def test_errors_that_are_not_the_deployments_fault_are_ignored(book: HealthBook,
                                                                error: InvalidRequest) -> None:
    for _ in range(10):
        assert book.failed("d", error) is False
    assert book.available("d")
    assert len(book.state("d").failures) == 0


def test_configure_changes_the_thresholds(book: HealthBook, clock: Clock) -> None:
    book.configure(allowed_fails=0, cooldown_time=2.0)
    assert book.failed("d", UpstreamError("x")) is True
    clock.advance(2)
    assert book.available("d")


def test_latency_ewma(book: HealthBook) -> None:
    book.succeeded("d", 1.0)
    assert book.state("d").latency_ewma == 1.0
    book.succeeded("d", 2.0)
    assert book.state("d").latency_ewma == pytest.approx(1.0 + LATENCY_ALPHA * 1.0)
    book.succeeded("d", 2.0)
    expected = 1.3 + LATENCY_ALPHA * (2.0 - 1.3)
    assert book.state("d").latency_ewma == pytest.approx(expected)


def test_latency_converges_to_a_steady_value(book: HealthBook) -> None:
    book.succeeded("d", 10.0)
    for _ in range(50):
        book.succeeded("d", 0.1)
    assert book.state("d").latency_ewma == pytest.approx(0.1, abs=1e-6)


def test_in_flight_counting(book: HealthBook) -> None:
    book.started("a")
    book.started("a")
    book.started("b")
    assert book.state("a").in_flight == 2
    assert book.state("b").in_flight == 1
    book.finished("a")
    assert book.state("a").in_flight == 1
    book.finished("a")
    book.finished("b")
    assert book.state("a").in_flight == 0
    assert book.state("b").in_flight == 0


def test_cooling_down_is_sorted(book: HealthBook) -> None:
    for name in ("c", "a", "b"):
        book.failed(name, UpstreamAuthFailed("x"))
    assert book.cooling_down() == ["a", "b", "c"]


def test_rolling_minute_is_pruned_without_a_rate_limit(book: HealthBook, clock: Clock) -> None:
    # A deployment with no rpm/tpm never asks within_rate(); its logs must not grow by a call each forever.
    for _ in range(300):
        book.started("a")
        book.add_tokens("a", 10)
        book.finished("a")
        clock.advance(1.0)
    state = book.state("a")
    assert len(state.call_times) <= 61 and len(state.token_log) <= 61
    assert state.tokens_in_window == 10 * len(state.token_log)
