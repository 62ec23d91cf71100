"""Per-deployment concurrency with a priority queue and backpressure.

At most ``max_concurrency`` calls run at once; further calls wait in a queue ordered by priority
(then arrival). When ``max_queue_depth`` calls already wait, :meth:`PriorityGate.acquire` raises
:class:`QueueFullError` at once so the router can try the next candidate. The gate is thread-safe
and works across event loops (a sync twin and an async caller may share it).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from dataclasses import dataclass, field

from .._sync import waiting_for_a_slot

__all__ = ["PriorityGate", "QueueFullError"]


class QueueFullError(Exception):
    """The deployment's queue is full (internal signal: the router falls back)."""


@dataclass(order=True)
class _Waiter:
    priority: int
    seq: int
    loop: asyncio.AbstractEventLoop = field(compare=False)
    future: asyncio.Future[None] = field(compare=False)
    granted: bool = field(default=False, compare=False)  # release() handed it the slot


class PriorityGate:
    """``None`` limits mean unbounded; ``max_queue_depth=0`` means no waiting at all."""

    def __init__(
        self, max_concurrency: int | None = None, max_queue_depth: int | None = None
    ) -> None:
        self.max_concurrency = max_concurrency
        self.max_queue_depth = max_queue_depth
        self._active = 0
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self.max_seen_active = 0

    @property
    def active(self) -> int:
        """Calls holding a slot now."""
        return self._active

    @property
    def queued(self) -> int:
        """Calls waiting for a slot now."""
        return len(self._waiters)

    async def acquire(self, priority: int = 2) -> None:
        """Take a slot, waiting in priority order; raise :class:`QueueFullError` when full."""
        if self.max_concurrency is None:
            with self._lock:
                self._active += 1
                self.max_seen_active = max(self.max_seen_active, self._active)
            return
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._active < self.max_concurrency and not self._waiters:
                self._active += 1
                self.max_seen_active = max(self.max_seen_active, self._active)
                return
            if self.max_queue_depth is not None and len(self._waiters) >= self.max_queue_depth:
                raise QueueFullError
            waiter = _Waiter(int(priority), next(self._seq), loop, loop.create_future())
            heapq.heappush(self._waiters, waiter)
        try:
            with waiting_for_a_slot():
                await waiter.future
        except asyncio.CancelledError:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    heapq.heapify(self._waiters)
                    raise
                granted = waiter.granted
            if granted:
                # The slot was handed to us just as we were cancelled: pass it on.
                self.release()
            # Otherwise release() saw us cancelled, skipped us and kept the slot: nothing is ours.
            raise

    def release(self) -> None:
        """Give the slot back, to the best waiter if there is one."""
        with self._lock:
            while self._waiters:
                waiter = heapq.heappop(self._waiters)
                if waiter.future.done():
                    continue
                # The slot moves to the waiter directly: ``_active`` stays the same.
                waiter.granted = True
                waiter.loop.call_soon_threadsafe(_wake, waiter.future)
                return
            self._active = max(self._active - 1, 0)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
