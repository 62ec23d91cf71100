"""LangChain exact cache hit: ChatRouter vs LangChain's InMemoryCache on a fake chat model.

Both sides answer the same question from a cache through LangChain's full ``invoke`` path
(callbacks, message conversion):

* **ours**: ``ChatRouter`` over one OpenAI-compatible deployment (the loopback server, a child
  process) with the router's default cache (``CacheConfig()``: in memory, exact + semantic);
  the first call goes to the server, every timed call is an *exact* hit of the router's cache
  (LangChain's own cache is off for ChatRouter, so an answer is never cached twice);
* **peer**: ``GenericFakeChatModel(cache=InMemoryCache())``; the first call fills the cache,
  every timed call is a LangChain ``InMemoryCache`` hit.

The calls are interleaved in a shuffled order; the figure is the median over ``--repeats`` runs of
the per-run p50. Goal: ChatRouter hit p50 <= 1.2x the InMemoryCache hit p50. ``ainvoke`` is
measured the same way, for reference.

    python benchmarks/bench_langchain_hit.py [--repeats 5] [--calls 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import API_KEY, MODEL, ChildServer, goal, ms, ratio, summarise, write_result

QUESTION = "What is the capital of France?"


def build(url: str) -> tuple[Any, Any]:
    from langchain_core.caches import InMemoryCache
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from llm_cache_router_integrations.cache import CacheConfig
    from llm_cache_router_integrations.langchain import ChatRouter

    ours = ChatRouter(
        providers={
            "openai": {"type": "openai", "api_key": API_KEY, "base_url": url, "models": [MODEL]}
        },
        model=MODEL,
        cache=CacheConfig(),
    )
    peer = GenericFakeChatModel(
        messages=itertools.cycle([AIMessage(content=f"Answer to: {QUESTION}")]),
        cache=InMemoryCache(),
    )
    return ours, peer


def timed(call: Callable[[], Any], samples: list[float]) -> Any:
    start = time.perf_counter()
    result = call()
    samples.append((time.perf_counter() - start) * 1000.0)
    return result


async def atimed(call: Callable[[], Any], samples: list[float]) -> Any:
    start = time.perf_counter()
    result = await call()
    samples.append((time.perf_counter() - start) * 1000.0)
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    with ChildServer() as server:
        ours, peer = build(server.url)
        first = ours.invoke(QUESTION)  # the miss that fills the router's cache
        peer.invoke(QUESTION)  # fills InMemoryCache
        assert first.content == f"Answer to: {QUESTION}", first.content
        router = ours.router
        names = {"ChatRouter (router cache, exact hit)": ours, "InMemoryCache hit": peer}
        for model in names.values():
            for _ in range(args.warmup):
                model.invoke(QUESTION)
        rng = random.Random(3)
        sync_runs: dict[str, list[list[float]]] = {n: [] for n in names}
        async_runs: dict[str, list[list[float]]] = {n: [] for n in names}
        order = list(names)
        for repeat in range(args.repeats):
            samples: dict[str, list[float]] = {n: [] for n in names}
            for _ in range(args.calls):
                rng.shuffle(order)
                for name in order:
                    model = names[name]
                    message = timed(lambda model=model: model.invoke(QUESTION), samples[name])
                    assert message.content == f"Answer to: {QUESTION}"
            for name in names:
                sync_runs[name].append(samples[name])

            async def async_pass() -> dict[str, list[float]]:
                out: dict[str, list[float]] = {n: [] for n in names}
                for _ in range(args.calls):
                    rng.shuffle(order)
                    for name in order:
                        model = names[name]
                        await atimed(lambda model=model: model.ainvoke(QUESTION), out[name])
                return out

            for name, values in asyncio.run(async_pass()).items():
                async_runs[name].append(values)
            print(f"  run {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
        stats = router.cache.stats.snapshot() if router.cache is not None else {}
        ours.close()
    return {
        "sync": {n: summarise(v) for n, v in sync_runs.items()},
        "async": {n: summarise(v) for n, v in async_runs.items()},
        "router_cache": {k: stats.get(k) for k in ("hits", "exact_hits", "misses", "stores")},
        "repeats": args.repeats,
        "calls_per_run": args.calls,
    }


def report(result: dict[str, Any]) -> list[dict[str, Any]]:
    print(
        f"\n### LangChain exact cache hit (median of {result['repeats']} runs x "
        f"{result['calls_per_run']} calls each)\n"
    )
    print("| path | invoke p50 | invoke p99 | ainvoke p50 | ainvoke p99 |")
    print("|---|---:|---:|---:|---:|")
    for name, s in result["sync"].items():
        a = result["async"][name]
        print(f"| {name} | {ms(s['p50'])} | {ms(s['p99'])} | {ms(a['p50'])} | {ms(a['p99'])} |")
    ours_name, peer_name = list(result["sync"])
    r = ratio(result["sync"][ours_name]["p50"], result["sync"][peer_name]["p50"])
    ra = ratio(result["async"][ours_name]["p50"], result["async"][peer_name]["p50"])
    result["ratio_sync"] = r
    result["ratio_async"] = ra
    print(f"\nChatRouter / InMemoryCache: invoke {r:.2f}x, ainvoke {ra:.2f}x\n")
    return [
        goal(
            "LangChain exact hit",
            r is not None and r <= 1.2,
            f"{r:.2f}x ({result['sync'][ours_name]['p50']:.3f} ms vs "
            f"{result['sync'][peer_name]['p50']:.3f} ms; ainvoke {ra:.2f}x)",
            "ChatRouter.invoke exact hit p50 <= 1.2x LangChain InMemoryCache hit",
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = run(args)
    result["goals"] = report(result)
    write_result("langchain_hit", result, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
