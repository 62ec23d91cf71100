"""The SQLite backend: one persistent file (WAL mode), vectors searched with numpy per scope.

One table holds every entry: the exact key (primary key), the scope, namespace and query (for
filtering and invalidation), the entry as validated JSON text, the L2-normalised vector as a
``float32`` blob, and ``created_at`` / ``expires_at`` / ``last_access`` (indexed, for TTL and LRU).
Nothing is pickled: a row whose JSON fails :meth:`CacheEntry.from_json` is a miss and is deleted.

Every SQLite call runs on one dedicated worker thread owning the connection, so the event loop
never blocks on disk. A search loads the scope's vectors once into a matrix kept in memory (at most
``matrix_cache_rows`` rows over all scopes, least recently searched scopes dropped first) and
scores them with one numpy dot product. A write to a scope drops that scope's matrix; a small
``generation`` counter, bumped by every content change, lets several processes share the file and
drop their matrices when another process has written (reads, which only move ``last_access``, do
not bump it).
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import itertools
import os
import sqlite3
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from ...errors import ConfigurationError
from ..config import DEFAULT_SQLITE_PATH
from ..entry import CacheEntry
from ..errors import CacheBackendError
from .base import Vector, unit_vector

__all__ = ["SQLiteBackend"]

T = TypeVar("T")

_TABLE = "cache_entries"
_META = "cache_meta"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {_TABLE} (
    exact TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    namespace TEXT NOT NULL,
    query TEXT NOT NULL,
    entry TEXT NOT NULL,
    vector BLOB,
    created_at REAL NOT NULL,
    expires_at REAL,
    last_access REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS {_TABLE}_scope ON {_TABLE}(scope);
CREATE INDEX IF NOT EXISTS {_TABLE}_namespace ON {_TABLE}(namespace);
CREATE INDEX IF NOT EXISTS {_TABLE}_last_access ON {_TABLE}(last_access);
CREATE INDEX IF NOT EXISTS {_TABLE}_expires_at ON {_TABLE}(expires_at);
CREATE TABLE IF NOT EXISTS {_META} (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO {_META} (key, value) VALUES ('generation', 0);
"""
_PAGE = 512


@dataclass(slots=True)
class _Matrix:
    """The vectors of one scope (one dimension): row ``i`` belongs to ``exacts[i]``."""

    dim: int
    exacts: list[str]
    vectors: npt.NDArray[np.float32]
    expires: npt.NDArray[np.float64]  # +inf when the entry never expires


def _best_first(scores: npt.NDArray[np.float32], first: int) -> Iterator[int]:
    """Row indices by descending score: the top ``first`` cheaply, the rest only if asked."""
    n = len(scores)
    if n == 0:
        return
    window = min(n, max(1, first))
    top = np.argpartition(-scores, window - 1)[:window] if window < n else np.arange(n)
    top = top[np.argsort(-scores[top], kind="stable")]
    yield from top.tolist()
    if window < n:
        rest = np.setdiff1d(np.arange(n), top, assume_unique=True)
        yield from rest[np.argsort(-scores[rest], kind="stable")].tolist()


