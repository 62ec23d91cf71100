"""Streaming overhead: added time-to-first-token and the chunk relay rate of ``LLMRouter.stream``.

One loopback OpenAI-compatible server (a child process on 127.0.0.1) streams Server-Sent Events.
Clients, interleaved call by call in a shuffled order within each run:

* **direct httpx**: ``AsyncClient.stream`` + ``aiter_lines`` + ``json.loads`` of each event;
* **LLMRouter**: ``LLMRouter.stream`` (cache off), the unified ``StreamChunk`` s;
* **LiteLLM Router**: ``litellm.Router.acompletion(stream=True)`` (for reference; no goal).

*TTFT* is the time from the call to the first chunk carrying text (the whole stream is read, so
connections are reused). *Added TTFT* = p50 of the client - p50 of direct httpx in the same run.
The *relay rate* is measured on a long answer of ``--chunks`` one-word chunks (sent by the
server in 64 KiB pieces, so it is never the bottleneck): chunks / (last chunk - first chunk).
Goals: added TTFT <= 0.5 ms; relay >= 20,000 chunks/s. Median over ``--repeats`` runs.

    python benchmarks/bench_streaming.py [--repeats 5] [--calls 200] [--chunks 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from _common import API_KEY, MODEL, ChildServer, goal, litellm_router, ms, summarise, write_result

# A client: (prompt) -> async iterator over text deltas ("" for chunks without text).
Stream = Callable[[str], AsyncIterator[str]]


def question(i: int) -> str:
    return f"Question {i}: please explain the water cycle in a few short sentences."


async def make_clients(url: str) -> tuple[dict[str, Stream], list[Any]]:
    import httpx

    from llm_cache_router_integrations import LLMRouter

    direct = httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=httpx.Timeout(60.0, connect=10.0),
    )

    async def stream_direct(prompt: str) -> AsyncIterator[str]:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        async with direct.stream("POST", "/chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                choices = event.get("choices") or [{}]
                yield choices[0].get("delta", {}).get("content") or ""

    router = LLMRouter(
        {"openai": {"type": "openai", "api_key": API_KEY, "base_url": url, "models": [MODEL]}},
        cache=None,
    )

    async def stream_router(prompt: str) -> AsyncIterator[str]:
        async for chunk in router.stream(prompt, model=MODEL):
            yield chunk.delta

    clients: dict[str, Stream] = {"direct httpx": stream_direct, "LLMRouter": stream_router}
    closers: list[Any] = [direct.aclose, router.aclose]
    try:
        lite = litellm_router(url)

        async def stream_litellm(prompt: str) -> AsyncIterator[str]:
            response = await lite.acompletion(
                model=MODEL, messages=[{"role": "user", "content": prompt}], stream=True
            )
            async for chunk in response:
                choices = chunk.choices or []
                yield (choices[0].delta.content or "") if choices else ""

        clients["LiteLLM Router"] = stream_litellm
    except ImportError as exc:
        print(f"LiteLLM not measured: {exc}", file=sys.stderr)
    return clients, closers


async def ttft(client: Stream, prompt: str) -> tuple[float, int]:
    """(ms to the first chunk with text, chunks with text); the whole stream is consumed."""
    start = time.perf_counter()
    first: float | None = None
    count = 0
    async for delta in client(prompt):
        if delta:
            count += 1
            if first is None:
                first = time.perf_counter()
    assert first is not None, "the stream carried no text"
    return (first - start) * 1000.0, count


async def relay(client: Stream, chunks: int) -> float:
    """Chunks per second between the first and the last text chunk of a long stream."""
    first = last = 0.0
    count = 0
    async for delta in client(f"LONGSTREAM {chunks}"):
        if delta:
            last = time.perf_counter()
            if count == 0:
                first = last
            count += 1
    assert count == chunks, (count, chunks)
    return (count - 1) / (last - first)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with ChildServer() as server:
        clients, closers = await make_clients(server.url)
        try:
            names = list(clients)
            for name in names:  # warm-up
                for i in range(args.warmup):
                    _, count = await ttft(clients[name], question(i))
                    assert count > 3, (name, count)
                await relay(clients[name], 2000)
            rng = random.Random(11)
            ttft_runs: dict[str, list[list[float]]] = {n: [] for n in names}
            rate_runs: dict[str, list[float]] = {n: [] for n in names}
            for repeat in range(args.repeats):
                samples: dict[str, list[float]] = {n: [] for n in names}
                for i in range(args.calls):
                    rng.shuffle(names)
                    for name in names:
                        value, _ = await ttft(clients[name], question(repeat * args.calls + i))
                        samples[name].append(value)
                for name in names:
                    ttft_runs[name].append(samples[name])
                rng.shuffle(names)
                for name in names:
                    rate_runs[name].append(await relay(clients[name], args.chunks))
                print(f"  run {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
        finally:
            for close in closers:
                await close()
    out: dict[str, Any] = {}
    base = summarise(ttft_runs["direct httpx"])
    for name in clients:
        s = summarise(ttft_runs[name])
        added = [p - b for p, b in zip(s["run_p50s"], base["run_p50s"], strict=True)]
        out[name] = {
            "ttft": s,
            "added_ttft_p50": statistics.median(added),
            "relay_chunks_per_s": statistics.median(rate_runs[name]),
            "relay_runs": [round(r) for r in rate_runs[name]],
        }
    return {
        "clients": out,
        "repeats": args.repeats,
        "calls_per_run": args.calls,
        "long_stream_chunks": args.chunks,
    }


def report(result: dict[str, Any]) -> list[dict[str, Any]]:
    clients = result["clients"]
    print(
        f"\n### Streaming (median of {result['repeats']} runs; TTFT over {result['calls_per_run']} "
        f"streams per client per run, relay over {result['long_stream_chunks']:,} chunks)\n"
    )
    print("| client | TTFT p50 | TTFT p99 | added TTFT p50 | relay rate |")
    print("|---|---:|---:|---:|---:|")
    for name, c in clients.items():
        added = "-" if name == "direct httpx" else ms(c["added_ttft_p50"])
        print(
            f"| {name} | {ms(c['ttft']['p50'])} | {ms(c['ttft']['p99'])} | {added} "
            f"| {c['relay_chunks_per_s']:,.0f} chunks/s |"
        )
    print()
    ours = clients["LLMRouter"]
    return [
        goal(
            "streaming added TTFT",
            ours["added_ttft_p50"] <= 0.5,
            f"{ours['added_ttft_p50']:.3f} ms",
            "LLMRouter adds <= 0.5 ms to the time to first token",
        ),
        goal(
            "streaming relay rate",
            ours["relay_chunks_per_s"] >= 20_000,
            f"{ours['relay_chunks_per_s']:,.0f} chunks/s "
            f"(direct httpx parse: {clients['direct httpx']['relay_chunks_per_s']:,.0f})",
            ">= 20,000 chunks/s through LLMRouter.stream",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200, help="streams per client per run")
    parser.add_argument("--chunks", type=int, default=20_000, help="chunks of the long stream")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = asyncio.run(run(args))
    result["goals"] = report(result)
    write_result("streaming", result, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
