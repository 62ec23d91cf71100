"""Sync twins of async APIs that work with or without a running event loop (Jupyter).

Coroutines run on one private event loop in a daemon thread (a "portal"), so a blocking call from
inside a running loop neither needs ``nest_asyncio`` nor re-enters that loop, and connection pools
created for the portal loop are reused across sync calls.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["iterate_sync", "run_sync"]

T = TypeVar("T")

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


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result, from any thread."""
    _check_thread()
    return asyncio.run_coroutine_threadsafe(coro, _portal()).result()


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
            ok, item = asyncio.run_coroutine_threadsafe(step(), loop).result()
            if not ok:
                finished = True
                return
            yield item  # type: ignore[misc]
    finally:
        if not finished:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                asyncio.run_coroutine_threadsafe(aclose(), loop).result()
