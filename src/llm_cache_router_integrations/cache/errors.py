"""Typed errors of the cache backends.

The cache engine turns every backend error into a miss (logged and counted), so these reach a
caller only when a backend is used directly.
"""

from __future__ import annotations

from ..errors import LLMRouterError

__all__ = ["CacheBackendError", "VectorDimensionError", "VectorSearchUnavailableError"]


class CacheBackendError(LLMRouterError):
    """A cache backend could not complete an operation (misconfiguration or a storage failure)."""


class VectorSearchUnavailableError(CacheBackendError):
    """The store cannot run vector similarity search (e.g. a Redis without the query engine).

    Exact-match caching keeps working; only the semantic layer is unavailable.
    """


class VectorDimensionError(CacheBackendError, ValueError):
    """A vector does not fit the cache: another dimension than the stored ones, empty or zero."""
