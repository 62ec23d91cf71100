"""The encoders that turn queries into vectors for the semantic cache.

* :class:`SentenceEncoder`: sentence-transformers (all-MiniLM-L6-v2 by default, found offline),
  one inference thread, micro-batching and an LRU; needs the ``semantic`` extra.
* :class:`HashingEncoder`: lexical feature hashing with numpy only; deterministic, for
  near-exact matching and tests.
* :class:`LangChainEncoder` / :class:`LlamaIndexEncoder`: a framework's embedding model.

Every encoder returns L2-normalised ``float32`` rows (see :class:`Encoder`).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

from ...errors import ConfigurationError
from .adapters import LangChainEncoder, LlamaIndexEncoder
from .base import Encoder, Matrix, normalize
from .hashing import HashingEncoder
from .resolution import ModelSource, resolve_model
from .sentence import EncoderStats, SentenceEncoder

__all__ = [
    "Encoder",
    "EncoderStats",
    "HashingEncoder",
    "LangChainEncoder",
    "LlamaIndexEncoder",
    "Matrix",
    "ModelSource",
    "SentenceEncoder",
    "default_encoder",
    "normalize",
    "resolve_model",
]


def default_encoder(model: str | Path | None = None) -> SentenceEncoder:
    """A :class:`SentenceEncoder` for ``model`` (default all-MiniLM-L6-v2), loaded lazily.

    Only checks that sentence-transformers and torch are installed (importing them takes
    seconds, so that waits for the first embedding); the model itself is found when it loads.

    Raises:
        ConfigurationError: sentence-transformers is not installed; the message names the extra
            to install and the dependency-free :class:`HashingEncoder`.
    """
    missing = [m for m in ("sentence_transformers", "torch") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigurationError(
            f"the semantic cache's default encoder needs {' and '.join(missing)}: "
            "pip install 'llm-cache-router-integrations[semantic]', or pass "
            "encoder=HashingEncoder() for lexical matching without a model"
        )
    if model is not None:
        return SentenceEncoder(model)
    global _shared
    with _shared_lock:  # one default model per process, however many caches use it
        if _shared is None or _shared.closed:
            _shared = SentenceEncoder()
        return _shared


_shared: SentenceEncoder | None = None
_shared_lock = threading.Lock()


def _reset_shared_lock() -> None:
    """A forked child gets a fresh lock (another parent thread may have held it at the fork)."""
    global _shared_lock
    _shared_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_shared_lock)
