"""HTTP metric label cardinality, and several routers behind one registry or one /metrics."""

from __future__ import annotations

from collections import Counter

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from llm_cache_router_integrations import LLMRouter
from llm_cache_router_integrations.errors import ConfigurationError
from llm_cache_router_integrations.observability import (
    RouterCollector,
    add_http_metrics_middleware,
    mount_metrics_endpoint,
    register_router,
)
from llm_cache_router_integrations.testing.openai_server import OpenAIServer

from .conftest import provider

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text page, keyed by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def repeated_headers(text: str) -> list[str]:
    """``# HELP``/``# TYPE`` lines that occur more than once (Prometheus refuses such a page)."""
    counts = Counter(line for line in text.splitlines() if line.startswith("# "))
    return [line for line, n in counts.items() if n > 1]


def test_unmatched_paths_share_one_label_value(servers: list[OpenAIServer]) -> None:
    router = LLMRouter({"a": provider(servers[0], "gpt-4o")})
    app = FastAPI()
    add_http_metrics_middleware(app)
    mount_metrics_endpoint(app, router)

    @app.get("/items/{item_id}")
    def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    client = TestClient(app)
    for i in range(40):
        assert client.get(f"/items/{i}").status_code == 200
        assert client.get(f"/scan/{i}/wp-login.php", params={"q": "x"}).status_code == 404
    assert client.post("/items/1").status_code == 405
    text = client.get("/metrics").text
    series = {
        key: value
        for key, value in parse(text).items()
        if key[0] == "llm_router_http_requests_total"
    }
    assert series == {
        (
            "llm_router_http_requests_total",
            (("method", "GET"), ("path", "/items/{item_id}"), ("status", "200")),
        ): 40,
        (
            "llm_router_http_requests_total",
            (("method", "GET"), ("path", "<unmatched>"), ("status", "404")),
        ): 40,
        (
            "llm_router_http_requests_total",
            (("method", "POST"), ("path", "/items/{item_id}"), ("status", "405")),
        ): 1,
    }
    router.close()


def test_two_routers_on_one_app_share_one_metrics_page(servers: list[OpenAIServer]) -> None:
    a, b, _ = servers
    first = LLMRouter({"a": provider(a, "gpt-4o")})
    second = LLMRouter({"b": provider(b, "gpt-4o-mini")})
    app = FastAPI()
    add_http_metrics_middleware(app)
    mount_metrics_endpoint(app, first, name="us")
    mount_metrics_endpoint(app, second, name="eu")
    with pytest.raises(ConfigurationError, match="'eu' is already registered"):
        mount_metrics_endpoint(app, LLMRouter({"a": provider(a, "gpt-4o")}), name="eu")
    first.complete_sync("one", "gpt-4o")
    first.complete_sync("two", "gpt-4o")
    second.complete_sync("three", "gpt-4o-mini")
    client = TestClient(app)
    text = client.get("/metrics").text
    assert repeated_headers(text) == []
    samples = parse(text)
    assert samples[("llm_router_requests_total", (("outcome", "success"), ("router", "us")))] == 2
    assert samples[("llm_router_requests_total", (("outcome", "success"), ("router", "eu")))] == 1
    us = (("deployment", "a/gpt-4o"), ("model", "gpt-4o"), ("provider", "a"), ("router", "us"))
    eu = (
        ("deployment", "b/gpt-4o-mini"),
        ("model", "gpt-4o-mini"),
        ("provider", "b"),
        ("router", "eu"),
    )
    assert samples[("llm_router_provider_requests_total", us)] == 2
    assert samples[("llm_router_provider_requests_total", eu)] == 1
    assert samples[("llm_router_cost_usd_total", (("router", "us"),))] > 0
    assert samples[("llm_router_cost_usd_total", (("router", "eu"),))] > 0
    assert len([r for r in app.routes if getattr(r, "path", None) == "/metrics"]) == 1
    first.close()
    second.close()


def test_two_routers_on_the_default_registry(servers: list[OpenAIServer]) -> None:
    a, b, _ = servers
    first = LLMRouter({"a": provider(a, "gpt-4o")})
    second = LLMRouter({"b": provider(b, "gpt-4o")})
    collector = register_router(first)  # the process-wide REGISTRY, as prometheus_client serves
    try:
        assert register_router(second, name="batch") is collector
        with pytest.raises(ConfigurationError, match="distinct name"):
            register_router(LLMRouter({"a": provider(a, "gpt-4o")}))
        text = generate_latest(REGISTRY).decode()
        assert repeated_headers(text) == []
        samples = parse(text)
        for name in ("default", "batch"):
            assert samples[("llm_router_cache_hits_total", (("router", name),))] == 0
    finally:
        REGISTRY.unregister(collector)
    first.close()
    second.close()


def test_collector_added_by_hand_is_joined(servers: list[OpenAIServer]) -> None:
    registry = CollectorRegistry(auto_describe=True)
    first = LLMRouter({"a": provider(servers[0], "gpt-4o")})
    registry.register(RouterCollector(first))
    second = LLMRouter({"b": provider(servers[1], "gpt-4o")})
    collector = register_router(second, name="second", registry=registry)
    assert set(collector.routers) == {"default", "second"}
    assert collector.router is first
    with pytest.raises(ConfigurationError, match="non-empty"):
        collector.add(second, name=" ")
    assert repeated_headers(generate_latest(registry).decode()) == []
    first.close()
    second.close()
