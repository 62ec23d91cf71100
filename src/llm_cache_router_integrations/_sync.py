"""Sync twins of async APIs that work with or without a running event loop (Jupyter).

Coroutines run on one private event loop in a daemon thread (a "portal"), so a blocking call from
inside a running loop neither needs ``nest_asyncio`` nor re-enters that loop, and connection pools
created for the portal loop are reused across sync calls.

A blocking call made on a thread that runs an event loop (a Jupyter cell) freezes that loop until
it returns. When router calls are in flight as tasks on that loop, they are frozen too, and the
sync call may wait on them (a ``max_concurrency`` slot one of them holds): a deadlock. So when the
call has waited :data:`FROZEN_LOOP_TIMEOUT` seconds, is still queued for a concurrency slot or a
rate-limit token, and such tasks exist, it is cancelled and :class:`SyncCallDeadlockError` names
the fix (``await`` the async method). A call whose request is in flight is never cut short. A sync
call interrupted by ``KeyboardInterrupt`` (or any other exception in the waiting thread) cancels
its coroutine instead of leaving it running on the portal.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import weakref
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, Generic, TypeVar

from .errors import SyncCallDeadlockError

__all__ = [
    "FROZEN_LOOP_TIMEOUT",
    "SyncCallDeadlockError",
    "iterate_sync",
    "run_sync",
    "waiting_for_a_slot",
]

T = TypeVar("T")

FROZEN_LOOP_TIMEOUT = 3.0
"""Seconds a sync call may block a running event loop that has router calls in flight on it."""

_CANCEL_GRACE = 5.0  # how long an interrupted call waits for its coroutine to unwind
_POLL = 0.25  # how often a sync call blocking a running loop checks whether it is stuck

# Tasks queued for a concurrency slot or a rate-limit token (see waiting_for_a_slot): only a sync
# call stuck there can be waiting on the loop it blocks; one whose request is in flight is not.
_waiting_lock = threading.Lock()
_waiting: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()


@contextlib.contextmanager
def waiting_for_a_slot() -> Iterator[None]:
    """Mark the current task as queued for a slot or token while the block runs."""
    task = asyncio.current_task()
    if task is None:
        yield
        return
    with _waiting_lock:
        _waiting.add(task)
    try:
        yield
    finally:
        with _waiting_lock:
            _waiting.discard(task)


def _is_waiting(task: asyncio.Task[Any] | None) -> bool:
    with _waiting_lock:
        return task is not None and task in _waiting


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _portal() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    with _lock:
        if _loop is None or _loop.is_closed() or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="llm-router-sync", daemon=True)
            thread.start()
            _loop, _thread = loop, thread
        return _loop


def _check_thread() -> None:
    if _thread is not None and threading.current_thread() is _thread:
        raise RuntimeError(
            "a sync method was called from code running on the router's own event loop; "
            "use the async method (await ...) there instead"
        )


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _frozen_router_tasks() -> int:
    """Tasks of the event loop running on this thread (other than the current one) that are
    suspended inside this package: a blocking call here freezes them."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return 0
    current = asyncio.current_task(loop)
    frozen = 0
    for task in asyncio.all_tasks(loop):
        if task is current or task.done():
            continue
        if any(f.f_code.co_filename.startswith(_PACKAGE_DIR) for f in task.get_stack()):
            frozen += 1
    return frozen


class _Call(Generic[T]):
    """A coroutine submitted to the portal loop that the waiting thread can cancel and await."""

    def __init__(self, coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> None:
        self._coro = coro
        self._loop = loop
        self._task: asyncio.Task[T] | None = None
        self._abandoned = False
        self._settled = threading.Event()
        self.future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(
            self._run(), loop
        )

    async def _run(self) -> T:
        try:
            self._task = asyncio.current_task()
            if self._abandoned:
                self._coro.close()
                raise asyncio.CancelledError
            return await self._coro
        finally:
            self._settled.set()

    def _cancel_on_loop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def abandon(self) -> None:
        """Cancel the coroutine and wait (bounded) until it has unwound."""
        self._abandoned = True
        try:
            self._loop.call_soon_threadsafe(self._cancel_on_loop)
        except RuntimeError:  # the portal loop is closed: nothing left to cancel
            self._coro.close()
            return
        self._settled.wait(_CANCEL_GRACE)

    def result(self) -> T:
        """Block until the coroutine's result; cancel it if the wait is interrupted."""
        try:
            if _in_running_loop():
                waited = 0.0
                while not concurrent.futures.wait([self.future], timeout=_POLL)[0]:
                    waited += _POLL
                    # Stuck only if queued for a slot or token (a call whose request is in
                    # flight finishes without this loop) while frozen router tasks may hold it.
                    if waited < FROZEN_LOOP_TIMEOUT or not _is_waiting(self._task):
                        continue
                    frozen = _frozen_router_tasks()
                    if frozen:
                        raise SyncCallDeadlockError(
                            "a blocking sync call (complete_sync, stream_sync, ...) was made on "
                            f"a thread whose running event loop has {frozen} router call(s) in "
                            "flight as tasks; blocking the loop froze them and this call was "
                            f"still waiting after {FROZEN_LOOP_TIMEOUT:g}s (e.g. for a "
                            "max_concurrency slot one of them holds). Inside a running event "
                            "loop (Jupyter, async code) use the async methods: "
                            "await router.complete(...), async for ... in router.stream(...)"
                        )
            return self.future.result()
        except BaseException:
            if not self.future.done():
                self.abandon()
            raise


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result, from any thread.

    Raises:
        SyncCallDeadlockError: called inside a running event loop that has router calls in
            flight, and not finished within :data:`FROZEN_LOOP_TIMEOUT` seconds.
    """
    _check_thread()
    return _Call(coro, _portal()).result()


def iterate_sync(agen: AsyncIterator[T]) -> Iterator[T]:
    """Iterate an async iterator from sync code; closing the iterator closes ``agen``."""
    _check_thread()
    loop = _portal()

    async def step() -> tuple[bool, T | None]:
        try:
            return True, await agen.__anext__()
        except StopAsyncIteration:
            return False, None

    finished = False
    try:
        while True:
            ok, item = _Call(step(), loop).result()
            if not ok:
                finished = True
                return
            yield item  # type: ignore[misc]
    finally:
        if not finished:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                _Call(aclose(), loop).result()
