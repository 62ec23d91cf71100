"""langchain-tests' cache suites for ``SemanticRouterCache`` (sync and async, 8 tests each).

Each test gets an empty cache over the core ``CacheEngine`` with the in-memory backend and the
real all-MiniLM-L6-v2 encoder (the session's ``sentence_encoder``, loaded once), so the semantic
layer is live: "Nonexistent prompt" must not be served the sample prompt's answer.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import AsyncCacheTestSuite, SyncCacheTestSuite

from llm_cache_router_integrations import CacheConfig
from llm_cache_router_integrations.cache import CacheEngine
from llm_cache_router_integrations.langchain import SemanticRouterCache


def _cache(encoder: Any) -> SemanticRouterCache:
    return SemanticRouterCache(CacheEngine(CacheConfig(), encoder=encoder))


class TestSemanticRouterCacheSync(SyncCacheTestSuite):
    """The blocking API: ``lookup``/``update``/``clear``."""

    @pytest.fixture
    def cache(self, sentence_encoder: Any) -> SemanticRouterCache:
        return _cache(sentence_encoder)


class TestSemanticRouterCacheAsync(AsyncCacheTestSuite):
    """The native async API: ``alookup``/``aupdate``/``aclear``."""

    @pytest.fixture
    async def cache(self, sentence_encoder: Any) -> SemanticRouterCache:
        return _cache(sentence_encoder)
