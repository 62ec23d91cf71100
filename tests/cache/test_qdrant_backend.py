"""Qdrant-specific behaviour of :class:`QdrantBackend` in local mode (on disk and in memory)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from llm_cache_router_integrations.cache.backends.qdrant import QdrantBackend, point_id
from llm_cache_router_integrations.cache.config import CacheConfig
from llm_cache_router_integrations.cache.engine import CacheEngine
from llm_cache_router_integrations.cache.errors import CacheBackendError, VectorDimensionError
from llm_cache_router_integrations.errors import ConfigurationError
from llm_cache_router_integrations.types import LLMResponse

from .helpers import ask, make_entry, vec


class FixedEncoder:
    """Every text maps to the same unit vector (enough to exercise the semantic path)."""

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.tile(vec(1, 1, 0), (len(texts), 1))


@pytest.fixture
async def backend() -> AsyncIterator[QdrantBackend]:
    store = QdrantBackend(location=":memory:", max_entries=100)
    yield store
    await store.aclose()


async def test_local_mode_persists_across_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "qdrant")
    store = QdrantBackend(path=path, collection="answers")
    await store.put(make_entry("v", query="hello world"), vec(1, 0, 0))
    await store.put(make_entry("plain", ttl=3600))
    await store.put(make_entry("gone", ttl=0.05))
    assert await store.get("v") is not None
    await store.aclose()
    await asyncio.sleep(0.1)

    reopened = QdrantBackend(path=path, collection="answers")  # dim comes from the collection
    assert await reopened.get("v") is not None
    assert await reopened.get("plain") is not None
    assert await reopened.get("gone") is None
    assert reopened.dim == 3
    found = await reopened.search("scope-1", vec(1, 0, 0))
    assert [(e.exact, round(s, 5)) for e, s in found] == [("v", 1.0)]
    assert await reopened.size() == 2
    await reopened.aclose()


async def test_lru_order_survives_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "qdrant")
    store = QdrantBackend(path=path, max_entries=3)
    for key in ("a", "b", "c"):
        await store.put(make_entry(key), vec(1, 0, 0))
    assert await store.get("a") is not None  # written to disk lazily, at the latest on close
    await store.aclose()
    reopened = QdrantBackend(path=path, max_entries=3)
    await reopened.put(make_entry("d"), vec(1, 0, 0))
    assert await reopened.get("b") is None
    assert {e.exact async for e, _ in reopened.entries()} == {"a", "c", "d"}
    await reopened.aclose()


@pytest.mark.filterwarnings(
    "ignore::ResourceWarning"
)  # qdrant-client leaks the lock file it failed on
async def test_local_path_is_locked_to_one_client(tmp_path: Path) -> None:
    path = str(tmp_path / "qdrant")
    first = QdrantBackend(path=path)
    await first.put(make_entry("a"))
    second = QdrantBackend(path=path)
    with pytest.raises(RuntimeError, match="already accessed"):
        await second.get("a")
    await first.aclose()


async def test_payload_filter_isolates_scopes(backend: QdrantBackend) -> None:
    await backend.put(make_entry("s1", scope="scope-1"), vec(1, 0, 0))
    await backend.put(make_entry("s2", scope="scope-2"), vec(1, 0, 0))
    await backend.put(make_entry("s1b", scope="scope-1"), vec(0, 1, 0))
    await backend.put(make_entry("exact-only", scope="scope-1"))  # no vector: never a candidate
    assert [e.exact for e, _ in await backend.search("scope-1", vec(1, 0, 0))] == ["s1", "s1b"]
    assert [e.exact for e, _ in await backend.search("scope-2", vec(0, 1, 0))] == ["s2"]
    assert await backend.search("scope-3", vec(1, 0, 0)) == []


async def test_cosine_score_is_the_similarity(backend: QdrantBackend) -> None:
    await backend.put(make_entry("same"), vec(1, 0, 0))
    await backend.put(make_entry("near"), vec(0.6, 0.8, 0))
    await backend.put(make_entry("orthogonal"), vec(0, 0, 1))
    await backend.put(make_entry("opposite"), vec(-1, 0, 0))
    found = await backend.search("scope-1", vec(1, 0, 0), k=4)
    assert [e.exact for e, _ in found] == ["same", "near", "orthogonal", "opposite"]
    assert [s for _, s in found] == pytest.approx([1.0, 0.6, 0.0, -1.0], abs=1e-5)


async def test_expired_entries_are_filtered_out(backend: QdrantBackend) -> None:
    await backend.put(make_entry("short", ttl=0.1), vec(1, 0, 0))
    await backend.put(make_entry("long", ttl=3600), vec(1, 0, 0))
    await asyncio.sleep(0.2)
    assert [e.exact for e, _ in await backend.search("scope-1", vec(1, 0, 0))] == ["long"]
    assert [e.exact async for e, _ in backend.entries()] == ["long"]
    assert await backend.get("short") is None
    assert await backend.size() == 1


async def test_namespace_and_pattern_invalidation(backend: QdrantBackend) -> None:
    await backend.put(make_entry("a", query="weather in paris", namespace="n1"), vec(1, 0, 0))
    await backend.put(make_entry("b", query="weather in rome", namespace="n2"), vec(1, 0, 0))
    await backend.put(make_entry("c", query="capital of peru", namespace="n1"))
    assert await backend.invalidate(pattern="weather*", namespace="n1") == 1
    assert await backend.get("a") is None and await backend.get("b") is not None
    assert await backend.invalidate(namespace="n2") == 1
    assert await backend.invalidate(pattern="*peru") == 1
    assert await backend.size() == 0


async def test_lru_eviction_by_last_access() -> None:
    store = QdrantBackend(max_entries=3)
    for i in range(3):
        await store.put(make_entry(f"k{i}"), vec(1, i, 0))
    assert await store.get("k0") is not None
    assert [e.exact for e, _ in await store.search("scope-1", vec(1, 1, 0), k=1)] == ["k1"]
    await store.put(make_entry("k3"), vec(1, 3, 0))  # k2 is the least recently used
    assert await store.get("k2") is None
    assert {e.exact async for e, _ in store.entries()} == {"k0", "k1", "k3"}
    assert await store.size() == 3
    await store.aclose()


async def test_exact_only_collection_gains_vectors_later() -> None:
    store = QdrantBackend()  # dim unknown: the first entry has no vector
    await store.put(make_entry("plain"))
    await store.put(make_entry("vector"), vec(0, 1, 0))
    assert await store.get("plain") is not None
    assert [e.exact for e, _ in await store.search("scope-1", vec(0, 1, 0))] == ["vector"]
    exported = {e.exact: v async for e, v in store.entries()}
    assert exported["plain"] is None
    assert exported["vector"] is not None
    np.testing.assert_allclose(exported["vector"], [0.0, 1.0, 0.0], atol=1e-6)
    with pytest.raises(VectorDimensionError):
        await store.put(make_entry("bad"), vec(1, 0, 0, 0))
    await store.aclose()


async def test_collection_of_another_dimension_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "qdrant")
    store = QdrantBackend(path=path, dim=3)
    await store.put(make_entry("a"), vec(1, 0, 0))
    await store.aclose()
    other = QdrantBackend(path=path, dim=4)
    with pytest.raises(CacheBackendError, match="3-dimensional"):
        await other.put(make_entry("b"), vec(1, 0, 0, 0))
    await other.aclose()


async def test_corrupt_payload_is_a_miss_and_deleted(backend: QdrantBackend) -> None:
    await backend.put(make_entry("bad"), vec(1, 0, 0))
    await backend.put(make_entry("good"), vec(1, 0, 0))
    await backend.client().set_payload(
        backend.collection, payload={"entry": "{not json"}, points=[point_id("bad")]
    )
    assert [e.exact for e, _ in await backend.search("scope-1", vec(1, 0, 0))] == ["good"]
    assert await backend.get("bad") is None
    assert await backend.size() == 1
    await backend.client().set_payload(
        backend.collection, payload={"entry": "x" * 1_100_000}, points=[point_id("good")]
    )
    assert await backend.get("good") is None
    assert await backend.size() == 0


async def test_unwritable_store_raises_and_the_engine_misses() -> None:
    store = QdrantBackend()
    engine = CacheEngine(CacheConfig(ttl=None), backend=store, encoder=FixedEncoder(), guard=False)
    response = LLMResponse(content="hi", provider_used="p", model_used="m")
    assert await engine.store(ask("hello"), response)
    assert await engine.lookup(ask("hello")) is not None
    await store.client().close()  # the store goes away under the backend
    with pytest.raises(RuntimeError, match="closed"):
        await store.put(make_entry("x"), vec(1, 0, 0))
    with pytest.raises(RuntimeError):
        await store.get("x")
    assert not await engine.store(ask("another"), response)
    assert await engine.lookup(ask("hello")) is None
    assert engine.stats.snapshot()["errors"] == 2
    await store.aclose()


async def test_usable_from_another_event_loop(backend: QdrantBackend) -> None:
    await backend.put(make_entry("shared"), vec(1, 0, 0))

    def other_loop() -> list[str]:
        async def run() -> list[str]:
            await backend.put(make_entry("from-thread"), vec(0, 1, 0))
            return [e.exact for e, _ in await backend.search("scope-1", vec(1, 0, 0))]

        return asyncio.run(run())

    assert await asyncio.to_thread(other_loop) == ["shared", "from-thread"]
    assert await backend.get("from-thread") is not None


def test_options_are_validated() -> None:
    with pytest.raises(ConfigurationError):
        QdrantBackend(url="http://localhost:6333", path="/tmp/x")
    with pytest.raises(ConfigurationError):
        QdrantBackend(max_entries=0)
    assert QdrantBackend().local and QdrantBackend(url="http://localhost:6333").local is False


async def test_expired_entry_is_evicted_before_a_live_one() -> None:
    store = QdrantBackend(max_entries=2)
    for key in ("x", "y", "z"):  # the first eviction (of x) also sweeps expired entries
        await store.put(make_entry(key), vec(1, 0, 0))
    await store.put(make_entry("short", ttl=0.2), vec(1, 0, 0))  # evicts y
    await asyncio.sleep(0.3)  # short has expired but still holds a slot
    await store.put(make_entry("new"), vec(1, 0, 0))
    assert await store.get("z") is not None  # the live entry stays; the expired one went
    assert sorted([e.exact async for e, _ in store.entries()]) == ["new", "z"]
    assert await store.size() == 2
    await store.aclose()


async def test_entries_are_least_recently_used_first_and_survive_import(
    tmp_path: Path,
) -> None:
    source = QdrantBackend(collection="source", max_entries=12)
    names = [f"k{i:02d}" for i in range(12)]
    for i, name in enumerate(names):  # point ids (uuid5) are in another order than the names
        await source.put(make_entry(name, ttl=3600 if i % 2 else None), vec(1, i, 0))
    assert await source.get("k00") is not None
    assert [e.exact async for e, _ in source.entries()] == [*names[1:], "k00"]

    path = tmp_path / "export.jsonl"
    exporter = CacheEngine(CacheConfig(ttl=None), backend=source, guard=False)
    assert await exporter.export_jsonl(path) == 12
    target = QdrantBackend(collection="target", max_entries=12)
    importer = CacheEngine(CacheConfig(ttl=None), backend=target, guard=False)
    assert await importer.import_jsonl(path) == (12, 0)
    await target.put(make_entry("new"), vec(0, 0, 1))  # evicts the least recently used: k01
    assert [e.exact async for e, _ in target.entries()] == [*names[2:], "k00", "new"]
    await source.aclose()
    await target.aclose()


async def test_scroll_by_last_access_pages_through_equal_stamps(backend: QdrantBackend) -> None:
    # The server-mode order of entries(): Qdrant's ordered scroll pages with an inclusive
    # start_from, so equal last_access values across page boundaries must neither repeat nor stall.
    names = [f"p{i}" for i in range(9)]
    for name in names:
        await backend.put(make_entry(name), vec(1, 0, 0))
    stamps = [1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 4.0]
    for name, stamp in zip(reversed(names), stamps, strict=True):
        await backend.client().set_payload(
            backend.collection, payload={"last_access": stamp}, points=[point_id(name)]
        )
    ordered = [
        str((record.payload or {})["exact"])
        async for record in backend._by_last_access(None, page=2)
    ]
    assert len(ordered) == len(set(ordered)) == 9
    assert ordered[0] == "p8" and ordered[-1] == "p0"
    assert set(ordered[1:6]) == {"p7", "p6", "p5", "p4", "p3"}
    assert set(ordered[6:8]) == {"p2", "p1"}
