"""Fit the guard's logistic score (``SCORE_WEIGHTS`` in ``cache/guard.py``) offline.

Training data: the MeanCache QQP *validation* split and the project's dev set (all three slices),
restricted to the pairs the score actually sees (cosine >= ``--min-cosine`` and accepted by every
rule check). Never the QQP test split, the GPTCache data or the contextual queries. Prints the weights to paste into the module and
the precision/recall of a few ``min_score`` values on the training data.

Run: ``.venv/bin/python benchmarks/tune_guard.py``
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_quality import DEFAULT_SHARED, FOCUS, STATEMENTS, Pairs, load_devset, load_qqp

from llm_cache_router_integrations.cache.guard import (
    GuardConfig,
    VerificationGuard,
    pair_features,
)


def rule_pass(pairs: Pairs, min_cosine: float) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Indices of the pairs the score sees, and their features."""
    guard = VerificationGuard(GuardConfig(use_score=False, min_similarity=min_cosine))
    keep, feats = [], []
    for i, (a, b, s) in enumerate(zip(pairs.a, pairs.b, pairs.similarity, strict=True)):
        if s >= min_cosine and guard.verify(a, b, float(s)).ok:
            keep.append(i)
            feats.append(pair_features(a, b, float(s)))
    return np.asarray(keep, dtype=int), feats


def main(argv: Sequence[str] | None = None) -> int:
    """Fit and print the weights."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--min-cosine", type=float, default=0.75)
    parser.add_argument("--dev-weight", type=float, default=10.0, help="weight of a dev pair")
    parser.add_argument("--C", type=float, default=1.0)
    args = parser.parse_args(argv)

    val = load_qqp(args.shared, "val")
    slices = [load_devset(), load_devset(STATEMENTS), load_devset(FOCUS)]
    dev = Pairs(
        [a for s in slices for a in s.a],
        [b for s in slices for b in s.b],
        np.concatenate([s.labels for s in slices]),
        np.concatenate([s.similarity for s in slices]),
        [c for s in slices for c in s.categories],
    )
    iv, fv = rule_pass(val, args.min_cosine)
    idev, fdev = rule_pass(dev, args.min_cosine)
    names = list(fv[0])
    x = np.array([[f[n] for n in names] for f in fv + fdev])
    y = np.concatenate([val.labels[iv], dev.labels[idev]])
    w = np.concatenate([np.ones(len(iv)), np.full(len(idev), args.dev_weight)])
    model = LogisticRegression(C=args.C, max_iter=5000).fit(x, y, sample_weight=w)
    weights = {"bias": float(model.intercept_[0])} | {
        n: float(c) for n, c in zip(names, model.coef_[0], strict=True)
    }
    print("SCORE_WEIGHTS: dict[str, float] = {")
    for name, value in weights.items():
        print(f'    "{name}": {value:.4f},')
    print("}")
    p = model.predict_proba(x)[:, 1]
    n_val = len(iv)
    for cut in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        for label, sl, labels, total in (
            ("val", slice(0, n_val), y[:n_val], int(val.labels.sum())),
            ("dev", slice(n_val, None), y[n_val:], int(dev.labels.sum())),
        ):
            hits = p[sl] >= cut
            tp = int((hits & (labels == 1)).sum())
            print(
                f"min_score {cut:.1f} {label}: precision {tp / max(int(hits.sum()), 1):.3f} "
                f"recall {tp / total:.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
