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

How a raw output becomes a probability is one fixed rule, chosen by ``outputs``: ``"probability"``
takes the (last) output as the probability, and rejects a value outside [0, 1]; ``"logit"`` applies
a sigmoid to one output, a softmax over several (the last label is "duplicate"). ``"auto"`` (the
default) follows the model: a sentence-transformers ``CrossEncoder`` applies its ``activation_fn``
in ``predict`` (``Sigmoid`` for one output unless the model's config names another, ``Identity``
for several), so ``Identity`` means logits and ``Sigmoid``/``Softmax`` probabilities; a model
without ``activation_fn`` is taken to return a probability when it has one output and logits when
it has several. A non-finite output never serves a candidate.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from ..errors import ConfigurationError
from .guard import GuardConfig, GuardVerdict, VerificationGuard

__all__ = ["CrossEncoderVerifier", "Outputs"]

Outputs = Literal["auto", "probability", "logit"]
"""What the model's ``predict`` returns (see the module docstring)."""

_OUTPUTS = ("auto", "probability", "logit")
_PROBABILITY_ACTIVATIONS = frozenset({"Sigmoid", "Softmax"})


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
        outputs: what ``predict`` returns: ``"probability"``, ``"logit"`` or ``"auto"`` (from the
            model's ``activation_fn``; see the module docstring).
    """

    def __init__(
        self,
        model: Any,
        *,
        min_probability: float = 0.5,
        guard: VerificationGuard | bool = True,
        max_length: int = 256,
        outputs: Outputs = "auto",
    ) -> None:
        if not 0.0 <= min_probability <= 1.0:
            raise ConfigurationError(
                f"min_probability must be in [0, 1], got {min_probability}; it is a probability"
            )
        if outputs not in _OUTPUTS:
            raise ConfigurationError(
                f"outputs must be 'auto', 'probability' or 'logit', got {outputs!r}"
            )
        self.min_probability = min_probability
        self.max_length = max_length
        self.outputs: Outputs = outputs
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
        self._pid = os.getpid()
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
        """The model's probability that ``query`` and ``candidate`` ask the same thing.

        Raises:
            ConfigurationError: the model returned a non-finite score, or, read as a
                probability, a value outside [0, 1] (pass ``outputs="logit"`` for logits).
        """
        p = self._probability(query, candidate)
        if math.isnan(p):
            raise ConfigurationError(
                "the cross-encoder returned a non-finite score; check the model (weights, "
                "precision) or pass another one"
            )
        return p

    def _probability(self, query: str, candidate: str) -> float:
        """:meth:`probability`, with NaN for a non-finite model output."""
        model = self._loaded()
        raw = model.predict([(query, candidate)], show_progress_bar=False)
        self.model_calls += 1
        row = [float(x) for x in _flat(raw[0])]
        if not row or not all(math.isfinite(x) for x in row):
            return math.nan
        if self._outputs_of(model, len(row)) == "probability":
            value = row[-1]  # one score, or the last label ("duplicate")
            if not 0.0 <= value <= 1.0:
                raise ConfigurationError(
                    f"the cross-encoder returned {value:.4g}, which is not a probability in "
                    "[0, 1]; pass outputs='logit' to CrossEncoderVerifier if the model returns "
                    "logits"
                )
            return value
        if len(row) == 1:
            return _sigmoid(row[0])
        # several labels: softmax, the last label is "duplicate"
        top = max(row)
        exps = [math.exp(x - top) for x in row]
        return exps[-1] / sum(exps)

    def _outputs_of(self, model: Any, labels: int) -> Literal["probability", "logit"]:
        if self.outputs != "auto":
            return self.outputs
        activation = getattr(model, "activation_fn", None)
        if activation is None:  # not a sentence-transformers CrossEncoder
            return "probability" if labels == 1 else "logit"
        name = type(activation).__name__
        if name == "Identity":
            return "logit"
        if name in _PROBABILITY_ACTIVATIONS:
            return "probability"
        raise ConfigurationError(
            f"cannot tell what the cross-encoder's activation {name} returns; pass "
            "outputs='probability' or outputs='logit' to CrossEncoderVerifier"
        )

    def verify(self, query: str, candidate: str, similarity: float) -> GuardVerdict:
        """The rule guard's verdict if it rejects, else the model's."""
        if self.guard is not None:
            verdict = self.guard.verify(query, candidate, similarity)
            if not verdict.ok:
                return verdict
        if query.strip().lower() == candidate.strip().lower():
            return GuardVerdict(True, None, 1.0, "same text")
        p = self._probability(query, candidate)
        if math.isnan(p):  # fail closed: a broken score never serves a cached answer
            return GuardVerdict(False, "model", 0.0, "cross-encoder returned a non-finite score")
        if p < self.min_probability:
            return GuardVerdict(
                False, "model", p, f"cross-encoder probability {p:.3f} < {self.min_probability}"
            )
        return GuardVerdict(True, None, p, f"cross-encoder probability {p:.3f}")

    async def averify(self, query: str, candidate: str, similarity: float) -> GuardVerdict:
        """:meth:`verify` on the model's worker thread (what the engine awaits)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker(), self.verify, query, candidate, similarity)

    def _worker(self) -> ThreadPoolExecutor:
        """The executor, replaced in a forked child (the parent's thread does not exist there)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cross-encoder")
        return self._executor

    def close(self) -> None:
        """Stop the worker thread."""
        self._executor.shutdown(wait=False)


def _flat(value: Any) -> list[Any]:
    tolist = getattr(value, "tolist", None)
    items = tolist() if tolist is not None else value
    return items if isinstance(items, list) else [items]


def _sigmoid(x: float) -> float:
    """The logistic function, without overflow for large negative ``x``."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)
