"""The cache engine with the real MiniLM encoder: exact, semantic, guard, scope, policy, outages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llm_cache_router_integrations.cache import CacheConfig, CacheEngine
from llm_cache_router_integrations.cache.backends import MemoryBackend
from llm_cache_router_integrations.types import ChatRequest

from .helpers import answer, ask


@pytest.fixture
def engine(sentence_encoder: Any) -> CacheEngine:
    return CacheEngine(CacheConfig(), encoder=sentence_encoder)


async def test_exact_hit_needs_no_embedding(engine: CacheEngine, sentence_encoder: Any) -> None:
    await engine.store(ask("What is the capital of France?"), answer("Paris."), cost_usd=0.001)
    encoded = sentence_encoder.stats().requests
    hit = await engine.lookup(ask("What is the capital of France?"))
    assert hit is not None and hit.kind == "exact" and hit.entry.response.content == "Paris."
    assert sentence_encoder.stats().requests == encoded
    assert engine.stats.snapshot()["saved_cost_usd"] == pytest.approx(0.001)


async def test_paraphrase_hits_and_near_misses_do_not(engine: CacheEngine) -> None:
    await engine.store(ask("What is the capital of France?"), answer("Paris."))
    await engine.store(ask("How do I convert 5 kilometers to miles?"), answer("5 km = 3.11 miles"))
    await engine.store(ask("Is coffee good for your health?"), answer("In moderation, yes."))
    hit = await engine.lookup(ask("What's the capital of France?"))
    assert hit is not None and hit.kind == "semantic" and hit.entry.response.content == "Paris."
    for near_miss in (
        "What is the capital of Germany?",  # entity
        "How do I convert 50 kilometers to miles?",  # number
        "How do I convert 5 miles to kilometers?",  # direction
        "Is coffee bad for your health?",  # polarity
    ):
        assert await engine.lookup(ask(near_miss)) is None, near_miss
    snapshot = engine.stats.snapshot()
    assert snapshot["semantic_hits"] == 1 and snapshot["guard_rejections"] >= 1
    print(f"engine stats: {snapshot}")


CARPET = "How do I remove a stain from a carpet?"
CARPET_CACHED = ("How do I get a stain out of a carpet?", "How can I remove stains from carpet?")
"""Both cached questions are within 0.02 cosine of ``CARPET`` (0.958 and 0.945) and pass the guard."""


async def test_a_query_between_two_different_answers_is_a_miss(sentence_encoder: Any) -> None:
    engine = CacheEngine(CacheConfig(), encoder=sentence_encoder)
    for i, cached in enumerate(CARPET_CACHED):
        await engine.store(ask(cached), answer(f"answer {i}"))
    assert await engine.lookup(ask(CARPET)) is None
    snapshot = engine.stats.snapshot()
    assert snapshot["ambiguous_rejections"] == 2 and snapshot["semantic_hits"] == 0
    # A clear nearest neighbour is still served: the runner-up is 0.105 further away.
    await engine.store(ask("How can I extend the battery life of my laptop?"), answer("battery"))
    await engine.store(ask("How do I make my laptop battery last longer?"), answer("other"))
    hit = await engine.lookup(ask("How do I extend my laptop battery life?"))
    assert hit is not None and hit.entry.response.content == "battery"


async def test_near_entries_with_the_same_answer_are_not_ambiguous(sentence_encoder: Any) -> None:
    engine = CacheEngine(CacheConfig(), encoder=sentence_encoder)
    for cached in CARPET_CACHED:
        await engine.store(ask(cached), answer("Blot it, then use cold water and dish soap."))
    hit = await engine.lookup(ask(CARPET))
    assert hit is not None and hit.entry.query == CARPET_CACHED[0]
    assert engine.stats.snapshot()["ambiguous_rejections"] == 0


async def test_ambiguity_margin_zero_serves_the_nearest(sentence_encoder: Any) -> None:
    engine = CacheEngine(CacheConfig(ambiguity_margin=0), encoder=sentence_encoder)
    for i, cached in enumerate(CARPET_CACHED):
        await engine.store(ask(cached), answer(f"answer {i}"))
    hit = await engine.lookup(ask(CARPET))
    assert hit is not None and hit.entry.response.content == "answer 0"


async def test_scope_is_a_hard_filter(engine: CacheEngine) -> None:
    await engine.store(ask("Summarise the French revolution", temperature=0), answer("..."))
    same = ask("Summarise the French revolution", temperature=0)
    assert await engine.lookup(same) is not None
    for other in (
        ask("Summarise the French revolution", temperature=0.2),
        ask("Summarise the French revolution", temperature=0, max_tokens=50),
        ChatRequest.model_validate(
            {
                "model": "gpt-4o",
                "temperature": 0,
                "messages": [{"role": "user", "content": "Summarise the French revolution"}],
            }
        ),
        ask(
            "",
            temperature=0,
            messages=[
                {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": "Summarise the French revolution"},
            ],
        ),
        ask(
            "",
            temperature=0,
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Summarise the French revolution"},
            ],
        ),
    ):
        assert await engine.lookup(other) is None
    assert await engine.lookup(same, namespace="tenant-b") is None


async def test_policy_only_caches_complete_deterministic_answers(engine: CacheEngine) -> None:
    assert not await engine.store(ask("Write a poem", temperature=0.9), answer("roses"))
    cut = answer("half a poem").model_copy(update={"finish_reason": "length"})
    assert not await engine.store(ask("Write a poem", temperature=0), cut)
    assert not await engine.store(ask("Write a poem", temperature=0), answer(""))
    assert await engine.store(ask("Write a poem", temperature=0), answer("roses are red"))
    explicit = CacheEngine(CacheConfig(max_temperature=1.0), encoder=engine.encoder)
    assert await explicit.store(ask("Write a poem", temperature=0.9), answer("roses"))


async def test_media_enters_the_key_as_a_fingerprint(engine: CacheEngine) -> None:
    def with_image(data: str) -> ChatRequest:
        return ask(
            "",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{data}"},
                        },
                    ],
                }
            ],
        )

    await engine.store(with_image("AAAA" * 1000), answer("A cat."))
    assert (await engine.lookup(with_image("AAAA" * 1000))) is not None
    assert (await engine.lookup(with_image("BBBB" * 1000))) is None  # same words, other image
    entry = next(iter([e async for e, _ in engine.backend.entries()]))
    assert "AAAA" not in entry.scope + entry.exact + entry.query


async def test_backend_outage_is_a_counted_miss(sentence_encoder: Any) -> None:
    class Broken(MemoryBackend):
        async def get(self, exact: str) -> Any:
            raise ConnectionError("backend down")

        async def put(self, entry: Any, vector: Any = None) -> None:
            raise ConnectionError("backend down")

    engine = CacheEngine(CacheConfig(), backend=Broken(), encoder=sentence_encoder)
    assert not await engine.store(ask("hello"), answer("hi"))
    assert await engine.lookup(ask("hello")) is None
    snapshot = engine.stats.snapshot()
    assert snapshot["errors"] == 2 and snapshot["misses"] == 1


async def test_export_import_jsonl(
    engine: CacheEngine, sentence_encoder: Any, tmp_path: Path
) -> None:
    for i in range(5):
        await engine.store(ask(f"Question number {i} about caching"), answer(f"answer {i}"))
    path = tmp_path / "cache.jsonl"
    assert await engine.export_jsonl(path) == 5
    with path.open("a") as handle:
        handle.write('{"entry": {"exact": 1}}\n')  # a malformed line is skipped, not loaded
    fresh = CacheEngine(CacheConfig(), encoder=sentence_encoder)
    assert await fresh.import_jsonl(path) == (5, 1)
    hit = await fresh.lookup(ask("Question number 3 about caching"))
    assert hit is not None and hit.entry.response.content == "answer 3"


async def test_invalidate_and_clear(engine: CacheEngine) -> None:
    await engine.store(ask("weather in Paris"), answer("sunny"))
    await engine.store(ask("weather in Rome"), answer("rainy"))
    await engine.store(ask("stock price of ACME"), answer("42"), namespace="finance")
    assert await engine.invalidate(pattern="weather in P*") == 1
    assert await engine.lookup(ask("weather in Paris")) is None
    assert await engine.invalidate(namespace="finance") == 1
    await engine.clear()
    assert await engine.size() == 0
