"""The semantic-llm-cache decorator API: @cache, CachedLLM, get_stats, invalidate, clear_cache."""

from __future__ import annotations

from llm_cache_router_integrations.cache import CachedLLM, cache, clear_cache, get_stats, invalidate

calls: list[str] = []


@cache(similarity=0.85, ttl=60, namespace="decorator-sync")
def answer(prompt: str, style: str = "short") -> str:
    calls.append(prompt)
    return f"[{style}] answer to {prompt}"


@cache(namespace="decorator-async")
async def aanswer(prompt: str) -> str:
    calls.append(prompt)
    return f"async answer to {prompt}"


def test_sync_decorator_hits_on_paraphrase_and_scopes_arguments() -> None:
    calls.clear()
    first = answer("How do I reset my password?")
    assert answer("How do I reset my password?") == first
    assert answer("how can I reset my password") == first
    assert (
        answer("How do I reset my password?", style="long") != first
    )  # other arguments: other scope
    assert answer("How do I delete my account?") != first
    assert len(calls) == 3
    stats = get_stats("decorator-sync")
    assert stats["hits"] == 2 and stats["misses"] == 3


async def test_async_decorator_and_invalidate() -> None:
    calls.clear()
    await aanswer("What is the refund policy?")
    await aanswer("What is the refund policy?")
    assert len(calls) == 1
    assert invalidate(pattern="*refund*", namespace="decorator-async") == 1
    await aanswer("What is the refund policy?")
    assert len(calls) == 2
    clear_cache("decorator-async")
    assert get_stats("decorator-async")["hits"] == 1


def test_cached_llm_wraps_any_callable() -> None:
    seen: list[str] = []

    def fake_llm(prompt: str, temperature: float = 0.0) -> str:
        seen.append(prompt)
        return prompt.upper()

    llm = CachedLLM(fake_llm, namespace="cached-llm")
    assert llm("what time is it in Tokyo?") == "WHAT TIME IS IT IN TOKYO?"
    assert llm("what time is it in Tokyo?") == "WHAT TIME IS IT IN TOKYO?"
    assert llm("what time is it in Tokyo?", temperature=0.5) == "WHAT TIME IS IT IN TOKYO?"
    assert len(seen) == 2
