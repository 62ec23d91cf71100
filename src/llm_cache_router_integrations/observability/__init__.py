"""Observability: Prometheus metrics over the router's stats, and FastAPI helpers.

Requires the ``server`` extra (``prometheus-client``, ``fastapi``).
"""

from .fastapi import add_http_metrics_middleware, mount_metrics_endpoint
from .metrics import RouterCollector, register_router

__all__ = [
    "RouterCollector",
    "add_http_metrics_middleware",
    "mount_metrics_endpoint",
    "register_router",
]
