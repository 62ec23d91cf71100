"""The in-memory backend: an LRU dictionary with TTL, plus FAISS vector search partitioned by scope.

Layout:

* an ``OrderedDict`` from exact key to a small slot (LRU order: least recently used first); the
  entry is kept as compact JSON bytes (without ``exact`` and ``scope``, which the slot holds), so a
  read returns a fresh, validated :class:`CacheEntry` the caller may mutate freely;
* one FAISS index per scope (*partition*), searched only for that scope, so a lookup never sees
  another scope's vectors. Vectors live only inside FAISS (``reconstruct`` serves the export).
  A partition starts as an exact ``IndexIDMap2(IndexFlatIP)`` and switches to
  ``IndexHNSWFlat`` (inner product) once it holds more than ``hnsw_threshold`` vectors.
  Vectors are L2-normalised, so inner product is cosine similarity.

Deletions remove the vector at once from a flat partition (``remove_ids``); HNSW cannot remove, so
a deleted vector becomes a tombstone (skipped by searches) and the partition is rebuilt from its
live vectors once tombstones exceed 20 % of it. A rebuild runs in the calling thread, holds the
lock and briefly needs room for both indexes; it costs what inserting the live vectors costs
(HNSW inserts ~1-2k 384-d vectors/s on two cores: about a minute per 100k vectors). So a huge
partition under steady eviction pauses now and then: at millions of entries with churn, prefer
the Redis or Qdrant backend.

FAISS (``faiss-cpu``, the ``semantic`` extra) is imported on the first vector; without it the
backend still caches exactly, drops vectors with a warning and finds no similar entries.
"""

from __future__ import annotations

import fnmatch
import heapq
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import numpy as np
import pydantic_core

from ...errors import ConfigurationError
from ..entry import MAX_ENTRY_BYTES, CacheEntry
from ..errors import VectorDimensionError
from .base import Vector, unit_vector

__all__ = ["MemoryBackend"]

logger = logging.getLogger(__name__)

_KEYS_IN_SLOT = frozenset({"exact", "scope"})
_HNSW_TOMBSTONE_RATIO = 0.2
_FLAT_COMPACT_MIN_HOLES = 1024
_EXPIRY_HEAP_SLACK = 64


def _load_faiss() -> Any:
    import faiss

    return faiss


class _Slot:
    """One stored entry: its keys, its JSON (without the keys) and where its vector is."""

    __slots__ = ("exact", "expires_at", "label", "namespace", "payload", "scope")

    def __init__(
        self, exact: str, scope: str, namespace: str, payload: bytes, expires_at: float | None
    ) -> None:
        self.exact = exact
        self.scope = scope
        self.namespace = namespace
        self.payload = payload
        self.expires_at = expires_at
        self.label = -1

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def _pack(entry: CacheEntry) -> bytes:
    # Defaults are left out (validation restores them): about half the bytes of a typical entry.
    return entry.model_dump_json(exclude=set(_KEYS_IN_SLOT), exclude_defaults=True).encode()


def _unpack(exact: str, scope: str, payload: bytes) -> CacheEntry | None:
    """The validated entry, or ``None`` when the stored JSON is malformed."""
    if len(payload) > MAX_ENTRY_BYTES:
        return None
    try:
        data = pydantic_core.from_json(payload)
        if not isinstance(data, dict):
            return None
        data["exact"] = exact
        data["scope"] = scope
        return CacheEntry.model_validate(data)
    except ValueError:
        return None


def _query_of(payload: bytes) -> str | None:
    try:
        data = pydantic_core.from_json(payload)
    except ValueError:
        return None
    query = data.get("query") if isinstance(data, dict) else None
    return query if isinstance(query, str) else None


def _normalised(vector: Vector, dim: int | None) -> Vector:
    """``vector`` as a contiguous ``(1, dim)`` float32 row of unit length (FAISS's query shape)."""
    return unit_vector(vector, dim).reshape(1, -1)


