"""The Redis backend: hashes with native TTL, an LRU sorted set and KNN through the query engine.

Layout (``prefix`` defaults to ``llmcache``):

* ``{prefix}:entry:{exact}`` — a HASH per entry with the fields ``entry`` (the entry as JSON,
  validated when read back; no pickle), ``scope`` and ``namespace`` (TAG fields of the index;
  ``scope`` holds :func:`tag_value` of the scope, see below), ``query`` (plain text, for glob
  invalidation), ``vector`` (little-endian ``float32`` bytes, only when the entry has a vector),
  ``created_at`` and ``expires_at``. An entry with ``expires_at`` gets a native TTL
  (``PEXPIRE``), so Redis drops it by itself.
* ``{prefix}:lru`` — a sorted set ``exact -> last access (µs)``, refreshed by :meth:`get` and by
  search results; :meth:`put` evicts the least recently used entries beyond ``max_entries``.
* ``{prefix}:expiry`` — a sorted set ``exact -> expires_at (ms)`` so that entries Redis expired by
  itself leave the LRU set (and never count against ``max_entries``).
* ``{prefix}:idx`` — the Redis Query Engine index (``FT.CREATE ... ON HASH PREFIX 1
  {prefix}:entry: SCHEMA scope TAG namespace TAG vector VECTOR HNSW ... DISTANCE_METRIC COSINE``),
  created on the first ``put`` with a vector.

Scopes in the index: the query engine splits TAG values on ``,`` and trims whitespace, so a scope
is stored and queried as :func:`tag_value` — itself when it is TAG-safe (non-empty, only
``[A-Za-z0-9_.:-]``; the engine's sha256-hex scopes always are), otherwise ``h-`` + its sha256 hex.
Search re-checks the scope of every hit against the entry's JSON.

Similarity: for ``DISTANCE_METRIC COSINE`` Redis returns the cosine *distance* ``1 - cos(a, b)``
(in ``[0, 2]``); :meth:`RedisBackend.search` converts it back to cosine similarity with
``similarity = 1 - distance``, as the :class:`~.base.CacheBackend` contract requires.

Vector search needs the query engine (Redis 8, Redis Stack or Redis Cloud). On a plain Redis
without it exact-match caching keeps working and :meth:`RedisBackend.search` raises
:class:`~..errors.VectorSearchUnavailableError`; check :attr:`RedisBackend.supports_vectors`.

Every operation is bounded by ``socket_timeout`` with ``retries`` quick retries, so an outage
raises within a few seconds (the cache engine turns the exception into a miss). One connection
pool is kept per event loop, so the backend can be used from the router's sync portal loop and the
caller's loop at the same time; the pools of loops that were closed (e.g. each ``asyncio.run``)
are shut down and dropped when a new loop first uses the backend and on :meth:`RedisBackend.aclose`.

URLs in messages go through :func:`_redact`, which hides the password (of the userinfo, split at
the last ``@`` as redis-py does, and of a ``password=`` query argument).

Eviction and pruning run in Lua scripts that build key names from ``prefix``, so the backend
targets a standalone Redis (or a cluster where every key of the prefix shares a hash slot, e.g.
``prefix="{llmcache}"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import math
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import numpy as np
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ResponseError

from ...errors import ConfigurationError
from ..entry import CacheEntry
from ..errors import CacheBackendError, VectorSearchUnavailableError
from .base import Vector, unit_vector

__all__ = ["RedisBackend", "escape_tag", "tag_value"]

_TAG_SPECIAL = frozenset(",.<>{}[]\"':;!@#$%^&*()-+=~|/\\?`")
_TAG_SAFE = re.compile(r"[A-Za-z0-9_.:\-]+")
_TAG_DIGEST = re.compile(r"h-[0-9a-f]{64}")
_BATCH = 256

# KEYS: lru, expiry. ARGV: entry key prefix, limit (-1: none), now (ms).
# Drops members whose TTL passed (their hashes are gone or about to go), then evicts the least
# recently used entries beyond the limit. Returns {evicted, remaining}.
_EVICT = """
local lru, exp = KEYS[1], KEYS[2]
local prefix, limit, now = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local expired = redis.call('ZRANGEBYSCORE', exp, '-inf', now, 'LIMIT', 0, 1000)
for i = 1, #expired do
  redis.call('ZREM', lru, expired[i])
  redis.call('ZREM', exp, expired[i])
  redis.call('DEL', prefix .. expired[i])
