"""Rate limits per deployment: rpm and tpm token buckets plus a sliding-window request limit.

The tpm bucket is charged with the tiktoken estimate before a call and corrected with the real
usage afterwards. A limited deployment is either skipped (the router tries the next candidate) or
waited for, as configured per deployment.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

__all__ = ["Limiter", "RateLimiter", "SlidingWindow", "TokenBucket"]


class TokenBucket:
    """``capacity`` tokens refilled at ``capacity / period`` per second; may go into debt."""

    def __init__(
        self, capacity: float, period: float = 60.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = float(capacity)
        self.rate = self.capacity / period
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def wait_time(self, amount: float) -> float:
        """Seconds until ``amount`` tokens are available (0 when they are now)."""
        self._refill()
        needed = min(amount, self.capacity) - self._tokens
        return 0.0 if needed <= 0 else needed / self.rate

    def take(self, amount: float) -> None:
        """Remove ``amount`` tokens (call after :meth:`wait_time` returned 0)."""
        self._refill()
        self._tokens -= amount

    def give(self, amount: float) -> None:
        """Correct a charge: return (positive) or add (negative) tokens."""
        self._refill()
        self._tokens = min(self.capacity, self._tokens + amount)

    @property
    def available(self) -> float:
        """Tokens available now."""
        self._refill()
        return self._tokens


class SlidingWindow:
    """At most ``limit`` events in any ``window`` seconds (exact, timestamp-based)."""

    def __init__(
        self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._events: deque[float] = deque(maxlen=max(limit, 1))

    def wait_time(self) -> float:
        """Seconds until one more event fits."""
        now = self._clock()
        while self._events and now - self._events[0] >= self.window:
            self._events.popleft()
        if len(self._events) < self.limit:
            return 0.0
        return self.window - (now - self._events[0])

    def record(self) -> None:
        """Record one event now."""
        self._events.append(self._clock())


class RateLimiter:
    """rpm/tpm buckets and an optional sliding window, checked and charged together."""

    def __init__(
        self,
        rpm: int | None = None,
        tpm: int | None = None,
        window: tuple[int, float] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rpm = TokenBucket(rpm, clock=clock) if rpm else None
        self.tpm = TokenBucket(tpm, clock=clock) if tpm else None
        self.window = SlidingWindow(*window, clock=clock) if window else None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether any limit is set."""
        return bool(self.rpm or self.tpm or self.window)

    def try_acquire(self, tokens: int) -> float:
        """Charge one request of ``tokens`` if every limit allows it now: returns 0.0.

        Otherwise charge nothing and return the seconds to wait before trying again.
        """
        with self._lock:
            waits = [
                self.rpm.wait_time(1) if self.rpm else 0.0,
                self.tpm.wait_time(tokens) if self.tpm else 0.0,
                self.window.wait_time() if self.window else 0.0,
            ]
            wait = max(waits)
            if wait > 0:
                return wait
            if self.rpm:
                self.rpm.take(1)
            if self.tpm:
                self.tpm.take(tokens)
            if self.window:
                self.window.record()
            return 0.0

    def correct(self, estimated: int, actual: int) -> None:
        """Replace a tpm charge of ``estimated`` tokens by the ``actual`` usage."""
        if self.tpm and actual != estimated:
            with self._lock:
                self.tpm.give(estimated - actual)

    async def acquire(self, tokens: int) -> float:
        """Async form of :meth:`try_acquire` (the :class:`Limiter` protocol)."""
        return self.try_acquire(tokens)

    async def acorrect(self, estimated: int, actual: int) -> None:
        """Async form of :meth:`correct` (the :class:`Limiter` protocol)."""
        self.correct(estimated, actual)


class Limiter(Protocol):
    """What the router needs from a rate limiter (local or shared through Redis)."""

    @property
    def enabled(self) -> bool:
        """Whether any limit is set."""
        ...

    async def acquire(self, tokens: int) -> float:
        """Charge one request of ``tokens`` now (returns 0.0) or return the seconds to wait."""
        ...

    async def acorrect(self, estimated: int, actual: int) -> None:
        """Replace a tpm charge of ``estimated`` tokens by the ``actual`` usage."""
        ...
