"""The contract every cache backend fulfils."""

from __future__ import annotations

from typing import Protocol

from ..entry import CacheEntry

__all__ = ["CacheBackend"]


class CacheBackend(Protocol):
    """Stores :class:`CacheEntry` objects by exact key; expired entries are never returned."""

    async def get(self, exact: str) -> CacheEntry | None:
        """The live entry stored under ``exact``, or ``None``."""
        ...

    async def put(self, entry: CacheEntry) -> None:
        """Store or replace ``entry`` (evicting the least recently used beyond the limit)."""
        ...

    async def clear(self) -> None:
        """Remove every entry."""
        ...

    async def size(self) -> int:
        """The number of stored entries."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
