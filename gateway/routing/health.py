"""What this process knows about each deployment's health: in-flight calls, latency, cooldowns.

The book is keyed by deployment id and survives a config reload, so a reload does not forget that a
deployment is cooling down. It is per process: each replica cools deployments down on its own
evidence, which is what a client of that replica experiences.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.errors import GatewayError, UpstreamAuthFailed, UpstreamRateLimited

FAILURE_WINDOW_SECONDS = 60.0
RATE_WINDOW_SECONDS = 60.0
#: Weight of the newest sample in the latency moving average.
LATENCY_ALPHA = 0.3


@dataclass(slots=True)
class DeploymentState:
    in_flight: int = 0
    latency_ewma: float | None = None
    cooldown_until: float = 0.0
    failures: deque[float] = field(default_factory=deque)
    #: Start times of calls, and (time, tokens) of finished ones, in the last minute: the
    #: deployment's own rpm/tpm from model_list.
    call_times: deque[float] = field(default_factory=deque)
    token_log: deque[tuple[float, int]] = field(default_factory=deque)
    tokens_in_window: int = 0


def _forget_before(state: DeploymentState, horizon: float) -> None:
    """Drop what left the rolling minute. Pruned on every append too, not only when a deployment has an
    rpm/tpm to check: otherwise both logs grew by an entry per call for the life of the process."""
    while state.call_times and state.call_times[0] <= horizon:
        state.call_times.popleft()
    while state.token_log and state.token_log[0][0] <= horizon:
        state.tokens_in_window -= state.token_log.popleft()[1]


class HealthBook:
    def __init__(self, *, allowed_fails: int, cooldown_time: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.allowed_fails = allowed_fails
        self.cooldown_time = cooldown_time
        self._monotonic = monotonic
        self._states: dict[str, DeploymentState] = {}

    def configure(self, *, allowed_fails: int, cooldown_time: float) -> None:
        self.allowed_fails = allowed_fails
        self.cooldown_time = cooldown_time

    def state(self, deployment_id: str) -> DeploymentState:
        state = self._states.get(deployment_id)
        if state is None:
            state = self._states[deployment_id] = DeploymentState()
        return state

    def available(self, deployment_id: str) -> bool:
        return self.state(deployment_id).cooldown_until <= self._monotonic()

    def seconds_until_available(self, deployment_id: str) -> float:
        return max(0.0, self.state(deployment_id).cooldown_until - self._monotonic())

    def cooling_down(self) -> list[str]:
        now = self._monotonic()
        return sorted(k for k, s in self._states.items() if s.cooldown_until > now)

    def started(self, deployment_id: str) -> None:
        state = self.state(deployment_id)
        state.in_flight += 1
        now = self._monotonic()
        state.call_times.append(now)
        _forget_before(state, now - RATE_WINDOW_SECONDS)

    def add_tokens(self, deployment_id: str, tokens: int) -> None:
        """Tokens a finished call used, counted in the deployment's rolling minute."""
        if tokens > 0:
            state = self.state(deployment_id)
            now = self._monotonic()
            state.token_log.append((now, tokens))
            state.tokens_in_window += tokens
            _forget_before(state, now - RATE_WINDOW_SECONDS)

    def within_rate(self, deployment_id: str, rpm: int | None, tpm: int | None) -> bool:
        """Is the deployment under its own rpm/tpm (from model_list) in this process's last minute?"""
        if rpm is None and tpm is None:
            return True
        state = self.state(deployment_id)
        _forget_before(state, self._monotonic() - RATE_WINDOW_SECONDS)
        return ((rpm is None or len(state.call_times) < rpm)
                and (tpm is None or state.tokens_in_window < tpm))

    def finished(self, deployment_id: str) -> None:
        self.state(deployment_id).in_flight -= 1

    def succeeded(self, deployment_id: str, latency: float) -> None:
        state = self.state(deployment_id)
        if state.latency_ewma is None:
            state.latency_ewma = latency
        else:
            state.latency_ewma += LATENCY_ALPHA * (latency - state.latency_ewma)

    def failed(self, deployment_id: str, error: GatewayError) -> bool:
        """Record a failure; returns True when it put the deployment into cooldown."""
        if not error.deployment_fault:
            return False
        state = self.state(deployment_id)
        now = self._monotonic()
        if isinstance(error, UpstreamRateLimited):
            # The provider told us when to come back; without a hint, rest for the configured time.
            wait = error.retry_after if error.retry_after is not None else self.cooldown_time
            state.cooldown_until = max(state.cooldown_until, now + wait)
            return True
        if isinstance(error, UpstreamAuthFailed):
            state.cooldown_until = now + self.cooldown_time
            return True
        failures = state.failures
        failures.append(now)
        while failures and failures[0] < now - FAILURE_WINDOW_SECONDS:
            failures.popleft()
        if len(failures) > self.allowed_fails:
            state.cooldown_until = now + self.cooldown_time
            failures.clear()
            return True
        return False
