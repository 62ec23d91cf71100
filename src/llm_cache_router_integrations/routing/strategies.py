"""Routing strategies: each orders the candidate deployments of one request.

A custom strategy is any object with an ``order(candidates, context)`` method (see
:class:`Strategy`); pass it as ``LLMRouter(strategy=MyStrategy())``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from .deployment import Deployment
from .priority import Priority

__all__ = [
    "CheapestFirst",
    "FallbackChain",
    "FastestFirst",
    "PriorityRouting",
    "RoundRobin",
    "RoutingContext",
    "RoutingStrategy",
    "Strategy",
    "build_strategy",
]


class RoutingStrategy(StrEnum):
    """The built-in strategies."""

    CHEAPEST_FIRST = "cheapest_first"
    FASTEST_FIRST = "fastest_first"
    FALLBACK_CHAIN = "fallback_chain"
    ROUND_ROBIN = "round_robin"
    PRIORITY = "priority"


@dataclass(frozen=True, slots=True)
class RoutingContext:
    """What a strategy may look at: the requested model, priority, stream flag, token estimates."""

    model: str
    priority: Priority
    stream: bool
    input_tokens: int
    output_tokens: int


@runtime_checkable
class Strategy(Protocol):
    """Orders candidates; the router tries them in the returned order."""

    def order(self, candidates: Sequence[Deployment], context: RoutingContext) -> list[Deployment]:
        """Return the candidates in the order to try (a subset is allowed)."""
        ...


class FallbackChain:
    """Candidates in configuration order: the requested deployments, then the fallback chain."""

    def order(self, candidates: Sequence[Deployment], context: RoutingContext) -> list[Deployment]:
        """Keep the given order."""
        return list(candidates)


class CheapestFirst:
    """Cheapest estimated cost first (price table x estimated input and output tokens)."""

    def order(self, candidates: Sequence[Deployment], context: RoutingContext) -> list[Deployment]:
        """Sort by estimated USD (stable, so ties keep configuration order)."""
        return sorted(
            candidates, key=lambda d: d.price.estimate(context.input_tokens, context.output_tokens)
        )


class FastestFirst:
    """Lowest latency EMA first (time to first token for streams); unmeasured ones first, to learn."""

    def order(self, candidates: Sequence[Deployment], context: RoutingContext) -> list[Deployment]:
        """Sort by the relevant EMA."""

        def key(d: Deployment) -> float:
            value = d.stats.ttft_ema_ms if context.stream else d.stats.latency_ema_ms
            if value is None and context.stream:
                value = d.stats.latency_ema_ms
            return -1.0 if value is None else value

        return sorted(candidates, key=key)


class RoundRobin:
    """Rotates the starting candidate for each request of the same model."""

    def __init__(self) -> None:
        self._counters: dict[str, itertools.count[int]] = {}
        self._lock = threading.Lock()

    def order(self, candidates: Sequence[Deployment], context: RoutingContext) -> list[Deployment]:
        """The candidates rotated by one more position each call."""
        if not candidates:
            return []
        with self._lock:
            counter = self._counters.setdefault(context.model, itertools.count())
            start = next(counter) % len(candidates)
        return [*candidates[start:], *candidates[:start]]


class PriorityRouting:
    """Per-priority targets and fallbacks are resolved by the router; this keeps their order."""

    def order(self, candidates: Sequence[Deployment], context: RoutingContext) -> list[Deployment]:
        """Keep the route's order (targets, then fallbacks)."""
        return list(candidates)


def build_strategy(strategy: RoutingStrategy | str | Strategy) -> Strategy:
    """An instance for a :class:`RoutingStrategy` (or its value), or the custom object itself."""
    if isinstance(strategy, Strategy) and not isinstance(strategy, str):
        return strategy
    kind = RoutingStrategy(strategy)
    classes: dict[RoutingStrategy, type[Strategy]] = {
        RoutingStrategy.CHEAPEST_FIRST: CheapestFirst,
        RoutingStrategy.FASTEST_FIRST: FastestFirst,
        RoutingStrategy.FALLBACK_CHAIN: FallbackChain,
        RoutingStrategy.ROUND_ROBIN: RoundRobin,
        RoutingStrategy.PRIORITY: PriorityRouting,
    }
    return classes[kind]()
