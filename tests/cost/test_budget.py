"""Budgets: refusal before any HTTP call, zero overspend under concurrency, shared via Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

import pytest

from llm_cache_router_integrations import BudgetExceededError, CacheConfig, LLMRouter
from llm_cache_router_integrations.cost import Budget, BudgetManager, RedisBudgetStore
from llm_cache_router_integrations.cost.budget import NANO, InMemoryBudgetStore
from llm_cache_router_integrations.testing.openai_server import OpenAIServer

PRICE = {"budget-model": {"input": 1000.0, "output": 1000.0, "context_window": 100_000}}


def router_for(server: OpenAIServer, **kwargs: object) -> LLMRouter:
    return LLMRouter(
        {
            "p": {
                "type": "openai-compatible",
                "base_url": server.base_url,
                "models": ["budget-model"],
            }
        },
        pricing=PRICE,
        **kwargs,  # type: ignore[arg-type]
    )


def server_cost(server: OpenAIServer) -> float:
    """What the server's reported usage costs at PRICE (the truth the budget must match)."""
    return sum((a.input_tokens + a.output_tokens) * 1000.0 / 1_000_000 for a in server.answers)


async def test_budget_refuses_before_any_http_call() -> None:
    with OpenAIServer() as server:
        router = router_for(server, budget={"daily_usd": 0.01})
        with pytest.raises(BudgetExceededError) as info:
            await router.complete("hello", "budget-model", max_tokens=100)
        assert server.requests == []
        assert info.value.window == "daily" and info.value.requested_usd > 0.01
        await router.aclose()


async def test_settles_to_real_cost_and_cache_hits_are_free() -> None:
    with OpenAIServer() as server:
        router = router_for(
            server, budget={"daily_usd": 1.0, "monthly_usd": 5.0}, cache=CacheConfig()
        )
        first = await router.complete(
            "what is a budget?", "budget-model", max_tokens=20, temperature=0
        )
        assert first.cost_usd == pytest.approx(server_cost(server))
        second = await router.complete(
            "what is a budget?", "budget-model", max_tokens=20, temperature=0
        )
        assert second.cache_hit and second.cost_usd == 0.0
        stats = await router.astats()
        assert stats["budget"]["spent"]["daily"] == pytest.approx(first.cost_usd)
        assert stats["saved_cost_usd"] == pytest.approx(first.cost_usd)
        assert stats["budget"]["remaining"]["monthly"] == pytest.approx(5.0 - first.cost_usd)
        assert len(server.requests) == 1
        await router.aclose()


async def test_200_concurrent_requests_never_overspend() -> None:
    limit = 0.5
    with OpenAIServer() as server:
        router = router_for(server, budget={"daily_usd": limit})
        results = await asyncio.gather(
            *(
                router.complete(f"question number {i}", "budget-model", max_tokens=10)
                for i in range(200)
            ),
            return_exceptions=True,
        )
        ok = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, BudgetExceededError)]
        other = [
            r
            for r in results
            if isinstance(r, BaseException) and not isinstance(r, BudgetExceededError)
        ]
        assert other == []
        assert len(ok) + len(refused) == 200
        spent = (await router.budget.spent())["daily"]
        assert spent <= limit
        assert spent == pytest.approx(server_cost(server))
        assert sum(r.cost_usd for r in ok) == pytest.approx(spent)
        assert ok and refused
        print(
            f"200 concurrent: {len(ok)} answered, {len(refused)} refused, spent ${spent:.6f} of ${limit}"
        )
        await router.aclose()


async def test_budget_windows_are_utc_days() -> None:
    now = [datetime(2026, 11, 23, 23, 59, tzinfo=UTC)]
    manager = BudgetManager(Budget(daily_usd=1.0), clock=lambda: now[0])
    reservation = await manager.reserve(0.9)
    await manager.settle(reservation, 0.8)
    with pytest.raises(BudgetExceededError):
        await manager.reserve(0.3)
    now[0] = datetime(2026, 11, 24, 0, 1, tzinfo=UTC)
    await manager.reserve(0.9)  # a new day
    assert (await manager.spent())["monthly"] == pytest.approx(1.7)


