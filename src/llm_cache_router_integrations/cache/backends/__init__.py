"""Cache backends and the factory that builds one from a :class:`CacheConfig`.

``memory`` and ``sqlite`` need nothing beyond the core dependencies (``faiss-cpu`` adds vector
search to ``memory``); ``redis`` and ``qdrant`` are imported only when configured, so their client
libraries stay optional.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import CacheBackend, Vector
from .memory import MemoryBackend
from .sqlite import SQLiteBackend

if TYPE_CHECKING:
    from ..config import CacheConfig

__all__ = ["CacheBackend", "MemoryBackend", "SQLiteBackend", "Vector", "create_backend"]


def create_backend(config: CacheConfig, *, dim: int | None = None) -> CacheBackend:
    """The backend ``config.backend`` names, bounded by ``config.max_entries``.

    ``dim`` is the encoder's vector dimension when known (otherwise taken from the first vector).
    The storage location comes from ``config.path`` / ``config.url`` / ``config.prefix``, whose
    defaults :class:`CacheConfig` fills in.
    """
    kind = config.backend
    if kind == "memory":
        return MemoryBackend(max_entries=config.max_entries, dim=dim)
    if kind == "sqlite":
        assert config.path is not None  # CacheConfig fills in the default file
        return SQLiteBackend(config.path, max_entries=config.max_entries, dim=dim)
    if kind == "redis":
        from .redis import RedisBackend

        assert config.url is not None  # CacheConfig fills in the default server
        redis_backend: CacheBackend = RedisBackend(
            url=config.url, prefix=config.prefix, max_entries=config.max_entries, dim=dim
        )
        return redis_backend
    if kind == "qdrant":
        from .qdrant import QdrantBackend

        qdrant_backend: CacheBackend
        if config.url is not None:
            qdrant_backend = QdrantBackend(
                url=config.url, collection=config.prefix, max_entries=config.max_entries, dim=dim
            )
        elif config.path is None or config.path == ":memory:":
            qdrant_backend = QdrantBackend(
                location=":memory:",
                collection=config.prefix,
                max_entries=config.max_entries,
                dim=dim,
            )
        else:
            qdrant_backend = QdrantBackend(
                path=config.path, collection=config.prefix, max_entries=config.max_entries, dim=dim
            )
        return qdrant_backend
    raise ValueError(f"unknown cache backend {kind!r}")
