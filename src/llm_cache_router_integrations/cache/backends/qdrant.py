"""The Qdrant backend: one point per entry, cosine vectors, payload filters and LRU eviction.

Each entry is a point whose id is ``uuid5`` of the exact key, with an optional named vector
``dense`` (``Distance.COSINE``) and the payload ``exact``, ``scope``, ``namespace``, ``query``,
``entry`` (the entry as JSON, validated when read back: a corrupt entry is a miss and is deleted),
``created_at``, ``expires_at`` and ``last_access``. Entries without a vector (exact-only) are points
without a ``dense`` vector, so they never appear in similarity search. Search filters on ``scope``
(``Filter(must=[scope match], must_not=[expired])``) inside Qdrant, so no other scope is ever seen.

Similarity: for ``Distance.COSINE`` Qdrant normalises the vectors and returns the cosine
*similarity* itself as the score, so the score is reported unchanged (the conversion is the
identity), as the :class:`~.base.CacheBackend` contract requires.

Modes:

* ``url=`` — a Qdrant server (or Qdrant Cloud with ``api_key=``), shared by any number of
  processes; payload indexes are created on ``scope``, ``namespace``, ``expires_at`` and
  ``last_access`` (eviction orders by ``last_access`` on the server). One client per event loop.
* ``path=`` (a directory) or ``location=":memory:"`` (the default) — Qdrant's *local mode*, inside
  this process. It is for one process only: the directory is locked by the client that opened it
  and is **not** safe for concurrent use by several processes. Inside the process the backend
  serialises its calls with a lock, so the router's sync portal loop and the caller's loop can
  share it. Local mode evaluates filters in Python (a few milliseconds per search for hundreds of
  entries) and keeps the LRU order in memory: reads are not written into the points (its storage
  commits each point write to disk separately) but, with ``path=``, saved as JSON beside the
  collection on :meth:`QdrantBackend.aclose` and every 1000 reads. Note that qdrant-client's
  local mode stores points with ``pickle`` in its own SQLite file: open only directories this
  application wrote.

Expired entries are filtered out of every read and deleted on :meth:`QdrantBackend.size` and
whenever a ``put`` finds the collection beyond ``max_entries``: expired entries go first, then the
least recently used ones beyond ``max_entries`` (local mode keeps the expiry times in memory, so
this needs no scan; server mode deletes them with one indexed filter).

:meth:`QdrantBackend.entries` yields the least recently used entry first (server mode: ordered by
``last_access``; local mode: the in-memory recency order), so an export replayed by an import keeps
the LRU order.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import itertools
import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import AsyncQdrantClient, models

from ...errors import ConfigurationError
from ..entry import CacheEntry
from ..errors import CacheBackendError
from .base import Vector, unit_vector

__all__ = ["QdrantBackend", "point_id"]

logger = logging.getLogger(__name__)

_VECTOR = "dense"
_NAMESPACE = uuid.UUID("6f1c1c55-3c1d-5d55-9a55-6c6c6d636163")
_PAGE = 256
_SAVE_EVERY = 1000


def point_id(exact: str) -> str:
    """The point id of the entry stored under ``exact`` (a UUID5 of the key)."""
    return str(uuid.uuid5(_NAMESPACE, exact))


class QdrantBackend:
    """A cache in a Qdrant collection (server, on-disk local mode or in memory).

    Args:
        url: a Qdrant server, e.g. ``http://localhost:6333``.
        path: a directory for local mode (persistent; one process at a time).
        location: ``":memory:"`` for an in-process, throw-away local mode (the default).
        collection: the collection name; :meth:`clear` drops only this collection.
        max_entries: the LRU bound (``None``: unbounded).
        dim: the vector dimension; default: taken from the collection or the first vector.
        api_key: the API key of a Qdrant server (e.g. Qdrant Cloud).
        timeout: the request timeout of a Qdrant server, in seconds.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        path: str | None = None,
        location: str | None = None,
        collection: str = "llmcache",
        max_entries: int | None = 10_000,
        dim: int | None = None,
        api_key: str | None = None,
        timeout: int = 5,
    ) -> None:
        if sum(option is not None for option in (url, path, location)) > 1:
            raise ConfigurationError("give at most one of url=, path= and location=")
        if max_entries is not None and max_entries < 1:
            raise ConfigurationError("max_entries must be at least 1 (or None for no bound)")
        if dim is not None and dim < 1:
            raise ConfigurationError("dim must be a positive integer")
        if url is None and path is None and location is None:
            location = ":memory:"
        self.url = url
        self.path = path
        self.location = location
        self.collection = collection
        self.max_entries = max_entries
        self.dim = dim
        self.api_key = api_key
        self.timeout = timeout
        self.local = path is not None or location == ":memory:"
        self._ready = False
        self._has_vectors = False
        self._last_access = 0.0
        # Local mode only (one writer by construction): point ids, least recently used first, so
        # eviction needs no scan; loaded from ``last_access`` on first use.
        self._recency: OrderedDict[str, None] | None = None
        # Local mode: point id -> expires_at of the entries with a TTL (loaded with _recency), so
        # eviction finds the expired entries without a scan.
        self._expiring: dict[str, float] = {}
        # Local mode: read times not written to the points (see _touch), saved beside the
        # storage directory's collection as JSON on close and every _SAVE_EVERY reads.
        self._accessed: dict[str, float] = {}
        self._reads_since_save = 0
        self._stamp_lock = threading.Lock()
        self._lock: threading.RLock | None = threading.RLock() if self.local else None
        self._local_client: AsyncQdrantClient | None = None
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncQdrantClient] = (
            weakref.WeakKeyDictionary()
        )

    # -- clients -----------------------------------------------------------------------------

    def client(self) -> AsyncQdrantClient:
        """The :class:`qdrant_client.AsyncQdrantClient` used from the current event loop."""
        if self.local:
            if self._local_client is None:
                self._local_client = AsyncQdrantClient(path=self.path, location=self.location)
            return self._local_client
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = AsyncQdrantClient(
                url=self.url, location=self.location, api_key=self.api_key, timeout=self.timeout
            )
            self._clients[loop] = client
        return client

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        # Local mode runs synchronously inside its coroutines (they never suspend), so a thread
        # lock around one call is safe and keeps two event loops from interleaving writes.
        if self._lock is None:
            yield
        else:
            with self._lock:
                yield

    def _stamp(self) -> float:
        """A strictly increasing access time (so LRU order survives equal clock readings)."""
        with self._stamp_lock:
            self._last_access = max(time.time(), self._last_access + 1e-6)
            return self._last_access

    # -- the collection ----------------------------------------------------------------------

    @property
    def supports_vectors(self) -> bool:
        """Always ``True``: Qdrant searches vectors in every mode."""
        return True

    def _as_vector(self, vector: Vector) -> list[float]:
        """``vector`` at unit length as a list (learning ``dim``)."""
        array = unit_vector(vector, self.dim)
        if self.dim is None:
            self.dim = int(array.shape[0])
        return [float(x) for x in array]

    async def _ensure(self, need_vectors: bool = False) -> None:
        """Create the collection when missing (with vectors if needed) and learn its dimension."""
        if self._ready and (self._has_vectors or not need_vectors):
            return
        client = self.client()
        with self._guard():
            exists = await client.collection_exists(self.collection)
        if exists:
            with self._guard():
                info = await client.get_collection(self.collection)
            vectors = info.config.params.vectors
            if isinstance(vectors, dict) and _VECTOR in vectors:
                size = int(vectors[_VECTOR].size)
                if self.dim is None:
                    self.dim = size
                elif size != self.dim:
                    raise CacheBackendError(
                        f"the Qdrant collection {self.collection!r} holds {size}-dimensional "
                        f"vectors, but this cache uses {self.dim}: use another collection or clear()"
                    )
                self._has_vectors = True
            elif vectors:
                raise CacheBackendError(
                    f"the Qdrant collection {self.collection!r} was not created by this cache "
                    f"(it has no {_VECTOR!r} vector): use another collection name"
                )
            else:
                self._has_vectors = False
        else:
            await self._create()
        self._ready = True
        if need_vectors and not self._has_vectors:
            await self._add_vectors()

    async def _create(self) -> None:
        client = self.client()
        config = (
            {_VECTOR: models.VectorParams(size=self.dim, distance=models.Distance.COSINE)}
            if self.dim is not None
            else {}
        )
        try:
            with self._guard():
                await client.create_collection(self.collection, vectors_config=config)
        except Exception:
            with self._guard():  # another process created it first: use theirs
                if not await client.collection_exists(self.collection):
                    raise
        self._has_vectors = self.dim is not None
        if not self.local:  # local mode ignores payload indexes
            for field, schema in (
                ("scope", models.PayloadSchemaType.KEYWORD),
                ("namespace", models.PayloadSchemaType.KEYWORD),
                ("expires_at", models.PayloadSchemaType.FLOAT),
                ("last_access", models.PayloadSchemaType.FLOAT),
            ):
                await client.create_payload_index(self.collection, field, field_schema=schema)

    async def _add_vectors(self) -> None:
        """Recreate a collection made before any vector was known, keeping its entries.

        Qdrant cannot add a named vector to an existing collection; this runs once, when the
        first vector arrives after exact-only entries were stored without a known ``dim``.
        """
        client = self.client()
        records = [record async for record in self._scroll(None, with_vectors=False)]
        with self._guard():
            await client.delete_collection(self.collection)
        await self._create()
        for start in range(0, len(records), _PAGE):
            points = [
                models.PointStruct(id=record.id, vector={}, payload=record.payload or {})
                for record in records[start : start + _PAGE]
            ]
            with self._guard():
                await client.upsert(self.collection, points=points)

    def _live(self, *conditions: Any) -> Any:
        """A filter of the given conditions that also excludes expired entries."""
        expired = models.FieldCondition(key="expires_at", range=models.Range(lte=time.time()))
        return models.Filter(must=list(conditions) or None, must_not=[expired])

    async def _scroll(
        self, scroll_filter: Any, *, with_vectors: bool = False, payload: Any = True
    ) -> AsyncIterator[Any]:
        client = self.client()
        offset = None
        while True:
            with self._guard():
                records, offset = await client.scroll(
                    self.collection,
                    scroll_filter=scroll_filter,
                    limit=_PAGE,
                    offset=offset,
                    with_payload=payload,
                    with_vectors=with_vectors,
                )
            for record in records:
                yield record
            if offset is None:
                return

    async def _delete_ids(self, ids: list[Any]) -> None:
        if ids:
            with self._guard():
                await self.client().delete(
                    self.collection, points_selector=models.PointIdsList(points=ids)
                )
                for pid in ids:
                    self._accessed.pop(str(pid), None)
                    self._expiring.pop(str(pid), None)
                    if self._recency is not None:
                        self._recency.pop(str(pid), None)

    def _used(self, ids: Iterable[str]) -> None:
        """Move ``ids`` to the most recently used end of the local recency order."""
        if self._recency is not None:
            with self._guard():
                for pid in ids:
                    self._recency[pid] = None
                    self._recency.move_to_end(pid)

    async def _local_recency(self) -> OrderedDict[str, None]:
        if self._recency is None:
            records = [r async for r in self._scroll(None, payload=["last_access", "expires_at"])]
            with self._guard():
                for pid, stamp in self._load_access_times().items():
                    self._accessed[pid] = max(stamp, self._accessed.get(pid, 0.0))
                accessed = dict(self._accessed)

            def last_access(record: Any) -> float:
                stored = (record.payload or {}).get("last_access")
                written = float(stored) if isinstance(stored, int | float) else 0.0
                return max(written, accessed.get(str(record.id), 0.0))

            records.sort(key=last_access)
            expiring: dict[str, float] = {}
            for record in records:
                expires_at = (record.payload or {}).get("expires_at")
                if isinstance(expires_at, int | float):
                    expiring[str(record.id)] = float(expires_at)
            with self._guard():
                self._expiring = expiring
                self._recency = OrderedDict((str(r.id), None) for r in records)
        return self._recency

    async def _touch(self, ids: list[str]) -> None:
        """Refresh the LRU position of ``ids``; an entry deleted meanwhile is not an error.

        Local mode keeps read times in memory instead of writing ``last_access`` into the points:
        its storage commits every point write to disk separately, which would make each read cost
        a disk write. With ``path=`` they are saved to a JSON file beside the collection
        (``<path>/llmcache-access-<collection>.json``) on close and every 1000 reads.
        """
        if not ids:
            return
        if self.local:
            stamp = self._stamp()
            with self._guard():
                for pid in ids:
                    self._accessed[pid] = stamp
                self._reads_since_save += len(ids)
                due = self._reads_since_save >= _SAVE_EVERY
            self._used(ids)
            if due:
                self._save_access_times()
            return
        points: list[models.ExtendedPointId] = list(ids)
        try:
            await self.client().set_payload(
                self.collection, payload={"last_access": self._stamp()}, points=points
            )
        except Exception as exc:
            if "not found" not in str(exc).lower():  # a point deleted meanwhile is fine
                raise
            logger.debug("cache LRU refresh skipped: %s", exc)
        self._used(ids)

    def _access_file(self) -> Path | None:
        return (
            None
            if self.path is None
            else Path(self.path) / f"llmcache-access-{self.collection}.json"
        )

    def _save_access_times(self) -> None:
        """Write the local read times (atomically; a failure only costs LRU precision)."""
        target = self._access_file()
        if target is None:
            return
        with self._guard():
            data = json.dumps(self._accessed)
            self._reads_since_save = 0
        try:
            partial = target.with_suffix(".tmp")
            partial.write_text(data, encoding="utf-8")
            os.replace(partial, target)
        except OSError as exc:
            logger.warning("could not save the cache's read times: %s", exc)

    def _load_access_times(self) -> dict[str, float]:
        """The saved read times (anything malformed is ignored)."""
        target = self._access_file()
        if target is None or not target.is_file():
            return {}
        try:
            data = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float) and v == v}

    async def _purge_expired(self) -> None:
        expired = models.Filter(
            must=[models.FieldCondition(key="expires_at", range=models.Range(lte=time.time()))]
        )
        if self._recency is not None:  # local mode: delete by id to keep the recency order
            ids = [record.id async for record in self._scroll(expired, payload=False)]
            for start in range(0, len(ids), _PAGE):
                await self._delete_ids(ids[start : start + _PAGE])
            return
        with self._guard():
            await self.client().delete(
                self.collection, points_selector=models.FilterSelector(filter=expired)
            )

    async def _count(self) -> int:
        with self._guard():
            result = await self.client().count(self.collection, exact=True)
        return int(result.count)

    @staticmethod
    def _parse(exact: str | None, payload: dict[str, Any] | None) -> CacheEntry | None:
        data = (payload or {}).get("entry")
        if not isinstance(data, str):
            return None
        entry = CacheEntry.from_json(data)
        if entry is None or (exact is not None and entry.exact != exact):
            return None
        return entry

    # -- the contract ------------------------------------------------------------------------

    async def get(self, exact: str) -> CacheEntry | None:
        """See :class:`~.base.CacheBackend`; a corrupt or expired entry is deleted (a miss)."""
        if not await self._exists():
            return None
        client = self.client()
        pid = point_id(exact)
        with self._guard():
            records = await client.retrieve(self.collection, ids=[pid], with_payload=True)
        if not records:
            return None
        entry = self._parse(exact, records[0].payload)
        if entry is None or entry.expired():
            await self._delete_ids([pid])
            return None
        await self._touch([pid])
        return entry

    async def _exists(self) -> bool:
        if self._ready:
            return True
        with self._guard():
            exists = bool(await self.client().collection_exists(self.collection))
        if exists:
            await self._ensure()
        return exists

    async def put(self, entry: CacheEntry, vector: Vector | None = None) -> None:
        """See :class:`~.base.CacheBackend`; evicts the least recently used beyond ``max_entries``."""
        values = None if vector is None else self._as_vector(vector)
        await self._ensure(need_vectors=values is not None)
        pid = point_id(entry.exact)
        if entry.expired():
            await self._delete_ids([pid])
            return
        point = models.PointStruct(
            id=pid,
            vector={} if values is None else {_VECTOR: values},
            payload={
                "exact": entry.exact,
                "scope": entry.scope,
                "namespace": entry.namespace,
                "query": entry.query,
                "entry": entry.to_json(),
                "created_at": entry.created_at,
                "expires_at": entry.expires_at,
                "last_access": self._stamp(),
            },
        )
        client = self.client()
        with self._guard():
            await client.upsert(self.collection, points=[point])
            self._accessed.pop(pid, None)  # the upsert wrote a newer last_access
            if self.local:
                if entry.expires_at is None:
                    self._expiring.pop(pid, None)
                else:
                    self._expiring[pid] = entry.expires_at
        self._used([pid])
        if self.max_entries is not None:
            await self._evict(self.max_entries)

    async def _evict(self, limit: int) -> None:
        """Delete the least recently used entries beyond ``limit`` (expired ones first).

        Nothing is scanned while the collection is within ``limit``; beyond it, the expired
        entries are deleted before any live entry is evicted.
        """
        if self.local:
            recency = await self._local_recency()
            if len(recency) <= limit:
                return
            now = time.time()
            with self._guard():
                expired = [pid for pid, at in self._expiring.items() if at <= now]
            await self._delete_ids(expired)
            with self._guard():
                victims = list(itertools.islice(recency, max(0, len(recency) - limit)))
            await self._delete_ids(victims)
            return
        if await self._count() <= limit:
            return
        await self._purge_expired()
        excess = await self._count() - limit
        if excess <= 0:
            return
        order = models.OrderBy(key="last_access", direction=models.Direction.ASC)
        records, _ = await self.client().scroll(
            self.collection, limit=excess, order_by=order, with_payload=False
        )
        await self._delete_ids([record.id for record in records])

    async def search(
        self, scope: str, vector: Vector, k: int = 4
    ) -> list[tuple[CacheEntry, float]]:
        """See :class:`~.base.CacheBackend`; the COSINE score is the similarity (identity)."""
        values = self._as_vector(vector)
        if k <= 0 or not await self._exists() or not self._has_vectors:
            return []
        client = self.client()
        scope_filter = self._live(
            models.FieldCondition(key="scope", match=models.MatchValue(value=scope))
        )
        with self._guard():
            response = await client.query_points(
                self.collection,
                query=values,
                using=_VECTOR,
                query_filter=scope_filter,
                limit=k,
                with_payload=True,
            )
        results: list[tuple[CacheEntry, float]] = []
        corrupt: list[Any] = []
        for point in response.points:
            payload = point.payload or {}
            exact = payload.get("exact")
            entry = self._parse(exact if isinstance(exact, str) else None, payload)
            if entry is None:
                corrupt.append(point.id)
                continue
            if entry.scope != scope or entry.expired():
                continue
            results.append((entry, min(1.0, max(-1.0, float(point.score)))))
        await self._delete_ids(corrupt)
        await self._touch([point_id(entry.exact) for entry, _ in results])
        return results

    async def delete(self, exact: str) -> bool:
        """See :class:`~.base.CacheBackend`."""
        if not await self._exists():
            return False
        pid = point_id(exact)
        with self._guard():
            found = await self.client().retrieve(self.collection, ids=[pid], with_payload=False)
        await self._delete_ids([pid])
        return bool(found)

    async def invalidate(self, *, pattern: str | None = None, namespace: str | None = None) -> int:
        """See :class:`~.base.CacheBackend`; ``pattern`` is an :func:`fnmatch.fnmatchcase` glob.

        With both arguments an entry must match both; with neither every entry goes. Returns how
        many entries were removed.
        """
        if not await self._exists():
            return 0
        scroll_filter = (
            None
            if namespace is None
            else models.Filter(
                must=[
                    models.FieldCondition(key="namespace", match=models.MatchValue(value=namespace))
                ]
            )
        )
        doomed = [
            record.id
            async for record in self._scroll(scroll_filter, payload=["query"])
            if pattern is None
            or fnmatch.fnmatchcase(str((record.payload or {}).get("query", "")), pattern)
        ]
        for start in range(0, len(doomed), _PAGE):
            await self._delete_ids(doomed[start : start + _PAGE])
        return len(doomed)

    async def clear(self) -> None:
        """Drop this backend's collection (recreated on the next ``put``)."""
        client = self.client()
        with self._guard():
            if await client.collection_exists(self.collection):
                await client.delete_collection(self.collection)
        self._ready = False
        self._has_vectors = False
        self._recency = None
        self._expiring = {}
        self._accessed.clear()
        target = self._access_file()
        if target is not None:
            target.unlink(missing_ok=True)

    async def size(self) -> int:
        """See :class:`~.base.CacheBackend` (expired entries are deleted first)."""
        if not await self._exists():
            return 0
        await self._purge_expired()
        return await self._count()

    async def entries(self) -> AsyncIterator[tuple[CacheEntry, Vector | None]]:
        """See :class:`~.base.CacheBackend`: least recently used first, so an import keeps the
        LRU order (corrupt and expired entries are skipped)."""
        if not await self._exists():
            return
        records = self._local_by_recency() if self.local else self._by_last_access(self._live())
        async for record in records:
            payload = record.payload or {}
            exact = payload.get("exact")
            entry = self._parse(exact if isinstance(exact, str) else None, payload)
            if entry is None or entry.expired():
                continue
            raw = record.vector.get(_VECTOR) if isinstance(record.vector, dict) else None
            yield entry, None if raw is None else np.asarray(raw, dtype=np.float32)

    async def _local_by_recency(self) -> AsyncIterator[Any]:
        """Local mode: every point with payload and vectors, in the recency order (LRU first)."""
        recency = await self._local_recency()
        with self._guard():
            ids = list(recency)
        client = self.client()
        for start in range(0, len(ids), _PAGE):
            batch = ids[start : start + _PAGE]
            with self._guard():
                found = await client.retrieve(
                    self.collection, ids=batch, with_payload=True, with_vectors=True
                )
            by_id = {str(record.id): record for record in found}
            for pid in batch:
                if pid in by_id:
                    yield by_id[pid]

    async def _by_last_access(self, scroll_filter: Any, page: int = _PAGE) -> AsyncIterator[Any]:
        """The points matching ``scroll_filter`` by ascending ``last_access`` (LRU first).

        Qdrant pages an ordered scroll with ``start_from`` (inclusive) rather than an offset, so
        each page starts at the last value seen and skips the points already yielded; the limit
        grows by the number of points sharing that value, so equal stamps cannot stall the loop.
        Points without ``last_access`` (never written by this backend) are not returned.
        """
        client = self.client()
        seen: set[str] = set()
        start: Any = None
        at_start = 0
        while True:
            limit = page + at_start
            order = models.OrderBy(
                key="last_access", direction=models.Direction.ASC, start_from=start
            )
            with self._guard():
                records, _ = await client.scroll(
                    self.collection,
                    scroll_filter=scroll_filter,
                    limit=limit,
                    order_by=order,
                    with_payload=True,
                    with_vectors=True,
                )
            for record in records:
                if str(record.id) not in seen:
                    seen.add(str(record.id))
                    yield record
            if len(records) < limit or records[-1].order_value is None:
                return
            last = records[-1].order_value
            at_start = sum(1 for record in records if record.order_value == last)
            start = last

    async def aclose(self) -> None:
        """Close the local client (releasing its directory lock) or the current loop's client.

        With ``path=`` the read times are saved first, so the LRU order survives a reopen.
        """
        if self.local:
            if self._accessed:
                self._save_access_times()
            client, self._local_client = self._local_client, None
            if client is not None:
                with self._guard():
                    await client.close()
            self._ready = False
            self._recency = None
            self._expiring = {}
            self._accessed = {}
            return
        loop = asyncio.get_running_loop()
        for other, client in list(self._clients.items()):
            del self._clients[other]
            if other is loop:
                await client.close()
            elif other.is_running() and not other.is_closed():
                asyncio.run_coroutine_threadsafe(client.close(), other)
