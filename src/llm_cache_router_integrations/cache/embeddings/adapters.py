"""Encoders over the embedding models of LangChain and LlamaIndex.

The frameworks are not imported at run time (only for type checking): the wrapped object is
used through its documented methods, so the core installs without either framework. The
dimension is taken from the first call (or given up front); rows are L2-normalised here whatever
the model returns, and an all-zero embedding is rejected, since it has no direction to compare.

An empty input returns an empty ``(0, dim)`` matrix without calling the model when the dimension
is known; when it is not, ``embed([])`` learns it with one probe through the framework's *async*
method (never blocking the event loop), and ``embed_sync([])`` through the blocking one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ...errors import ConfigurationError
from .base import Matrix, normalize

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from llama_index.core.base.embeddings.base import BaseEmbedding

__all__ = ["LangChainEncoder", "LlamaIndexEncoder"]

_PROBE_TEXT = "dimension probe"


class _WrappedEncoder(ABC):
    """Shared logic: shape checks, normalisation and dimension inference."""

    def __init__(self, name: str, dim: int | None) -> None:
        if dim is not None and dim < 1:
            raise ConfigurationError("dim must be at least 1")
        self._name = name
        self._dim = dim

    @property
    def name(self) -> str:
        """``{framework}:{model class or name}``."""
        return self._name

    @property
    def dim(self) -> int:
        """The dimension: as given, else learnt from the first call (probing once if needed).

        Probing calls the wrapped model synchronously; in async code prefer giving ``dim`` or
        embedding once before reading it.
        """
        if self._dim is None:
            self.embed_sync([_PROBE_TEXT])
        assert self._dim is not None
        return self._dim

    async def embed(self, texts: Sequence[str]) -> Matrix:
        """Embed ``texts`` through the framework's async batch method.

        An empty ``texts`` gives a ``(0, dim)`` matrix; if ``dim`` is not known yet it is learnt
        by embedding one probe text through the async method.
        """
        items = _as_list(texts)
        if not items:
            if self._dim is None:
                self._finish(await self._call_async([_PROBE_TEXT]), 1)
            assert self._dim is not None
            return np.empty((0, self._dim), dtype=np.float32)
        return self._finish(await self._call_async(items), len(items))

    def embed_sync(self, texts: Sequence[str]) -> Matrix:
        """Embed ``texts`` through the framework's blocking batch method."""
        items = _as_list(texts)
        if not items:
            return np.empty((0, self.dim), dtype=np.float32)
        return self._finish(self._call_sync(items), len(items))

    async def aclose(self) -> None:
        """Nothing to release: the wrapped model belongs to the caller."""
        return None

    @abstractmethod
    async def _call_async(self, texts: list[str]) -> list[list[float]]: ...

    @abstractmethod
    def _call_sync(self, texts: list[str]) -> list[list[float]]: ...

    def _finish(self, vectors: list[list[float]], count: int) -> Matrix:
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != count:
            raise ConfigurationError(
                f"{self._name} returned embeddings of shape {array.shape} for {count} texts"
            )
        if self._dim is None:
            self._dim = int(array.shape[1])
        elif array.shape[1] != self._dim:
            raise ConfigurationError(
                f"{self._name} returned {array.shape[1]}-dimensional embeddings, expected {self._dim}"
            )
        if not np.all(np.isfinite(array)) or np.any(np.linalg.norm(array, axis=1) == 0.0):
            raise ConfigurationError(f"{self._name} returned a zero or non-finite embedding")
        return normalize(array)


class LangChainEncoder(_WrappedEncoder):
    """Wraps a LangChain ``Embeddings`` (``aembed_documents``/``embed_documents``).

    Args:
        embeddings: any ``langchain_core.embeddings.Embeddings``.
        dim: the dimension if known; otherwise learnt from the first call.
        name: overrides the name (default ``langchain:{model or class name}``).
    """

    def __init__(
        self, embeddings: Embeddings, *, dim: int | None = None, name: str | None = None
    ) -> None:
        _require(embeddings, ("embed_documents", "aembed_documents"), "a LangChain Embeddings")
        self._embeddings = embeddings
        super().__init__(name or f"langchain:{_model_label(embeddings)}", dim)

    async def _call_async(self, texts: list[str]) -> list[list[float]]:
        return await self._embeddings.aembed_documents(texts)

    def _call_sync(self, texts: list[str]) -> list[list[float]]:
        return self._embeddings.embed_documents(texts)


class LlamaIndexEncoder(_WrappedEncoder):
    """Wraps a LlamaIndex ``BaseEmbedding`` (``aget_text_embedding_batch``/``get_text_embedding_batch``).

    Args:
        embed_model: any ``llama_index.core`` embedding model.
        dim: the dimension if known; otherwise learnt from the first call.
        name: overrides the name (default ``llamaindex:{model_name or class name}``).
    """

    def __init__(
        self, embed_model: BaseEmbedding, *, dim: int | None = None, name: str | None = None
    ) -> None:
        _require(
            embed_model,
            ("get_text_embedding_batch", "aget_text_embedding_batch"),
            "a LlamaIndex BaseEmbedding",
        )
        self._embed_model = embed_model
        super().__init__(name or f"llamaindex:{_model_label(embed_model)}", dim)

    async def _call_async(self, texts: list[str]) -> list[list[float]]:
        return await self._embed_model.aget_text_embedding_batch(texts)

    def _call_sync(self, texts: list[str]) -> list[list[float]]:
        return self._embed_model.get_text_embedding_batch(texts)


def _as_list(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not a single string")
    return list(texts)


def _require(obj: object, methods: tuple[str, ...], what: str) -> None:
    missing = [m for m in methods if not callable(getattr(obj, m, None))]
    if missing:
        raise ConfigurationError(
            f"expected {what}, got {type(obj).__name__} without {', '.join(missing)}"
        )


def _model_label(obj: object) -> str:
    for attribute in ("model_name", "model"):
        value = getattr(obj, attribute, None)
        if isinstance(value, str) and value and value != "unknown":
            return value
    return type(obj).__name__
