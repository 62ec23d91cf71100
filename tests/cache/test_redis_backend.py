"""Redis-specific behaviour of :class:`RedisBackend` against a real Redis Stack server."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import numpy as np
import pytest
import redis.asyncio as aioredis

from llm_cache_router_integrations.cache.backends.redis import (
    RedisBackend,
    _redact,
    escape_tag,
    tag_value,
)
from llm_cache_router_integrations.cache.config import CacheConfig
from llm_cache_router_integrations.cache.engine import CacheEngine
from llm_cache_router_integrations.cache.errors import (
    CacheBackendError,
    VectorDimensionError,
    VectorSearchUnavailableError,
)
from llm_cache_router_integrations.errors import LLMRouterError
from llm_cache_router_integrations.testing.redis_server import RedisServer

from .helpers import answer, ask, make_entry, vec


class FixedEncoder:
    """Every text maps to the same unit vector (enough to exercise the semantic path)."""

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.tile(vec(1, 1, 0), (len(texts), 1))


async def command(client: aioredis.Redis, *args: Any) -> Any:
    """A raw command (redis-py leaves ``execute_command`` untyped)."""
    return await cast(Any, client).execute_command(*args)


def unique_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def backend(redis_url: str) -> AsyncIterator[RedisBackend]:
    store = RedisBackend(redis_url, prefix=unique_prefix(), max_entries=100)
    yield store
    await store.aclose()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, protocol=3)
    yield client
    await client.aclose()


async def test_ttl_is_native(backend: RedisBackend, raw: aioredis.Redis) -> None:
    await backend.put(make_entry("with-ttl", ttl=60))
    await backend.put(make_entry("forever"))
    ttl_ms = await raw.pttl(f"{backend.prefix}:entry:with-ttl")
    assert 0 < ttl_ms <= 60_000
    assert await raw.pttl(f"{backend.prefix}:entry:forever") == -1


async def test_expired_entries_vanish_and_leave_the_lru(
    backend: RedisBackend, raw: aioredis.Redis
) -> None:
    await backend.put(make_entry("short", ttl=0.15), vec(1, 0, 0))
    await backend.put(make_entry("long"), vec(1, 0, 0))
    await asyncio.sleep(0.3)
    assert not await raw.exists(f"{backend.prefix}:entry:short")  # Redis expired it itself
    assert await backend.get("short") is None
    assert [e.exact for e, _ in await backend.search("scope-1", vec(1, 0, 0))] == ["long"]
    assert await backend.size() == 1
    assert await raw.zcard(f"{backend.prefix}:lru") == 1


async def test_already_expired_entry_is_not_stored(backend: RedisBackend) -> None:
    await backend.put(make_entry("past", ttl=-1))
    assert await backend.get("past") is None
    assert await backend.size() == 0


async def test_index_schema_created_once(backend: RedisBackend, raw: aioredis.Redis) -> None:
    for i in range(3):
        await backend.put(make_entry(f"k{i}"), vec(1, i, 0))
    other = RedisBackend(backend.url, prefix=backend.prefix)  # another process, same prefix
    await other.put(make_entry("k9"), vec(0, 0, 1))
    await other.aclose()
    indexes = [name.decode() for name in await command(raw, "FT._LIST")]
    assert indexes.count(backend.index_name) == 1
    info = await command(raw, "FT.INFO", backend.index_name)
    assert int(info[b"num_docs"]) == 4
    by_name = {a[b"identifier"]: a for a in info[b"attributes"]}
    assert by_name[b"scope"][b"type"] == by_name[b"namespace"][b"type"] == b"TAG"
    vector = by_name[b"vector"]
    assert (vector[b"type"], vector[b"algorithm"], vector[b"dim"]) == (b"VECTOR", b"HNSW", 3)
    assert vector[b"distance_metric"] == b"COSINE"


async def test_index_with_another_dimension_is_refused(backend: RedisBackend) -> None:
    await backend.put(make_entry("a"), vec(1, 0, 0))
    other = RedisBackend(backend.url, prefix=backend.prefix, dim=4)
    with pytest.raises(CacheBackendError, match="3-dimensional"):
        await other.put(make_entry("b"), vec(1, 0, 0, 0))
    await other.aclose()
    with pytest.raises(VectorDimensionError):
        await backend.put(make_entry("c"), vec(1, 0, 0, 0))


async def test_similarity_is_one_minus_cosine_distance(backend: RedisBackend) -> None:
    await backend.put(make_entry("same"), vec(1, 0, 0))
    await backend.put(make_entry("near"), vec(0.6, 0.8, 0))
    await backend.put(make_entry("orthogonal"), vec(0, 0, 1))
    await backend.put(make_entry("opposite"), vec(-1, 0, 0))
    found = await backend.search("scope-1", vec(1, 0, 0), k=4)
    assert [e.exact for e, _ in found] == ["same", "near", "orthogonal", "opposite"]
    sims = [s for _, s in found]
    assert sims == pytest.approx([1.0, 0.6, 0.0, -1.0], abs=1e-5)


async def test_tag_escaping_isolates_scopes(backend: RedisBackend) -> None:
    tricky = 'a-b.c d{x}|y:"z"'
    await backend.put(make_entry("tricky", scope=tricky), vec(1, 0, 0))
    await backend.put(make_entry("plain", scope="a"), vec(1, 0, 0))
    await backend.put(make_entry("prefix", scope="a-b"), vec(1, 0, 0))
    assert [e.exact for e, _ in await backend.search(tricky, vec(1, 0, 0))] == ["tricky"]
    assert [e.exact for e, _ in await backend.search("a", vec(1, 0, 0))] == ["plain"]
    assert [e.exact for e, _ in await backend.search("a-b", vec(1, 0, 0))] == ["prefix"]
    assert await backend.search("A", vec(1, 0, 0)) == []  # TAGs are case-sensitive
    assert escape_tag("a-b c") == "a\\-b\\ c"


async def test_corrupt_hash_field_is_a_miss_and_deleted(
    backend: RedisBackend, raw: aioredis.Redis
) -> None:
    await backend.put(make_entry("bad"), vec(1, 0, 0))
    await backend.put(make_entry("huge"), vec(1, 0, 0))
    await backend.put(make_entry("other"), vec(1, 0, 0))
    await raw.hset(f"{backend.prefix}:entry:bad", "entry", b"\x00{not json")
    await raw.hset(f"{backend.prefix}:entry:huge", "entry", b"x" * 1_100_000)
    found = await backend.search("scope-1", vec(1, 0, 0))
    assert [e.exact for e, _ in found] == ["other"]
    assert not await raw.exists(f"{backend.prefix}:entry:bad")
    await backend.put(make_entry("bad2"))
    await raw.hset(f"{backend.prefix}:entry:bad2", "entry", '{"exact": "someone-else"}')
    assert await backend.get("bad2") is None
    assert not await raw.exists(f"{backend.prefix}:entry:bad2")
    assert await backend.size() == 1


async def test_lru_eviction_is_atomic_and_respects_reads(
    redis_url: str, raw: aioredis.Redis
) -> None:
    store = RedisBackend(redis_url, prefix=unique_prefix(), max_entries=3)
    for i in range(3):
        await store.put(make_entry(f"k{i}"), vec(1, i, 0))
    assert await store.get("k0") is not None  # k1 is now the least recently used
    await store.put(make_entry("k3"), vec(1, 3, 0))
    assert await store.get("k1") is None
    assert not await raw.exists(f"{store.prefix}:entry:k1")
    await asyncio.gather(*(store.put(make_entry(f"n{i}"), vec(1, i, 1)) for i in range(20)))
    assert await store.size() == 3
    assert await raw.zcard(f"{store.prefix}:lru") == 3
    assert len([k async for k in raw.scan_iter(match=f"{store.prefix}:entry:*")]) == 3
    await store.aclose()


async def test_invalidate_by_pattern_and_namespace(backend: RedisBackend) -> None:
    await backend.put(make_entry("a", query="weather in paris", namespace="n1"))
    await backend.put(make_entry("b", query="weather in rome", namespace="n2"))
    await backend.put(make_entry("c", query="capital of peru", namespace="n1"))
    assert await backend.invalidate(pattern="weather*", namespace="n1") == 1
    assert await backend.get("a") is None
    assert await backend.invalidate(namespace="n2") == 1
    assert await backend.invalidate(pattern="*peru") == 1
    assert await backend.size() == 0


async def test_clear_removes_only_its_prefix(redis_url: str, raw: aioredis.Redis) -> None:
    mine = RedisBackend(redis_url, prefix=unique_prefix())
    theirs = RedisBackend(redis_url, prefix=unique_prefix())
    await mine.put(make_entry("a"), vec(1, 0, 0))
    await theirs.put(make_entry("a"), vec(1, 0, 0))
    await raw.set("unrelated", "1")
    await mine.clear()
    assert await mine.size() == 0
    assert await mine.get("a") is None
    indexes = [name.decode() for name in await command(raw, "FT._LIST")]
    assert mine.index_name not in indexes and theirs.index_name in indexes
    assert await theirs.get("a") is not None
    assert await raw.get("unrelated") == b"1"
    # usable again after clear: the index comes back with the next vector
    await mine.put(make_entry("b"), vec(0, 1, 0))
    assert [e.exact for e, _ in await mine.search("scope-1", vec(0, 1, 0))] == ["b"]
    await mine.aclose()
    await theirs.aclose()


async def test_index_dropped_elsewhere_is_recreated(backend: RedisBackend) -> None:
    await backend.put(make_entry("a"), vec(1, 0, 0))
    other = RedisBackend(backend.url, prefix=backend.prefix)
    await other.clear()  # drops the index under our feet
    await other.aclose()
    await backend.put(make_entry("b"), vec(1, 0, 0))  # believes the index exists
    deadline = time.monotonic() + 5
    found: list[str] = []
    while time.monotonic() < deadline and not found:
        found = [e.exact for e, _ in await backend.search("scope-1", vec(1, 0, 0))]
        await asyncio.sleep(0.05)
    assert found == ["b"]


async def test_entries_export_vectors(backend: RedisBackend) -> None:
    await backend.put(make_entry("v"), vec(3, 4, 0))
    await backend.put(make_entry("plain"))
    exported = {entry.exact: vector async for entry, vector in backend.entries()}
    assert exported["plain"] is None
    assert exported["v"] is not None
    np.testing.assert_allclose(exported["v"], [0.6, 0.8, 0.0], rtol=1e-6)


async def test_works_from_two_event_loops(backend: RedisBackend) -> None:
    await backend.put(make_entry("shared"), vec(1, 0, 0))

    def other_loop() -> str | None:
        async def run() -> str | None:
            entry = await backend.get("shared")
            await backend.put(make_entry("from-thread"), vec(0, 1, 0))
            await backend.aclose()  # closes this loop's pool (and schedules the others')
            return None if entry is None else entry.exact

        return asyncio.run(run())

    assert await asyncio.to_thread(other_loop) == "shared"
    assert await backend.get("from-thread") is not None  # a new pool for this loop


async def test_server_without_query_engine_keeps_exact_matching() -> None:
    with RedisServer(modules=False) as server:
        store = RedisBackend(server.url, prefix=unique_prefix())
        assert store.supports_vectors  # not asked yet
        await store.put(make_entry("a"), vec(1, 0, 0))  # the vector is kept, not indexed
        assert (await store.get("a")) is not None
        assert not store.supports_vectors
        assert not await store.check_vector_support()
        with pytest.raises(VectorSearchUnavailableError) as caught:
            await store.search("scope-1", vec(1, 0, 0))
        message = str(caught.value)
        assert "query engine" in message
        assert "Redis 8" in message and "Redis Stack" in message and "Redis Cloud" in message
        assert isinstance(caught.value, CacheBackendError)
        assert isinstance(caught.value, LLMRouterError)
        assert await store.invalidate(pattern="what*") == 1
        await store.put(make_entry("b"))
        await store.clear()
        assert await store.size() == 0
        await store.aclose()


async def test_fresh_backend_on_plain_server_fails_search_clearly() -> None:
    with RedisServer(modules=False) as server:
        store = RedisBackend(server.url, prefix=unique_prefix())
        with pytest.raises(VectorSearchUnavailableError, match="Redis Stack"):
            await store.search("scope-1", vec(1, 0, 0))
        await store.aclose()


async def test_outage_raises_quickly_and_recovers() -> None:
    with RedisServer() as server:
        store = RedisBackend(server.url, prefix=unique_prefix(), socket_timeout=0.5, retries=1)
        engine = CacheEngine(
            CacheConfig(ttl=None), backend=store, encoder=FixedEncoder(), guard=False
        )
        await store.put(make_entry("a"), vec(1, 0, 0))
        assert await store.get("a") is not None
        assert await engine.store(ask("hello there"), answer("hi"))
        server.stop()
        for operation in (
            store.get("a"),
            store.put(make_entry("b"), vec(1, 0, 0)),
            store.search("scope-1", vec(1, 0, 0)),
            store.size(),
        ):
            started = time.monotonic()
            with pytest.raises(Exception):  # noqa: B017 - redis-py's ConnectionError/TimeoutError
                await operation
            assert time.monotonic() - started < 3
        started = time.monotonic()
        assert await engine.lookup(ask("hello there")) is None  # an outage is a miss
        assert not await engine.store(ask("something else"), answer("x"))
        assert time.monotonic() - started < 6
        assert engine.stats.snapshot()["errors"] == 2
        server.start()
        assert await store.get("a") is None  # no persistence: the restarted server is empty
        await store.put(make_entry("c"), vec(1, 0, 0))
        assert await store.get("c") is not None
        deadline = time.monotonic() + 5
        found: list[str] = []
        while time.monotonic() < deadline and not found:
            found = [e.exact for e, _ in await store.search("scope-1", vec(1, 0, 0))]
            await asyncio.sleep(0.05)
        assert found == ["c"]
        assert await engine.store(ask("hello there"), answer("hi"))
        hit = await engine.lookup(ask("hello there"))
        assert hit is not None and hit.kind == "exact"
        await store.aclose()


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://:s3cr@tPa55word@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:s3cr@tPa55word@h:6379/0", "redis://user:***@h:6379/0"),
        ("redis://svc@corp.com:TopSecret@h:6379/0", "redis://svc@corp.com:***@h:6379/0"),
        ("redis://:pa:ss@h/0", "redis://:***@h/0"),
        ("redis://s3cr3t@h/0", "redis://***@h/0"),
        ("rediss://default:abc@[::1]:1/0", "rediss://default:***@[::1]:1/0"),
        ("unix:///tmp/r.sock?db=0&password=s3cr3t", "unix:///tmp/r.sock?db=0&password=***"),
        ("redis://h:6379/0?Pass%77ord=s3cr3t", "redis://h:6379/0?Pass%77ord=***"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
    ],
)
def test_redact_hides_the_password_as_redis_py_parses_it(url: str, redacted: str) -> None:
    assert _redact(url) == redacted


async def test_error_message_never_shows_a_password_with_at_signs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    password = "s3cr@tPa55word"
    with RedisServer(modules=False) as server:
        admin = aioredis.Redis.from_url(server.url)
        await admin.config_set("requirepass", password)
        await admin.aclose()
        url = f"redis://:{password}@127.0.0.1:{server.port}/0"
        store = RedisBackend(url, prefix=unique_prefix())
        await store.put(make_entry("a"))  # redis-py splits at the last '@': authenticated
        assert await store.get("a") is not None
        with pytest.raises(VectorSearchUnavailableError) as caught:
            await store.search("scope-1", vec(1, 0, 0))
        assert "Pa55word" not in str(caught.value) and "s3cr" not in str(caught.value)
        assert f"redis://:***@127.0.0.1:{server.port}/0" in str(caught.value)
        await store.aclose()
        fresh = RedisBackend(url, prefix=unique_prefix())  # not asked yet: the engine tries FT.*
        engine = CacheEngine(
            CacheConfig(ttl=None), backend=fresh, encoder=FixedEncoder(), guard=False
        )
        with caplog.at_level(logging.WARNING):
            assert await engine.lookup(ask("hello there")) is None
        assert "query engine" in caplog.text and "Pa55word" not in caplog.text
        await fresh.aclose()


async def test_pools_of_closed_event_loops_are_released(redis_url: str) -> None:
    admin = aioredis.Redis.from_url(redis_url)

    async def clients(at_most: int) -> int:
        """The connected clients, polled until there are at most ``at_most`` (or 5 s passed)."""
        deadline = time.monotonic() + 5
        count = int((await admin.info("clients"))["connected_clients"])
        while count > at_most and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            count = int((await admin.info("clients"))["connected_clients"])
        return count

    store = RedisBackend(redis_url, prefix=unique_prefix())
    await store.put(make_entry("a"), vec(1, 0, 0))  # this (still running) loop's pool
    before = await clients(10_000)

    def many_loops() -> int:
        found = 0
        for _ in range(12):  # each asyncio.run() is a new loop, closed when it returns
            found += asyncio.run(store.get("a")) is not None
        return found

    assert await asyncio.to_thread(many_loops) == 12
    assert await clients(before + 1) <= before + 1  # at most the last closed loop's pool
    assert await store.get("a") is not None  # the running loop's pool was kept and still works
    await store.aclose()  # also shuts down the last closed loop's pool
    assert await clients(before - 1) <= before - 1
    await admin.aclose()


async def test_scopes_a_tag_cannot_hold_still_match(backend: RedisBackend) -> None:
    scopes = ["a,b", "a", "b", " lead", "trail ", "a\u00a0b", "", "ab\n", "a b", "x|y"]
    scopes.append(tag_value("a,b"))  # a scope shaped like a digest marker gets its own
    for i, scope in enumerate(scopes):
        await backend.put(make_entry(f"e{i}", scope=scope), vec(1, 0, 0.01 * i))
    for i, scope in enumerate(scopes):
        found = await backend.search(scope, vec(1, 0, 0), k=len(scopes))
        assert [e.exact for e, _ in found] == [f"e{i}"], repr(scope)
    # 'a,b' is not indexed under 'a', so it cannot take the only slot of a k=1 search for 'a'
    found = await backend.search("a", vec(1, 0, 0), k=1)
    assert [e.exact for e, _ in found] == ["e1"]


async def test_tag_safe_scopes_are_indexed_unchanged(
    backend: RedisBackend, raw: aioredis.Redis
) -> None:
    hex_scope = hashlib.sha256(b"what the engine uses").hexdigest()
    await backend.put(make_entry("hex", scope=hex_scope), vec(1, 0, 0))
    await backend.put(make_entry("comma", scope="a,b"), vec(1, 0, 0))
    # entries written before the change (hex scopes) have the same hash and keep matching
    assert await raw.hget(f"{backend.prefix}:entry:hex", "scope") == hex_scope.encode()
    digest = "h-" + hashlib.sha256(b"a,b").hexdigest()
    assert await raw.hget(f"{backend.prefix}:entry:comma", "scope") == digest.encode()
    assert [e.exact for e, _ in await backend.search(hex_scope, vec(1, 0, 0))] == ["hex"]
    assert tag_value("a-b.c:d_e") == "a-b.c:d_e"
