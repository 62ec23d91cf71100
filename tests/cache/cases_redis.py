"""The Redis backend under the contract (the session's real Redis Stack, a fresh prefix per backend)."""

from __future__ import annotations

import redis.asyncio as aioredis

from llm_cache_router_integrations.cache.backends import CacheBackend
from llm_cache_router_integrations.cache.backends.redis import RedisBackend

from .backend_cases import BackendCase, BackendEnv


async def make(env: BackendEnv, max_entries: int | None, dim: int) -> CacheBackend:
    url = env.fixture("redis_url")  # flushed after the test
    return RedisBackend(url, prefix=env.unique, max_entries=max_entries, dim=dim)


async def make_flat(env: BackendEnv, max_entries: int | None, dim: int) -> CacheBackend:
    url = env.fixture("redis_url")
    return RedisBackend(
        url, prefix=env.unique, max_entries=max_entries, dim=dim, index_algorithm="FLAT"
    )


async def corrupt(backend: CacheBackend, exact: str) -> None:
    # Another client writes, as another process would: the backend must notice.
    assert isinstance(backend, RedisBackend)
    client = aioredis.Redis.from_url(backend.url)
    try:
        key = f"{backend.prefix}:entry:{exact}"
        assert await client.exists(key)
        await client.hset(key, "entry", '{"exact": 1, "query": ')
    finally:
        await client.aclose()


CASES = [
    BackendCase("redis", make, corrupt),
    BackendCase("redis-flat", make_flat, corrupt),
]
