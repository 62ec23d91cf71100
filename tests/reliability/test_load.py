"""Load: 500 concurrent calls against limits and a budget, and flat memory over 20k cached calls.

Both scenarios stop themselves (``asyncio.timeout``) and print what they checked.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import sys
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pydantic_core
import pytest

from llm_cache_router_integrations import (
    CacheConfig,
    LLMResponse,
    LLMRouter,
    LLMRouterError,
    ProviderUnavailableError,
    StreamChunk,
)
from llm_cache_router_integrations.cache import CacheEngine, MemoryBackend
from llm_cache_router_integrations.cache import guard as guard_module
from llm_cache_router_integrations.cache.embeddings import HashingEncoder
from llm_cache_router_integrations.cache.embeddings import hashing as hashing_module
from llm_cache_router_integrations.cost.budget import InMemoryBudgetStore
from llm_cache_router_integrations.cost.tokens import count_message_tokens
from llm_cache_router_integrations.providers import BaseProvider
from llm_cache_router_integrations.providers.base import StreamHandler, WireRequest
from llm_cache_router_integrations.router import MAX_ADHOC_DEPLOYMENTS
from llm_cache_router_integrations.routing import CircuitBreaker
from llm_cache_router_integrations.routing.ratelimit import Limiter, RateLimiter
from llm_cache_router_integrations.testing.openai_server import OpenAIServer
from llm_cache_router_integrations.types import ChatRequest, Message, Usage

KEY = "sk-test-load-0123456789abcdef"
PRICES = {
    "load-a": {"input": 800.0, "output": 1600.0, "context_window": 8000},
    "load-b": {"input": 1000.0, "output": 2000.0, "context_window": 8000},
    "load-c": {"input": 1200.0, "output": 2400.0, "context_window": 8000},
}
LIMITS: dict[str, dict[str, Any]] = {
    "a/load-a": {"rpm": 90},
    "b/load-b": {"tpm": 1800, "max_concurrency": 8, "max_queue_depth": 40},
    "c/load-c": {"rpm": 120, "tpm": 3000, "on_limit": "wait", "max_wait": 0.3},
}
BUDGET_USD = 14.0
CALLS = 500


class RecordingLimiter:
    """Wraps a deployment's limiter and records every admission and correction it made."""

    def __init__(self, inner: RateLimiter) -> None:
        self.inner = inner
        self.admitted: list[int] = []  # estimated tokens charged at each admission
        self.refunded: list[int] = []  # admissions given back unused (e.g. the budget refused)
        self.corrected = 0  # net tokens added by corrections (actual - estimated)

    @property
    def enabled(self) -> bool:
        return self.inner.enabled

    async def acquire(self, tokens: int) -> float:
        wait = await self.inner.acquire(tokens)
        if wait == 0:
            self.admitted.append(tokens)
        return wait

    async def acorrect(self, estimated: int, actual: int) -> None:
        if actual == 0:
            self.refunded.append(estimated)
        self.corrected += actual - estimated
        await self.inner.acorrect(estimated, actual)


@pytest.fixture
def servers() -> Iterator[list[OpenAIServer]]:
    started = [OpenAIServer() for _ in range(3)]
    for server in started:
        server.start()
    yield started
    for server in started:
        server.stop()


def _server_cost(server: OpenAIServer, model: str) -> float:
    price = PRICES[model]
    return sum(
        (a.input_tokens * price["input"] + a.output_tokens * price["output"]) / 1_000_000
        for a in server.answers
    )


async def _one(router: LLMRouter, i: int, rng: random.Random) -> LLMResponse | LLMRouterError:
    prompt = f"question number {i} about topic {i % 7}"
    priority = rng.choice(["critical", "high", "normal", "low"])
    try:
        if i % 5 == 0:  # a fifth of the calls stream
            final: StreamChunk | None = None
            async for chunk in router.stream(prompt, "pool", priority=priority, max_tokens=20):
                final = chunk
            assert final is not None and final.is_final
            return LLMResponse(
                content="(streamed)",
                provider_used=final.provider_used or "",
                model_used=final.model_used or "",
                usage=final.usage or Usage(),
                cost_usd=final.cost_usd or 0.0,
            )
        return await router.complete(prompt, "pool", priority=priority, max_tokens=20)
    except LLMRouterError as exc:
        return exc


