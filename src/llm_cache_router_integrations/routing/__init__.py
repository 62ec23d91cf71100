"""Routing: strategies, deployments, retries, circuit breakers, priority queues and rate limits."""

from .breaker import BreakerConfig, CircuitBreaker, CircuitState
from .deployment import Deployment, DeploymentSettings, DeploymentStats
from .gate import PriorityGate, QueueFullError
from .priority import Priority
from .ratelimit import RateLimiter, SlidingWindow, TokenBucket
from .retry import RetryPolicy
from .strategies import (
    CheapestFirst,
    FallbackChain,
    FastestFirst,
    PriorityRouting,
    RoundRobin,
    RoutingContext,
    RoutingStrategy,
    Strategy,
    build_strategy,
)

__all__ = [
    "BreakerConfig",
    "CheapestFirst",
    "CircuitBreaker",
    "CircuitState",
    "Deployment",
    "DeploymentSettings",
    "DeploymentStats",
    "FallbackChain",
    "FastestFirst",
    "Priority",
    "PriorityGate",
    "PriorityRouting",
    "QueueFullError",
    "RateLimiter",
    "RetryPolicy",
    "RoundRobin",
    "RoutingContext",
    "RoutingStrategy",
    "SlidingWindow",
    "Strategy",
    "TokenBucket",
    "build_strategy",
]
