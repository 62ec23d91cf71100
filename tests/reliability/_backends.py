"""Cache backends for the reliability tests: how to build each one and write raw data into it.

Every backend of the project is covered: ``memory`` (FAISS), ``sqlite`` (a file in the test's
temporary directory), ``redis`` (the session's real Redis Stack server, a fresh key prefix) and
``qdrant`` (local mode on disk, a directory in the test's temporary directory).
:func:`write_raw` overwrites what a backend stores for one entry *in the backend's own storage*,
as another process (or an attacker with access to the store) would.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from llm_cache_router_integrations.cache.backends import CacheBackend, MemoryBackend, SQLiteBackend
from llm_cache_router_integrations.cache.backends.qdrant import QdrantBackend, point_id
from llm_cache_router_integrations.cache.backends.redis import RedisBackend

__all__ = ["BACKENDS", "make_backend", "redis_url_for", "write_raw"]

BACKENDS = ("memory", "sqlite", "redis", "qdrant")


def redis_url_for(kind: str, request: pytest.FixtureRequest) -> str | None:
    """The session Redis (flushed after the test) when ``kind`` is ``redis``, else ``None``."""
    return str(request.getfixturevalue("redis_url")) if kind == "redis" else None


def make_backend(
    kind: str,
    tmp_path: Path,
    redis_url: str | None = None,
    *,
    max_entries: int | None = None,
    dim: int | None = None,
) -> CacheBackend:
    """A new, empty backend of ``kind`` (the caller closes it)."""
    unique = f"rel{uuid.uuid4().hex[:10]}"
    if kind == "memory":
        return MemoryBackend(max_entries=max_entries, dim=dim)
    if kind == "sqlite":
        return SQLiteBackend(tmp_path / f"{unique}.sqlite3", max_entries=max_entries, dim=dim)
    if kind == "redis":
        assert redis_url is not None, "the redis backend needs the redis_url fixture"
        return RedisBackend(redis_url, prefix=unique, max_entries=max_entries, dim=dim)
    if kind == "qdrant":
        return QdrantBackend(
            path=str(tmp_path / unique), collection=unique, max_entries=max_entries, dim=dim
        )
    raise ValueError(f"unknown backend {kind!r}")


async def write_raw(backend: CacheBackend, exact: str, payload: str | bytes) -> None:
    """Replace the stored JSON of the entry under ``exact`` (which must exist) by ``payload``."""
    data = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload
    if isinstance(backend, MemoryBackend):
        backend._entries[exact].payload = data
    elif isinstance(backend, SQLiteBackend):
        with sqlite3.connect(backend.path) as conn:
            value: str | bytes = payload
            changed = conn.execute(
                "UPDATE cache_entries SET entry = ? WHERE exact = ?", (value, exact)
            ).rowcount
        conn.close()
        assert changed == 1
    elif isinstance(backend, RedisBackend):
        client = aioredis.Redis.from_url(backend.url)
        try:
            key = f"{backend.prefix}:entry:{exact}"
            assert await client.exists(key)
            await client.hset(key, "entry", data)
        finally:
            await client.aclose()
    elif isinstance(backend, QdrantBackend):
        text = payload if isinstance(payload, str) else payload.decode("latin-1")
        await backend.client().set_payload(
            backend.collection, payload={"entry": text}, points=[point_id(exact)]
        )
    else:  # pragma: no cover - every backend of the project is handled above
        raise TypeError(type(backend).__name__)
