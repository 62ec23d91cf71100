"""Cache configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DEFAULT_REDIS_URL", "DEFAULT_SQLITE_PATH", "CacheConfig", "CacheControl"]

DEFAULT_SQLITE_PATH = "llm_cache.sqlite3"
"""The SQLite file used when ``backend="sqlite"`` has no ``path`` (relative to the working dir)."""

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
"""The server used when ``backend="redis"`` has no ``url``."""

CacheControl = Literal["default", "no-cache", "no-store"]
"""Per-call cache control: ``no-cache`` skips the lookup (the answer is still stored);
``no-store`` skips both the lookup and storing the answer."""


class CacheConfig(BaseModel):
    """How the router caches answers.

    ``threshold`` is a cosine similarity in [-1, 1] for the semantic layer; ``ttl`` is in seconds
    (``None``: entries never expire); ``max_entries`` bounds the cache with LRU eviction. Only
    deterministic requests are cached by default (``temperature <= max_temperature``; a request
    without a temperature counts as deterministic only when ``cache_unset_temperature`` is true).

    Where the entries live (filled in when omitted, so the config always names the storage):

    * ``memory``: in the process; ``url`` and ``path`` must be unset;
    * ``sqlite``: the file ``path`` (default :data:`DEFAULT_SQLITE_PATH`); no ``url``;
    * ``redis``: the server ``url`` (default :data:`DEFAULT_REDIS_URL`); keys start with
      ``prefix``; no ``path``;
    * ``qdrant``: a server ``url``, or a local ``path`` (``":memory:"``: in the process, the
      default when neither is given); the collection is named ``prefix``.
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["memory", "sqlite", "redis", "qdrant"] = "memory"
    threshold: float = Field(default=0.80, ge=-1.0, le=1.0)
    ttl: float | None = Field(default=3600.0, gt=0)
    max_entries: int | None = Field(default=10_000, ge=1)
    namespace: str = Field(default="default", min_length=1, max_length=128)
    max_temperature: float = Field(default=0.3, ge=0.0, le=2.0)
    cache_unset_temperature: bool = True
    semantic: bool = True
    top_k: int = Field(
        default=4, ge=1, le=64, description="nearest cached queries checked per lookup"
    )
    ambiguity_margin: float = Field(
        default=0.02,
        ge=0.0,
        le=1.0,
        description=(
            "a semantic hit must be nearer than every other cached query with a different answer "
            "by this much cosine (0: off); needs top_k >= 2"
        ),
    )
    url: str | None = Field(
        default=None,
        min_length=1,
        repr=False,
        description="redis/qdrant server URL (may hold a password: not in the repr)",
    )
    path: str | None = Field(
        default=None, min_length=1, description='sqlite file or qdrant local path (":memory:")'
    )
    prefix: str = Field(
        default="llmcache",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="redis key prefix / qdrant collection name",
    )

    @model_validator(mode="after")
    def _storage_location(self) -> CacheConfig:
        """Check ``url``/``path`` against the backend and fill in the defaults."""
        if self.backend == "memory" and (self.url or self.path):
            raise ValueError("the memory backend takes neither url nor path")
        if self.backend == "sqlite":
            if self.url:
                raise ValueError("the sqlite backend takes a path, not a url")
            if self.path is None:
                self.path = DEFAULT_SQLITE_PATH
        if self.backend == "redis":
            if self.path:
                raise ValueError("the redis backend takes a url, not a path")
            if self.url is None:
                self.url = DEFAULT_REDIS_URL
        if self.backend == "qdrant":
            if self.url and self.path:
                raise ValueError("the qdrant backend takes a url or a path, not both")
            if self.url is None and self.path is None:
                self.path = ":memory:"
        return self
