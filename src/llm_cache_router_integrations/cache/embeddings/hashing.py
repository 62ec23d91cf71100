"""A dependency-free encoder: signed feature hashing of words, word n-grams and char trigrams.

It captures lexical overlap only (no meaning: "cheap" and "inexpensive" share nothing), which
makes it right for near-exact matching and for fast, deterministic tests. The hash is BLAKE2b, so
the same text maps to the same vector in every process and on every platform (unlike ``hash()``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .base import Matrix

__all__ = ["HashingEncoder"]

_WORD = re.compile(r"\w+", re.UNICODE)
_CHAR_WEIGHT = 0.5  # char trigrams smooth over typos and inflections without dominating words
_EMPTY_FEATURE = "\x00empty"  # gives texts without any word a (shared) unit vector


@lru_cache(maxsize=65_536)
def _feature_hash(feature: str) -> int:
    """A stable 64-bit hash of ``feature``."""
    return int.from_bytes(
        hashlib.blake2b(feature.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
    )


class HashingEncoder:
    """Hashes lowercased word n-grams and character trigrams into ``dim`` signed buckets.

    Args:
        dim: the number of buckets (the embedding dimension).
        ngram: the inclusive range of word n-gram lengths, ``(1, 2)`` for words and word pairs.
    """

    def __init__(self, dim: int = 384, ngram: tuple[int, int] = (1, 2)) -> None:
        low, high = ngram
        if dim < 2:
            raise ValueError("dim must be at least 2")
        if not 1 <= low <= high:
            raise ValueError("ngram must be (low, high) with 1 <= low <= high")
        self._dim = dim
        self._ngram = (low, high)
        self._name = f"hashing-{dim}-ngram{low}-{high}"

    @property
    def name(self) -> str:
        """``hashing-{dim}-ngram{low}-{high}``."""
        return self._name

    @property
    def dim(self) -> int:
        """The number of buckets."""
        return self._dim

    async def embed(self, texts: Sequence[str]) -> Matrix:
        """Embed ``texts`` (computed inline: hashing a short query takes microseconds)."""
        return self.embed_sync(texts)

    def embed_sync(self, texts: Sequence[str]) -> Matrix:
        """Embed ``texts``: one L2-normalised row per text."""
        matrix = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            self._fill(matrix[row], text)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        norms[norms == 0.0] = 1.0  # only possible if every feature cancelled out
        matrix /= norms
        return matrix

    async def aclose(self) -> None:
        """Nothing to release."""

    def _fill(self, row: Matrix, text: str) -> None:
        words = _WORD.findall(text.lower())
        features: list[tuple[str, float]] = []
        low, high = self._ngram
        for n in range(low, high + 1):
            for start in range(len(words) - n + 1):
                features.append(("w:" + " ".join(words[start : start + n]), 1.0))
        for word in words:
            padded = f"<{word}>"
            for start in range(len(padded) - 2):
                features.append(("c:" + padded[start : start + 3], _CHAR_WEIGHT))
        if not features:
            features.append((_EMPTY_FEATURE, 1.0))
        for feature, weight in features:
            digest = _feature_hash(feature)
            sign = 1.0 if digest >> 63 else -1.0
            row[digest % self._dim] += sign * weight
