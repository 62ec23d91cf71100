"""A Prometheus collector that reads the router's figures at scrape time (nothing on the hot path)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..router import LLMRouter

__all__ = ["RouterCollector"]

_CIRCUIT = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


class RouterCollector(Collector):
    """Exposes ``llm_router_*`` metrics of one router; register it on a ``CollectorRegistry``."""

    def __init__(self, router: LLMRouter) -> None:
        self.router = router

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """Build every metric family from a fresh stats snapshot."""
        stats = self.router.stats()
        cache = stats.get("cache") or {}
        yield CounterMetricFamily(
            "llm_router_cache_hits", "Answers served from the cache", value=cache.get("hits", 0)
        )
        yield CounterMetricFamily(
            "llm_router_cache_misses", "Cache lookups that missed", value=cache.get("misses", 0)
        )
        yield CounterMetricFamily(
            "llm_router_cache_errors",
            "Cache backend errors (served as misses)",
            value=cache.get("errors", 0),
        )
        yield CounterMetricFamily(
            "llm_router_cost_usd", "USD spent on provider calls", value=stats["total_cost_usd"]
        )
        yield CounterMetricFamily(
            "llm_router_saved_cost_usd", "USD avoided by cache hits", value=stats["saved_cost_usd"]
        )
        outcomes = CounterMetricFamily(
            "llm_router_requests", "Router calls by outcome", labels=["outcome"]
        )
        outcomes.add_metric(["success"], stats["successes"])
        outcomes.add_metric(["failure"], stats["failures"])
        yield outcomes
        remaining = GaugeMetricFamily(
            "llm_router_budget_remaining_usd", "Budget left per window", labels=["window"]
        )
        for window, value in stats["budget"]["remaining"].items():
            if value is not None:
                remaining.add_metric([window], value)
        yield remaining
        labels = ["deployment", "provider", "model"]
        requests = CounterMetricFamily(
            "llm_router_provider_requests", "Provider attempts", labels=labels
        )
        errors = CounterMetricFamily(
            "llm_router_provider_errors", "Failed provider attempts", labels=labels
        )
        cost = CounterMetricFamily(
            "llm_router_provider_cost_usd", "USD spent per deployment", labels=labels
        )
        latency = GaugeMetricFamily(
            "llm_router_provider_latency_seconds", "Latency EMA per deployment", labels=labels
        )
        ttft = GaugeMetricFamily(
            "llm_router_provider_ttft_seconds", "Time-to-first-token EMA", labels=labels
        )
        circuit = GaugeMetricFamily(
            "llm_router_circuit_state", "0 closed, 1 half-open, 2 open", labels=labels
        )
        for key, figures in stats["deployments"].items():
            values = [key, figures["provider"], figures["model"]]
            requests.add_metric(values, figures["requests"])
            errors.add_metric(values, figures["failures"])
            cost.add_metric(values, figures["cost_usd"])
            if figures["latency_ema_ms"] is not None:
                latency.add_metric(values, figures["latency_ema_ms"] / 1000.0)
            if figures["ttft_ema_ms"] is not None:
                ttft.add_metric(values, figures["ttft_ema_ms"] / 1000.0)
            circuit.add_metric(values, _CIRCUIT[figures["circuit"]])
        yield from (requests, errors, cost, latency, ttft, circuit)
