"""The in-memory backend: an LRU dictionary with TTL."""

from __future__ import annotations

import threading
from collections import OrderedDict

from ..entry import CacheEntry

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """Process-local, thread-safe; at most ``max_entries`` entries (least recently used go first)."""

    def __init__(self, max_entries: int | None = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._lock = threading.Lock()

    async def get(self, exact: str) -> CacheEntry | None:
        """See :class:`~.base.CacheBackend`."""
        with self._lock:
            entry = self._entries.get(exact)
            if entry is None:
                return None
            if entry.expired():
                del self._entries[exact]
                return None
            self._entries.move_to_end(exact)
            return entry

    async def put(self, entry: CacheEntry) -> None:
        """See :class:`~.base.CacheBackend`."""
        with self._lock:
            self._entries[entry.exact] = entry
            self._entries.move_to_end(entry.exact)
            while self.max_entries is not None and len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    async def clear(self) -> None:
        """See :class:`~.base.CacheBackend`."""
        with self._lock:
            self._entries.clear()

    async def size(self) -> int:
        """See :class:`~.base.CacheBackend`."""
        with self._lock:
            return len(self._entries)

    async def aclose(self) -> None:
        """Nothing to release."""
