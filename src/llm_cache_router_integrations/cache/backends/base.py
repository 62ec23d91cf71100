"""The contract every cache backend fulfils (memory, SQLite, Redis, Qdrant).

Vectors are L2-normalised ``float32`` arrays of the encoder's dimension; every backend reports
similarity as cosine similarity in ``[-1, 1]`` (converting from its native distance explicitly).
Entries are JSON (:meth:`CacheEntry.to_json`), validated when read back; a corrupt entry is a miss.
Expired entries are never returned. ``max_entries`` bounds each backend with LRU eviction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ..entry import CacheEntry
from ..errors import VectorDimensionError

__all__ = ["CacheBackend", "Vector", "unit_vector"]

Vector = npt.NDArray[np.float32]


def unit_vector(vector: Vector, dim: int | None) -> Vector:
    """``vector`` as a contiguous little-endian float32 row of unit length, checked against ``dim``.

    Raises:
        VectorDimensionError: empty, of another dimension than ``dim``, zero or not finite.
    """
    row = np.ascontiguousarray(np.asarray(vector, dtype="<f4").reshape(-1))
    if row.shape[0] == 0:
        raise VectorDimensionError("empty vector")
    if dim is not None and row.shape[0] != dim:
        raise VectorDimensionError(
            f"vector has dimension {row.shape[0]}, but this cache uses {dim}"
        )
    norm = float(np.linalg.norm(row))
    if not np.isfinite(norm) or norm == 0.0:
        raise VectorDimensionError("a vector must be finite and non-zero")
    unit: Vector = (row / norm).astype("<f4")
    return unit


@runtime_checkable
class CacheBackend(Protocol):
    """Stores :class:`CacheEntry` objects by exact key, with an optional vector for similarity search."""

    async def get(self, exact: str) -> CacheEntry | None:
        """The live entry stored under ``exact`` (refreshing its LRU position), or ``None``."""
        ...

    async def put(self, entry: CacheEntry, vector: Vector | None = None) -> None:
        """Store or replace ``entry`` (evicting the least recently used beyond ``max_entries``)."""
        ...

    async def search(
        self, scope: str, vector: Vector, k: int = 4
    ) -> list[tuple[CacheEntry, float]]:
        """Up to ``k`` live entries of ``scope`` nearest to ``vector``, best first, with cosine similarity."""
        ...

    async def delete(self, exact: str) -> bool:
        """Remove one entry; returns whether it existed."""
        ...

    async def invalidate(self, *, pattern: str | None = None, namespace: str | None = None) -> int:
        """Remove entries whose query matches the glob ``pattern`` and/or whose namespace is given."""
        ...

    async def clear(self) -> None:
        """Remove every entry."""
        ...

    async def size(self) -> int:
        """The number of stored (not yet evicted) entries."""
        ...

    def entries(self) -> AsyncIterator[tuple[CacheEntry, Vector | None]]:
        """Every live entry with its vector (for export)."""
        ...

    async def aclose(self) -> None:
        """Release connections and files."""
        ...
