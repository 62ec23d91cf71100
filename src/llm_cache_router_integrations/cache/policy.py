"""What may be cached: only complete, successful, deterministic answers."""

from __future__ import annotations

from ..types import ChatRequest, LLMResponse
from .config import CacheConfig

__all__ = ["is_cacheable_request", "is_cacheable_response"]


def is_cacheable_request(request: ChatRequest, config: CacheConfig) -> bool:
    """Deterministic enough to reuse: temperature at most ``max_temperature``."""
    if request.temperature is None:
        return config.cache_unset_temperature
    return request.temperature <= config.max_temperature


def is_cacheable_response(response: LLMResponse) -> bool:
    """A complete answer: finished normally (not cut by length or a content filter), non-empty."""
    if response.finish_reason not in ("stop", "tool_calls"):
        return False
    return bool(response.content) or bool(response.tool_calls)