async def test_500_concurrent_calls_respect_limits_and_budget(
    servers: list[OpenAIServer],
) -> None:
    a, b, c = servers
    router = LLMRouter(
        {
            "a": {"type": "openai", "api_key": KEY, "base_url": a.base_url, "models": ["load-a"]},
            "b": {"type": "openai", "api_key": KEY, "base_url": b.base_url, "models": ["load-b"]},
            "c": {"type": "openai", "api_key": KEY, "base_url": c.base_url, "models": ["load-c"]},
        },
        model_groups={"pool": list(LIMITS)},
        strategy="round_robin",
        deployments=LIMITS,
        budget={"daily_usd": BUDGET_USD},
        pricing=PRICES,
        retry={"base_delay": 0.001, "max_delay": 0.01},
        timeout=20,
    )
    deployments = router.deployments
    recorders: dict[str, RecordingLimiter] = {}
    for key, deployment in deployments.items():
        assert isinstance(deployment.limiter, RateLimiter)
        recorders[key] = RecordingLimiter(deployment.limiter)
        limiter: Limiter = recorders[key]
        deployment.limiter = limiter
    rng = random.Random(500)
    started = time.monotonic()
    async with asyncio.timeout(60):  # a deadlock fails here instead of hanging CI
        results = await asyncio.gather(*(_one(router, i, rng) for i in range(CALLS)))
    elapsed = time.monotonic() - started

    ok = [r for r in results if isinstance(r, LLMResponse)]
    failed = Counter(type(r).__name__ for r in results if isinstance(r, LLMRouterError))
    assert len(ok) + sum(failed.values()) == CALLS
    assert ok and failed  # both the limits/budget and the deployments were exercised

    # Every call is accounted for in the stats, with its typed failure.
    stats = await router.astats()
    assert stats["requests"] == CALLS
    assert stats["successes"] == len(ok)
    assert stats["failures"] == sum(failed.values())
    assert stats["failures_by_error"] == dict(failed)
    assert sum(stats["by_priority"].values()) == CALLS

    # Zero overspend; every reservation settled to the real cost the servers reported.
    spent = (await router.budget.spent())["daily"]
    truth = sum(
        _server_cost(server, model)
        for server, model in zip(servers, ("load-a", "load-b", "load-c"), strict=True)
    )
    assert spent <= BUDGET_USD
    assert spent == pytest.approx(truth, abs=1e-6)
    assert sum(r.cost_usd for r in ok) == pytest.approx(truth, abs=1e-6)

    # Limits: every HTTP call was admitted by its limiter, and admissions stayed within each
    # bucket (capacity plus what refilled while the test ran); buckets were corrected to the
    # real usage.
    per_deployment = {}
    for server, (key, settings) in zip(servers, LIMITS.items(), strict=True):
        recorder, figures = recorders[key], stats["deployments"][key]
        calls = len(server.requests)
        # An admission the budget then refused is given back unused (no HTTP call).
        assert calls == len(recorder.admitted) - len(recorder.refunded) == figures["requests"]
        assert figures["failures"] == 0
        if settings.get("rpm"):
            admitted = len(recorder.admitted)
            assert admitted <= settings["rpm"] * (1 + elapsed / 60) + 1, (key, admitted)
        if settings.get("tpm"):
            charged = sum(recorder.admitted)
            net = charged - sum(recorder.refunded)  # refunded tokens went back into the bucket
            assert net <= settings["tpm"] * (1 + elapsed / 60) + 1, (key, net)
            estimated = sum(
                count_message_tokens(
                    [Message.model_validate(m) for m in r.body["messages"]], key.split("/")[1]
                )
                for r in server.requests
            )
            assert net == estimated
            real = sum(x.input_tokens + x.output_tokens for x in server.answers)
            assert charged + recorder.corrected == real  # the bucket holds the real usage
        deployment = deployments[key]
        assert deployment.gate.active == 0 and deployment.gate.queued == 0  # nothing leaked
        if settings.get("max_concurrency"):
            assert deployment.gate.max_seen_active <= settings["max_concurrency"]
        per_deployment[key] = calls
    assert sum(per_deployment.values()) == len(ok)
    await router.aclose()
    print(
        f"\n[load] {CALLS} concurrent calls in {elapsed:.1f}s: {len(ok)} answered, "
        f"{sum(failed.values())} typed failures {dict(failed)}; per deployment {per_deployment} "
        f"(limits {LIMITS}); spent ${spent:.4f} of ${BUDGET_USD} (= server truth); "
        f"stats requests={stats['requests']} successes={stats['successes']} "
        f"failures={stats['failures']}"
    )


