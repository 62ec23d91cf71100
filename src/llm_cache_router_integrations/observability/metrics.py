"""A Prometheus collector that reads the router's figures at scrape time (nothing on the hot path).

One :class:`RouterCollector` per registry serves any number of routers: every family carries a
``router`` label (the name each router was added under, ``"default"`` unless given), so each
``# HELP``/``# TYPE`` line appears once however many routers a process runs. Use
:func:`register_router` to add a router to a registry's collector (created on first use).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..router import LLMRouter

__all__ = ["DEFAULT_ROUTER_NAME", "RouterCollector", "register_router"]

DEFAULT_ROUTER_NAME = "default"
"""The ``router`` label value of a router added without a name."""

_CIRCUIT = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_registering = threading.Lock()


class RouterCollector(Collector):
    """Exposes the ``llm_router_*`` metrics of one or more routers, labelled by ``router``.

    Register one collector per ``CollectorRegistry`` and :meth:`add` further routers to it (or
    use :func:`register_router`, which does both); two collectors on one registry would serve
    every family twice.
    """

    def __init__(self, router: LLMRouter | None = None, name: str | None = None) -> None:
        self._routers: dict[str, LLMRouter] = {}
        self._lock = threading.Lock()
        if router is not None:
            self.add(router, name)

    @property
    def routers(self) -> dict[str, LLMRouter]:
        """The routers served, by name (a copy)."""
        with self._lock:
            return dict(self._routers)

    @property
    def router(self) -> LLMRouter:
        """The first router added (kept for single-router code)."""
        with self._lock:
            if not self._routers:
                raise ConfigurationError("this RouterCollector has no router; call add(router)")
            return next(iter(self._routers.values()))

    def add(self, router: LLMRouter, name: str | None = None) -> None:
        """Serve ``router``'s metrics under ``router="<name>"`` (default ``"default"``).

        Raises:
            ConfigurationError: ``name`` is empty or already used by another router here.
        """
        name = DEFAULT_ROUTER_NAME if name is None else name
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"router name must be a non-empty string, got {name!r}")
        with self._lock:
            if name in self._routers:
                raise ConfigurationError(
                    f"a router named {name!r} is already registered on this metrics registry; "
                    "pass a distinct name=... for each router (it becomes the 'router' label)"
                )
            self._routers[name] = router

    def remove(self, name: str) -> None:
        """Stop serving the router added under ``name`` (no error if there is none)."""
        with self._lock:
            self._routers.pop(name, None)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """Build every metric family from a fresh stats snapshot of each router."""
        routers = self.routers
        r = ["router"]
        hits = CounterMetricFamily(
            "llm_router_cache_hits", "Answers served from the cache", labels=r
        )
        misses = CounterMetricFamily(
            "llm_router_cache_misses", "Cache lookups that missed", labels=r
        )
        cache_errors = CounterMetricFamily(
            "llm_router_cache_errors", "Cache backend errors (served as misses)", labels=r
        )
        total_cost = CounterMetricFamily(
            "llm_router_cost_usd", "USD spent on provider calls", labels=r
        )
        saved = CounterMetricFamily(
            "llm_router_saved_cost_usd", "USD avoided by cache hits", labels=r
        )
        outcomes = CounterMetricFamily(
            "llm_router_requests", "Router calls by outcome", labels=[*r, "outcome"]
        )
        remaining = GaugeMetricFamily(
            "llm_router_budget_remaining_usd", "Budget left per window", labels=[*r, "window"]
        )
        labels = [*r, "deployment", "provider", "model"]
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
        for name, router in routers.items():
            stats = router.stats()
            cache = stats.get("cache") or {}
            hits.add_metric([name], cache.get("hits", 0))
            misses.add_metric([name], cache.get("misses", 0))
            cache_errors.add_metric([name], cache.get("errors", 0))
            total_cost.add_metric([name], stats["total_cost_usd"])
            saved.add_metric([name], stats["saved_cost_usd"])
            outcomes.add_metric([name, "success"], stats["successes"])
            outcomes.add_metric([name, "failure"], stats["failures"])
            for window, value in stats["budget"]["remaining"].items():
                if value is not None:
                    remaining.add_metric([name, window], value)
            for key, figures in stats["deployments"].items():
                values = [name, key, figures["provider"], figures["model"]]
                requests.add_metric(values, figures["requests"])
                errors.add_metric(values, figures["failures"])
                cost.add_metric(values, figures["cost_usd"])
                if figures["latency_ema_ms"] is not None:
                    latency.add_metric(values, figures["latency_ema_ms"] / 1000.0)
                if figures["ttft_ema_ms"] is not None:
                    ttft.add_metric(values, figures["ttft_ema_ms"] / 1000.0)
                circuit.add_metric(values, _CIRCUIT[figures["circuit"]])
        yield from (hits, misses, cache_errors, total_cost, saved, outcomes, remaining)
        yield from (requests, errors, cost, latency, ttft, circuit)


def _collector_of(registry: CollectorRegistry) -> RouterCollector | None:
    # prometheus_client has no public listing of a registry's collectors.
    collectors = getattr(registry, "_collector_to_names", {})
    with registry._lock:
        found = [c for c in collectors if isinstance(c, RouterCollector)]
    return found[0] if found else None


def register_router(
    router: LLMRouter, name: str | None = None, registry: CollectorRegistry | None = None
) -> RouterCollector:
    """Serve ``router``'s metrics from ``registry`` (default: prometheus_client's ``REGISTRY``).

    The registry's :class:`RouterCollector` is created and registered on first use; later
    routers join it, so several routers share one ``/metrics`` with one ``# HELP`` per family.
    ``name`` becomes the ``router`` label (default ``"default"``).

    Raises:
        ConfigurationError: another router already uses ``name`` on this registry.
    """
    registry = REGISTRY if registry is None else registry
    with _registering:
        collector = _collector_of(registry)
        if collector is not None:
            collector.add(router, name)
            return collector
        collector = RouterCollector(router, name)
        registry.register(collector)
        return collector
