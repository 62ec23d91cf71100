"""Router-wide counters (the per-deployment figures live on each deployment)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime

from .routing.priority import Priority

__all__ = ["RouterStats"]


class RouterStats:
    """Requests by outcome and priority, spend and savings of this process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.successes = 0
        self.failures = 0
        self.cache_hits = 0
        self.by_priority: Counter[str] = Counter()
        self.failures_by_error: Counter[str] = Counter()
        self.total_cost_usd = 0.0
        self.saved_cost_usd = 0.0
        self._daily: dict[str, float] = {}
        self._monthly: dict[str, float] = {}

    def request(self, priority: Priority) -> None:
        """A request arrived."""
        with self._lock:
            self.requests += 1
            self.by_priority[priority.name] += 1

    def success(self, cost_usd: float) -> None:
        """A request was answered by a provider at ``cost_usd``."""
        with self._lock:
            self.successes += 1
        self.charge(cost_usd)

    def charge(self, cost_usd: float) -> None:
        """Spend ``cost_usd`` (a success's, or what an interrupted stream had generated)."""
        now = datetime.now(UTC)
        with self._lock:
            self.total_cost_usd += cost_usd
            day, month = f"{now:%Y-%m-%d}", f"{now:%Y-%m}"
            self._daily = {day: self._daily.get(day, 0.0) + cost_usd}
            self._monthly = {month: self._monthly.get(month, 0.0) + cost_usd}

    def cache_hit(self, saved_usd: float) -> None:
        """A request was answered from the cache, avoiding ``saved_usd``."""
        with self._lock:
            self.successes += 1
            self.cache_hits += 1
            self.saved_cost_usd += saved_usd

    def failure(self, error: BaseException) -> None:
        """A request ended with a typed error."""
        with self._lock:
            self.failures += 1
            self.failures_by_error[type(error).__name__] += 1

    def snapshot(self) -> dict[str, object]:
        """The figures as plain values."""
        now = datetime.now(UTC)
        with self._lock:
            return {
                "requests": self.requests,
                "successes": self.successes,
                "failures": self.failures,
                "success_rate": self.successes / self.requests if self.requests else None,
                "cache_hits": self.cache_hits,
                "by_priority": dict(self.by_priority),
                "failures_by_error": dict(self.failures_by_error),
                "total_cost_usd": round(self.total_cost_usd, 9),
                "daily_cost_usd": round(self._daily.get(f"{now:%Y-%m-%d}", 0.0), 9),
                "monthly_cost_usd": round(self._monthly.get(f"{now:%Y-%m}", 0.0), 9),
                "saved_cost_usd": round(self.saved_cost_usd, 9),
            }
