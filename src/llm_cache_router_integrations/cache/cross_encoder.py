"""A model-backed verifier: the rule guard first, then a cross-encoder on the survivors.

The rule guard (:mod:`.guard`) over all-MiniLM-L6-v2 similarities tops out, on the MeanCache QQP
validation split, around 0.85 precision at 0.55 recall (see ``docs/cache-guard.md``): a bi-encoder
plus word rules cannot tell every loose Quora "duplicate" from a near miss. A *cross-encoder*
reads both questions together and is the usual next step: for example
``cross-encoder/quora-distilroberta-base`` (trained on Quora duplicate questions) or any
sentence-transformers ``CrossEncoder`` with one output.

:class:`CrossEncoderVerifier` is a drop-in :class:`~.engine.Verifier`::

    verifier = CrossEncoderVerifier("cross-encoder/quora-distilroberta-base", min_probability=0.6)
    engine = CacheEngine(config, guard=verifier)

The cheap rules run first (numbers, negation, entities, direction, task...), so the model only
scores candidates they accept, once per lookup that reaches verification. The model runs on one
worker thread, never on the event loop (the engine awaits :meth:`CrossEncoderVerifier.averify`).
Measure it on your data with ``benchmarks/bench_quality.py --cross-encoder NAME_OR_PATH``.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import ConfigurationError
from .guard import GuardConfig, GuardVerdict, VerificationGuard

__all__ = ["CrossEncoderVerifier"]


class CrossEncoderVerifier:
    """Rules, then a cross-encoder's duplicate probability, for every semantic candidate.

    Args:
        model: a sentence-transformers ``CrossEncoder`` (or anything with ``predict(pairs)``), or
            a model name or local path to load one from (on the CPU, on first use).
        min_probability: the model's probability in [0, 1] at or above which a candidate is
            served.
        guard: the rule guard that runs first; default ``VerificationGuard(GuardConfig(use_score
            =False))`` (the model replaces the lexical score); ``False`` runs the model alone.
        max_length: token limit of a (query, candidate) pair when loading by name.
    """

    def __init__(
        self,
        model: Any,
        *,
        min_probability: float = 0.5,
        guard: VerificationGuard | bool = True,
        max_length: int = 256,
    ) -> None:
        if not 0.0 <= min_probability <= 1.0:
            raise ConfigurationError(
                f"min_probability must be in [0, 1], got {min_probability}; it is a probability"
            )
        self.min_probability = min_probability
        self.max_length = max_length
        if guard is True:
            self.guard: VerificationGuard | None = VerificationGuard(GuardConfig(use_score=False))
        elif guard is False:
            self.guard = None
        else:
            self.guard = guard
        self._model: Any = None if isinstance(model, str | os.PathLike) else model
        self._source: str | os.PathLike[str] | None = model if self._model is None else None
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cross-encoder")
        self.model_calls = 0
        """How many pairs the model scored (the rules decide the others)."""

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    from sentence_transformers import CrossEncoder
                except ImportError as exc:  # pragma: no cover - the [semantic] extra is missing
                    raise ConfigurationError(
                        "CrossEncoderVerifier needs sentence-transformers: "
                        "pip install 'llm-cache-router-integrations[semantic]'"
                    ) from exc
                assert self._source is not None
                self._model = CrossEncoder(
                    os.fspath(self._source), device="cpu", max_length=self.max_length
                )
            return self._model

    def probability(self, query: str, candidate: str) -> float:
        """The model's probability that ``query`` and ``candidate`` ask the same thing."""
        model = self._loaded()
        raw = model.predict([(query, candidate)], show_progress_bar=False)
        self.model_calls += 1
        row = [float(x) for x in _flat(raw[0])]
        if len(row) == 1:  # one logit or an already activated score
            value = row[0]
            return value if 0.0 <= value <= 1.0 else 1.0 / (1.0 + math.exp(-value))
        # several labels: softmax, the last label is "duplicate"
        top = max(row)
        exps = [math.exp(x - top) for x in row]
        return exps[-1] / sum(exps)

    def verify(self, query: str, candidate: str, similarity: float) -> GuardVerdict:
        """The rule guard's verdict if it rejects, else the model's."""
        if self.guard is not None:
            verdict = self.guard.verify(query, candidate, similarity)
            if not verdict.ok:
                return verdict
        if query.strip().lower() == candidate.strip().lower():
            return GuardVerdict(True, None, 1.0, "same text")
        p = self.probability(query, candidate)
        if p < self.min_probability:
            return GuardVerdict(
                False, "model", p, f"cross-encoder probability {p:.3f} < {self.min_probability}"
            )
        return GuardVerdict(True, None, p, f"cross-encoder probability {p:.3f}")

    async def averify(self, query: str, candidate: str, similarity: float) -> GuardVerdict:
        """:meth:`verify` on the model's worker thread (what the engine awaits)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.verify, query, candidate, similarity)

    def close(self) -> None:
        """Stop the worker thread."""
        self._executor.shutdown(wait=False)


def _flat(value: Any) -> list[Any]:
    tolist = getattr(value, "tolist", None)
    items = tolist() if tolist is not None else value
    return items if isinstance(items, list) else [items]
