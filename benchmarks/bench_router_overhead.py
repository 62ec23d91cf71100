"""Router overhead: non-streaming calls through LLMRouter and LiteLLM's Router vs plain httpx.

One loopback OpenAI-compatible server (a child process on 127.0.0.1) answers every call. Three
clients call it in the same process, interleaved call by call in a shuffled order so drift on a
shared machine hits all three alike:

* **direct httpx**: ``httpx.AsyncClient.post`` of the Chat Completions body, ``response.json()``;
* **LLMRouter**: ``LLMRouter.complete`` with one OpenAI deployment and the cache off (the
  router still validates, counts tokens, checks breaker/limits/budget and prices the answer);
* **LiteLLM Router**: ``litellm.Router.acompletion`` with one deployment of the same server.

*Added* time = p50 of the client - p50 of direct httpx, measured in the same run. Figures are the
median over ``--repeats`` runs of ``--calls`` calls per client. Goal: our added p50 <= 0.25 ms
and <= 1/8 of LiteLLM's.

    python benchmarks/bench_router_overhead.py [--repeats 5] [--calls 400]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _common import (
    API_KEY,
    MODEL,
    ChildServer,
    goal,
    litellm_router,
    ms,
    ratio,
    summarise,
    write_result,
)

Call = Callable[[int], Awaitable[str]]


def question(i: int) -> str:
    return f"Question {i}: what is the capital of France?"


async def make_clients(url: str) -> tuple[dict[str, Call], list[Callable[[], Awaitable[Any]]]]:
    """The three clients, and how to close them."""
    import httpx

    from llm_cache_router_integrations import LLMRouter

    clients: dict[str, Call] = {}
    closers: list[Callable[[], Awaitable[Any]]] = []

    direct = httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=httpx.Timeout(60.0, connect=10.0),
    )

    async def call_direct(i: int) -> str:
        body = {"model": MODEL, "messages": [{"role": "user", "content": question(i)}]}
        response = await direct.post("/chat/completions", json=body)
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"])

    clients["direct httpx"] = call_direct
    closers.append(direct.aclose)

    router = LLMRouter(
        {"openai": {"type": "openai", "api_key": API_KEY, "base_url": url, "models": [MODEL]}},
        cache=None,
    )

    async def call_router(i: int) -> str:
        response = await router.complete(question(i), model=MODEL)
        return response.content

    clients["LLMRouter"] = call_router
    closers.append(router.aclose)

    try:
        lite = litellm_router(url)

        async def call_litellm(i: int) -> str:
            response = await lite.acompletion(
                model=MODEL, messages=[{"role": "user", "content": question(i)}]
            )
            return str(response.choices[0].message.content)

        clients["LiteLLM Router"] = call_litellm
    except ImportError as exc:  # recorded as "not measured"
        print(f"LiteLLM not measured: {exc}", file=sys.stderr)
    return clients, closers


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with ChildServer() as server:
        clients, closers = await make_clients(server.url)
        try:
            for name, call in clients.items():  # warm-up: connections, imports, JIT-ish caches
                for i in range(args.warmup):
                    answer = await call(i)
                    assert answer.startswith("Answer to: "), (name, answer)
            rng = random.Random(7)
            runs: dict[str, list[list[float]]] = {name: [] for name in clients}
            names = list(clients)
            for repeat in range(args.repeats):
                samples: dict[str, list[float]] = {name: [] for name in clients}
                for i in range(args.calls):
                    rng.shuffle(names)
                    for name in names:
                        start = time.perf_counter()
                        await clients[name](repeat * args.calls + i)
                        samples[name].append((time.perf_counter() - start) * 1000.0)
                for name in clients:
                    runs[name].append(samples[name])
                print(f"  run {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
        finally:
            for close in closers:
                await close()
    stats = {name: summarise(samples) for name, samples in runs.items()}
    base = stats["direct httpx"]["p50"]
    # Added time per run (same run, same machine), then the median over runs.
    added_runs = {
        name: [p - b for p, b in zip(s["run_p50s"], stats["direct httpx"]["run_p50s"], strict=True)]
        for name, s in stats.items()
    }
    for name, s in stats.items():
        s["added_p50"] = statistics.median(added_runs[name])
        s["added_p50_of_medians"] = s["p50"] - base
    return {"clients": stats, "repeats": args.repeats, "calls_per_run": args.calls}


def report(result: dict[str, Any]) -> list[dict[str, Any]]:
    stats = result["clients"]
    print(
        f"\n### Router overhead, non-streaming, loopback server (median of {result['repeats']} runs "
        f"x {result['calls_per_run']} calls)\n"
    )
    print("| client | p50 | p99 | added p50 over httpx | added vs ours |")
    print("|---|---:|---:|---:|---:|")
    ours = stats["LLMRouter"]["added_p50"]
    for name, s in stats.items():
        rel = ratio(s["added_p50"], ours) if name != "direct httpx" else None
        print(
            f"| {name} | {ms(s['p50'])} | {ms(s['p99'])} | "
            f"{'-' if name == 'direct httpx' else ms(s['added_p50'])} | "
            f"{'-' if rel is None else f'{rel:.1f}x'} |"
        )
    print()
    goals = [
        goal(
            "router overhead p50",
            ours <= 0.25,
            f"{ours:.3f} ms added",
            "LLMRouter adds <= 0.25 ms p50 over direct httpx",
        )
    ]
    lite = stats.get("LiteLLM Router")
    if lite is None:
        goals.append(goal("router overhead vs LiteLLM", None, "LiteLLM missing", "<= 1/8"))
    else:
        share = ratio(ours, lite["added_p50"])
        goals.append(
            goal(
                "router overhead vs LiteLLM",
                share is not None and share <= 1 / 8,
                f"ours {ours:.3f} ms vs LiteLLM {lite['added_p50']:.3f} ms added "
                f"(LiteLLM adds {lite['added_p50'] / ours:.1f}x ours)"
                if ours > 0
                else f"ours {ours:.3f} ms vs LiteLLM {lite['added_p50']:.3f} ms",
                "our added p50 <= 1/8 of LiteLLM's",
            )
        )
    return goals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=400, help="calls per client per run")
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = asyncio.run(run(args))
    result["goals"] = report(result)
    write_result("router_overhead", result, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
