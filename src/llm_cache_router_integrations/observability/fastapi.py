"""FastAPI helpers: HTTP request metrics and a ``/metrics`` endpoint for a router."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from .metrics import register_router

if TYPE_CHECKING:
    from fastapi import FastAPI, Request, Response

    from ..router import LLMRouter

__all__ = [
    "UNMATCHED_PATH",
    "add_http_metrics_middleware",
    "mount_metrics_endpoint",
    "registry_for",
]

UNMATCHED_PATH = "<unmatched>"
"""The ``path`` label of requests that matched no route (404s, scanners): one series, not one per URL."""


def registry_for(app: FastAPI) -> CollectorRegistry:
    """The app's own registry (created once, kept on ``app.state``)."""
    registry = getattr(app.state, "llm_router_registry", None)
    if registry is None:
        registry = CollectorRegistry()
        app.state.llm_router_registry = registry
    return registry


def add_http_metrics_middleware(app: FastAPI, registry: CollectorRegistry | None = None) -> None:
    """Count requests (``llm_router_http_requests_total``) and time them
    (``llm_router_http_request_duration_seconds``) by method, route and status.

    ``path`` is the route's template (``/items/{item_id}``), or ``"<unmatched>"`` for a request
    that matched no route, so arbitrary URLs cannot create new time series."""
    registry = registry or registry_for(app)
    labels = ["method", "path", "status"]
    requests = Counter("llm_router_http_requests", "HTTP requests", labels, registry=registry)
    duration = Histogram(
        "llm_router_http_request_duration_seconds",
        "HTTP request duration",
        labels,
        registry=registry,
    )

    @app.middleware("http")
    async def _metrics(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route: Any = request.scope.get("route")
            path = getattr(route, "path", None)
            if not isinstance(path, str):
                path = UNMATCHED_PATH
            values = (request.method, path, str(status))
            requests.labels(*values).inc()
            duration.labels(*values).observe(time.perf_counter() - started)


def mount_metrics_endpoint(
    app: FastAPI,
    router: LLMRouter,
    path: str = "/metrics",
    registry: CollectorRegistry | None = None,
    name: str | None = None,
) -> None:
    """Serve the router's metrics (and the HTTP metrics, when added) in Prometheus text format.

    Several routers can be mounted on one app: each joins the registry's one collector under its
    ``name`` (the ``router`` label, default ``"default"``) and ``path`` is served once.

    Raises:
        ConfigurationError: another router already uses ``name`` on this registry.
    """
    from fastapi import Response
    from starlette.concurrency import run_in_threadpool

    registry = registry or registry_for(app)
    register_router(router, name=name, registry=registry)
    served: set[tuple[str, int]] = getattr(app.state, "llm_router_metrics_paths", set())
    app.state.llm_router_metrics_paths = served
    if (path, id(registry)) in served:
        return
    served.add((path, id(registry)))

    async def metrics() -> Response:
        # Collecting reads the budget store; keep that off the server's event loop.
        body = await run_in_threadpool(generate_latest, registry)
        return Response(content=body, media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(path, metrics, methods=["GET"], include_in_schema=False)
