"""What only the local backends do: the memory backend's FAISS partitions (flat -> HNSW,
tombstones, rebuilds), SQLite persistence and sharing, and the backend factory / config."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from llm_cache_router_integrations.cache.backends import (
    CacheBackend,
    MemoryBackend,
    SQLiteBackend,
    create_backend,
)
from llm_cache_router_integrations.cache.backends import memory as memory_module
from llm_cache_router_integrations.cache.config import (
    DEFAULT_REDIS_URL,
    DEFAULT_SQLITE_PATH,
    CacheConfig,
)
from llm_cache_router_integrations.cache.entry import CacheEntry
from llm_cache_router_integrations.cache.errors import CacheBackendError
from llm_cache_router_integrations.errors import ConfigurationError
from llm_cache_router_integrations.types import LLMResponse

DIM = 16
Matrix = npt.NDArray[np.float32]


def entry(exact: str, scope: str = "s", *, expires_at: float | None = None) -> CacheEntry:
    return CacheEntry(
        exact=exact,
        scope=scope,
        query=f"question {exact}",
        response=LLMResponse(content=f"answer {exact}", provider_used="p", model_used="m"),
        expires_at=expires_at,
    )


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> Matrix:
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    out: Matrix = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return out


# -- memory: partitions -----------------------------------------------------------------------


async def test_partition_switches_to_hnsw_and_stays_exact_enough() -> None:
    backend = MemoryBackend(max_entries=None, dim=DIM, hnsw_threshold=50)
    rng = np.random.default_rng(1)
    vectors = unit(rng, 120)
    for i, v in enumerate(vectors[:50]):
        await backend.put(entry(f"k{i}"), v)
    assert not backend._partitions["s"].hnsw
    for i, v in enumerate(vectors[50:], start=50):
        await backend.put(entry(f"k{i}"), v)
    partition = backend._partitions["s"]
    assert partition.hnsw and partition.live == 120
    for i in range(0, 120, 7):
        [(found, similarity)] = await backend.search("s", vectors[i], k=1)
        assert found.exact == f"k{i}" and similarity == pytest.approx(1.0, abs=1e-4)
    exported = {e.exact: v async for e, v in backend.entries()}
    for i in range(120):
        vector = exported[f"k{i}"]
        assert vector is not None
        np.testing.assert_allclose(vector, vectors[i], atol=1e-6)


async def test_hnsw_tombstones_trigger_a_rebuild() -> None:
    backend = MemoryBackend(max_entries=None, dim=DIM, hnsw_threshold=20)
    rng = np.random.default_rng(2)
    vectors = unit(rng, 100)
    for i, v in enumerate(vectors):
        await backend.put(entry(f"k{i}"), v)
    partition = backend._partitions["s"]
    assert partition.hnsw and partition.size == 100
    for i in range(20):  # 20 % tombstones: not yet
        assert await backend.delete(f"k{i}")
    assert partition.size == 100 and partition.live == 80
    for i in range(20):  # deleted vectors are never returned
        assert all(e.exact != f"k{i}" for e, _ in await backend.search("s", vectors[i], k=5))
    assert await backend.delete("k20")  # > 20 %: rebuilt from the 79 live vectors
    partition = backend._partitions["s"]
    assert partition.size == 79 and partition.live == 79 and partition.hnsw
    for i in range(21, 100):
        [(found, _)] = await backend.search("s", vectors[i], k=1)
        assert found.exact == f"k{i}"
    for i in range(21, 95):  # shrinking far below the threshold goes back to exact search
        await backend.delete(f"k{i}")
    partition = backend._partitions["s"]
    assert not partition.hnsw and partition.live == 5
    assert [e.exact for e, _ in await backend.search("s", vectors[99], k=1)] == ["k99"]


async def test_flat_partition_compacts_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_module, "_FLAT_COMPACT_MIN_HOLES", 4)
    backend = MemoryBackend(max_entries=None, dim=DIM)
    rng = np.random.default_rng(3)
    vectors = unit(rng, 30)
    for round_ in range(3):  # churn: the same keys replaced again and again
        for i, v in enumerate(vectors):
            await backend.put(entry(f"k{i}"), v if round_ % 2 == 0 else -v)
    partition = backend._partitions["s"]
    assert partition.live == 30 and len(partition.members) < 30 + 30
    for i in range(30):
        [(found, similarity)] = await backend.search("s", vectors[i], k=1)
        assert found.exact == f"k{i}" and similarity == pytest.approx(1.0, abs=1e-4)


async def test_empty_partitions_are_dropped() -> None:
    backend = MemoryBackend(max_entries=2, dim=DIM)
    rng = np.random.default_rng(4)
    for i, v in enumerate(unit(rng, 10)):
        await backend.put(entry(f"k{i}", scope=f"scope-{i}"), v)
    assert set(backend._partitions) == {"scope-8", "scope-9"}
    await backend.invalidate(pattern="*")
    assert backend._partitions == {}


async def test_returned_entries_are_copies() -> None:
    backend = MemoryBackend(dim=DIM)
    vector = unit(np.random.default_rng(5), 1)[0]
    await backend.put(entry("k"), vector)
    got = await backend.get("k")
    assert got is not None
    got.response.content = "mutated by the caller"
    again = await backend.get("k")
    assert again is not None and again.response.content == "answer k"


async def test_put_many_matches_put() -> None:
    rng = np.random.default_rng(6)
    vectors = unit(rng, 40)
    one, bulk = MemoryBackend(max_entries=30, dim=DIM), MemoryBackend(max_entries=30, dim=DIM)
    for i, v in enumerate(vectors):
        await one.put(entry(f"k{i}", scope=f"s{i % 3}"), v)
    items = [(entry(f"k{i}", scope=f"s{i % 3}"), v) for i, v in enumerate(vectors)]
    assert await bulk.put_many(items) == 40
    assert await one.size() == await bulk.size() == 30
    query = unit(rng, 1)[0]
    for scope in ("s0", "s1", "s2"):
        a = [(e.exact, round(s, 5)) for e, s in await one.search(scope, query, k=20)]
        b = [(e.exact, round(s, 5)) for e, s in await bulk.search(scope, query, k=20)]
        assert a == b
    with pytest.raises(ValueError):
        await bulk.put_many([(entry("x"), np.ones(DIM + 2, dtype=np.float32))])


async def test_expired_vectors_are_skipped_and_removed() -> None:
    backend = MemoryBackend(dim=DIM, hnsw_threshold=4)
    rng = np.random.default_rng(7)
    vectors = unit(rng, 10)
    for i, v in enumerate(vectors):
        expires = time.time() - 1 if i < 6 else None
        await backend.put(entry(f"k{i}", expires_at=expires), v)
    results = await backend.search("s", vectors[0], k=4)
    assert sorted(e.exact for e, _ in results) == ["k6", "k7", "k8", "k9"]
    assert await backend.size() == 4


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_expired_entries_are_evicted_before_live_ones(kind: str, tmp_path: Path) -> None:
    backend: CacheBackend = (
        SQLiteBackend(tmp_path / "c.sqlite3", max_entries=3)
        if kind == "sqlite"
        else MemoryBackend(max_entries=3)
    )
    soon = time.time() + 0.3
    await backend.put(entry("short-1", expires_at=soon))
    await backend.put(entry("live-1"))
    await backend.put(entry("short-2", expires_at=soon))
    for exact in ("short-1", "short-2"):  # recently used, so the LRU order alone keeps them
        assert await backend.get(exact) is not None
    await asyncio.sleep(0.35)
    await backend.put(entry("live-2"))
    await backend.put(entry("live-3"))
    assert await backend.get("live-1") is not None
    assert await backend.size() == 3
    await backend.aclose()


async def test_memory_expiry_index_stays_bounded() -> None:
    backend = MemoryBackend(max_entries=10)
    for round_ in range(3_000):  # the same keys rewritten: stale expiry items must not pile up
        await backend.put(entry(f"k{round_ % 5}", expires_at=time.time() + 3600))
    assert await backend.size() == 5
    assert len(backend._expiry) <= 2 * 5 + memory_module._EXPIRY_HEAP_SLACK + 1


async def test_without_faiss_exact_matching_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise ImportError("no faiss")

    monkeypatch.setattr(memory_module, "_load_faiss", missing)
    backend = MemoryBackend(dim=DIM)
    vector = unit(np.random.default_rng(8), 1)[0]
    await backend.put(entry("k"), vector)
    assert await backend.get("k") is not None
    assert await backend.search("s", vector) == []
    assert [v async for _, v in backend.entries()] == [None]


async def test_memory_is_thread_safe() -> None:
    import asyncio

    backend = MemoryBackend(max_entries=500, dim=DIM, hnsw_threshold=40)
    rng = np.random.default_rng(9)
    vectors = unit(rng, 800)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(t, 800, 4):
                asyncio.run(backend.put(entry(f"k{i}", scope=f"s{i % 5}"), vectors[i]))
                results = asyncio.run(backend.search(f"s{i % 5}", vectors[i], k=3))
                assert all(e.scope == f"s{i % 5}" for e, _ in results)
                if i % 10 == 0:
                    asyncio.run(backend.delete(f"k{i - 4}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert await backend.size() <= 500
    live = sum(p.live for p in backend._partitions.values())
    assert live == len([1 async for _, v in backend.entries() if v is not None])


# -- SQLite -----------------------------------------------------------------------------------


async def test_sqlite_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "cache.sqlite3"
    rng = np.random.default_rng(10)
    vectors = unit(rng, 5)
    first = SQLiteBackend(path, max_entries=5)
    for i, v in enumerate(vectors):
        await first.put(entry(f"k{i}"), v)
    assert await first.get("k0") is not None  # k1 is now the least recently used
    await first.aclose()
    await first.aclose()  # idempotent
    with pytest.raises(CacheBackendError, match="closed"):
        await first.get("k0")

    second = SQLiteBackend(path, max_entries=5)
    assert await second.size() == 5
    [(found, similarity)] = await second.search("s", vectors[3], k=1)
    assert found.exact == "k3" and similarity == pytest.approx(1.0, abs=1e-5)
    await second.put(entry("new"), vectors[0])
    assert await second.get("k1") is None  # the LRU order survived the reopen
    assert await second.get("k0") is not None
    await second.aclose()


async def test_sqlite_file_holds_json_and_float32_only(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    backend = SQLiteBackend(path)
    vector = unit(np.random.default_rng(11), 1)[0] * 5
    await backend.put(entry("k"), vector)
    await backend.aclose()
    with sqlite3.connect(path) as conn:
        [(raw, blob, mode)] = conn.execute(
            "SELECT entry, vector, (SELECT journal_mode FROM pragma_journal_mode)"
            " FROM cache_entries"
        ).fetchall()
    conn.close()
    assert json.loads(raw)["exact"] == "k"
    np.testing.assert_allclose(np.frombuffer(blob, dtype=np.float32), vector / 5, atol=1e-6)
    assert mode == "wal"


async def test_sqlite_aclose_wins_over_a_concurrent_call(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "c.sqlite3")
    await backend.size()  # the connection is open
    closing, racing = await asyncio.gather(
        backend.aclose(), backend.get("x"), return_exceptions=True
    )
    assert closing is None and isinstance(racing, CacheBackendError)
    await asyncio.sleep(0.05)  # anything the worker still had queued has run
    assert backend._conn is None  # nothing reopened the connection behind ``_close``
    with pytest.raises(CacheBackendError, match="closed"):
        await backend.put(entry("y"))


async def test_sqlite_sees_writes_of_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    rng = np.random.default_rng(12)
    vectors = unit(rng, 3)
    one, two = SQLiteBackend(path), SQLiteBackend(path)
    await one.put(entry("a"), vectors[0])
    assert [e.exact for e, _ in await two.search("s", vectors[0])] == ["a"]  # cached matrix
    await one.put(entry("b"), vectors[1])
    assert [e.exact for e, _ in await two.search("s", vectors[1], k=1)] == ["b"]
    await one.delete("a")
    assert [e.exact for e, _ in await two.search("s", vectors[0], k=5)] == ["b"]
    assert await two.size() == 1
    # Reads elsewhere only move last_access: the search cache of the other process survives.
    assert await one.get("b") is not None
    assert await one.search("s", vectors[1]) != []
    assert await two.size() == 1 and "s" in two._matrices
    await one.aclose()
    await two.aclose()


async def test_sqlite_skips_vectors_of_another_dimension(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "dims.sqlite3")  # no fixed dimension
    rng = np.random.default_rng(13)
    await backend.put(entry("small"), unit(rng, 1, 8)[0])
    await backend.put(entry("large"), unit(rng, 1, 12)[0])
    query = unit(rng, 1, 12)[0]
    assert [e.exact for e, _ in await backend.search("s", query)] == ["large"]
    await backend.aclose()


async def test_sqlite_runs_on_its_worker_thread(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "thread.sqlite3")
    seen: list[str] = []
    original = backend._db

    def spy() -> sqlite3.Connection:
        seen.append(threading.current_thread().name)
        return original()

    backend._db = spy  # type: ignore[method-assign]
    await backend.put(entry("k"))
    await backend.get("k")
    await backend.search("s", np.ones(DIM, dtype=np.float32))
    assert seen and all(name.startswith("llmcache-sqlite") for name in seen)
    assert threading.current_thread().name not in seen
    await backend.aclose()


# -- factory and config -----------------------------------------------------------------------


async def test_factory_builds_local_backends(tmp_path: Path) -> None:
    memory = create_backend(CacheConfig(max_entries=7), dim=DIM)
    assert isinstance(memory, MemoryBackend)
    assert memory.max_entries == 7 and memory.dim == DIM
    path = str(tmp_path / "factory.sqlite3")
    sqlite_backend = create_backend(CacheConfig(backend="sqlite", path=path, max_entries=9))
    assert isinstance(sqlite_backend, SQLiteBackend)
    assert str(sqlite_backend.path) == path and sqlite_backend.max_entries == 9
    assert isinstance(sqlite_backend, CacheBackend)
    await sqlite_backend.aclose()


def test_factory_builds_remote_backends_lazily() -> None:
    redis_backend = create_backend(CacheConfig(backend="redis", prefix="app1", max_entries=3))
    assert type(redis_backend).__name__ == "RedisBackend"
    qdrant_backend = create_backend(CacheConfig(backend="qdrant", prefix="coll"), dim=8)
    assert type(qdrant_backend).__name__ == "QdrantBackend"


def test_config_storage_defaults_and_validation() -> None:
    assert CacheConfig().path is None and CacheConfig().url is None
    assert CacheConfig(backend="sqlite").path == DEFAULT_SQLITE_PATH
    assert CacheConfig(backend="redis").url == DEFAULT_REDIS_URL
    assert CacheConfig(backend="qdrant").path == ":memory:"
    assert CacheConfig(backend="qdrant", url="http://localhost:6333").path is None
    for bad in (
        {"backend": "memory", "path": "x.db"},
        {"backend": "sqlite", "url": "redis://x"},
        {"backend": "redis", "path": "x.db"},
        {"backend": "qdrant", "url": "http://q", "path": "/tmp/q"},
        {"prefix": "has space"},
        {"prefix": ""},
    ):
        with pytest.raises(ValueError):
            CacheConfig.model_validate(bad)
    with pytest.raises(ConfigurationError):
        MemoryBackend(max_entries=0)
    with pytest.raises(ConfigurationError):
        SQLiteBackend(":memory:", dim=0)
