"""Savings: replay 1,000 queries (30% paraphrased repeats) through LLMRouter with the cache on.

The stream is built from labelled data, so every served answer can be checked:

* **dev-set paraphrases** (``benchmarks/data/devset.jsonl``, label 1): ``a`` is asked first, its
  paraphrase ``b`` later (a repeat: it should hit);
* **dev-set hard negatives** (numbers, negation, entity, direction, task, unrelated-similar,
  label 0): ``a`` first, ``b`` later; ``b`` means something else, so serving ``a``'s answer to
  ``b`` is a *wrong hit*;
* **GPTCache mock data** (``../shared/datasets/gptcache_mock_data.json``, rows with a unique
  ``origin`` and ``similar``): ``origin`` first, ``similar`` later (a repeat).

700 first-time questions and 300 paraphrased repeats (30%), every repeat after its original,
otherwise in a seeded random order. Each pair is sent to one of two priced models of the package's
price table (``gpt-4o-mini``, ``gpt-4o``), served by the loopback OpenAI-compatible server (a child
process), whose answer names the question it answers ("Answer to: <question>"), so a hit is right
only when the answer is the one of the query's own group.

The stream runs twice, in the same process: through ``LLMRouter(cache=CacheConfig())`` (the
shipped defaults: in memory, cosine >= 0.80 + guard) and through ``LLMRouter(cache=None)``; USD
saved = USD without cache - USD with cache (both from the router's own pricing). The counts are
deterministic (no repeats needed); the wall time is reported for information.

Goal: 0 wrong hits on the labelled dev-set part; hit rate and USD saved are reported.

    python benchmarks/bench_savings.py [--queries 1000] [--repeat-share 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

from _common import API_KEY, DEVSET, SHARED, ChildServer, goal, write_result

MODELS = ("gpt-4o-mini", "gpt-4o")


@dataclass
class Query:
    """One query of the stream."""

    text: str
    group: int  # queries of one group have the same meaning (a question and its paraphrase)
    source: str  # dev-paraphrase | dev-negative | gptcache
    kind: str  # first | repeat
    model: str
    category: str
    order: float = 0.0
    partner: str = ""  # for the second query of a pair: the first one's text


def build_stream(args: argparse.Namespace) -> list[Query]:
    """700 first-time questions + 300 paraphrased repeats, labelled by group."""
    rng = random.Random(args.seed)
    total = args.queries
    repeats = round(total * args.repeat_share)
    firsts = total - repeats
    rows = [json.loads(line) for line in DEVSET.read_text(encoding="utf-8").splitlines() if line]
    used: set[str] = set()
    pairs: list[tuple[str, str, str, str]] = []  # (a, b, source, category)

    def take(a: str, b: str, source: str, category: str) -> bool:
        if a in used or b in used or a == b:
            return False
        used.update((a, b))
        pairs.append((a, b, source, category))
        return True

    paraphrases = [r for r in rows if r["label"] == 1]
    negatives = [r for r in rows if r["label"] == 0]
    for r in paraphrases:
        if sum(p[2] != "dev-negative" for p in pairs) < repeats:
            take(r["a"], r["b"], "dev-paraphrase", r["category"])
    mock = json.loads((args.shared / "gptcache_mock_data.json").read_text(encoding="utf-8"))
    origins = collections.Counter(r["origin"] for r in mock)
    similars = collections.Counter(r["similar"] for r in mock)
    mock = [r for r in mock if origins[r["origin"]] == 1 and similars[r["similar"]] == 1]
    rng.shuffle(mock)
    for r in mock:
        if len(pairs) >= repeats:
            break
        take(r["origin"], r["similar"], "gptcache", "paraphrase")
    # Hard negatives fill the rest of the first-time questions (two each), round robin by category.
    by_category: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in negatives:
        by_category[r["category"]].append(r)
    room = firsts - repeats
    while room >= 2 and any(by_category.values()):
        for category in sorted(by_category):
            if by_category[category] and room >= 2:
                r = by_category[category].pop(0)
                if take(r["a"], r["b"], "dev-negative", category):
                    room -= 2
    stream: list[Query] = []
    for group, (a, b, source, category) in enumerate(pairs):
        model = MODELS[group % len(MODELS)]
        first = Query(a, 2 * group, source, "first", model, category, rng.random())
        # b after a; a repeat shares a's group, a negative has its own
        later_group = 2 * group if source != "dev-negative" else 2 * group + 1
        kind = "repeat" if source != "dev-negative" else "first"
        second = Query(b, later_group, source, kind, model, category, partner=a)
        second.order = first.order + rng.random() * (1.0 - first.order)
        stream += [first, second]
    stream.sort(key=lambda q: q.order)
    return stream


async def replay(url: str, stream: list[Query], cached: bool) -> dict[str, Any]:
    from llm_cache_router_integrations import LLMRouter
    from llm_cache_router_integrations.cache import CacheConfig

    router = LLMRouter(
        {"openai": {"type": "openai", "api_key": API_KEY, "base_url": url, "models": list(MODELS)}},
        cache=CacheConfig() if cached else None,
    )
    group_of = {q.text: q.group for q in stream if q.kind == "first"}
    outcomes: list[dict[str, Any]] = []
    spent = 0.0
    started = time.perf_counter()
    try:
        for q in stream:
            t0 = time.perf_counter()
            response = await router.complete(q.text, model=q.model)
            elapsed = (time.perf_counter() - t0) * 1000.0
            spent += response.cost_usd or 0.0
            served = response.content.removeprefix("Answer to: ")
            outcomes.append(
                {
                    "hit": response.cache_hit,
                    "right": group_of.get(served, -1) == q.group,
                    "served": served,
                    "ms": elapsed,
                    "saved": response.saved_usd or 0.0,
                }
            )
        stats = await router.astats()
    finally:
        await router.aclose()
    return {
        "outcomes": outcomes,
        "spent_usd": spent,
        "seconds": time.perf_counter() - started,
        "stats": stats,
    }


def summarise_replay(stream: list[Query], cached: dict[str, Any], plain: dict[str, Any]) -> dict:
    outcomes = cached["outcomes"]
    hits = [o["hit"] for o in outcomes]
    by_part: dict[str, dict[str, int]] = {}
    examples: dict[str, list[dict[str, str]]] = collections.defaultdict(list)
    for q, o in zip(stream, outcomes, strict=True):
        part = by_part.setdefault(
            q.source,
            {"queries": 0, "repeats": 0, "hits": 0, "right_hits": 0, "labelled_wrong": 0,
             "other_group": 0},
        )  # fmt: skip
        part["queries"] += 1
        part["repeats"] += q.kind == "repeat"
        if not o["hit"]:
            continue
        part["hits"] += 1
        if o["right"]:
            part["right_hits"] += 1
            continue
        # A hit with another group's answer. Labelled wrong: the dev set says this pair differs
        # (a hard negative served its own partner), or GPTCache's data says the similar belongs
        # to its own origin. Otherwise two unrelated dev-set rows met: no label says which.
        if (q.source == "dev-negative" and o["served"] == q.partner) or (
            q.source == "gptcache" and q.kind == "repeat"
        ):
            kind = "labelled_wrong"
        else:
            kind = "other_group"
        part[kind] += 1
        examples[f"{q.source}:{kind}"].append({"query": q.text, "served_answer_of": o["served"]})
    repeats = sum(q.kind == "repeat" for q in stream)
    repeat_hits = sum(o["hit"] and o["right"] for q, o in zip(stream, outcomes, strict=True))
    cache = cached["stats"]["cache"] or {}
    without = plain["spent_usd"]
    with_cache = cached["spent_usd"]
    dev = [by_part.get(s, {}) for s in ("dev-paraphrase", "dev-negative")]
    return {
        "queries": len(stream),
        "repeats": repeats,
        "hit_rate": sum(hits) / len(hits),
        "exact_hits": cache.get("exact_hits"),
        "semantic_hits": cache.get("semantic_hits"),
        "guard_rejections": cache.get("guard_rejections"),
        "repeats_served_right": repeat_hits,
        "repeat_recall": repeat_hits / repeats if repeats else 0.0,
        "usd_without_cache": without,
        "usd_with_cache": with_cache,
        "usd_saved": without - with_cache,
        "saved_share": (without - with_cache) / without if without else 0.0,
        "router_reported_saved_usd": cached["stats"].get("saved_cost_usd"),
        "router_reported_cost_usd": cached["stats"].get("total_cost_usd"),
        "wrong_hits_labelled_dev": sum(p.get("labelled_wrong", 0) for p in dev),
        "wrong_hits_gptcache_labels": by_part.get("gptcache", {}).get("labelled_wrong", 0),
        "other_group_hits_unlabelled": sum(p.get("other_group", 0) for p in by_part.values()),
        "parts": by_part,
        "examples": {k: v[:10] for k, v in examples.items()},
        "seconds_with_cache": round(cached["seconds"], 1),
        "seconds_without_cache": round(plain["seconds"], 1),
        "models": list(MODELS),
    }


def report(result: dict[str, Any]) -> list[dict[str, Any]]:
    print(
        f"\n### Savings: {result['queries']:,} queries, {result['repeats']} paraphrased repeats, "
        f"models {', '.join(result['models'])}\n"
    )
    print("| figure | value |\n|---|---:|")
    rows = [
        ("hit rate", f"{100 * result['hit_rate']:.1f}%"),
        ("exact / semantic hits", f"{result['exact_hits']} / {result['semantic_hits']}"),
        (
            "repeats served right (recall)",
            f"{result['repeats_served_right']} ({100 * result['repeat_recall']:.1f}%)",
        ),
        ("USD without cache", f"${result['usd_without_cache']:.6f}"),
        ("USD with cache", f"${result['usd_with_cache']:.6f}"),
        ("USD saved", f"${result['usd_saved']:.6f} ({100 * result['saved_share']:.1f}%)"),
        ("wrong hits, labelled dev-set part", str(result["wrong_hits_labelled_dev"])),
        ("wrong hits by GPTCache's labels (mock rows)", str(result["wrong_hits_gptcache_labels"])),
        (
            "hits across two unrelated dev/mock rows (no label)",
            str(result["other_group_hits_unlabelled"]),
        ),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(
        "\n| part | queries | repeats | hits | right | labelled wrong | other row (no label) |"
        "\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for name, p in result["parts"].items():
        print(
            f"| {name} | {p['queries']} | {p['repeats']} | {p['hits']} | {p['right_hits']} "
            f"| {p['labelled_wrong']} | {p['other_group']} |"
        )
    for kind, items in result["examples"].items():
        for example in items:
            print(f"  {kind}: {example['query']!r} <- answer of {example['served_answer_of']!r}")
    print()
    return [
        goal(
            "savings wrong hits",
            result["wrong_hits_labelled_dev"] == 0,
            f"{result['wrong_hits_labelled_dev']} wrong hits on the labelled dev-set part "
            f"({result['wrong_hits_gptcache_labels']} by GPTCache's mock-data labels); hit rate "
            f"{100 * result['hit_rate']:.1f}%, ${result['usd_saved']:.4f} saved "
            f"({100 * result['saved_share']:.1f}%)",
            "0 wrong hits on the labelled part",
        )
    ]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    stream = build_stream(args)
    with ChildServer() as server:
        plain = await replay(server.url, stream, cached=False)
        cached = await replay(server.url, stream, cached=True)
    return summarise_replay(stream, cached, plain)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--repeat-share", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--shared", type=type(SHARED), default=SHARED, help="datasets folder")
    args = parser.parse_args(argv)
    if not (args.shared / "gptcache_mock_data.json").exists():
        print(f"{args.shared} has no gptcache_mock_data.json", file=sys.stderr)
        return 1
    started = time.perf_counter()
    result = asyncio.run(run(args))
    result["goals"] = report(result)
    write_result("savings", result, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