class _Partition:
    """The vectors of one scope. Label ``i`` is ``members[i]`` (``None``: deleted)."""

    def __init__(self, backend: MemoryBackend, dim: int) -> None:
        self.backend = backend
        self.dim = dim
        self.members: list[_Slot | None] = []
        self.live = 0
        self.hnsw = False
        self.index: Any = self._new_index(hnsw=False)

    def _new_index(self, *, hnsw: bool) -> Any:
        faiss = _load_faiss()
        if not hnsw:
            return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        # Labels are positions: HNSW never removes, so positions stay stable until a rebuild.
        index = faiss.IndexHNSWFlat(self.dim, self.backend.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.backend.ef_construction
        index.hnsw.efSearch = self.backend.ef_search
        return index

    @property
    def size(self) -> int:
        """Vectors in the index (live and tombstoned)."""
        return int(self.index.ntotal)

    def add(self, slots: Sequence[_Slot], vectors: Vector) -> None:
        first = len(self.members)
        labels = np.arange(first, first + len(slots), dtype=np.int64)
        if self.hnsw:
            self.index.add(vectors)
        else:
            self.index.add_with_ids(vectors, labels)
        for offset, slot in enumerate(slots):
            slot.label = first + offset
        self.members.extend(slots)
        self.live += len(slots)
        if not self.hnsw and self.live > self.backend.hnsw_threshold:
            self.rebuild(hnsw=True)

    def remove(self, slots: Iterable[_Slot]) -> None:
        labels = []
        for slot in slots:
            if 0 <= slot.label < len(self.members) and self.members[slot.label] is slot:
                self.members[slot.label] = None
                labels.append(slot.label)
            slot.label = -1
        if not labels:
            return
        self.live -= len(labels)
        if not self.hnsw:
            self.index.remove_ids(np.asarray(labels, dtype=np.int64))
        if self.live == 0:
            return
        holes = len(self.members) - self.live
        if self.hnsw:
            if holes > _HNSW_TOMBSTONE_RATIO * len(self.members):
                threshold = self.backend.hnsw_threshold
                self.rebuild(hnsw=self.live > threshold // 2)
        elif holes > max(_FLAT_COMPACT_MIN_HOLES, self.live):
            self.rebuild(hnsw=False)

    def reconstruct(self, labels: Sequence[int]) -> Vector:
        out: Vector = self.index.reconstruct_batch(np.asarray(labels, dtype=np.int64))
        return out

    def rebuild(self, *, hnsw: bool) -> None:
        """A fresh index of the live vectors only, labelled ``0..live-1``."""
        live = [slot for slot in self.members if slot is not None]
        old = self.index
        new = self._new_index(hnsw=hnsw)
        chunk = 65_536
        for start in range(0, len(live), chunk):
            part = live[start : start + chunk]
            vectors = old.reconstruct_batch(np.asarray([s.label for s in part], dtype=np.int64))
            if hnsw:
                new.add(vectors)
            else:
                new.add_with_ids(vectors, np.arange(start, start + len(part), dtype=np.int64))
        for label, slot in enumerate(live):
            slot.label = label
        self.members = list(live)
        self.live = len(live)
        self.index = new
        self.hnsw = hnsw

    def search(self, query: Vector, n: int) -> tuple[Any, Any]:
        faiss = _load_faiss()
        # One query gains nothing from OpenMP threads; waking them costs more than a flat search
        # (milliseconds of tail latency on a busy machine). The setting is per calling thread.
        threads = faiss.omp_get_max_threads()
        if threads != 1:
            faiss.omp_set_num_threads(1)
        try:
            if self.hnsw:
                params = faiss.SearchParametersHNSW()
                params.efSearch = max(self.backend.ef_search, n)
                scores, labels = self.index.search(query, n, params=params)
            else:
                scores, labels = self.index.search(query, n)
        finally:
            if threads != 1:
                faiss.omp_set_num_threads(threads)
        return scores[0], labels[0]


class MemoryBackend:
    """Process-local and thread-safe; at most ``max_entries`` entries (least recently used go first).

    Args:
        max_entries: the LRU bound (``None``: unbounded).
        dim: the vector dimension (``None``: taken from the first vector stored).
        hnsw_threshold: a scope's partition switches from exact flat search to HNSW above this
            many vectors.
        hnsw_m: HNSW graph degree (memory per vector: ``4 * dim + 8 * hnsw_m`` bytes).
        ef_search: HNSW search breadth (raised to ``k`` when larger); more is slower and more exact.
        ef_construction: HNSW build breadth.

    Reading (``get`` or being returned by ``search``) refreshes an entry's LRU position. Expired
    entries are removed when met, and first when the bound is exceeded (before live ones). With
    384-d vectors, a search takes ~0.35 ms in a 10k flat partition and ~0.6 ms (p50) in a
    million-vector HNSW partition, whose process needs ~2.4 GiB
    (``benchmarks/bench_backend_scale.py``).
    """

    def __init__(
        self,
        max_entries: int | None = 10_000,
        dim: int | None = None,
        hnsw_threshold: int = 20_000,
        *,
        hnsw_m: int = 32,
        ef_search: int = 64,
        ef_construction: int = 64,
    ) -> None:
        if max_entries is not None and max_entries < 1:
            raise ConfigurationError("max_entries must be at least 1 (or None for no bound)")
        if dim is not None and dim < 1:
            raise ConfigurationError("dim must be a positive integer")
        if hnsw_threshold < 1 or hnsw_m < 2 or ef_search < 1 or ef_construction < 1:
            raise ConfigurationError("HNSW parameters must be positive (hnsw_m at least 2)")
        self.max_entries = max_entries
        self.dim = dim
        self.hnsw_threshold = hnsw_threshold
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.ef_construction = ef_construction
        self._entries: OrderedDict[str, _Slot] = OrderedDict()
        self._partitions: dict[str, _Partition] = {}
        # The keys of entries with a TTL by expiry time, so eviction finds the expired ones
        # without scanning every entry. Lazily pruned: a key replaced or removed since stays
        # until it is popped (then checked against the current entry) or the heap is rebuilt.
        self._expiry: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._faiss_ok: bool | None = None

    # -- internals (the caller holds the lock) ----------------------------------------------

    def _vectors_enabled(self) -> bool:
        if self._faiss_ok is None:
            try:
                _load_faiss()
                self._faiss_ok = True
            except ImportError:
                self._faiss_ok = False
                logger.warning(
                    "faiss is not installed: the memory cache stores exact matches only "
                    "(install the 'semantic' extra for similarity search)"
                )
        return self._faiss_ok

    def _partition(self, scope: str) -> _Partition:
        partition = self._partitions.get(scope)
        if partition is None:
            assert self.dim is not None
            partition = self._partitions[scope] = _Partition(self, self.dim)
        return partition

    def _unindex(self, slots: Iterable[_Slot]) -> None:
        """Remove the vectors of ``slots`` (already gone from the dictionary)."""
        by_scope: dict[str, list[_Slot]] = {}
        for slot in slots:
            if slot.label >= 0:
                by_scope.setdefault(slot.scope, []).append(slot)
        for scope, group in by_scope.items():
            partition = self._partitions.get(scope)
            if partition is None:
                continue
            partition.remove(group)
            if partition.live == 0:
                del self._partitions[scope]

    def _discard(self, slots: Iterable[_Slot]) -> None:
        """Remove ``slots`` that are still the current entries of their keys."""
        gone = []
        for slot in slots:
            if self._entries.get(slot.exact) is slot:
                del self._entries[slot.exact]
                gone.append(slot)
        self._unindex(gone)

    def _track_expiry(self, slot: _Slot) -> None:
        """Remember when ``slot`` expires (a heap rebuilt once stale items dominate it)."""
        if slot.expires_at is None:
            return
        heapq.heappush(self._expiry, (slot.expires_at, slot.exact))
        # Stale items are at most a quarter of the live entries (or a few dozen): a rebuild costs
        # O(entries) once per entries/4 puts, and the heap's memory stays flat.
        live = len(self._entries)
        if len(self._expiry) > live + max(_EXPIRY_HEAP_SLACK, live // 4):
            self._expiry = [
                (s.expires_at, s.exact) for s in self._entries.values() if s.expires_at is not None
            ]
            heapq.heapify(self._expiry)

    def _evict(self) -> None:
        if self.max_entries is None or len(self._entries) <= self.max_entries:
            return
        now = time.time()
        expired = []
        while self._expiry and self._expiry[0][0] <= now:
            slot = self._entries.get(heapq.heappop(self._expiry)[1])
            if slot is not None and slot.expired(now):
                expired.append(slot)
        self._discard(expired)  # expired entries go first, however recently used
        victims = []
        while len(self._entries) > self.max_entries:
            victims.append(self._entries.popitem(last=False)[1])
        self._unindex(victims)

    def _insert(self, items: Sequence[tuple[_Slot, Vector | None]]) -> None:
        """Store prepared slots (vectors already normalised and checked), then evict."""
        batches: dict[str, tuple[list[_Slot], list[Vector]]] = {}
        for slot, vector in items:
            old = self._entries.pop(slot.exact, None)
            if old is not None:
                self._unindex([old])
            self._entries[slot.exact] = slot
            self._track_expiry(slot)
            if vector is not None:
                if self.dim is None:
                    self.dim = int(vector.shape[1])
                slots, vectors = batches.setdefault(slot.scope, ([], []))
                slots.append(slot)
                vectors.append(vector)
        for scope, (slots, vectors) in batches.items():
            live = [
                (s, v)
                for s, v in zip(slots, vectors, strict=True)
                if self._entries.get(s.exact) is s
            ]
            if live:
                matrix = np.ascontiguousarray(np.vstack([v for _, v in live]), dtype=np.float32)
                self._partition(scope).add([s for s, _ in live], matrix)
        self._evict()

    def _prepare(self, entry: CacheEntry, vector: Vector | None) -> tuple[_Slot, Vector | None]:
        slot = _Slot(
            entry.exact,
            sys.intern(entry.scope),
            sys.intern(entry.namespace),
            _pack(entry),
            entry.expires_at,
        )
        if vector is None or not self._vectors_enabled():
            return slot, None
        return slot, _normalised(vector, self.dim)

    # -- the contract ---------------------------------------------------------------------

    async def get(self, exact: str) -> CacheEntry | None:
        """See :class:`~.base.CacheBackend`."""
        return self.get_nowait(exact)

    def get_nowait(self, exact: str) -> CacheEntry | None:
        """:meth:`get` without awaiting (no I/O): the sync twins' exact-hit fast path."""
        with self._lock:
            slot = self._entries.get(exact)
            if slot is None:
                return None
            if slot.expired(time.time()):
                self._discard([slot])
                return None
            self._entries.move_to_end(exact)
        entry = _unpack(slot.exact, slot.scope, slot.payload)
        if entry is None:
            with self._lock:
                self._discard([slot])
        return entry

    async def put(self, entry: CacheEntry, vector: Vector | None = None) -> None:
        """See :class:`~.base.CacheBackend`; a vector of the wrong dimension raises
        :class:`~..errors.VectorDimensionError`."""
        item = self._prepare(entry, vector)
        with self._lock:
            if item[1] is not None and self.dim is not None and item[1].shape[1] != self.dim:
                raise VectorDimensionError(
                    f"vector has dimension {item[1].shape[1]}, expected {self.dim}"
                )
            self._insert([item])

    async def put_many(self, items: Iterable[tuple[CacheEntry, Vector | None]]) -> int:
        """Store many entries at once (vectors are added to FAISS in batches); returns how many.

        Much faster than one :meth:`put` per entry for bulk loads (imports, warm-up, benchmarks).
        """
        prepared: list[tuple[_Slot, Vector | None]] = []
        dims: set[int] = set()
        for entry, vector in items:
            slot, row = self._prepare(entry, vector)
            if row is not None:
                dims.add(int(row.shape[1]))
            prepared.append((slot, row))
        with self._lock:
            if len(dims) > 1 or (self.dim is not None and dims - {self.dim}):
                raise VectorDimensionError(
                    f"vectors of dimensions {sorted(dims)}, expected {self.dim}"
                )
            self._insert(prepared)
        return len(prepared)

    async def search(
        self, scope: str, vector: Vector, k: int = 4
    ) -> list[tuple[CacheEntry, float]]:
        """See :class:`~.base.CacheBackend`."""
        if k <= 0:
            return []
        with self._lock:
            partition = self._partitions.get(scope)
            if partition is None:
                return []
            query = _normalised(vector, self.dim)
            now = time.time()
            found: list[tuple[_Slot, float]] = []
            expired: list[_Slot] = []
            fetch = min(partition.size, k + (8 if partition.hnsw else 0))
            while True:
                found.clear()
                expired.clear()
                scores, labels = partition.search(query, fetch)
                for score, label in zip(scores.tolist(), labels.tolist(), strict=True):
                    slot = partition.members[label] if label >= 0 else None
                    if slot is None:
                        continue
                    if slot.expired(now):
                        expired.append(slot)
                        continue
                    found.append((slot, min(1.0, max(-1.0, score))))
                    if len(found) == k:
                        break
                if len(found) >= k or fetch >= partition.size:
                    break
                fetch = min(partition.size, fetch * 2)
            for slot, _ in found:
                self._entries.move_to_end(slot.exact)
            self._discard(expired)
        results: list[tuple[CacheEntry, float]] = []
        corrupt: list[_Slot] = []
        for slot, score in found:
            entry = _unpack(slot.exact, slot.scope, slot.payload)
            if entry is None:
                corrupt.append(slot)
            else:
                results.append((entry, score))
        if corrupt:
            with self._lock:
                self._discard(corrupt)
        return results

    async def delete(self, exact: str) -> bool:
        """See :class:`~.base.CacheBackend`."""
        with self._lock:
            slot = self._entries.pop(exact, None)
            if slot is None:
                return False
            self._unindex([slot])
            return True

    async def invalidate(self, *, pattern: str | None = None, namespace: str | None = None) -> int:
        """Remove entries whose query matches the glob ``pattern`` (:func:`fnmatch.fnmatchcase`)
        and whose namespace is ``namespace``; with neither, every entry. Returns how many."""
        with self._lock:
            candidates = [
                slot
                for slot in self._entries.values()
                if namespace is None or slot.namespace == namespace
            ]
        if pattern is not None:
            matched = []
            for slot in candidates:
                query = _query_of(slot.payload)
                if query is not None and fnmatch.fnmatchcase(query, pattern):
                    matched.append(slot)
            candidates = matched
        with self._lock:
            before = len(self._entries)
            self._discard(candidates)
            return before - len(self._entries)

    async def clear(self) -> None:
        """See :class:`~.base.CacheBackend`."""
        with self._lock:
            self._entries.clear()
            self._partitions.clear()
            self._expiry.clear()

    async def size(self) -> int:
        """See :class:`~.base.CacheBackend`."""
        with self._lock:
            return len(self._entries)

    async def entries(self) -> AsyncIterator[tuple[CacheEntry, Vector | None]]:
        """Every live entry with its (normalised) vector, least recently used first."""
        with self._lock:
            snapshot = list(self._entries.values())
        for slot in snapshot:
            with self._lock:
                if self._entries.get(slot.exact) is not slot or slot.expired(time.time()):
                    continue
                vector: Vector | None = None
                partition = self._partitions.get(slot.scope) if slot.label >= 0 else None
                if partition is not None:
                    vector = partition.reconstruct([slot.label])[0]
            entry = _unpack(slot.exact, slot.scope, slot.payload)
            if entry is not None:
                yield entry, vector

    async def aclose(self) -> None:
        """Nothing to release (the entries stay until the object is dropped)."""

    # -- benchmarks ---------------------------------------------------------------------

    def _adopt_index(self, scope: str, index: Any, entries: Iterable[CacheEntry]) -> None:
        """Install a prebuilt FAISS index for ``scope`` whose label ``i`` is the ``i``-th entry.

        For benchmarks that cache a large index on disk: ``index`` must be an ``IndexHNSWFlat``
        (inner product, labels = positions) or an ``IndexIDMap2`` with labels ``0..n-1``, over
        normalised vectors of this backend's dimension; ``entries`` may be a generator.
        """
        faiss = _load_faiss()
        with self._lock:
            if self.dim is None:
                self.dim = int(index.d)
            if int(index.d) != self.dim:
                raise VectorDimensionError("the index has another dimension")
            partition = _Partition(self, self.dim)
            partition.hnsw = isinstance(index, faiss.IndexHNSW)
            if partition.hnsw:
                index.hnsw.efSearch = self.ef_search
            partition.index = index
            for label, entry in enumerate(entries):
                slot, _ = self._prepare(entry, None)
                slot.scope = sys.intern(scope)
                slot.label = label
                old = self._entries.pop(slot.exact, None)
                if old is not None:
                    self._unindex([old])
                self._entries[slot.exact] = slot
                self._track_expiry(slot)
                partition.members.append(slot)
            if len(partition.members) != int(index.ntotal):
                raise ValueError("the index and the entries differ in length")
            partition.live = len(partition.members)
            self._partitions[scope] = partition
            self._evict()
