"""The contract of the semantic cache's encoders, and row normalisation.

An encoder turns texts into an ``(n, dim)`` ``float32`` matrix whose rows are L2-normalised, so
that a dot product between two rows is their cosine similarity (what every cache backend
reports). Encoders are async-first (``embed``) with a blocking twin (``embed_sync``) for
synchronous callers, and own whatever they load until ``aclose``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["Encoder", "Matrix", "normalize"]

Matrix = npt.NDArray[np.float32]
"""An ``(n, dim)`` ``float32`` matrix of embeddings, one row per text."""


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into L2-normalised ``float32`` embeddings of a fixed dimension.

    ``name`` identifies the model (it belongs in cache keys and exports: vectors of different
    encoders are not comparable) and ``dim`` is the number of columns of every matrix returned.
    """

    @property
    def name(self) -> str:
        """A stable identifier of the model and its settings."""
        ...

    @property
    def dim(self) -> int:
        """The embedding dimension."""
        ...

    async def embed(self, texts: Sequence[str]) -> Matrix:
        """Embed ``texts``: an ``(len(texts), dim)`` ``float32`` matrix with unit-norm rows."""
        ...

    def embed_sync(self, texts: Sequence[str]) -> Matrix:
        """The blocking twin of :meth:`embed`, for synchronous callers."""
        ...

    async def aclose(self) -> None:
        """Release the threads and models the encoder holds (idempotent)."""
        ...


def normalize(matrix: npt.ArrayLike) -> Matrix:
    """``matrix`` as a 2-D ``float32`` array whose rows have unit L2 norm.

    A 1-D input is treated as a single row. All-zero rows stay zero (there is no direction to
    keep); callers that need unit rows must not produce zero vectors.
    """
    array = np.asarray(matrix, dtype=np.float32)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise ValueError(f"expected a 1-D or 2-D array of embeddings, got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0
    result: Matrix = (array / norms).astype(np.float32, copy=False)
    return result
