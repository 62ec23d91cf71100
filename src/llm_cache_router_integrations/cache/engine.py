"""The cache engine shared by the router and both framework adapters.

Lookup pipeline (see ``docs/cache-guard.md``):

1. **scope** — a hard filter: model, every parameter that changes the answer, tools, system
   prompt, earlier turns and namespace (:mod:`.scope`); different scopes never share a hit;
2. **exact** — a canonical hash of scope + last user turn: a hit without embedding anything;
3. **semantic** — embed the last user turn only, find the nearest cached queries *within the
   scope*, keep those at or above ``threshold`` (cosine similarity in ``[-1, 1]``);
4. **verification** — the guard (:mod:`.guard`) rejects candidates whose differences change the
   meaning (numbers, negation, entities, direction, task); the first candidate it accepts is a hit.

Storing follows :mod:`.policy`. A backend or encoder failure is a miss (logged and counted), never a
failed request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from ..types import ChatRequest, LLMResponse
from .backends import CacheBackend, create_backend
from .backends.base import unit_vector
from .config import CacheConfig
from .entry import MAX_ENTRY_BYTES, CacheEntry
from .errors import VectorDimensionError
from .policy import is_cacheable_request, is_cacheable_response
from .scope import CacheKey, cache_key

__all__ = ["CacheEngine", "CacheHit", "CacheStats", "EmbeddingEncoder", "Verifier"]

logger = logging.getLogger(__name__)

_Answer = tuple[str | None, tuple[tuple[str, str], ...]]
"""What a hit would answer: the text and the tool calls (name, arguments)."""


class EmbeddingEncoder(Protocol):
    """What the engine needs from an encoder (see :mod:`.embeddings`)."""

    async def embed(self, texts: Sequence[str]) -> Any:
        """Rows of L2-normalised float32 vectors, one per text."""
        ...


class Verifier(Protocol):
    """What the engine needs from the guard (see :mod:`.guard`).

    A verifier may also define ``async averify(query, candidate, similarity)``; the engine then
    awaits it instead (for model-backed verifiers, see :mod:`.cross_encoder`).
    """

    def verify(self, query: str, candidate: str, similarity: float) -> Any:
        """A verdict with ``ok`` (bool) and ``reason`` (str | None)."""
        ...


@dataclass(frozen=True, slots=True)
class CacheHit:
    """A hit: the stored entry, how it matched and its similarity (1.0 for exact)."""

    entry: CacheEntry
    kind: Literal["exact", "semantic"]
    similarity: float


class CacheStats:
    """Hits, misses, backend errors, guard rejections, saved USD and a latency split (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hits = 0
        self.exact_hits = 0
        self.semantic_hits = 0
        self.misses = 0
        self.errors = 0
        self.stores = 0
        self.guard_rejections = 0
        self.ambiguous_rejections = 0
        self.saved_cost_usd = 0.0
        self.embed_ms = 0.0
        self.search_ms = 0.0
        self.guard_ms = 0.0
        self.semantic_lookups = 0

    def hit(self, saved: float, kind: str = "exact") -> None:
        """Count a hit that avoided ``saved`` USD."""
        with self._lock:
            self.hits += 1
            if kind == "exact":
                self.exact_hits += 1
            else:
                self.semantic_hits += 1
            self.saved_cost_usd += saved

    def miss(self) -> None:
        """Count a miss."""
        with self._lock:
            self.misses += 1

    def error(self) -> None:
        """Count a backend or encoder error (the lookup became a miss)."""
        with self._lock:
            self.errors += 1

    def stored(self) -> None:
        """Count a stored entry."""
        with self._lock:
            self.stores += 1

    def semantic(
        self,
        embed_ms: float,
        search_ms: float,
        guard_ms: float,
        rejections: int,
        ambiguous: int = 0,
    ) -> None:
        """Record the time split of one semantic lookup and the candidates it turned down."""
        with self._lock:
            self.semantic_lookups += 1
            self.embed_ms += embed_ms
            self.search_ms += search_ms
            self.guard_ms += guard_ms
            self.guard_rejections += rejections
            self.ambiguous_rejections += ambiguous

    def snapshot(self) -> dict[str, float | int]:
        """The figures as plain values (latencies are means per semantic lookup, in ms)."""
        with self._lock:
            lookups = self.hits + self.misses
            n = self.semantic_lookups or 1
            return {
                "hits": self.hits,
                "exact_hits": self.exact_hits,
                "semantic_hits": self.semantic_hits,
                "misses": self.misses,
                "errors": self.errors,
                "stores": self.stores,
                "guard_rejections": self.guard_rejections,
                "ambiguous_rejections": self.ambiguous_rejections,
                "hit_rate": self.hits / lookups if lookups else 0.0,
                "saved_cost_usd": round(self.saved_cost_usd, 9),
                "mean_embed_ms": self.embed_ms / n,
                "mean_search_ms": self.search_ms / n,
                "mean_guard_ms": self.guard_ms / n,
            }


def _default_encoder() -> EmbeddingEncoder | None:
    try:
        from .embeddings import default_encoder

        encoder: EmbeddingEncoder = default_encoder()
        return encoder
    except Exception as exc:  # semantic search is optional: fall back to exact matching
        logger.warning("semantic cache disabled (exact matches only): %s", exc)
        return None


def _default_guard() -> Verifier | None:
    try:
        from .guard import VerificationGuard

        guard: Verifier = VerificationGuard()
        return guard
    except ImportError:
        return None


class CacheEngine:
    """Exact and semantic cache over a backend (the default is in memory).

    Args:
        config: thresholds, TTL, size, namespace and storage policy.
        backend: a :class:`CacheBackend`; default: built from ``config.backend``.
        encoder: an encoder with ``async embed(texts)``; default: all-MiniLM-L6-v2 when
            sentence-transformers is installed (loaded on first use), else exact matching only.
        guard: the verification guard; ``None`` means the default guard, ``False`` disables it.
    """

    def __init__(
        self,
        config: CacheConfig | None = None,
        backend: CacheBackend | None = None,
        *,
        encoder: EmbeddingEncoder | None = None,
        guard: Verifier | Literal[False] | None = None,
    ) -> None:
        self.config = config or CacheConfig()
        self.backend: CacheBackend = backend or _make_backend(self.config)
        self._encoder = encoder
        self._encoder_resolved = encoder is not None or not self.config.semantic
        self.guard: Verifier | None = None if guard is False else (guard or _default_guard())
        self.stats = CacheStats()
        self._lock = threading.Lock()

    @property
    def encoder(self) -> EmbeddingEncoder | None:
        """The encoder, resolved on first use (``None``: exact matching only)."""
        if not self._encoder_resolved:
            with self._lock:
                if not self._encoder_resolved:
                    self._encoder = _default_encoder()
                    self._encoder_resolved = True
        return self._encoder

    def accepts(self, request: ChatRequest) -> bool:
        """Whether ``request`` may be served from or stored in the cache."""
        return is_cacheable_request(request, self.config)

    def key(self, request: ChatRequest, namespace: str | None = None) -> CacheKey:
        """The cache key of ``request`` in ``namespace`` (default: the configured one)."""
        return cache_key(request, namespace or self.config.namespace)

    def _semantic_ok(self, request: ChatRequest, key: CacheKey) -> bool:
        if not (self.config.semantic and key.query.strip()):
            return False
        if not getattr(self.backend, "supports_vectors", True):
            return False  # e.g. a Redis server without the query engine: exact matches only
        last = next((m for m in reversed(request.messages) if m.role == "user"), None)
        # Text similarity cannot judge images or audio: media questions only hit exactly.
        return (
            last is None
            or isinstance(last.content, str)
            or all(b.type == "text" for b in last.blocks())
        )

    async def _embed(self, text: str) -> np.ndarray | None:
        encoder = self.encoder
        if encoder is None:
            return None
        matrix = np.asarray(await encoder.embed([text]), dtype=np.float32)
        vector: np.ndarray = matrix[0]
        return vector

    async def lookup(
        self, request: ChatRequest, *, namespace: str | None = None
    ) -> CacheHit | None:
        """A stored answer for ``request`` or ``None``; any backend/encoder error is a miss."""
        key = self.key(request, namespace)
        try:
            hit = await self._lookup(request, key)
        except Exception as exc:
            self.stats.error()
            self.stats.miss()
            logger.warning(
                "cache lookup failed, treating as a miss: %s: %s", type(exc).__name__, exc
            )
            return None
        if hit is None:
            self.stats.miss()
        else:
            self.stats.hit(hit.entry.cost_usd, hit.kind)
        return hit

    async def peek(
        self, request: ChatRequest, *, namespace: str | None = None
    ) -> CacheEntry | None:
        """The entry stored under ``request``'s exact key, counting neither a hit nor a miss.

        For callers that only need to know whether an answer is cached (warm-up). A backend
        error is logged, counted in ``stats.errors`` and treated as "not cached".
        """
        key = self.key(request, namespace)
        try:
            entry = await self.backend.get(key.exact)
        except Exception as exc:
            self.stats.error()
            logger.warning(
                "cache lookup failed, treating as not cached: %s: %s", type(exc).__name__, exc
            )
            return None
        return entry if entry is not None and entry.scope == key.scope else None

    def lookup_exact_nowait(
        self, request: ChatRequest, *, namespace: str | None = None
    ) -> CacheHit | None:
        """An exact hit without awaiting, when the backend can answer without I/O (in memory).

        ``None`` means "not known here" (no such entry, or a backend that needs I/O): the caller
        then runs :meth:`lookup`, which counts the miss; a hit is counted here.
        """
        get_nowait = getattr(self.backend, "get_nowait", None)
        if get_nowait is None:
            return None
        key = self.key(request, namespace)
        try:
            entry = get_nowait(key.exact)
        except Exception:  # the full lookup will log and count it
            return None
        if entry is None or entry.scope != key.scope:
            return None
        self.stats.hit(entry.cost_usd, "exact")
        return CacheHit(entry=entry, kind="exact", similarity=1.0)

    async def _lookup(self, request: ChatRequest, key: CacheKey) -> CacheHit | None:
        entry = await self.backend.get(key.exact)
        if entry is not None and entry.scope == key.scope:
            return CacheHit(entry=entry, kind="exact", similarity=1.0)
        if not self._semantic_ok(request, key):
            return None
        started = time.perf_counter()
        vector = await self._embed(key.query)
        if vector is None:
            return None
        embedded = time.perf_counter()
        candidates = await self.backend.search(key.scope, vector, self.config.top_k)
        searched = time.perf_counter()
        rejections = ambiguous = 0
        hit: CacheHit | None = None
        ranked = [(c, s) for c, s in candidates if c.scope == key.scope]  # defence in depth
        answers: list[_Answer] = []  # each candidate's answer, once, when the margin needs them
        for index, (candidate, similarity) in enumerate(ranked):
            if similarity < self.config.threshold:
                break
            if self.config.ambiguity_margin > 0 and not answers:
                answers = [_answer_of(c) for c, _ in ranked]
            if answers and self._ambiguous(ranked, answers, index):
                ambiguous += 1
                continue
            if self.guard is not None and not (
                await self._verify(key.query, candidate.query, similarity)
            ):
                rejections += 1
                continue
            hit = CacheHit(entry=candidate, kind="semantic", similarity=float(similarity))
            break
        done = time.perf_counter()
        self.stats.semantic(
            (embedded - started) * 1000,
            (searched - embedded) * 1000,
            (done - searched) * 1000,
            rejections,
            ambiguous,
        )
        return hit

    def _ambiguous(
        self, ranked: list[tuple[CacheEntry, float]], answers: list[_Answer], index: int
    ) -> bool:
        """Whether another cached query with a different answer is about as near as ``index``.

        The nearest candidate must be nearer than every other one that answers differently by
        at least ``ambiguity_margin`` (a ratio test): a query close to two different cached
        questions is ambiguous, and serving either answer is a guess.
        """
        similarity = ranked[index][1] - self.config.ambiguity_margin
        return any(
            other_similarity > similarity and answers[position] != answers[index]
            for position, (_, other_similarity) in enumerate(ranked)
            if position != index
        )

    async def _verify(self, query: str, candidate: str, similarity: float) -> bool:
        """The guard's decision; a verifier with ``averify`` (a model) is awaited off the loop."""
        averify = getattr(self.guard, "averify", None)
        if averify is not None:
            verdict = await averify(query, candidate, similarity)
        else:
            verdict = self.guard.verify(query, candidate, similarity)  # type: ignore[union-attr]
        return bool(verdict.ok)

    async def store(
        self,
        request: ChatRequest,
        response: LLMResponse,
        *,
        cost_usd: float = 0.0,
        namespace: str | None = None,
    ) -> bool:
        """Store a complete answer if the policy allows it; returns whether it was stored.

        An answer whose entry would exceed ``MAX_ENTRY_BYTES`` (1 MB of JSON) is not stored
        (logged at INFO, not counted as an error): no backend could ever serve it back.
        """
        if response.cache_hit or not (self.accepts(request) and is_cacheable_response(response)):
            return False
        key = self.key(request, namespace)
        now = time.time()
        entry = CacheEntry(
            exact=key.exact,
            scope=key.scope,
            query=key.query,
            namespace=namespace or self.config.namespace,
            response=response.model_copy(update={"raw": {}}),
            cost_usd=cost_usd,
            created_at=now,
            expires_at=None if self.config.ttl is None else now + self.config.ttl,
        )
        try:
            if entry.oversized():
                logger.info(
                    "answer not cached: its cache entry exceeds %d bytes of JSON", MAX_ENTRY_BYTES
                )
                return False
            vector = await self._embed(key.query) if self._semantic_ok(request, key) else None
            await self.backend.put(entry, vector)
        except Exception as exc:
            self.stats.error()
            logger.warning("cache store failed, answer not cached: %s: %s", type(exc).__name__, exc)
            return False
        self.stats.stored()
        return True

    async def invalidate(self, *, pattern: str | None = None, namespace: str | None = None) -> int:
        """Remove entries whose query matches the glob ``pattern`` and/or in ``namespace``."""
        return await self.backend.invalidate(pattern=pattern, namespace=namespace)

    async def clear(self) -> None:
        """Remove every entry."""
        await self.backend.clear()

    async def export_jsonl(self, path: str | Path) -> int:
        """Write every live entry (with its vector) as JSON lines; returns how many.

        Text stays UTF-8, except U+0085, U+2028 and U+2029, which are written as JSON escapes:
        many line readers (Python's ``str.splitlines``, JavaScript) break lines on them.
        """
        lines = [
            json.dumps(
                {
                    "entry": json.loads(entry.to_json()),
                    "vector": None if vector is None else vector.tolist(),
                },
                ensure_ascii=False,
            ).translate(_LINE_BREAKS_ESCAPED)
            async for entry, vector in self.backend.entries()
        ]
        text = "".join(line + "\n" for line in lines)
        await asyncio.to_thread(Path(path).write_text, text, encoding="utf-8")
        return len(lines)

    async def import_jsonl(self, path: str | Path) -> tuple[int, int]:
        """Load entries written by :meth:`export_jsonl`; invalid or expired lines are skipped.

        Returns ``(imported, skipped)``. Nothing is unpickled or evaluated: each line is JSON,
        validated as a :class:`CacheEntry`. A line is skipped when it is not such JSON, when its
        entry has expired or exceeds ``MAX_ENTRY_BYTES``, or when its vector is empty, zero, not
        finite or of another dimension than the backend's. Lines end at ``\\n`` only. A backend
        outage is raised (:class:`~.errors.CacheBackendError` or the client's own error).
        """
        text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
        imported = skipped = 0
        for line in text.split("\n"):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                entry = CacheEntry.model_validate(data["entry"])
                raw = data.get("vector")
                vector = (
                    None if raw is None else unit_vector(np.asarray(raw, dtype=np.float32), None)
                )
            except (ValueError, KeyError, TypeError):  # VectorDimensionError is a ValueError
                skipped += 1
                continue
            if entry.expired() or entry.oversized():
                skipped += 1
                continue
            try:
                await self.backend.put(entry, vector)
            except VectorDimensionError:
                skipped += 1
                continue
            imported += 1
        return imported, skipped

    async def size(self) -> int:
        """The number of stored entries."""
        return await self.backend.size()

    async def aclose(self) -> None:
        """Close the backend.

        The encoder is left open: one passed in belongs to the caller (several engines may share
        it), and the default one is shared by every engine of the process. Close an encoder you
        created with its own ``aclose()`` once no engine uses it.
        """
        await self.backend.aclose()


_LINE_BREAKS_ESCAPED = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}
"""Line breaks other than ``\\n`` that JSON leaves raw inside strings, as JSON escapes."""


def _answer_of(entry: CacheEntry) -> _Answer:
    """What a hit on ``entry`` would answer: its text and tool calls (usage and timing aside)."""
    response = entry.response
    calls = tuple((c.function.name, c.function.arguments) for c in response.tool_calls)
    return response.content, calls


def _make_backend(config: CacheConfig) -> CacheBackend:
    return create_backend(config)
