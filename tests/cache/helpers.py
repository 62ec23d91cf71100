"""Builders shared by the cache tests: requests, answers, entries and unit vectors."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from llm_cache_router_integrations.cache.entry import CacheEntry
from llm_cache_router_integrations.types import ChatRequest, LLMResponse, Usage


def ask(text: str, **kwargs: Any) -> ChatRequest:
    """A one-turn request for ``gpt-4o-mini`` (``messages=`` replaces the turn; other keywords
    are request fields)."""
    messages = kwargs.pop("messages", None) or [{"role": "user", "content": text}]
    return ChatRequest.model_validate({"model": "gpt-4o-mini", "messages": messages, **kwargs})


def answer(text: str) -> LLMResponse:
    """A complete answer worth caching."""
    return LLMResponse(
        content=text, provider_used="p", model_used="gpt-4o-mini", usage=Usage.of(10, 5)
    )


def make_entry(
    exact: str,
    *,
    scope: str = "scope-1",
    query: str = "what is the capital of france",
    namespace: str = "default",
    ttl: float | None = None,
) -> CacheEntry:
    """A stored entry answering ``answer {exact}``, expiring after ``ttl`` seconds if given."""
    now = time.time()
    return CacheEntry(
        exact=exact,
        scope=scope,
        query=query,
        namespace=namespace,
        response=LLMResponse(content=f"answer {exact}", provider_used="p", model_used="m"),
        created_at=now,
        expires_at=None if ttl is None else now + ttl,
    )


def vec(*values: float) -> np.ndarray:
    """``values`` as an L2-normalised float32 vector."""
    array = np.asarray(values, dtype=np.float32)
    return array / np.linalg.norm(array)