end
local evicted = 0
if limit >= 0 then
  while redis.call('ZCARD', lru) > limit do
    local popped = redis.call('ZPOPMIN', lru)
    if #popped == 0 then break end
    redis.call('ZREM', exp, popped[1])
    evicted = evicted + redis.call('DEL', prefix .. popped[1])
  end
end
return {evicted, redis.call('ZCARD', lru)}
"""

# KEYS: entry hash, lru. ARGV: access stamp (µs), exact. Reads the entry and refreshes its LRU position.
_GET = """
local value = redis.call('HGET', KEYS[1], 'entry')
if value then redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2]) end
return value
"""


def escape_tag(value: str) -> str:
    """Escape ``value`` for a TAG query (``@field:{...}``) of the Redis Query Engine."""
    return "".join(
        "\\" + char if char in _TAG_SPECIAL or char.isspace() else char for char in value
    )


def tag_value(value: str) -> str:
    """The TAG value under which a scope is indexed and queried (one function for both sides).

    ``value`` itself when it is TAG-safe (non-empty, only ``[A-Za-z0-9_.:-]``), so existing
    entries with such scopes (the engine's sha256-hex scopes) keep matching; otherwise ``h-`` + the
    sha256 hex of its UTF-8 bytes, because the query engine splits TAG values on ``,``, trims
    whitespace and cannot query an empty tag. A safe value shaped like such a digest is hashed too.
    """
    if _TAG_SAFE.fullmatch(value) and not _TAG_DIGEST.fullmatch(value):
        return value
    return "h-" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _is_unknown_command(exc: BaseException) -> bool:
    return "unknown command" in str(exc).lower()


def _is_missing_index(exc: BaseException) -> bool:
    message = str(exc).lower()
    return "no such index" in message or "unknown index" in message


def _pairs(value: Any) -> dict[str, Any]:
    """A RESP3 map or a RESP2 flat ``[key, value, ...]`` list as a dict with text keys."""
    if isinstance(value, dict):
        return {_text(k): v for k, v in value.items()}
    if isinstance(value, list | tuple):
        return {_text(value[i]): value[i + 1] for i in range(0, len(value) - 1, 2)}
    return {}


def _search_rows(raw: Any) -> list[tuple[str, dict[str, Any]]]:
    """``(key, fields)`` rows of an ``FT.SEARCH`` reply in either protocol."""
    if isinstance(raw, dict):  # RESP3
        reply = _pairs(raw)
        rows = []
        for row in reply.get("results") or []:
            fields = _pairs(row)
            rows.append((_text(fields.get("id", b"")), _pairs(fields.get("extra_attributes"))))
        return rows
    items = list(raw or [])[1:]  # RESP2: [total, key, [field, value, ...], ...]
    return [(_text(items[i]), _pairs(items[i + 1])) for i in range(0, len(items) - 1, 2)]


def _index_dim(info: Any) -> int | None:
    """The vector dimension recorded in an ``FT.INFO`` reply, when it can be read."""
    for attribute in _pairs(info).get("attributes") or []:
        fields = _pairs(attribute)
        if _text(fields.get("type", b"")).upper() == "VECTOR" and "dim" in fields:
            with contextlib.suppress(TypeError, ValueError):
                return int(fields["dim"])
    return None


@dataclass(slots=True)
class _Connection:
    client: Any
    get_script: Any
    evict_script: Any


class RedisBackend:
    """A cache shared by every process that uses the same Redis and ``prefix``.

    Args:
        url: the Redis URL (``redis://``, ``rediss://`` or ``unix://``).
        prefix: the namespace of every key and of the index; :meth:`clear` removes only these.
        max_entries: the LRU bound (``None``: unbounded).
        dim: the vector dimension; default: taken from the first vector stored.
        socket_timeout: the connect and command timeout, in seconds.
        retries: quick retries (exponential backoff) after a connection error or timeout.
        index_algorithm: ``"HNSW"`` (approximate, fast) or ``"FLAT"`` (exact, brute force).
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "llmcache",
        max_entries: int | None = 10_000,
        dim: int | None = None,
        socket_timeout: float = 1.0,
        retries: int = 1,
        index_algorithm: Literal["HNSW", "FLAT"] = "HNSW",
    ) -> None:
        if index_algorithm not in ("HNSW", "FLAT"):
            raise ConfigurationError(
                f"index_algorithm must be 'HNSW' or 'FLAT', not {index_algorithm!r}"
            )
        if max_entries is not None and max_entries < 1:
            raise ConfigurationError("max_entries must be at least 1 (or None for no bound)")
        if dim is not None and dim < 1:
            raise ConfigurationError("dim must be a positive integer")
        self.url = url
        self.prefix = prefix
        self.max_entries = max_entries
        self.dim = dim
        self.socket_timeout = socket_timeout
        self.retries = retries
        self.index_algorithm = index_algorithm
        self.index_name = f"{prefix}:idx"
        self._entry_prefix = f"{prefix}:entry:"
        self._lru_key = f"{prefix}:lru"
        self._expiry_key = f"{prefix}:expiry"
        self._vectors: bool | None = None
        self._last_stamp = 0
        self._stamp_lock = threading.Lock()
        self._index_ready = False
        # One pool per event loop. A plain dict: the pools' streams reference their loop, so weak
        # keys would never drop; pools of closed loops are released in _connection() and aclose().
        self._connections: dict[asyncio.AbstractEventLoop, _Connection] = {}
        self._connections_lock = threading.Lock()

    # -- connections -------------------------------------------------------------------------

    def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = self._connections.get(loop)
        if connection is not None:
            return connection
        with self._connections_lock:
            for other, stale in list(self._connections.items()):
                if other.is_closed():
                    del self._connections[other]
                    _release(stale)
            connection = self._connections.get(loop)
            if connection is not None:
                return connection
            client = aioredis.Redis.from_url(
                self.url,
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.socket_timeout,
                retry=Retry(ExponentialBackoff(cap=0.25, base=0.025), self.retries),
                decode_responses=False,
            )
            connection = _Connection(
                client=client,
                get_script=client.register_script(_GET),
                evict_script=client.register_script(_EVICT),
            )
            self._connections[loop] = connection
            return connection

    def _key(self, exact: str) -> str:
        return self._entry_prefix + exact

    @staticmethod
    def _now_ms() -> int:
        return int(time.time() * 1000)

    def _stamp(self) -> int:
        """A strictly increasing access time in µs (LRU order survives equal clock readings)."""
        with self._stamp_lock:
            self._last_stamp = max(time.time_ns() // 1000, self._last_stamp + 1)
            return self._last_stamp

    # -- capabilities and index --------------------------------------------------------------

    @property
    def supports_vectors(self) -> bool:
        """Whether :meth:`search` can work: ``False`` once the server proved to lack the query engine.

        ``True`` until the server has been asked (see :meth:`check_vector_support`).
        """
        return self._vectors is not False

    async def check_vector_support(self) -> bool:
        """Ask the server whether it has the query engine (``FT.*`` commands); cached."""
        if self._vectors is None:
            try:
                await self._connection().client.execute_command("FT._LIST")
            except ResponseError as exc:
                if not _is_unknown_command(exc):
                    raise
                self._vectors = False
            else:
                self._vectors = True
        return self._vectors

    def _unavailable(self) -> VectorSearchUnavailableError:
        return VectorSearchUnavailableError(
            f"the Redis server at {_redact(self.url)} has no query engine (FT.* commands are unknown), so "
            "semantic cache search is unavailable; exact-match caching still works. Use Redis 8+, "
            "Redis Stack or Redis Cloud for vector search."
        )

    def _as_vector(self, vector: Vector) -> Vector:
        """``vector`` as contiguous little-endian float32 of unit length (learning ``dim``)."""
        array = unit_vector(vector, self.dim)
        if self.dim is None:
            self.dim = int(array.shape[0])
        return array

    async def _ensure_index(self) -> bool:
        """Create the index once (idempotent); ``False`` when the server has no query engine."""
        if self._index_ready:
            return True
        if not await self.check_vector_support() or self.dim is None:
            return False
        client = self._connection().client
        try:
            await client.execute_command(
                "FT.CREATE", self.index_name, "ON", "HASH", "PREFIX", "1", self._entry_prefix,
                "SCHEMA",
                "scope", "TAG", "CASESENSITIVE",
                "namespace", "TAG", "CASESENSITIVE",
                "vector", "VECTOR", self.index_algorithm, "6",
                "TYPE", "FLOAT32", "DIM", str(self.dim), "DISTANCE_METRIC", "COSINE",
            )  # fmt: skip
        except ResponseError as exc:
            if "already exists" not in str(exc).lower():
                raise
            existing = _index_dim(await client.execute_command("FT.INFO", self.index_name))
            if existing is not None and existing != self.dim:
                raise CacheBackendError(
                    f"the Redis index {self.index_name!r} holds {existing}-dimensional vectors, "
                    f"but this cache uses {self.dim}: use another prefix or clear() the cache"
                ) from exc
        self._index_ready = True
        return True

    # -- the contract ------------------------------------------------------------------------

    async def get(self, exact: str) -> CacheEntry | None:
        """See :class:`~.base.CacheBackend`; a corrupt or oversized entry is deleted (a miss)."""
        connection = self._connection()
        raw = await connection.get_script(
            keys=[self._key(exact), self._lru_key], args=[self._stamp(), exact]
        )
        if raw is None:
            return None
        entry = CacheEntry.from_json(raw)
        if entry is None or entry.exact != exact or entry.expired():
            await self.delete(exact)
            return None
        return entry

    async def put(self, entry: CacheEntry, vector: Vector | None = None) -> None:
        """See :class:`~.base.CacheBackend`; the write and the eviction are one transaction."""
        blob = None if vector is None else self._as_vector(vector).tobytes()
        if blob is not None:
            await self._ensure_index()
        ttl_ms: int | None = None
        if entry.expires_at is not None:
            ttl_ms = math.ceil((entry.expires_at - time.time()) * 1000)
            if ttl_ms <= 0:  # already expired: nothing to keep
                await self.delete(entry.exact)
                return
        key = self._key(entry.exact)
        mapping: dict[str, str | bytes] = {
            "entry": entry.to_json(),
            "scope": tag_value(entry.scope),
            "namespace": entry.namespace,
            "query": entry.query,
            "created_at": repr(entry.created_at),
            "expires_at": "" if entry.expires_at is None else repr(entry.expires_at),
        }
        if blob is not None:
            mapping["vector"] = blob
        now = self._now_ms()
        connection = self._connection()
        async with connection.client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=mapping)
            pipe.zadd(self._lru_key, {entry.exact: self._stamp()})
            if ttl_ms is not None and entry.expires_at is not None:
                pipe.pexpire(key, ttl_ms)
                pipe.zadd(self._expiry_key, {entry.exact: math.ceil(entry.expires_at * 1000)})
            else:
                pipe.zrem(self._expiry_key, entry.exact)
            await connection.evict_script(
                keys=[self._lru_key, self._expiry_key],
                args=[
                    self._entry_prefix,
                    -1 if self.max_entries is None else self.max_entries,
                    now,
                ],
                client=pipe,
            )
            await pipe.execute()

    async def search(
        self, scope: str, vector: Vector, k: int = 4
    ) -> list[tuple[CacheEntry, float]]:
        """See :class:`~.base.CacheBackend`; similarity is ``1 - distance`` (Redis cosine distance).

        Raises:
            VectorSearchUnavailableError: the server has no query engine.
        """
        if not await self.check_vector_support():
            raise self._unavailable()
        array = self._as_vector(vector)
        if k <= 0:
            return []
        try:
            raw = await self._knn(scope, array, k)
        except ResponseError as exc:
            if _is_unknown_command(exc):
                self._vectors = False
                raise self._unavailable() from exc
            if not _is_missing_index(exc):
                raise
            # Dropped by clear() elsewhere or lost in a restart: recreate it (existing hashes are
            # indexed again in the background) and answer from what is indexed by then.
            self._index_ready = False
            if not await self._ensure_index():
                return []
            raw = await self._knn(scope, array, k)
        results: list[tuple[CacheEntry, float]] = []
        stale: list[str] = []
        for key, fields in _search_rows(raw):
            exact = key[len(self._entry_prefix) :]
            data = fields.get("entry")
            entry = None if data is None else CacheEntry.from_json(data)
            if entry is None or entry.exact != exact or entry.expired():
                stale.append(exact)
                continue
            if entry.scope != scope:
                continue
            distance = float(_text(fields.get("dist", b"2")))
            similarity = min(1.0, max(-1.0, 1.0 - distance))
            results.append((entry, similarity))
        for exact in stale:
            await self.delete(exact)
        if results:
            stamp = self._stamp()
            await self._connection().client.zadd(
                self._lru_key, {entry.exact: stamp for entry, _ in results}, xx=True
            )
        results.sort(key=lambda item: item[1], reverse=True)
        return results

    async def _knn(self, scope: str, array: Vector, k: int) -> Any:
        query = f"(@scope:{{{escape_tag(tag_value(scope))}}})=>[KNN {k} @vector $vec AS dist]"
        return await self._connection().client.execute_command(
            "FT.SEARCH", self.index_name, query,
            "PARAMS", "2", "vec", array.tobytes(),
            "SORTBY", "dist", "ASC",
            "RETURN", "2", "entry", "dist",
            "LIMIT", "0", str(k),
            "DIALECT", "2",
        )  # fmt: skip

    async def delete(self, exact: str) -> bool:
        """See :class:`~.base.CacheBackend`."""
        async with self._connection().client.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(exact))
            pipe.zrem(self._lru_key, exact)
            pipe.zrem(self._expiry_key, exact)
            deleted, _, _ = await pipe.execute()
        return bool(deleted)

    async def _members(self) -> list[str]:
        members = await self._connection().client.zrange(self._lru_key, 0, -1)
        return [_text(member) for member in members]

    async def _fields(self, exacts: Sequence[str], *fields: str) -> list[list[Any]]:
        async with self._connection().client.pipeline(transaction=False) as pipe:
            for exact in exacts:
                pipe.hmget(self._key(exact), list(fields))
            return list(await pipe.execute())

    async def invalidate(self, *, pattern: str | None = None, namespace: str | None = None) -> int:
        """See :class:`~.base.CacheBackend`; ``pattern`` is an :func:`fnmatch.fnmatchcase` glob.

        With both arguments an entry must match both; with neither every entry goes. Returns how
        many entries were removed.
        """
        members = await self._members()
        removed = 0
        for start in range(0, len(members), _BATCH):
            batch = members[start : start + _BATCH]
            doomed = [
                exact
                for exact, (query, space) in zip(
                    batch, await self._fields(batch, "query", "namespace"), strict=True
                )
                if query is not None
                and (namespace is None or _text(space) == namespace)
                and (pattern is None or fnmatch.fnmatchcase(_text(query), pattern))
            ]
            for exact in doomed:
                removed += await self.delete(exact)
        return removed

    async def clear(self) -> None:
        """Remove this prefix's entries, LRU sets and index (other prefixes are untouched)."""
        client = self._connection().client
        if self._vectors is not False:
            try:
                await client.execute_command("FT.DROPINDEX", self.index_name)
            except ResponseError as exc:
                if _is_unknown_command(exc):
                    self._vectors = False
                elif not _is_missing_index(exc):
                    raise
        self._index_ready = False
        match = _glob_escape(self._entry_prefix) + "*"
        batch: list[bytes] = []
        async for key in client.scan_iter(match=match, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.unlink(*batch)
                batch = []
        if batch:
            await client.unlink(*batch)
        await client.delete(self._lru_key, self._expiry_key)

    async def size(self) -> int:
        """See :class:`~.base.CacheBackend` (entries whose TTL passed are pruned first)."""
        connection = self._connection()
        _, remaining = await connection.evict_script(
            keys=[self._lru_key, self._expiry_key], args=[self._entry_prefix, -1, self._now_ms()]
        )
        return int(remaining)

    async def entries(self) -> AsyncIterator[tuple[CacheEntry, Vector | None]]:
        """See :class:`~.base.CacheBackend` (corrupt and expired entries are skipped)."""
        members = await self._members()
        for start in range(0, len(members), _BATCH):
            batch = members[start : start + _BATCH]
            rows = await self._fields(batch, "entry", "vector")
            for exact, (data, blob) in zip(batch, rows, strict=True):
                entry = None if data is None else CacheEntry.from_json(data)
                if entry is None or entry.exact != exact or entry.expired():
                    continue
                vector = None if not blob else np.frombuffer(blob, dtype="<f4").astype(np.float32)
                yield entry, vector

    async def aclose(self) -> None:
        """Close the connection pool of the current loop (and schedule the others' closing).

        The pools of loops that are already closed are shut down at once.
        """
        loop = asyncio.get_running_loop()
        with self._connections_lock:
            connections = list(self._connections.items())
            self._connections.clear()
        for other, connection in connections:
            if other is loop:
                await connection.client.aclose()
            elif other.is_closed():
                _release(connection)
            elif other.is_running():
                asyncio.run_coroutine_threadsafe(connection.client.aclose(), other)


def _release(connection: _Connection) -> None:
    """Shut down the sockets of a pool whose event loop is closed (best effort, synchronous).

    Its connections cannot be awaited any more (their transports belong to the closed loop), so
    each socket is shut down, which ends the server-side connection at once; the file descriptors
    are closed when the dropped pool is garbage-collected.
    """
    pool = getattr(connection.client, "connection_pool", None)
    members = [
        *getattr(pool, "_available_connections", ()),
        *getattr(pool, "_in_use_connections", ()),
    ]
    for member in members:
        writer = getattr(member, "_writer", None)
        transport = getattr(writer, "transport", None)
        if transport is None:
            continue
        with contextlib.suppress(Exception):
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)


def _redact(url: str) -> str:
    """``url`` without its password (for error messages and logs).

    The userinfo is everything before the *last* ``@`` of the network location (as redis-py and
    :mod:`urllib.parse` split it): ``user:password`` keeps the user, a userinfo without ``:`` is
    replaced whole. A ``password=`` query argument is hidden too. A URL that cannot be parsed
    is reduced to its scheme.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split(":", 1)[0] + "://***" if "://" in url else "***"
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if colon else f"***@{host}"
    query = "&".join(
        f"{name}=***"
        if sep and unquote_plus(name).strip().lower() == "password"
        else f"{name}{sep}{value}"
        for name, sep, value in (item.partition("=") for item in parts.query.split("&"))
    )
    if netloc == parts.netloc and query == parts.query:
        return url
    if not url.startswith(f"{parts.scheme}://"):
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


def _glob_escape(value: str) -> str:
    """Escape the glob characters of a Redis ``SCAN MATCH`` pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in value)