class SQLiteBackend:
    """A persistent cache in one SQLite file; at most ``max_entries`` rows (LRU by ``last_access``).

    Args:
        path: the database file (created with its parent directories).
        max_entries: the LRU bound (``None``: unbounded). Expired rows are evicted first.
        dim: when given, vectors of another dimension raise
            :class:`~..errors.VectorDimensionError`; without it, a search only compares vectors
            of the query's dimension.
        matrix_cache_rows: how many vectors (over all scopes) the in-memory search cache holds.

    Reading (``get`` or being returned by ``search``) refreshes ``last_access``. Several processes
    may share the file (WAL mode); each keeps its own search cache.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_SQLITE_PATH,
        max_entries: int | None = 10_000,
        *,
        dim: int | None = None,
        matrix_cache_rows: int = 1_000_000,
    ) -> None:
        if max_entries is not None and max_entries < 1:
            raise ConfigurationError("max_entries must be at least 1 (or None for no bound)")
        if dim is not None and dim < 1:
            raise ConfigurationError("dim must be a positive integer")
        self.path = Path(path)
        self.max_entries = max_entries
        self.dim = dim
        self.matrix_cache_rows = matrix_cache_rows
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmcache-sqlite")
        self._closed = False
        # Everything below is touched on the worker thread only.
        self._shut = False  # set by ``_close``: no connection is (re)opened afterwards
        self._conn: sqlite3.Connection | None = None
        self._clock = 0.0
        self._count: int | None = None
        self._generation: int | None = None
        self._matrices: OrderedDict[str, _Matrix] = OrderedDict()

    # -- worker-thread plumbing -----------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise _closed_error()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def _db(self) -> sqlite3.Connection:
        """The connection (opened on first use), with cached state checked against other writers."""
        conn = self._conn
        if conn is None:
            if self._shut:  # a call that was queued behind ``_close``
                raise _closed_error()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            conn.create_function(
                "llmcache_fnmatch",
                2,
                lambda text, pattern: fnmatch.fnmatchcase(str(text), str(pattern)),
                deterministic=True,
            )
            row = conn.execute(f"SELECT MAX(last_access) FROM {_TABLE}").fetchone()
            self._clock = float(row[0] or 0.0)
            self._conn = conn
        self._check_generation(conn)
        return conn

    def _check_generation(self, conn: sqlite3.Connection) -> int:
        """The stored generation; cached state is dropped when another writer moved it."""
        row = conn.execute(f"SELECT value FROM {_META} WHERE key = 'generation'").fetchone()
        generation = int(row[0]) if row else 0
        if generation != self._generation:
            self._generation = generation
            self._matrices.clear()
            self._count = None
        return generation

    @contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[None]:
        """One write transaction that changes content (bumps the generation)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            generation = self._check_generation(conn) + 1
            yield
            conn.execute(f"UPDATE {_META} SET value = ? WHERE key = 'generation'", (generation,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self._matrices.clear()
            self._count = None
            raise
        self._generation = generation

    def _tick(self) -> float:
        """A strictly increasing ``last_access`` stamp (seconds)."""
        self._clock = max(time.time(), self._clock + 1e-6)
        return self._clock

    def _forget(self, scopes: Iterable[str]) -> None:
        for scope in scopes:
            self._matrices.pop(scope, None)

    def _removed(self, rows: list[Any]) -> int:
        """Account for deleted rows (``RETURNING scope``); returns how many."""
        self._forget({r[0] for r in rows})
        if self._count is not None:
            self._count -= len(rows)
        return len(rows)

    def _delete_exacts(self, conn: sqlite3.Connection, exacts: list[str]) -> int:
        if not exacts:
            return 0
        marks = ",".join("?" * len(exacts))
        with self._write(conn):
            rows = conn.execute(
                f"DELETE FROM {_TABLE} WHERE exact IN ({marks}) RETURNING scope", exacts
            ).fetchall()
        return self._removed(rows)

    def _size(self, conn: sqlite3.Connection) -> int:
        if self._count is None:
            self._count = int(conn.execute(f"SELECT COUNT(*) FROM {_TABLE}").fetchone()[0])
        return self._count

    def _touch(self, conn: sqlite3.Connection, exacts: list[str]) -> None:
        """Refresh ``last_access`` (not a content change: other processes keep their caches)."""
        if not exacts:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                f"UPDATE {_TABLE} SET last_access = ? WHERE exact = ?",
                [(self._tick(), exact) for exact in exacts],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _parse(raw: str | bytes, exact: str) -> CacheEntry | None:
        entry = CacheEntry.from_json(raw)
        if entry is None or entry.exact != exact:
            return None
        return entry

    # -- operations on the worker thread ----------------------------------------------------

    def _get(self, exact: str) -> CacheEntry | None:
        conn = self._db()
        row = conn.execute(f"SELECT entry FROM {_TABLE} WHERE exact = ?", (exact,)).fetchone()
        if row is None:
            return None
        entry = self._parse(row[0], exact)
        if entry is None or entry.expired():
            self._delete_exacts(conn, [exact])
            return None
        self._touch(conn, [exact])
        return entry

    def _put(self, entry: CacheEntry, blob: bytes | None) -> None:
        conn = self._db()
        with self._write(conn):
            size = self._size(conn)
            old = conn.execute(
                f"SELECT scope FROM {_TABLE} WHERE exact = ?", (entry.exact,)
            ).fetchone()
            conn.execute(
                f"INSERT OR REPLACE INTO {_TABLE} (exact, scope, namespace, query, entry, vector,"
                " created_at, expires_at, last_access) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.exact,
                    entry.scope,
                    entry.namespace,
                    entry.query,
                    entry.to_json(),
                    blob,
                    entry.created_at,
                    entry.expires_at,
                    self._tick(),
                ),
            )
            self._forget([entry.scope] if old is None else [entry.scope, old[0]])
            self._count = size + (old is None)
            self._evict(conn)

    def _evict(self, conn: sqlite3.Connection) -> None:
        """Delete expired rows, then the least recently used, beyond ``max_entries``."""
        if self.max_entries is None or self._size(conn) <= self.max_entries:
            return
        self._removed(
            conn.execute(
                f"DELETE FROM {_TABLE} WHERE expires_at <= ? RETURNING scope", (time.time(),)
            ).fetchall()
        )
        excess = self._size(conn) - self.max_entries
        if excess > 0:
            self._removed(
                conn.execute(
                    f"DELETE FROM {_TABLE} WHERE exact IN (SELECT exact FROM {_TABLE}"
                    " ORDER BY last_access LIMIT ?) RETURNING scope",
                    (excess,),
                ).fetchall()
            )

    def _matrix(self, conn: sqlite3.Connection, scope: str, dim: int) -> _Matrix:
        cached = self._matrices.get(scope)
        if cached is not None and cached.dim == dim:
            self._matrices.move_to_end(scope)
            return cached
        rows = conn.execute(
            f"SELECT exact, vector, expires_at FROM {_TABLE} WHERE scope = ? AND length(vector) = ?",
            (scope, 4 * dim),
        ).fetchall()
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, dim)
        matrix = _Matrix(
            dim=dim,
            exacts=[r[0] for r in rows],
            vectors=vectors,
            expires=np.array([np.inf if r[2] is None else r[2] for r in rows], dtype=np.float64),
        )
        self._matrices[scope] = matrix
        total = sum(len(m.exacts) for m in self._matrices.values())
        while total > self.matrix_cache_rows and len(self._matrices) > 1:
            _, dropped = self._matrices.popitem(last=False)
            total -= len(dropped.exacts)
        return matrix

    def _search(self, scope: str, query: Vector, k: int) -> list[tuple[CacheEntry, float]]:
        conn = self._db()
        matrix = self._matrix(conn, scope, int(query.shape[0]))
        if not matrix.exacts:
            return []
        scores = matrix.vectors @ query
        now = time.time()
        live = matrix.expires > now
        if not live.all():  # lazily delete what has expired
            with self._write(conn):
                self._removed(
                    conn.execute(
                        f"DELETE FROM {_TABLE} WHERE scope = ? AND expires_at <= ? RETURNING scope",
                        (scope, now),
                    ).fetchall()
                )
            scores = np.where(live, scores, -np.inf).astype(np.float32)
        order = _best_first(scores, k + 2)
        results: list[tuple[CacheEntry, float]] = []
        corrupt: list[str] = []
        candidates = int(live.sum())
        while len(results) < k and candidates > 0:
            batch = list(itertools.islice(order, min(candidates, k - len(results) + 2)))
            if not batch:
                break
            candidates -= len(batch)
            exacts = [matrix.exacts[i] for i in batch]
            marks = ",".join("?" * len(exacts))
            stored = dict(
                conn.execute(
                    f"SELECT exact, entry FROM {_TABLE} WHERE exact IN ({marks})", exacts
                ).fetchall()
            )
            for i, exact in zip(batch, exacts, strict=True):
                raw = stored.get(exact)
                if raw is None:
                    continue  # deleted by another process since the matrix was loaded
                entry = self._parse(raw, exact)
                if entry is None or entry.scope != scope:
                    corrupt.append(exact)
                elif not entry.expired():
                    results.append((entry, min(1.0, max(-1.0, float(scores[i])))))
                    if len(results) == k:
                        break
        self._delete_exacts(conn, corrupt)
        self._touch(conn, [entry.exact for entry, _ in results])
        return results

    def _delete(self, exact: str) -> bool:
        return self._delete_exacts(self._db(), [exact]) > 0

    def _invalidate(self, pattern: str | None, namespace: str | None) -> int:
        conn = self._db()
        with self._write(conn):
            rows = conn.execute(
                f"DELETE FROM {_TABLE} WHERE (?1 IS NULL OR namespace = ?1)"
                " AND (?2 IS NULL OR llmcache_fnmatch(query, ?2)) RETURNING scope",
                (namespace, pattern),
            ).fetchall()
        return self._removed(rows)

    def _clear(self) -> None:
        conn = self._db()
        with self._write(conn):
            conn.execute(f"DELETE FROM {_TABLE}")
        self._matrices.clear()
        self._count = 0

    def _page(self, after: int) -> tuple[int, list[tuple[CacheEntry, Vector | None]]]:
        """The live entries of the rows after ``rowid`` ``after``, and the last rowid read."""
        conn = self._db()
        rows = conn.execute(
            f"SELECT rowid, exact, entry, vector FROM {_TABLE} WHERE rowid > ?"
            " ORDER BY rowid LIMIT ?",
            (after, _PAGE),
        ).fetchall()
        page: list[tuple[CacheEntry, Vector | None]] = []
        corrupt: list[str] = []
        for _, exact, raw, blob in rows:
            entry = self._parse(raw, exact)
            if entry is None:
                corrupt.append(exact)
                continue
            if entry.expired():
                continue
            vector = None
            if blob and len(blob) % 4 == 0:
                vector = np.frombuffer(blob, dtype=np.float32).copy()
            page.append((entry, vector))
        self._delete_exacts(conn, corrupt)
        return (rows[-1][0] if rows else after), page

    def _close(self) -> None:
        self._shut = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._matrices.clear()

    # -- the contract ---------------------------------------------------------------------

    async def get(self, exact: str) -> CacheEntry | None:
        """See :class:`~.base.CacheBackend`."""
        return await self._run(self._get, exact)

    async def put(self, entry: CacheEntry, vector: Vector | None = None) -> None:
        """See :class:`~.base.CacheBackend`; a vector of the wrong dimension raises
        :class:`~..errors.VectorDimensionError`."""
        blob = None if vector is None else unit_vector(vector, self.dim).tobytes()
        await self._run(self._put, entry, blob)

    async def search(
        self, scope: str, vector: Vector, k: int = 4
    ) -> list[tuple[CacheEntry, float]]:
        """See :class:`~.base.CacheBackend`."""
        if k <= 0:
            return []
        query = unit_vector(vector, self.dim)
        return await self._run(self._search, scope, query, k)

    async def delete(self, exact: str) -> bool:
        """See :class:`~.base.CacheBackend`."""
        return await self._run(self._delete, exact)

    async def invalidate(self, *, pattern: str | None = None, namespace: str | None = None) -> int:
        """Remove entries whose query matches the glob ``pattern`` (:func:`fnmatch.fnmatchcase`)
        and whose namespace is ``namespace``; with neither, every entry. Returns how many."""
        return await self._run(self._invalidate, pattern, namespace)

    async def clear(self) -> None:
        """See :class:`~.base.CacheBackend`."""
        await self._run(self._clear)

    async def size(self) -> int:
        """See :class:`~.base.CacheBackend`."""
        return await self._run(lambda: self._size(self._db()))

    async def entries(self) -> AsyncIterator[tuple[CacheEntry, Vector | None]]:
        """Every live entry with its (normalised) vector, in the order the rows were written."""
        after = 0
        while True:
            last, page = await self._run(self._page, after)
            if last == after:
                return
            after = last
            for item in page:
                yield item

    async def aclose(self) -> None:
        """Close the connection and stop the worker thread (idempotent).

        Calls already queued finish first; later calls raise
        :class:`~..errors.CacheBackendError`.
        """
        if self._closed:
            return
        self._closed = True  # before awaiting: no call may be queued behind ``_close``
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        finally:
            self._executor.shutdown(wait=False)


def _closed_error() -> CacheBackendError:
    return CacheBackendError(
        "the SQLite cache backend is closed; create a new SQLiteBackend to use the cache again"
    )
