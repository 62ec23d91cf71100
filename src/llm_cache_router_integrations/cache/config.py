"""Cache configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CacheConfig", "CacheControl"]

CacheControl = Literal["default", "no-cache", "no-store"]
"""Per-call cache control: ``no-cache`` skips the lookup (the answer is still stored);
``no-store`` skips both the lookup and storing the answer."""


class CacheConfig(BaseModel):
    """How the router caches answers.

    ``threshold`` is a cosine similarity in [-1, 1] for the semantic layer; ``ttl`` is in seconds
    (``None``: entries never expire); ``max_entries`` bounds the cache with LRU eviction. Only
    deterministic requests are cached by default (``temperature <= max_temperature``; a request
    without a temperature counts as deterministic only when ``cache_unset_temperature`` is true).
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["memory", "sqlite", "redis", "qdrant"] = "memory"
    threshold: float = Field(default=0.9, ge=-1.0, le=1.0)
    ttl: float | None = Field(default=3600.0, gt=0)
    max_entries: int | None = Field(default=10_000, ge=1)
    namespace: str = Field(default="default", min_length=1, max_length=128)
    max_temperature: float = Field(default=0.3, ge=0.0, le=2.0)
    cache_unset_temperature: bool = True
    semantic: bool = True