async def test_redis_store_is_atomic(redis_url: str) -> None:
    manager = BudgetManager(Budget(daily_usd=1.0), RedisBudgetStore(redis_url, prefix="t1"))
    results = await asyncio.gather(
        *(manager.reserve(0.3) for _ in range(10)), return_exceptions=True
    )
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 3
    assert (await manager.spent())["daily"] == pytest.approx(0.9)
    await manager.store.aclose()  # type: ignore[attr-defined]


WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from llm_cache_router_integrations import BudgetExceededError, LLMRouter
    base_url, redis_url = sys.argv[1], sys.argv[2]

    async def main():
        router = LLMRouter(
            {"p": {"type": "openai-compatible", "base_url": base_url, "models": ["budget-model"]}},
            pricing={"budget-model": {"input": 1000.0, "output": 1000.0}},
            budget={"daily_usd": 0.4}, budget_store=redis_url,
        )
        results = await asyncio.gather(
            *(router.complete(f"question {i}", "budget-model", max_tokens=10) for i in range(60)),
            return_exceptions=True,
        )
        ok = [r for r in results if not isinstance(r, BaseException)]
        refused = sum(isinstance(r, BudgetExceededError) for r in results)
        other = [repr(r) for r in results if isinstance(r, BaseException) and not isinstance(r, BudgetExceededError)]
        print(json.dumps({"ok": len(ok), "refused": refused, "other": other, "cost": sum(r.cost_usd for r in ok)}))
        await router.aclose()

    asyncio.run(main())
    """
)


def test_two_processes_share_one_budget_on_redis(redis_url: str) -> None:
    with OpenAIServer() as server:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, server.base_url, redis_url],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [
            json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs
        ]
    assert all(o["other"] == [] for o in outputs)
    total_ok = sum(o["ok"] for o in outputs)
    total_cost = sum(o["cost"] for o in outputs)
    import redis

    client = redis.Redis.from_url(redis_url)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    stored = int(client.get(f"llmr:budget:day:{day}") or 0) / NANO
    client.close()
    assert total_ok + sum(o["refused"] for o in outputs) == 120
    assert total_cost <= 0.4 and stored <= 0.4
    assert stored == pytest.approx(total_cost) == pytest.approx(server_cost(server))
    assert all(o["refused"] > 0 for o in outputs) or sum(o["refused"] for o in outputs) > 0
    print(f"2 processes on one Redis budget: {total_ok} answered, spent ${stored:.6f} of $0.40")


async def test_unreachable_budget_store_fails_closed_with_a_typed_error() -> None:
    from llm_cache_router_integrations import BudgetUnavailableError

    with OpenAIServer() as server:
        router = router_for(server, budget={"daily_usd": 1.0}, budget_store="redis://127.0.0.1:9/0")
        with pytest.raises(BudgetUnavailableError):
            await router.complete("hello", "budget-model", max_tokens=5)
        assert server.requests == []
        await router.aclose()


class SlowReplyStore(InMemoryBudgetStore):
    """A network store (as Redis): a settlement is applied server-side, then its reply takes a
    moment to come back; ``settling`` is set at that moment."""

    def __init__(self) -> None:
        super().__init__()
        self.settling: asyncio.Event | None = None

    async def adjust(self, keys: tuple[str, ...], delta: int) -> None:
        await super().adjust(keys, delta)
        if self.settling is not None and delta != 0:
            self.settling.set()
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("stream", [False, True])
async def test_cancel_during_settlement_settles_once(stream: bool) -> None:
    """A caller cancelled while the real cost is being settled: the reservation is settled once,
    to the real cost (it used to be settled again with 0, handing the reservation back twice)."""
    with OpenAIServer() as server:
        store = SlowReplyStore()
        router = router_for(server, budget={"daily_usd": 100.0}, budget_store=store)
        store.settling = asyncio.Event()

        async def call() -> None:
            if stream:
                async for _ in router.stream("hello", max_tokens=1000):
                    pass
            else:
                await router.complete("hello", max_tokens=1000)

        task = asyncio.create_task(call())
        await store.settling.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        store.settling = None
        await asyncio.sleep(0.3)  # the settlement's reply arrives
        spent = (await router.budget.spent())["daily"]
        assert len(server.answers) == 1
        assert spent == pytest.approx(server_cost(server))
        assert spent > 0
        await router.aclose()
