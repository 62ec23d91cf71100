"""Cache backends."""

from .base import CacheBackend
from .memory import MemoryBackend

__all__ = ["CacheBackend", "MemoryBackend"]
