"""The router with its semantic cache: streaming through the cache, bypass controls, warmup."""

from __future__ import annotations

from typing import Any

from llm_cache_router_integrations import CacheConfig, LLMRouter
from llm_cache_router_integrations.cache import CacheEngine, WarmupEntry
from llm_cache_router_integrations.cache.embeddings import HashingEncoder
from llm_cache_router_integrations.testing.openai_server import OpenAIServer


def make_router(server: OpenAIServer, encoder: Any) -> LLMRouter:
    return LLMRouter(
        {
            "p": {
                "type": "openai-compatible",
                "base_url": server.base_url,
                "models": ["gpt-4o-mini"],
            }
        },
        cache=CacheEngine(CacheConfig(), encoder=encoder),
        pricing={"gpt-4o-mini": {"input": 0.15, "output": 0.60}},
    )


async def test_stream_miss_is_stored_and_hit_streams_from_cache(sentence_encoder: Any) -> None:
    with OpenAIServer() as server:
        router = make_router(server, sentence_encoder)
        first = [
            c async for c in router.stream("Explain what a semantic cache does", temperature=0)
        ]
        assert not first[-1].cache_hit and len(server.requests) == 1
        again = [
            c async for c in router.stream("Explain what a semantic cache does.", temperature=0)
        ]
        assert len(server.requests) == 1
        assert again[-1].is_final and again[-1].cache_hit and again[-1].cost_usd == 0.0
        assert "".join(c.delta for c in again) == "".join(c.delta for c in first)
        stats = await router.astats()
        assert stats["saved_cost_usd"] > 0 and stats["cache"]["hits"] == 1
        await router.aclose()


async def test_cache_controls(sentence_encoder: Any) -> None:
    with OpenAIServer() as server:
        router = make_router(server, sentence_encoder)
        await router.complete("What is HTTP?", temperature=0, cache_control="no-store")
        assert router.cache is not None and await router.cache.size() == 0
        await router.complete("What is HTTP?", temperature=0)
        refreshed = await router.complete("What is HTTP?", temperature=0, cache_control="no-cache")
        assert not refreshed.cache_hit and len(server.requests) == 3
        assert (await router.complete("What is HTTP?", temperature=0)).cache_hit
        await router.aclose()


async def test_warmup_counts_and_skips(sentence_encoder: Any) -> None:
    with OpenAIServer() as server:
        router = make_router(server, sentence_encoder)
        entries = [
            WarmupEntry(
                prompt="What are your opening hours?", response="9 to 5, Monday to Friday."
            ),
            {"prompt": "Where is your office?", "response": "Rue de Rivoli 1, Paris."},
            {"prompt": "Do you ship to Canada?"},  # answered by the provider once
        ]
        assert await router.warmup(entries, concurrency=2) == {
            "warmed": 3,
            "skipped": 0,
            "failed": 0,
        }
        assert len(server.requests) == 1
        assert await router.warmup(entries) == {"warmed": 0, "skipped": 3, "failed": 0}
        hit = await router.complete("What are your hours of opening?")
        assert hit.cache_hit and hit.content == "9 to 5, Monday to Friday."
        await router.aclose()


def test_sync_exact_hit_is_answered_without_the_portal_loop(sentence_encoder: Any) -> None:
    import threading
    import time

    from llm_cache_router_integrations import _sync

    with OpenAIServer() as server:
        router = make_router(server, sentence_encoder)
        first = router.complete_sync("What is the capital of France?", temperature=0)
        assert not first.cache_hit and len(server.requests) == 1
        # Keep the portal loop busy: a hit that needed it would wait for the sleep to end.
        release = threading.Event()

        async def occupy() -> None:
            release.wait(5)

        import asyncio

        busy = asyncio.run_coroutine_threadsafe(occupy(), _sync._portal())
        try:
            started = time.perf_counter()
            again = router.complete_sync("What is the capital of France?", temperature=0)
            elapsed = time.perf_counter() - started
        finally:
            release.set()
            busy.result(5)
        assert again.cache_hit and again.content == first.content and again.cost_usd == 0.0
        assert elapsed < 1.0 and len(server.requests) == 1
        # a paraphrase is not an exact hit: it takes the normal (portal) path and still hits
        para = router.complete_sync("What's the capital of France?", temperature=0)
        assert para.cache_hit and len(server.requests) == 1
        stats = router.stats()
        assert stats["requests"] == 3 and stats["cache"]["hits"] == 2
        assert stats["cache"]["exact_hits"] == 1 and stats["cache"]["misses"] == 1
        print(f"sync exact hit with the portal loop blocked: {elapsed * 1000:.2f} ms")
        router.close()


async def test_warmup_counts_only_stored_answers_as_warmed() -> None:
    with OpenAIServer() as server:
        router = make_router(server, HashingEncoder(dim=64))
        entries: list[dict[str, Any]] = [
            # refused by the cache policy (temperature above max_temperature): never asked
            {"prompt": "Do you ship to Canada?", "params": {"temperature": 1.0}},
            # the provider's answer is cut by max_tokens: asked once, but nothing to store
            {"prompt": "Explain your whole returns process", "params": {"max_tokens": 1}},
            {"prompt": "Where is your office?", "params": {"temperature": 0}},
        ]
        assert await router.warmup(entries, progress=False) == {
            "warmed": 1,
            "skipped": 0,
            "failed": 2,
        }
        assert router.cache is not None and await router.cache.size() == 1
        assert len(server.requests) == 2
        await router.aclose()


async def test_warmup_survives_a_cache_backend_outage() -> None:
    with OpenAIServer() as server:
        router = LLMRouter(
            {
                "p": {
                    "type": "openai-compatible",
                    "base_url": server.base_url,
                    "models": ["gpt-4o-mini"],
                }
            },
            # a real Redis client against a port where nothing listens
            cache=CacheEngine(
                CacheConfig(backend="redis", url="redis://127.0.0.1:1/0"),
                encoder=HashingEncoder(dim=64),
                guard=False,
            ),
            pricing={"gpt-4o-mini": {"input": 0.15, "output": 0.60}},
        )
        entries: list[dict[str, Any]] = [
            {"prompt": "Opening hours?", "response": "9-5"},
            {"prompt": "Office?", "response": "Paris"},
            {"prompt": "Do you ship to Canada?", "params": {"temperature": 0}},
        ]
        assert await router.warmup(entries, progress=False) == {
            "warmed": 0,
            "skipped": 0,
            "failed": 3,
        }
        assert router.cache is not None and router.cache.stats.errors == 6  # 3 lookups, 3 stores
        await router.aclose()
