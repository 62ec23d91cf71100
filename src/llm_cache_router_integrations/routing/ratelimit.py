"""Rate limits per deployment: rpm and tpm token buckets plus a sliding-window request limit.

The tpm bucket is charged with the tiktoken estimate before a call and corrected with the real
usage afterwards. A limited deployment is either skipped (the router tries the next candidate) or
waited for, as configured per deployment. Calls waiting for a deployment's limit queue in a
:class:`LimitQueue`: only the best waiter (by priority, then arrival) asks the limiter, so the next
free request goes to it rather than to whichever waiter wakes first.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .._sync import waiting_for_a_slot
from ..errors import ConfigurationError

__all__ = ["LimitQueue", "Limiter", "RateLimiter", "SlidingWindow", "TokenBucket"]


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
        if not limit >= 1 or not window > 0:
            raise ConfigurationError(
                f"window: (requests, seconds) needs requests >= 1 and seconds > 0, got "
                f"({limit!r}, {window!r}); use e.g. window=(10, 1.0) for 10 requests per second"
            )
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


@dataclass(order=True)
class _LimitWaiter:
    priority: int
    seq: int
    loop: asyncio.AbstractEventLoop = field(compare=False)
    future: asyncio.Future[None] | None = field(default=None, compare=False)
    nudged: bool = field(default=False, compare=False)  # woken while not asleep


class LimitQueue:
    """Waiters for one deployment's rate limit, served by priority (lower value first), then arrival.

    Only the head waiter asks the limiter; it sleeps for the wait the limiter returned, and wakes
    the next head when it leaves (served, gave up or cancelled). Thread-safe and works across event
    loops, like :class:`~.gate.PriorityGate`.
    """

    def __init__(self) -> None:
        self._waiters: list[_LimitWaiter] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()

    @property
    def queued(self) -> int:
        """Calls waiting for the limit now."""
        return len(self._waiters)

    async def acquire(
        self, limiter: Limiter, tokens: int, priority: int = 2, until: float | None = None
    ) -> bool:
        """Charge one request of ``tokens`` on ``limiter`` in turn: ``True`` once charged, ``False``
        (nothing charged) when it would not happen before ``until`` (a ``time.monotonic()`` time)."""
        with self._lock:
            idle = not self._waiters
        if idle and await limiter.acquire(tokens) == 0:
            return True
        loop = asyncio.get_running_loop()
        with self._lock:
            waiter = _LimitWaiter(int(priority), next(self._seq), loop)
            heapq.heappush(self._waiters, waiter)
        try:
            with waiting_for_a_slot():
                while True:
                    with self._lock:
                        head = self._waiters[0] is waiter
                    left = None if until is None else until - time.monotonic()
                    if head:
                        wait = await limiter.acquire(tokens)
                        if wait == 0:
                            return True
                        if left is not None and wait > left:
                            return False
                        await self._sleep(waiter, wait)
                    else:
                        if left is not None and left <= 0:
                            return False
                        await self._sleep(waiter, left)
        finally:
            with self._lock:
                self._waiters.remove(waiter)
                heapq.heapify(self._waiters)
                if self._waiters:
                    self._nudge(self._waiters[0])

    def _nudge(self, waiter: _LimitWaiter) -> None:
        """Wake ``waiter`` (it is the head now); call with the lock held."""
        if waiter.future is not None:
            waiter.loop.call_soon_threadsafe(_wake, waiter.future)
        else:
            waiter.nudged = True

    async def _sleep(self, waiter: _LimitWaiter, timeout: float | None) -> None:
        """Sleep up to ``timeout`` seconds or until nudged."""
        with self._lock:
            if waiter.nudged:
                waiter.nudged = False
                return
            future = waiter.future = waiter.loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            pass
        finally:
            with self._lock:
                waiter.future = None
                waiter.nudged = False


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
