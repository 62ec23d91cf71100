"""The cache: scope and exact keys, storage policy, backends and the engine."""

from .backends import CacheBackend, MemoryBackend, SQLiteBackend, create_backend
from .config import CacheConfig, CacheControl
from .cross_encoder import CrossEncoderVerifier
from .decorators import CachedLLM, cache, clear_cache, get_stats, invalidate
from .engine import CacheEngine, CacheHit, CacheStats
from .entry import CacheEntry
from .scope import CacheKey, cache_key
from .warmup import WarmupEntry

__all__ = [
    "CacheBackend",
    "CacheConfig",
    "CacheControl",
    "CacheEngine",
    "CacheEntry",
    "CacheHit",
    "CacheKey",
    "CacheStats",
    "CachedLLM",
    "CrossEncoderVerifier",
    "MemoryBackend",
    "SQLiteBackend",
    "WarmupEntry",
    "cache",
    "cache_key",
    "clear_cache",
    "create_backend",
    "get_stats",
    "invalidate",
]
