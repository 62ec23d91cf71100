"""Pick ``CacheConfig.ambiguity_margin`` on QQP *validation* data, never on a report set.

A cache simulation in GPTCache's style, built from the MeanCache QQP validation split: every
distinct ``question1`` goes into one cache (its answer is its row), and the ``question2`` of every
duplicate pair is looked up through the real :class:`CacheEngine`. Serving the pair's own
``question1`` is a positive, any other row a negative (strict: Quora holds many unlabelled
duplicates, so the precision here is a lower bound). Prints precision / recall per margin, with
the default guard and without it, and writes ``benchmarks/results/margin_tuning.json``.

Run: ``.venv/bin/python benchmarks/tune_margin.py`` (embeddings are cached like
``bench_quality.py``'s).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from bench_quality import (
    DEFAULT_SHARED,
    HERE,
    cache_simulation,
    embed,
    qqp_rows,
    simulation_figures,
)

from llm_cache_router_integrations.cache import CacheConfig
from llm_cache_router_integrations.cache.guard import VerificationGuard

MARGINS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="datasets folder")
    parser.add_argument("--threshold", type=float, default=CacheConfig().threshold)
    args = parser.parse_args(argv)

    rows = qqp_rows(args.shared, "val")
    keys = list(dict.fromkeys(r["question1"] for r in rows))
    row_of = {text: i for i, text in enumerate(keys)}
    duplicates = [r for r in rows if r["is_duplicate"] == "1"]
    queries = [r["question2"] for r in duplicates]
    own = np.array([row_of[r["question1"]] for r in duplicates])
    key_vectors, query_vectors = embed(keys), embed(queries)

    results: dict[str, Any] = {"keys": len(keys), "queries": len(queries), "sweep": []}
    print(
        f"\n### QQP val cache simulation ({len(keys)} cached, {len(queries)} duplicate queries)\n"
    )
    print("| ambiguity margin | guard P | guard R | no guard P | no guard R |")
    print("|---:|---:|---:|---:|---:|")
    for margin in MARGINS:
        config = CacheConfig(
            threshold=args.threshold, ttl=None, max_entries=None, ambiguity_margin=margin
        )
        figures = {
            name: simulation_figures(
                cache_simulation(keys, key_vectors, queries, query_vectors, guard, config),
                own,
                keys,
                args.threshold,
            )
            for name, guard in (("guard", VerificationGuard()), ("no_guard", False))
        }
        results["sweep"].append({"margin": margin, **figures})
        g, n = figures["guard"], figures["no_guard"]
        print(
            f"| {margin:.2f} | {g['precision']:.3f} | {g['recall']:.3f} "
            f"| {n['precision']:.3f} | {n['recall']:.3f} |"
        )
    out = HERE / "results" / "margin_tuning.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
