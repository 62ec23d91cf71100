"""rpm/tpm limits shared through a real Redis server by independent routers (as N processes would)."""

from __future__ import annotations

import asyncio

from llm_cache_router_integrations import LLMRouter
from llm_cache_router_integrations.testing.openai_server import OpenAIServer

from .conftest import provider


def router(a: OpenAIServer, b: OpenAIServer, redis_url: str, **settings: object) -> LLMRouter:
    return LLMRouter(
        {"a": provider(a, "gpt-4o"), "b": provider(b, "gpt-4o-mini")},
        fallback_chain=["a/gpt-4o", "b/gpt-4o-mini"],
        deployments={"a/gpt-4o": settings},
        limits_store=redis_url,
    )


async def test_two_routers_share_one_rpm_bucket(
    servers: list[OpenAIServer], redis_url: str
) -> None:
    a, b, _ = servers
    first, second = router(a, b, redis_url, rpm=4), router(a, b, redis_url, rpm=4)
    results = await asyncio.gather(
        *(r.complete(f"q{i}", "gpt-4o") for i in range(5) for r in (first, second))
    )
    used = [r.provider_used for r in results]
    assert used.count("a") == 4 and used.count("b") == 6
    assert len(a.requests) == 4
    print(
        f"shared rpm=4 across two routers: {used.count('a')} on a, {used.count('b')} overflowed to b"
    )
    await first.aclose()
    await second.aclose()


async def test_shared_tpm_is_corrected_by_real_usage(
    servers: list[OpenAIServer], redis_url: str
) -> None:
    a, b, _ = servers
    first, second = router(a, b, redis_url, tpm=60), router(a, b, redis_url, tpm=60)
    assert (await first.complete("short question", "gpt-4o")).provider_used == "a"
    assert (await second.complete("word " * 80, "gpt-4o")).provider_used == "b"
    assert (await second.complete("another short one", "gpt-4o")).provider_used == "a"
    await first.aclose()
    await second.aclose()
