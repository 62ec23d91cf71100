"""A deployment: one model on one provider instance, with its limits, breaker and health figures."""

from __future__ import annotations

import statistics
import threading
from collections import deque
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..cost.pricing import ModelPrice
from ..providers.base import BaseProvider
from .breaker import BreakerConfig, CircuitBreaker
from .gate import PriorityGate
from .ratelimit import Limiter, LimitQueue, RateLimiter

__all__ = ["Deployment", "DeploymentSettings", "DeploymentStats"]


class DeploymentSettings(BaseModel):
    """Limits of one deployment, keyed ``"provider/model"`` in ``LLMRouter(deployments=...)``."""

    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(default=None, ge=1, description="requests per minute")
    tpm: int | None = Field(
        default=None, ge=1, description="tokens per minute (estimated, then corrected)"
    )
    window: tuple[int, float] | None = Field(
        default=None, description="(requests, seconds) sliding window"
    )
    on_limit: Literal["skip", "wait"] = "skip"
    max_wait: float = Field(
        default=10.0, ge=0, description="longest wait for a limit when on_limit='wait'"
    )
    max_concurrency: int | None = Field(default=None, ge=1)
    max_queue_depth: int | None = Field(default=None, ge=0)
    timeout: float | None = Field(default=None, gt=0, description="per-attempt timeout in seconds")
    weight: float = Field(default=1.0, gt=0)

    @field_validator("window")
    @classmethod
    def _check_window(cls, value: tuple[int, float] | None) -> tuple[int, float] | None:
        if value is not None and (value[0] < 1 or not value[1] > 0):
            raise ValueError(
                f"(requests, seconds) needs requests >= 1 and seconds > 0, got {value}; "
                "use e.g. (10, 1.0) for 10 requests per second, or leave window unset"
            )
        return value


class DeploymentStats:
    """Per-deployment counters and latency figures (bounded memory)."""

    EMA_ALPHA = 0.2

    def __init__(self, window: int = 512) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.successes = 0
        self.failures = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0
        self.latency_ema_ms: float | None = None
        self.ttft_ema_ms: float | None = None
        self._latencies: deque[float] = deque(maxlen=window)
        self._ttfts: deque[float] = deque(maxlen=window)

    @staticmethod
    def _ema(old: float | None, value: float) -> float:
        return value if old is None else old + DeploymentStats.EMA_ALPHA * (value - old)

    def record_success(
        self, latency_ms: float, input_tokens: int, output_tokens: int, cost: float
    ) -> None:
        """A call answered."""
        with self._lock:
            self.requests += 1
            self.successes += 1
            self.input_tokens += input_tokens
            self.output_tokens += output_tokens
            self.cost_usd += cost
            self.latency_ema_ms = self._ema(self.latency_ema_ms, latency_ms)
            self._latencies.append(latency_ms)

    def record_cost(self, cost: float) -> None:
        """Spend without an answer: what an interrupted stream had generated."""
        with self._lock:
            self.cost_usd += cost

    def record_ttft(self, ttft_ms: float) -> None:
        """Time to the first streamed chunk."""
        with self._lock:
            self.ttft_ema_ms = self._ema(self.ttft_ema_ms, ttft_ms)
            self._ttfts.append(ttft_ms)

    def record_failure(self) -> None:
        """A call failed."""
        with self._lock:
            self.requests += 1
            self.failures += 1

    def snapshot(self) -> dict[str, float | int | None]:
        """The figures as plain values."""
        with self._lock:
            return {
                "requests": self.requests,
                "successes": self.successes,
                "failures": self.failures,
                "success_rate": self.successes / self.requests if self.requests else None,
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "cost_usd": round(self.cost_usd, 9),
                "latency_ema_ms": self.latency_ema_ms,
                "latency_p50_ms": statistics.median(self._latencies) if self._latencies else None,
                "ttft_ema_ms": self.ttft_ema_ms,
                "ttft_p50_ms": statistics.median(self._ttfts) if self._ttfts else None,
            }


class Deployment:
    """A routable target: ``provider`` serving ``model`` with its price, limits and health."""

    def __init__(
        self,
        provider: BaseProvider,
        model: str,
        price: ModelPrice,
        settings: DeploymentSettings | None = None,
        breaker: BreakerConfig | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.price = price
        self.settings = settings or DeploymentSettings()
        self.key = f"{provider.name}/{model}"
        self.breaker = CircuitBreaker(breaker)
        self.gate = PriorityGate(self.settings.max_concurrency, self.settings.max_queue_depth)
        self.limiter: Limiter = RateLimiter(
            self.settings.rpm, self.settings.tpm, self.settings.window
        )
        self.limit_queue = LimitQueue()  # calls waiting for the limiter (on_limit="wait")
        self.stats = DeploymentStats()

    @property
    def provider_type(self) -> str:
        """The registered provider type (e.g. ``openai`` for an instance named ``openai-eu``)."""
        return self.provider.type_name

    def __repr__(self) -> str:
        return f"<Deployment {self.key}>"
