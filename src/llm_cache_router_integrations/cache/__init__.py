"""The cache: scope and exact keys, storage policy, backends and the engine."""

from .backends import CacheBackend, MemoryBackend
from .config import CacheConfig, CacheControl
from .engine import CacheEngine, CacheHit, CacheStats
from .entry import CacheEntry
from .scope import CacheKey, cache_key

__all__ = [
    "CacheBackend",
    "CacheConfig",
    "CacheControl",
    "CacheEngine",
    "CacheEntry",
    "CacheHit",
    "CacheKey",
    "CacheStats",
    "MemoryBackend",
    "cache_key",
]
