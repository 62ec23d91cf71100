"""Every cache backend against the same contract (cases from ``cases_*.py``, see backend_cases).

Random L2-normalised float32 vectors of dimension 32 stand in for embeddings, except in the last
test, which runs the engine over each backend with the real MiniLM.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from llm_cache_router_integrations.cache import CacheConfig, CacheEngine
from llm_cache_router_integrations.cache.backends import CacheBackend
from llm_cache_router_integrations.cache.entry import CacheEntry
from llm_cache_router_integrations.types import LLMResponse, Usage

from .backend_cases import BackendCase, BackendEnv, all_backend_cases
from .helpers import answer, ask

DIM = 32
CASES = all_backend_cases()

Make = Callable[..., Awaitable[CacheBackend]]
Matrix = npt.NDArray[np.float32]


@pytest.fixture(params=[pytest.param(c, marks=c.marks, id=c.name) for c in CASES])
def case(request: pytest.FixtureRequest) -> BackendCase:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def make(
    case: BackendCase, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Make]:
    """Build fresh backends of the case (closed after the test)."""
    created: list[CacheBackend] = []

    async def build(max_entries: int | None = 1_000, dim: int = DIM) -> CacheBackend:
        env = BackendEnv(tmp_path=tmp_path_factory.mktemp(case.name), request=request)
        backend = await case.make(env, max_entries, dim)
        created.append(backend)
        return backend

    yield build
    for backend in created:
        await backend.aclose()


@pytest.fixture
async def backend(make: Make) -> CacheBackend:
    return await make()


def entry(
    exact: str,
    scope: str = "scope-a",
    query: str | None = None,
    *,
    namespace: str = "default",
    expires_at: float | None = None,
    content: str | None = None,
) -> CacheEntry:
    return CacheEntry(
        exact=exact,
        scope=scope,
        query=query if query is not None else f"question {exact}?",
        namespace=namespace,
        response=LLMResponse(
            content=content if content is not None else f"answer to {exact} ✓",
            provider_used="test",
            model_used="test-model",
            usage=Usage.of(11, 7),
            route=["test/test-model"],
        ),
        cost_usd=0.00042,
        created_at=time.time(),
        expires_at=expires_at,
    )


def unit(rng: np.random.Generator, n: int = 1, dim: int = DIM) -> Matrix:
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    out: Matrix = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return out


def as_json(item: CacheEntry | None) -> object:
    assert item is not None
    return json.loads(item.to_json())


# -- exact storage ----------------------------------------------------------------------------


async def test_put_get_round_trip(backend: CacheBackend) -> None:
    rng = np.random.default_rng(1)
    stored = entry("k1", expires_at=time.time() + 3600)
    await backend.put(stored, unit(rng)[0])
    plain = entry("k2", query='ünïcode ✓ "quoted"\n', namespace="team-x")
    await backend.put(plain)  # no vector: exact matching only
    assert as_json(await backend.get("k1")) == as_json(stored)
    assert as_json(await backend.get("k2")) == as_json(plain)
    assert await backend.get("missing") is None
    assert await backend.size() == 2
    assert isinstance(backend, CacheBackend)


async def test_put_replaces(backend: CacheBackend) -> None:
    rng = np.random.default_rng(2)
    first, second = unit(rng, 2)
    await backend.put(entry("k", content="old"), first)
    await backend.put(entry("k", content="new"), second)
    got = await backend.get("k")
    assert got is not None and got.response.content == "new"
    assert await backend.size() == 1
    results = await backend.search("scope-a", second, k=5)
    assert [e.exact for e, _ in results] == ["k"]
    assert results[0][1] == pytest.approx(1.0, abs=1e-4)
    # The old vector went with the old entry: only the new one is left to match.
    [(found, similarity)] = await backend.search("scope-a", first, k=5)
    assert found.response.content == "new"
    assert similarity == pytest.approx(float(first @ second), abs=1e-4)


async def test_delete(backend: CacheBackend) -> None:
    rng = np.random.default_rng(3)
    vector = unit(rng)[0]
    await backend.put(entry("k"), vector)
    await backend.put(entry("other"), unit(rng)[0])
    assert await backend.delete("k") is True
    assert await backend.delete("k") is False
    assert await backend.delete("never") is False
    assert await backend.get("k") is None
    assert [e.exact for e, _ in await backend.search("scope-a", vector, k=5)] == ["other"]
    assert await backend.size() == 1


async def test_ttl_expiry(backend: CacheBackend) -> None:
    rng = np.random.default_rng(4)
    short, lasting = unit(rng, 2)
    await backend.put(entry("short", expires_at=time.time() + 0.4), short)
    await backend.put(entry("lasting", expires_at=time.time() + 3600), lasting)
    assert await backend.get("short") is not None
    await asyncio.sleep(0.7)
    assert await backend.get("short") is None
    results = await backend.search("scope-a", short, k=5)
    assert [e.exact for e, _ in results] == ["lasting"]
    assert await backend.get("lasting") is not None
    assert "short" not in [e.exact async for e, _ in backend.entries()]


async def test_already_expired_entry_is_never_returned(backend: CacheBackend) -> None:
    vector = unit(np.random.default_rng(5))[0]
    await backend.put(entry("old", expires_at=time.time() - 1), vector)
    assert await backend.get("old") is None
    assert await backend.search("scope-a", vector) == []


async def test_lru_eviction_order(make: Make) -> None:
    backend = await make(max_entries=3)
    rng = np.random.default_rng(6)
    for key in ("a", "b", "c"):
        await backend.put(entry(key), unit(rng)[0])
    assert await backend.get("a") is not None  # "a" is now the most recently used
    await backend.put(entry("d"), unit(rng)[0])
    assert await backend.size() == 3
    assert await backend.get("b") is None
    for key in ("a", "c", "d"):  # least recently used first: a, c, d
        assert await backend.get(key) is not None, key
    await backend.put(entry("e"))  # evicts "a"
    assert await backend.get("a") is None
    assert await backend.size() == 3
    # An evicted entry's vector is gone too.
    survivors = {e.exact for e, _ in await backend.search("scope-a", unit(rng)[0], k=10)}
    assert survivors == {"c", "d"}


# -- similarity search ------------------------------------------------------------------------


async def test_search_scope_order_and_cosine(backend: CacheBackend) -> None:
    rng = np.random.default_rng(7)
    vectors_a = unit(rng, 6)
    vectors_b = unit(rng, 6)
    for i, v in enumerate(vectors_a):
        await backend.put(entry(f"a{i}", "scope-a"), v * (i + 2))  # not normalised on the way in
    for i, v in enumerate(vectors_b):
        await backend.put(entry(f"b{i}", "scope-b"), v)
    query = unit(rng)[0] * 3
    results = await backend.search("scope-a", query, k=10)
    assert len(results) == 6
    assert all(e.scope == "scope-a" for e, _ in results)
    expected = vectors_a @ (query / np.linalg.norm(query))
    for found, similarity in results:
        assert -1.0 <= similarity <= 1.0
        assert isinstance(similarity, float)
        assert similarity == pytest.approx(float(expected[int(found.exact[1:])]), abs=1e-4)
    sims = [s for _, s in results]
    assert sims == sorted(sims, reverse=True)
    assert [e.exact for e, _ in results] == [f"a{i}" for i in np.argsort(-expected)]
    # The best match of a stored vector is itself, at cosine 1.
    best, similarity = (await backend.search("scope-b", vectors_b[3], k=1))[0]
    assert best.exact == "b3" and similarity == pytest.approx(1.0, abs=1e-4)
    assert as_json(best)["response"]["usage"]["input_tokens"] == 11  # type: ignore[index]


async def test_search_k_limit_and_empty(backend: CacheBackend) -> None:
    rng = np.random.default_rng(8)
    for i, v in enumerate(unit(rng, 7)):
        await backend.put(entry(f"k{i}"), v)
    query = unit(rng)[0]
    assert len(await backend.search("scope-a", query, k=3)) == 3
    assert len(await backend.search("scope-a", query, k=1)) == 1
    assert len(await backend.search("scope-a", query)) == 4  # the default k
    assert len(await backend.search("scope-a", query, k=50)) == 7
    assert await backend.search("scope-a", query, k=0) == []
    assert await backend.search("no-such-scope", query) == []


async def test_opposite_vector_is_minus_one(backend: CacheBackend) -> None:
    vector = unit(np.random.default_rng(9))[0]
    await backend.put(entry("k"), vector)
    [(found, similarity)] = await backend.search("scope-a", -vector)
    assert found.exact == "k" and similarity == pytest.approx(-1.0, abs=1e-4)


async def test_wrong_dimension_is_rejected(backend: CacheBackend) -> None:
    await backend.put(entry("k"), unit(np.random.default_rng(10))[0])
    with pytest.raises(ValueError):
        await backend.put(entry("bad"), np.ones(DIM + 1, dtype=np.float32))
    assert await backend.get("k") is not None


# -- invalidation, clear, size ----------------------------------------------------------------


async def test_invalidate_by_pattern_and_namespace(backend: CacheBackend) -> None:
    rng = np.random.default_rng(11)
    rows = [
        ("w1", "weather in Paris", "team-a"),
        ("w2", "weather in Rome", "team-b"),
        ("c1", "capital of France", "team-a"),
        ("c2", "capital of Italy", "team-b"),
        ("x1", "Weather report", "team-a"),
    ]
    for exact, query, namespace in rows:
        await backend.put(entry(exact, query=query, namespace=namespace), unit(rng)[0])
    assert await backend.invalidate(pattern="weather in *", namespace="team-b") == 1
    assert await backend.get("w2") is None and await backend.get("w1") is not None
    assert await backend.invalidate(pattern="weather*") == 1  # case-sensitive: not "Weather"
    assert await backend.get("w1") is None and await backend.get("x1") is not None
    assert await backend.invalidate(pattern="nothing matches") == 0
    assert await backend.invalidate(namespace="team-a") == 2
    assert await backend.size() == 1
    assert await backend.get("c2") is not None
    remaining = await backend.search("scope-a", unit(rng)[0], k=10)
    assert [e.exact for e, _ in remaining] == ["c2"]
    assert await backend.invalidate(pattern="capital of [IJ]taly") == 1
    assert await backend.size() == 0


async def test_invalidate_without_filters_removes_everything(backend: CacheBackend) -> None:
    await backend.put(entry("a", namespace="n1"))
    await backend.put(entry("b", namespace="n2"), unit(np.random.default_rng(12))[0])
    assert await backend.invalidate() == 2
    assert await backend.size() == 0


async def test_clear_and_size(backend: CacheBackend) -> None:
    rng = np.random.default_rng(13)
    assert await backend.size() == 0
    vectors = unit(rng, 5)
    for i, v in enumerate(vectors):
        await backend.put(entry(f"k{i}", scope=f"s{i % 2}"), v)
    await backend.put(entry("plain"))
    assert await backend.size() == 6
    await backend.clear()
    assert await backend.size() == 0
    assert await backend.get("k0") is None
    assert await backend.search("s0", vectors[0]) == []
    await backend.put(entry("again"), vectors[1])  # usable after clear
    assert [e.exact for e, _ in await backend.search("scope-a", vectors[1])] == ["again"]


# -- export -----------------------------------------------------------------------------------


async def test_entries_export_round_trip(backend: CacheBackend, make: Make) -> None:
    rng = np.random.default_rng(14)
    vectors = unit(rng, 12)
    originals = {}
    for i, v in enumerate(vectors):
        item = entry(f"k{i}", scope=f"s{i % 3}", namespace=f"n{i % 2}")
        originals[item.exact] = (item, v)
        await backend.put(item, v)
    plain = entry("plain")
    await backend.put(plain)
    await backend.put(entry("gone", expires_at=time.time() - 1), vectors[0])

    exported = [(e, v) async for e, v in backend.entries()]
    assert sorted(e.exact for e, _ in exported) == sorted([*originals, "plain"])
    fresh = await make()
    for item, vector in exported:
        if item.exact == "plain":
            assert vector is None
            assert as_json(item) == as_json(plain)
        else:
            original, original_vector = originals[item.exact]
            assert as_json(item) == as_json(original)
            assert vector is not None and vector.shape == (DIM,)
            np.testing.assert_allclose(vector, original_vector, atol=1e-5)
        await fresh.put(item, vector)
    assert await fresh.size() == 13
    for scope in ("s0", "s1", "s2"):
        query = unit(rng)[0]
        before = [(e.exact, round(s, 4)) for e, s in await backend.search(scope, query, k=10)]
        after = [(e.exact, round(s, 4)) for e, s in await fresh.search(scope, query, k=10)]
        assert before == after and len(before) == 4


# -- corruption -------------------------------------------------------------------------------


async def test_corrupt_entry_is_a_miss(case: BackendCase, backend: CacheBackend) -> None:
    rng = np.random.default_rng(15)
    good, bad = unit(rng, 2)
    await backend.put(entry("good"), good)
    await backend.put(entry("bad"), bad)
    await backend.put(entry("bad-plain"))
    await case.corrupt(backend, "bad")
    await case.corrupt(backend, "bad-plain")
    results = await backend.search("scope-a", bad, k=5)  # the corrupt one is nearest
    assert [e.exact for e, _ in results] == ["good"]
    assert await backend.get("bad") is None
    assert await backend.get("bad-plain") is None
    assert await backend.get("good") is not None
    assert [e.exact async for e, _ in backend.entries()] == ["good"]


async def test_corrupt_entry_missed_by_get_first(case: BackendCase, backend: CacheBackend) -> None:
    vector = unit(np.random.default_rng(16))[0]
    await backend.put(entry("bad"), vector)
    await case.corrupt(backend, "bad")
    assert await backend.get("bad") is None
    assert await backend.search("scope-a", vector) == []
    await backend.put(entry("bad"), vector)  # a corrupt entry can be stored over
    assert await backend.get("bad") is not None


# -- scale and concurrency --------------------------------------------------------------------


async def test_no_cross_scope_hits_over_10k_lookups(make: Make) -> None:
    backend = await make(max_entries=None)
    rng = np.random.default_rng(17)
    scopes = [f"scope-{i:02d}" for i in range(50)]
    per_scope = 6
    stored = unit(rng, len(scopes) * per_scope)
    for i, vector in enumerate(stored):
        await backend.put(entry(f"e{i}", scopes[i % len(scopes)]), vector)
    # Queries: fresh random vectors, and exact copies of *other* scopes' vectors (the strongest
    # possible temptation to cross a scope).
    picks = rng.integers(0, len(stored), size=10_000)
    asked = rng.integers(0, len(scopes), size=10_000)
    randoms = unit(rng, 10_000)
    checked = 0

    async def lookup(n: int) -> None:
        nonlocal checked
        scope = scopes[int(asked[n])]
        query = stored[int(picks[n])] if n % 2 else randoms[n]
        results = await backend.search(scope, query, k=3)
        assert len(results) == 3
        assert all(e.scope == scope for e, _ in results), (scope, [e.scope for e, _ in results])
        checked += 1

    for start in range(0, 10_000, 100):
        await asyncio.gather(*(lookup(n) for n in range(start, start + 100)))
    assert checked == 10_000


async def test_concurrent_puts_and_searches(backend: CacheBackend) -> None:
    rng = np.random.default_rng(18)
    workers, per_worker = 16, 15
    vectors = unit(rng, workers * per_worker).reshape(workers, per_worker, DIM)

    async def work(w: int) -> None:
        scope = f"worker-{w}"
        for i in range(per_worker):
            await backend.put(entry(f"w{w}-{i}", scope), vectors[w, i])
            results = await backend.search(scope, vectors[w, i], k=2)
            assert results and results[0][0].exact == f"w{w}-{i}"
            assert all(e.scope == scope for e, _ in results)
            if i % 5 == 4:
                assert await backend.get(f"w{w}-{i - 1}") is not None

    await asyncio.gather(*(work(w) for w in range(workers)))
    assert await backend.size() == workers * per_worker
    for w in range(workers):
        results = await backend.search(f"worker-{w}", vectors[w, 0], k=per_worker + 5)
        assert len(results) == per_worker


async def test_engine_refuses_an_ambiguous_question(make: Make, sentence_encoder: Any) -> None:
    """The engine's ambiguity margin over each backend's real KNN (MiniLM vectors): a question
    between two cached questions with different answers is a miss; a clear nearest one hits."""
    engine = CacheEngine(CacheConfig(), backend=await make(dim=384), encoder=sentence_encoder)

    await engine.store(ask("How do I get a stain out of a carpet?"), answer("one"))
    await engine.store(ask("How can I remove stains from carpet?"), answer("two"))
    await engine.store(ask("How can I extend the battery life of my laptop?"), answer("battery"))
    await engine.store(ask("How do I make my laptop battery last longer?"), answer("other"))
    assert await engine.lookup(ask("How do I remove a stain from a carpet?")) is None
    hit = await engine.lookup(ask("How do I extend my laptop battery life?"))
    assert hit is not None and hit.entry.response.content == "battery"
    snapshot = engine.stats.snapshot()
    assert snapshot["ambiguous_rejections"] == 2 and snapshot["semantic_hits"] == 1
