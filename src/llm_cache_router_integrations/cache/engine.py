"""The cache engine shared by the router and both framework adapters.

Lookup: scope (hard filter) -> exact match. Storing follows :mod:`.policy`. A backend failure is a
miss (logged and counted), never a failed request.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from ..types import ChatRequest, LLMResponse
from .backends import CacheBackend, MemoryBackend
from .config import CacheConfig
from .entry import CacheEntry
from .policy import is_cacheable_request, is_cacheable_response
from .scope import cache_key

__all__ = ["CacheEngine", "CacheHit", "CacheStats"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CacheHit:
    """A hit: the stored entry, how it matched and its similarity (1.0 for exact)."""

    entry: CacheEntry
    kind: str
    similarity: float


class CacheStats:
    """Hits, misses, backend errors and saved USD (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self.stores = 0
        self.saved_cost_usd = 0.0

    def hit(self, saved: float) -> None:
        """Count a hit that avoided ``saved`` USD."""
        with self._lock:
            self.hits += 1
            self.saved_cost_usd += saved

    def miss(self) -> None:
        """Count a miss."""
        with self._lock:
            self.misses += 1

    def error(self) -> None:
        """Count a backend error (also counted as a miss by the caller)."""
        with self._lock:
            self.errors += 1

    def stored(self) -> None:
        """Count a stored entry."""
        with self._lock:
            self.stores += 1

    def snapshot(self) -> dict[str, float | int]:
        """The figures as plain values."""
        with self._lock:
            lookups = self.hits + self.misses
            return {
                "hits": self.hits,
                "misses": self.misses,
                "errors": self.errors,
                "stores": self.stores,
                "hit_rate": self.hits / lookups if lookups else 0.0,
                "saved_cost_usd": round(self.saved_cost_usd, 9),
            }


class CacheEngine:
    """Exact-match cache over a backend (the default is in memory)."""

    def __init__(
        self, config: CacheConfig | None = None, backend: CacheBackend | None = None
    ) -> None:
        self.config = config or CacheConfig()
        self.backend: CacheBackend = backend or MemoryBackend(self.config.max_entries)
        self.stats = CacheStats()

    def accepts(self, request: ChatRequest) -> bool:
        """Whether ``request`` may be served from or stored in the cache."""
        return is_cacheable_request(request, self.config)

    async def lookup(
        self, request: ChatRequest, *, namespace: str | None = None
    ) -> CacheHit | None:
        """A stored answer for ``request`` or ``None`` (a backend error is a miss)."""
        key = cache_key(request, namespace or self.config.namespace)
        try:
            entry = await self.backend.get(key.exact)
        except Exception as exc:
            self.stats.error()
            self.stats.miss()
            logger.warning(
                "cache lookup failed, treating as a miss: %s: %s", type(exc).__name__, exc
            )
            return None
        if entry is None or entry.scope != key.scope:
            self.stats.miss()
            return None
        self.stats.hit(entry.cost_usd)
        return CacheHit(entry=entry, kind="exact", similarity=1.0)

    async def store(
        self,
        request: ChatRequest,
        response: LLMResponse,
        *,
        cost_usd: float = 0.0,
        namespace: str | None = None,
    ) -> bool:
        """Store a complete answer if the policy allows it; returns whether it was stored."""
        if response.cache_hit or not (self.accepts(request) and is_cacheable_response(response)):
            return False
        key = cache_key(request, namespace or self.config.namespace)
        now = time.time()
        entry = CacheEntry(
            exact=key.exact,
            scope=key.scope,
            query=key.query,
            response=response.model_copy(update={"raw": {}}),
            cost_usd=cost_usd,
            created_at=now,
            expires_at=None if self.config.ttl is None else now + self.config.ttl,
        )
        try:
            await self.backend.put(entry)
        except Exception as exc:
            self.stats.error()
            logger.warning("cache store failed, answer not cached: %s: %s", type(exc).__name__, exc)
            return False
        self.stats.stored()
        return True

    async def clear(self) -> None:
        """Remove every entry."""
        await self.backend.clear()

    async def aclose(self) -> None:
        """Close the backend."""
        await self.backend.aclose()
