"""Custom instrumentation events for the router's decisions.

:class:`~llm_cache_router_integrations.llamaindex.RouterLLM` dispatches them after every call,
on LlamaIndex's instrumentation dispatcher (so any ``BaseEventHandler`` on the root dispatcher
receives them), with the ``span_id`` of the LLM call they belong to:

* :class:`RouteDecisionEvent` for every answer: which deployment answered and the route tried;
* :class:`FallbackEvent` when earlier candidates failed or were skipped first;
* :class:`CacheHitEvent` when the answer came from the cache.
"""

from __future__ import annotations

from llama_index.core.instrumentation.events import BaseEvent
from pydantic import Field

__all__ = ["CacheHitEvent", "FallbackEvent", "RouteDecisionEvent"]


class RouteDecisionEvent(BaseEvent):
    """Which deployment answered one call (``route``: deployments tried, the last answered)."""

    requested: str = Field(description="the model or alias the call asked for")
    provider: str
    model: str
    route: list[str] = Field(default_factory=list)
    fallback: bool = False
    cache_hit: bool = False
    cost_usd: float = 0.0

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "RouteDecisionEvent"


class FallbackEvent(BaseEvent):
    """The first candidates failed or were skipped; ``answered_by`` took the call."""

    requested: str
    failed: list[str] = Field(description="deployments tried before the one that answered")
    answered_by: str

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "FallbackEvent"


class CacheHitEvent(BaseEvent):
    """The answer came from the cache: no provider was called and ``saved_usd`` was avoided."""

    requested: str
    provider: str
    model: str
    saved_usd: float = 0.0

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "CacheHitEvent"
