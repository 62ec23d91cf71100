"""/metrics on a FastAPI app, scraped and parsed with prometheus_client's own parser."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from llm_cache_router_integrations import CacheConfig, LLMRouter
from llm_cache_router_integrations.observability import (
    add_http_metrics_middleware,
    mount_metrics_endpoint,
)
from llm_cache_router_integrations.testing import JSONReply
from llm_cache_router_integrations.testing.openai_server import OpenAIServer

from .conftest import provider


def test_metrics_endpoint_scraped_and_parsed(servers: list[OpenAIServer]) -> None:
    a, b, _ = servers
    a.push(JSONReply({"error": {"message": "down", "type": "server_error"}}, status=503))
    router = LLMRouter(
        {"a": provider(a, "gpt-4o-mini"), "b": provider(b, "gpt-4o")},
        fallback_chain=["a/gpt-4o-mini", "b/gpt-4o"],
        retry={"max_retries": 0},
        cache=CacheConfig(),
        budget={"daily_usd": 2.0},
    )
    app = FastAPI()
    add_http_metrics_middleware(app)

    @app.post("/chat")
    def chat(question: str) -> dict[str, object]:
        response = router.complete_sync(question, "gpt-4o-mini", temperature=0)
        return {"answer": response.content, "cache_hit": response.cache_hit}

    mount_metrics_endpoint(app, router)
    client = TestClient(app)
    assert client.post("/chat", params={"question": "hello"}).json()["cache_hit"] is False
    assert client.post("/chat", params={"question": "hello"}).json()["cache_hit"] is True
    text = client.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    default = (("router", "default"),)
    assert samples[("llm_router_cache_hits_total", default)] == 1
    assert samples[("llm_router_cache_misses_total", default)] == 1
    assert samples[("llm_router_cost_usd_total", default)] > 0
    assert (
        samples[("llm_router_saved_cost_usd_total", default)]
        == samples[("llm_router_cost_usd_total", default)]
    )
    a_labels = (
        ("deployment", "a/gpt-4o-mini"),
        ("model", "gpt-4o-mini"),
        ("provider", "a"),
        ("router", "default"),
    )
    assert samples[("llm_router_provider_errors_total", a_labels)] == 1
    assert samples[("llm_router_circuit_state", a_labels)] == 0
    assert (
        samples[
            (
                "llm_router_http_requests_total",
                (("method", "POST"), ("path", "/chat"), ("status", "200")),
            )
        ]
        == 2
    )
    assert (
        "llm_router_http_request_duration_seconds_count",
        (("method", "POST"), ("path", "/chat"), ("status", "200")),
    ) in samples
    budget_labels = (("router", "default"), ("window", "daily"))
    assert samples[("llm_router_budget_remaining_usd", budget_labels)] < 2.0
    print(f"/metrics parsed: {len(samples)} samples")
    router.close()
