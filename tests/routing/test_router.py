"""LLMRouter against loopback servers: strategies, retries, breaker, fallbacks, queues, limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from llm_cache_router_integrations import (
    AllCandidatesFailedError,
    AllCandidatesSaturatedError,
    AuthenticationError,
    CacheConfig,
    ConfigurationError,
    ContextLengthExceededError,
    InvalidRequestError,
    LLMRouter,
    NoDeploymentAvailableError,
    Priority,
    ProviderUnavailableError,
    RateLimitError,
    RoutingStrategy,
    StreamInterruptedError,
)
from llm_cache_router_integrations.routing import CircuitState, Deployment, RoutingContext
from llm_cache_router_integrations.testing import JSONReply, ResetConnection, StreamReply
from llm_cache_router_integrations.testing.openai_server import OpenAIServer
from llm_cache_router_integrations.testing.server import sse

from .conftest import provider

FAST_RETRY = {"base_delay": 0.001, "max_delay": 0.01}
OVERLOADED = JSONReply({"error": {"message": "overloaded", "type": "server_error"}}, status=503)


def three(servers: list[OpenAIServer], **kwargs: object) -> LLMRouter:
    a, b, c = servers
    return LLMRouter(
        {
            "a": provider(a, "gpt-4o"),
            "b": provider(b, "gpt-4o-mini"),
            "c": provider(c, "gpt-4.1-nano"),
        },
        **{"retry": FAST_RETRY, **kwargs},  # type: ignore[arg-type]
    )


async def test_fallback_chain_skips_failing_primary(servers: list[OpenAIServer]) -> None:
    a, b, _ = servers
    a.push(*[OVERLOADED] * 3)
    router = three(servers, fallback_chain=["a/gpt-4o", "b/gpt-4o-mini"])
    response = await router.complete("hi there", "gpt-4o")
    assert response.provider_used == "b"
    assert response.route == ["a/gpt-4o", "b/gpt-4o-mini"]
    assert len(a.requests) == 3  # one call and two retries
    assert len(b.requests) == 1
    print(f"fallback: a tried {len(a.requests)}x, b answered; route={response.route}")
    await router.aclose()


async def test_cheapest_first_orders_by_estimated_cost(servers: list[OpenAIServer]) -> None:
    router = three(
        servers,
        strategy=RoutingStrategy.CHEAPEST_FIRST,
        model_groups={"any": ["a/gpt-4o", "b/gpt-4o-mini", "c/gpt-4.1-nano"]},
    )
    order = [d.key for d in router.candidates("any", input_tokens=1000, output_tokens=500)]
    assert order == ["c/gpt-4.1-nano", "b/gpt-4o-mini", "a/gpt-4o"]
    response = await router.complete("cheap please", "any")
    assert response.provider_used == "c"
    await router.aclose()


async def test_fastest_first_learns_latency(servers: list[OpenAIServer]) -> None:
    a, _b, _ = servers
    router = three(
        servers, strategy="fastest_first", model_groups={"any": ["a/gpt-4o", "b/gpt-4o-mini"]}
    )
    a.push(JSONReply(a._completion(a.brain.answer(turns=[]), "gpt-4o"), delay=0.15))
    await router.complete("warm a", "a/gpt-4o")
    await router.complete("warm b", "b/gpt-4o-mini")
    order = [d.key for d in router.candidates("any")]
    assert order == ["b/gpt-4o-mini", "a/gpt-4o"]
    response = await router.complete("which is faster?", "any")
    assert response.provider_used == "b"
    await router.aclose()


async def test_round_robin_rotates(servers: list[OpenAIServer]) -> None:
    router = three(
        servers,
        strategy="round_robin",
        model_groups={"pool": ["a/gpt-4o", "b/gpt-4o-mini", "c/gpt-4.1-nano"]},
    )
    used = [(await router.complete(f"q{i}", "pool")).provider_used for i in range(6)]
    assert used == ["a", "b", "c", "a", "b", "c"]
    await router.aclose()


async def test_priority_routes(servers: list[OpenAIServer]) -> None:
    a, _b, _c = servers
    router = three(
        servers,
        strategy=RoutingStrategy.PRIORITY,
        fallback_chain=["c/gpt-4.1-nano"],
        priority_routes={
            Priority.CRITICAL: {"targets": ["a/gpt-4o"], "fallbacks": ["b/gpt-4o-mini"]},
            "low": {"targets": ["c/gpt-4.1-nano"], "fallbacks": []},
        },
    )
    assert (await router.complete("urgent", priority=Priority.CRITICAL)).provider_used == "a"
    assert (await router.complete("later", priority="LOW")).provider_used == "c"
    a.push(*[OVERLOADED] * 3)
    assert (await router.complete("urgent again", priority=Priority.CRITICAL)).provider_used == "b"
    stats = await router.astats()
    assert stats["by_priority"] == {"CRITICAL": 2, "LOW": 1}
    await router.aclose()


async def test_custom_strategy(servers: list[OpenAIServer]) -> None:
    class LastFirst:
        def order(
            self, candidates: Sequence[Deployment], context: RoutingContext
        ) -> list[Deployment]:
            return list(reversed(candidates))

    router = three(servers, strategy=LastFirst(), model_groups={"g": ["a/gpt-4o", "b/gpt-4o-mini"]})
    assert (await router.complete("x", "g")).provider_used == "b"
    await router.aclose()


async def test_retry_honours_retry_after(servers: list[OpenAIServer]) -> None:
    a = servers[0]
    a.push(
        JSONReply(
            {"error": {"message": "slow down", "type": "rate_limit_error"}},
            status=429,
            headers={"retry-after": "0.3"},
        )
    )
    router = LLMRouter({"a": provider(a, "gpt-4o")}, retry={"base_delay": 0.001})
    started = time.monotonic()
    response = await router.complete("hello", "gpt-4o")
    waited = time.monotonic() - started
    assert response.content
    assert len(a.requests) == 2
    assert waited >= 0.3
    print(f"retry-after 0.3s honoured: waited {waited:.3f}s, 2 requests")
    await router.aclose()


async def test_retry_after_beyond_cap_falls_back(servers: list[OpenAIServer]) -> None:
    a, _b, _ = servers
    a.push(
        JSONReply(
            {"error": {"message": "quota", "type": "rate_limit_error"}},
            status=429,
            headers={"retry-after": "120"},
        )
    )
    router = three(
        servers,
        fallback_chain=["a/gpt-4o", "b/gpt-4o-mini"],
        retry={**FAST_RETRY, "max_retry_after": 5},
    )
    started = time.monotonic()
    response = await router.complete("hello", "gpt-4o")
    assert response.provider_used == "b" and time.monotonic() - started < 2
    await router.aclose()


async def test_non_retryable_errors_do_not_burn_retries(servers: list[OpenAIServer]) -> None:
    a, _b, _ = servers
    a.push(
        JSONReply(
            {
                "error": {
                    "message": "Incorrect API key provided: sk-test-router-0123456789abcdef",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
            status=401,
        )
    )
    router = three(servers, fallback_chain=["a/gpt-4o", "b/gpt-4o-mini"])
    response = await router.complete("hello", "gpt-4o")
    assert response.provider_used == "b"
    assert len(a.requests) == 1
    await router.aclose()


async def test_single_candidate_error_is_typed(servers: list[OpenAIServer]) -> None:
    a = servers[0]
    a.push(
        JSONReply({"error": {"message": "bad key", "type": "invalid_request_error"}}, status=401)
    )
    router = LLMRouter({"a": provider(a, "gpt-4o")}, retry=FAST_RETRY)
    with pytest.raises(AuthenticationError):
        await router.complete("hello", "gpt-4o")
    await router.aclose()


async def test_all_candidates_failed(servers: list[OpenAIServer]) -> None:
    a, b, _ = servers
    a.push(*[OVERLOADED] * 3)
    b.push(*[OVERLOADED] * 3)
    router = three(servers, fallback_chain=["a/gpt-4o", "b/gpt-4o-mini"])
    with pytest.raises(AllCandidatesFailedError) as info:
        await router.complete("hello", "gpt-4o")
    assert [type(e) for e in info.value.errors] == [
        ProviderUnavailableError,
        ProviderUnavailableError,
    ]
    assert info.value.retryable
    stats = await router.astats()
    assert stats["failures"] == 1 and stats["failures_by_error"] == {"AllCandidatesFailedError": 1}
    await router.aclose()


async def test_context_length_error_falls_back_to_larger_window(
    servers: list[OpenAIServer],
) -> None:
    a, _b, _ = servers
    a.push(
        JSONReply(
            {
                "error": {
                    "message": "This model's maximum context length is 8192 tokens",
                    "type": "invalid_request_error",
                    "code": "context_length_exceeded",
                }
            },
            status=400,
        )
    )
    router = three(servers, fallback_chain=["a/gpt-4o", "b/gpt-4o-mini"])
    response = await router.complete("a long prompt", "gpt-4o")
    assert response.provider_used == "b" and len(a.requests) == 1
    await router.aclose()


async def test_oversized_prompt_rejected_before_http(servers: list[OpenAIServer]) -> None:
    a = servers[0]
    router = LLMRouter(
        {"a": provider(a, "my-small-model")},
        pricing={"my-small-model": {"input": 1, "output": 1, "context_window": 50}},
    )
    with pytest.raises(ContextLengthExceededError):
        await router.complete("word " * 500, "my-small-model")
    assert a.requests == []
    await router.aclose()


async def test_circuit_breaker_opens_skips_and_recovers(servers: list[OpenAIServer]) -> None:
    a, _b, _ = servers
    router = three(
        servers,
        fallback_chain=["a/gpt-4o", "b/gpt-4o-mini"],
        retry={**FAST_RETRY, "max_retries": 0},
        breaker={"failure_threshold": 2, "recovery_timeout": 0.3, "success_threshold": 1},
    )
    a.push(OVERLOADED, OVERLOADED)
    await router.complete("one", "gpt-4o")
    await router.complete("two", "gpt-4o")
    deployment = router.deployments["a/gpt-4o"]
    assert deployment.breaker.state is CircuitState.OPEN
    await router.complete("three", "gpt-4o")
    assert len(a.requests) == 2  # skipped while open
    await asyncio.sleep(0.35)
    assert deployment.breaker.state is CircuitState.HALF_OPEN
    response = await router.complete("four", "gpt-4o")
    assert response.provider_used == "a"
    assert deployment.breaker.state is CircuitState.CLOSED
    stats = await router.astats()
    assert stats["deployments"]["a/gpt-4o"]["circuit"] == "closed"
    print("breaker: closed -> open after 2 failures -> skipped -> half_open after 0.3s -> closed")
    await router.aclose()


async def test_stream_falls_back_before_first_chunk(servers: list[OpenAIServer]) -> None:
    a, b, _ = servers
    a.push(ResetConnection(), ResetConnection(), ResetConnection())
    router = three(servers, fallback_chain=["a/gpt-4o", "b/gpt-4o-mini"])
    chunks = [c async for c in router.stream("stream it", "gpt-4o")]
    final = chunks[-1]
    assert final.is_final and final.provider_used == "b"
    assert final.route == ["a/gpt-4o", "b/gpt-4o-mini"]
    assert "".join(c.delta for c in chunks) == b.last_answer.text
    assert final.cost_usd and final.cost_usd > 0
    await router.aclose()


async def test_stream_failure_after_first_chunk_is_typed_with_partial_text(
    servers: list[OpenAIServer],
) -> None:
    a, b, _ = servers
    frames = [
        sse(
            {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-4o",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
        )
        for piece in ("Hello ", "brave ")
    ]
    a.push(StreamReply(frames, then="reset"))
    router = three(servers, fallback_chain=["a/gpt-4o", "b/gpt-4o-mini"], cache=CacheConfig())
    received = []
    with pytest.raises(StreamInterruptedError) as info:
        async for chunk in router.stream("stream it", "gpt-4o", temperature=0):
            received.append(chunk.delta)
    assert info.value.partial_text == "Hello brave "
    assert "".join(received) == "Hello brave "
    assert b.requests == []  # no fallback after the first chunk
    assert router.cache is not None and await router.cache.backend.size() == 0
    await router.aclose()


async def test_priority_queue_order_and_backpressure(servers: list[OpenAIServer]) -> None:
    a, _b, _ = servers
    router = three(
        servers,
        deployments={"a/gpt-4o": {"max_concurrency": 1, "max_queue_depth": 3}},
        fallback_chain=["a/gpt-4o", "b/gpt-4o-mini"],
    )
    slow = JSONReply(a._completion(a.brain.answer(turns=[]), "gpt-4o"), delay=0.3)
    a.push(slow)
    first = asyncio.create_task(router.complete("first", "gpt-4o"))
    await asyncio.sleep(0.1)
    low = asyncio.create_task(router.complete("low", "gpt-4o", priority="low"))
    await asyncio.sleep(0.02)
    normal = asyncio.create_task(router.complete("normal", "gpt-4o"))
    await asyncio.sleep(0.02)
    critical = asyncio.create_task(router.complete("critical", "gpt-4o", priority="critical"))
    await asyncio.sleep(0.02)
    overflow = asyncio.create_task(router.complete("overflow", "gpt-4o"))  # queue full -> b
    results = await asyncio.gather(first, low, normal, critical, overflow)
    served_by_a = [r.body["messages"][-1]["content"] for r in a.requests]
    assert served_by_a == ["first", "critical", "normal", "low"]
    assert results[4].provider_used == "b"
    print(f"queue order on a: {served_by_a}; overflow went to {results[4].provider_used}")
    await router.aclose()


async def test_all_candidates_saturated(servers: list[OpenAIServer]) -> None:
    a = servers[0]
    router = LLMRouter(
        {"a": provider(a, "gpt-4o")},
        deployments={"a/gpt-4o": {"max_concurrency": 1, "max_queue_depth": 0}},
    )
    a.push(JSONReply(a._completion(a.brain.answer(turns=[]), "gpt-4o"), delay=0.3))
    first = asyncio.create_task(router.complete("first", "gpt-4o"))
    await asyncio.sleep(0.1)
    with pytest.raises(AllCandidatesSaturatedError):
        await router.complete("second", "gpt-4o")
    await first
    await router.aclose()


async def test_rpm_limit_skips_then_waits(servers: list[OpenAIServer]) -> None:
    a, _b, _ = servers
    router = three(
        servers, fallback_chain=["a/gpt-4o", "b/gpt-4o-mini"], deployments={"a/gpt-4o": {"rpm": 2}}
    )
    used = [(await router.complete(f"q{i}", "gpt-4o")).provider_used for i in range(4)]
    assert used == ["a", "a", "b", "b"]
    waiting = LLMRouter(
        {"a": provider(a, "gpt-4o")},
        deployments={"a/gpt-4o": {"window": (2, 0.4), "on_limit": "wait"}},
    )
    started = time.monotonic()
    for i in range(3):
        await waiting.complete(f"w{i}", "gpt-4o")
    assert time.monotonic() - started >= 0.35
    single = LLMRouter({"a": provider(a, "gpt-4o")}, deployments={"a/gpt-4o": {"rpm": 1}})
    await single.complete("x", "gpt-4o")
    sent = len(a.requests)
    with pytest.raises(RateLimitError):
        await single.complete("y", "gpt-4o")
    assert len(a.requests) == sent
    await router.aclose()


async def test_tpm_limit_counts_tokens(servers: list[OpenAIServer]) -> None:
    _a, _b, _ = servers
    router = three(
        servers, fallback_chain=["a/gpt-4o", "b/gpt-4o-mini"], deployments={"a/gpt-4o": {"tpm": 60}}
    )
    first = await router.complete("short question", "gpt-4o")
    assert first.provider_used == "a"
    long = await router.complete("word " * 80, "gpt-4o")
    assert long.provider_used == "b"
    await router.aclose()


def test_sync_twin_inside_running_loop(servers: list[OpenAIServer]) -> None:
    a = servers[0]
    router = LLMRouter({"a": provider(a, "gpt-4o")})

    async def notebook_cell() -> str:
        # A blocking call made while an event loop is running (as in Jupyter).
        return router.complete_sync("from a running loop", "gpt-4o").content or ""

    assert asyncio.run(notebook_cell()).startswith("Answer to:")
    chunks = list(router.stream_sync("and a stream", "gpt-4o"))
    assert chunks[-1].is_final
    router.close()


def test_invalid_request_names_the_field(servers: list[OpenAIServer]) -> None:
    router = LLMRouter({"a": provider(servers[0], "gpt-4o")})
    with pytest.raises(InvalidRequestError, match="temperature"):
        router.complete_sync("x", "gpt-4o", temperature=7)
    with pytest.raises(InvalidRequestError, match=r"messages\.0"):
        router.complete_sync([{"role": "wizard", "content": "x"}], "gpt-4o")
    with pytest.raises(NoDeploymentAvailableError, match="no deployment serves"):
        LLMRouter(
            {"a": provider(servers[0], "gpt-4o"), "b": provider(servers[1], "x")}
        ).complete_sync("x", "unknown")


def test_from_env(monkeypatch: pytest.MonkeyPatch, servers: list[OpenAIServer]) -> None:
    for name in (
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "DASHSCOPE_API_KEY",
        "MINIMAX_API_KEY",
        "OLLAMA_HOST",
        "LLM_ROUTER_CONFIG",
    ):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError) as info:
        LLMRouter.from_env()
    for name in (
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "DASHSCOPE_API_KEY",
        "MINIMAX_API_KEY",
        "OLLAMA_HOST",
        "LLM_ROUTER_CONFIG",
    ):
        assert name in str(info.value)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-0123456789abcdefghij")
    monkeypatch.setenv("OPENAI_BASE_URL", servers[0].base_url)
    router = LLMRouter.from_env()
    assert router.fallback_chain == ["openai/gpt-4o-mini"]
    assert router.complete_sync("from the environment").provider_used == "openai"
    assert "sk-env" not in repr(router) and "sk-env" not in repr(router.providers["openai"])
    router.close()


@pytest.mark.parametrize("bad", ["bogus", 99, 1.5, None.__class__])
def test_an_unknown_priority_is_a_typed_error_naming_the_choices(bad: object) -> None:
    with pytest.raises(InvalidRequestError, match=r"priority.*critical.*low"):
        Priority.parse(bad)  # type: ignore[arg-type]
    assert Priority.parse(" High ") is Priority.HIGH and Priority.parse(3) is Priority.LOW
