"""A circuit breaker per deployment: CLOSED -> OPEN -> HALF_OPEN -> CLOSED."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BreakerConfig", "CircuitBreaker", "CircuitState"]


class CircuitState(StrEnum):
    """``closed``: calls flow; ``open``: calls are skipped; ``half_open``: a few probes are let through."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerConfig(BaseModel):
    """Open after ``failure_threshold`` consecutive failures; probe after ``recovery_timeout`` s;
    close again after ``success_threshold`` successful probes."""

    model_config = ConfigDict(extra="forbid")

    failure_threshold: int = Field(default=5, ge=1)
    recovery_timeout: float = Field(default=30.0, gt=0)
    success_threshold: int = Field(default=1, ge=1)
    half_open_max_calls: int = Field(default=1, ge=1)


class CircuitBreaker:
    """Thread-safe breaker; ``clock`` is injectable for tests (monotonic seconds)."""

    def __init__(
        self, config: BreakerConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config or BreakerConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._successes = 0
        self._opened_at = 0.0
        self._probes = 0
        self._period = (
            0  # numbers the half-open periods, so a stale probe ticket cannot free a slot
        )
        self.times_opened = 0

    @property
    def state(self) -> CircuitState:
        """The current state (an open breaker turns half-open once its timeout has passed)."""
        with self._lock:
            return self._current()

    def _current(self) -> CircuitState:
        if (
            self._state is CircuitState.OPEN
            and self._clock() - self._opened_at >= self.config.recovery_timeout
        ):
            self._state = CircuitState.HALF_OPEN
            self._successes = 0
            self._probes = 0
            self._period += 1
        return self._state

    def allow(self) -> bool:
        """Whether a call may go through now (counts a half-open probe when it does)."""
        return self.admit() is not None

    def admit(self) -> int | None:
        """Like :meth:`allow`, with a ticket for :meth:`release_probe`.

        ``None``: the call may not go through. ``0``: it goes through with the circuit closed (no
        probe slot taken). Otherwise the call took a half-open probe slot and the ticket names that
        half-open period: a caller that ends without a verdict (cancelled, abandoned, a request
        error) hands it to :meth:`release_probe`, which frees the slot only while that period lasts.
        """
        with self._lock:
            state = self._current()
            if state is CircuitState.CLOSED:
                return 0
            if state is CircuitState.HALF_OPEN and self._probes < self.config.half_open_max_calls:
                self._probes += 1
                return self._period
            return None

    def record_success(self) -> None:
        """A call succeeded."""
        with self._lock:
            state = self._current()
            self._failures = 0
            if state is CircuitState.HALF_OPEN:
                self._probes = max(self._probes - 1, 0)
                self._successes += 1
                if self._successes >= self.config.success_threshold:
                    self._state = CircuitState.CLOSED

    def record_failure(self) -> None:
        """A call failed in a way that says something about the deployment's health."""
        with self._lock:
            state = self._current()
            self._failures += 1
            if state is CircuitState.HALF_OPEN or self._failures >= self.config.failure_threshold:
                if state is not CircuitState.OPEN:
                    self.times_opened += 1
                self._state = CircuitState.OPEN
                self._opened_at = self._clock()
                self._failures = 0
                self._probes = 0

    def release_probe(self, ticket: int | None = None) -> None:
        """A half-open probe ended without a verdict (e.g. a request error unrelated to health).

        ``ticket`` is what :meth:`admit` returned: ``0`` (no probe was taken) does nothing, and a
        ticket of an earlier half-open period frees nothing. ``None`` frees a slot of the current
        period (the caller knows it holds one).
        """
        with self._lock:
            if self._state is CircuitState.HALF_OPEN and ticket in (None, self._period):
                self._probes = max(self._probes - 1, 0)