# -- memory over 20k cached calls ----------------------------------------------------------------


class InProcessProvider(BaseProvider):
    """Answers in-process (no HTTP), so 20k calls take seconds; fails a given share of calls."""

    type_name = "in-process-test"
    requires_api_key = False
    default_base_url = "http://127.0.0.1:9"

    def __init__(self, *args: Any, fail_every: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fail_every = fail_every
        self.calls = 0

    def build_request(self, request: ChatRequest, *, stream: bool) -> WireRequest:
        raise NotImplementedError

    def parse_response(self, data: dict[str, Any], request: ChatRequest) -> LLMResponse:
        raise NotImplementedError

    def stream_handler(self, request: ChatRequest) -> StreamHandler:
        raise NotImplementedError

    async def acomplete(self, request: ChatRequest, *, timeout: float | None = None) -> LLMResponse:
        self.calls += 1
        if self.fail_every and self.calls % self.fail_every == 0:
            raise ProviderUnavailableError("scripted outage", provider=self.name, status_code=503)
        text = request.messages[-1].text
        return LLMResponse(
            content=f"answer to {text}",
            provider_used=self.name,
            model_used=request.model,
            usage=Usage.of(len(text.split()) + 5, 8),
            latency_ms=random.uniform(1.0, 50.0),
        )

    async def astream(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> AsyncIterator[StreamChunk]:
        response = await self.acomplete(request, timeout=timeout)
        yield StreamChunk(delta=response.content or "")
        yield StreamChunk(
            is_final=True,
            usage=response.usage,
            provider_used=self.name,
            model_used=request.model,
            latency_ms=response.latency_ms,
        )


MEMORY_CALLS = 20_000
MAX_ENTRIES = 500
MODELS = ["mem-a", "mem-b", "mem-c", "mem-d", "mem-e"]


def _clear_bounded_memos() -> None:
    """Empty the bounded memo caches (their bound is asserted separately), before measuring."""
    hashing_module._feature_hash.cache_clear()
    guard_module.clear_caches()


def _fill_pydantic_string_cache() -> None:
    """Fill pydantic-core's JSON string cache (a fixed 16k slots) so its filling is not mistaken
    for growth: parsing cached entries interns short strings there until every slot is taken."""
    pydantic_core.from_json(json.dumps([f"filler-{i}" for i in range(200_000)]))


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        pages = int(handle.read().split()[1])
    import resource

    return pages * resource.getpagesize()


def _bounded_structures(router: LLMRouter, backend: MemoryBackend) -> dict[str, int]:
    """Sizes of every structure that grows with traffic; each must stay bounded."""
    sizes: dict[str, int] = {}
    for key, deployment in router.deployments.items():
        stats = deployment.stats
        for name in ("_latencies", "_ttfts"):
            window: deque[float] = getattr(stats, name)
            assert window.maxlen is not None
            sizes[f"{key}.{name}"] = len(window)
        breaker = deployment.breaker
        assert isinstance(breaker, CircuitBreaker)
        # The breaker keeps counters only: no history that could grow.
        assert not [v for v in vars(breaker).values() if isinstance(v, list | dict | deque | set)]
        sizes[f"{key}.gate_waiters"] = len(deployment.gate._waiters)
    router_stats = router._stats
    sizes["router.daily"] = len(router_stats._daily)
    sizes["router.monthly"] = len(router_stats._monthly)
    sizes["router.by_priority"] = len(router_stats.by_priority)
    sizes["router.failures_by_error"] = len(router_stats.failures_by_error)
    sizes["router.deployments"] = len(router.deployments)
    store = router.budget.store
    assert isinstance(store, InMemoryBudgetStore)
    sizes["budget.windows"] = len(store._values)
    sizes["pricing.warned"] = len(router.pricing._warned)
    sizes["cache.entries"] = len(backend._entries)
    sizes["cache.partitions"] = len(backend._partitions)
    sizes["cache.partition_slots"] = sum(len(p.members) for p in backend._partitions.values())
    sizes["cache.vectors"] = sum(p.size for p in backend._partitions.values())
    for memo in (hashing_module._feature_hash, guard_module._analyse_default, guard_module._stem):
        assert memo.cache_info().maxsize is not None
    return sizes


async def test_memory_stays_flat_over_20k_cached_calls() -> None:
    providers = {
        "p": InProcessProvider({"models": MODELS[:3]}, name="p", fail_every=97),
        "q": InProcessProvider({"models": MODELS[3:]}, name="q"),
    }
    backend = MemoryBackend(max_entries=MAX_ENTRIES, dim=64)
    engine = CacheEngine(
        CacheConfig(max_entries=MAX_ENTRIES), backend, encoder=HashingEncoder(dim=64)
    )
    router = LLMRouter(
        providers,
        cache=engine,
        fallback_chain=["q/mem-d"],
        budget={"daily_usd": 1_000.0},
        # "adhoc-model" prices every "adhoc-model-<date-like n>" (a snapshot suffix): no warning.
        pricing={m: {"input": 0.5, "output": 1.0} for m in [*MODELS, "adhoc-model"]},
        retry={"max_retries": 1, "base_delay": 0.0, "max_delay": 0.0},
        deployments={"p/mem-a": {"rpm": 10_000_000, "tpm": 10_000_000_000}},
    )
    rng = random.Random(20_000)
    recent: deque[tuple[str, str, str, str]] = deque(maxlen=200)
    outcomes: Counter[str] = Counter()
    samples: list[tuple[int, int, int]] = []  # (calls, allocated blocks, rss bytes)

    async def call(i: int) -> None:
        if recent and rng.random() < 0.4:
            system, prompt, model, namespace = rng.choice(recent)  # a repeat: a cache hit
        else:
            system = f"system prompt {i % 37}"  # many scopes: partitions come and go
            prompt = f"item {i} of the catalogue: describe variant {rng.randrange(10**6)}"
            model, namespace = rng.choice(MODELS), f"tenant-{rng.randrange(20)}"
            if i % 10 == 5:  # a model no provider lists, named by the caller: an ad-hoc deployment
                model = f"p/adhoc-model-{i:08d}"
            recent.append((system, prompt, model, namespace))
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        try:
            if i % 10 == 0:
                async for chunk in router.stream(
                    messages, model, namespace=namespace, temperature=0
                ):
                    if chunk.is_final:
                        outcomes["hit" if chunk.cache_hit else "miss"] += 1
            else:
                response = await router.complete(
                    messages, model, namespace=namespace, temperature=0
                )
                outcomes["hit" if response.cache_hit else "miss"] += 1
        except LLMRouterError as exc:
            outcomes[type(exc).__name__] += 1

    _fill_pydantic_string_cache()
    started = time.monotonic()
    async with asyncio.timeout(90):
        for start in range(0, MEMORY_CALLS, 50):
            await asyncio.gather(*(call(i) for i in range(start, start + 50)))
            done = start + 50
            if done % 2_000 == 0:
                _clear_bounded_memos()
                gc.collect()
                sizes = _bounded_structures(router, backend)
                # Heap blocks, less the floats held in the (bounded) latency windows, still
                # filling up to their bound of 512 per deployment.
                windows = sum(v for k, v in sizes.items() if k.endswith(("_latencies", "_ttfts")))
                samples.append((done, sys.getallocatedblocks() - windows, _rss_bytes()))
                assert sizes["cache.entries"] <= MAX_ENTRIES
                assert sizes["cache.partitions"] <= MAX_ENTRIES
                assert sizes["cache.partition_slots"] <= MAX_ENTRIES + 37 * 1024
                assert sizes["cache.vectors"] <= sizes["cache.entries"]
    elapsed = time.monotonic() - started

    sizes = _bounded_structures(router, backend)
    for key, value in sizes.items():
        if key.endswith(("_latencies", "_ttfts")):
            assert value <= 512, (key, value)
    assert sizes["router.daily"] <= 1 and sizes["router.monthly"] <= 1
    assert sizes["router.by_priority"] <= 4 and sizes["router.failures_by_error"] <= 3
    # 5 configured deployments, plus at most MAX_ADHOC_DEPLOYMENTS of the ~1200 ad-hoc ones.
    assert sizes["router.deployments"] == len(MODELS) + MAX_ADHOC_DEPLOYMENTS
    assert all(m in router.deployments for m in ("p/mem-a", "p/mem-b", "p/mem-c", "q/mem-d"))
    assert sizes["budget.windows"] <= 4 and sizes["pricing.warned"] == 0
    # Unknown model names are remembered (to warn once each) up to a bound.
    for n in range(3_000):
        router.pricing.price(f"never-heard-of-{n}")
    assert len(router.pricing._warned) == 1024
    assert all(v == 0 for k, v in sizes.items() if k.endswith("gate_waiters"))
    assert sum(outcomes.values()) == MEMORY_CALLS
    assert outcomes["hit"] > 4_000 and outcomes["miss"] > 10_000
    stats = await router.astats()
    assert stats["requests"] == MEMORY_CALLS
    assert stats["successes"] + stats["failures"] == MEMORY_CALLS
    assert stats["cache_hits"] == outcomes["hit"]

    # Flat: after the warm-up (first 4k calls) the number of live Python heap blocks moves by
    # less than 2k across 16k further calls (leaking one object per call would add 16k), and RSS
    # by less than 24 MiB (allocator noise; leaking entries or vectors would be far larger).
    steady = [s for s in samples if s[0] >= 4_000]
    blocks = [b for _, b, _ in steady]
    rss = [r for _, _, r in steady]
    assert max(blocks) - min(blocks) < 2_000, samples
    assert abs(blocks[-1] - blocks[0]) < 1_000, samples
    assert max(rss) - min(rss) < 24 * 2**20, samples
    await router.aclose()
    mib = 2**20
    windows = max(v for k, v in sizes.items() if k.endswith(("_latencies", "_ttfts")))
    retried = sum(d.stats.failures for d in router.deployments.values())
    failures = {k: v for k, v in outcomes.items() if k not in ("hit", "miss")}
    print(
        f"\n[memory] {MEMORY_CALLS} calls in {elapsed:.1f}s: {outcomes['hit']} hits, "
        f"{outcomes['miss']} misses, {retried} provider failures retried, failed calls "
        f"{failures}; max_entries={MAX_ENTRIES}: heap blocks {blocks[0]} -> {blocks[-1]} "
        f"(deltas {[b - blocks[0] for b in blocks]} at 4k..20k calls), RSS {rss[0] / mib:.0f} -> "
        f"{rss[-1] / mib:.0f} MiB; at the end: {sizes['cache.entries']} entries in "
        f"{sizes['cache.partitions']} partitions ({sizes['cache.vectors']} vectors), latency "
        f"windows <= {windows}, {sizes['router.deployments']} deployments (5 configured + "
        f"newest ad-hoc of ~{MEMORY_CALLS // 10 * 6 // 10}), unknown-model warnings capped at "
        f"{len(router.pricing._warned)}, breakers without "
        f"history, budget windows {sizes['budget.windows']}, daily/monthly stats "
        f"{sizes['router.daily']}/{sizes['router.monthly']}"
    )
