"""Retry timing: exponential backoff with full jitter, honouring (capped) Retry-After."""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ProviderError

__all__ = ["RetryPolicy"]


class RetryPolicy(BaseModel):
    """How often and how long to retry one deployment before falling back to the next.

    Only retryable errors are retried. A ``Retry-After`` longer than ``max_retry_after`` is not
    waited for: the router moves on to the next candidate instead.
    """

    model_config = ConfigDict(extra="forbid")

    max_retries: int = Field(default=2, ge=0)
    base_delay: float = Field(default=0.5, ge=0)
    max_delay: float = Field(default=8.0, ge=0)
    max_retry_after: float = Field(default=30.0, ge=0)

    def should_retry(self, error: ProviderError, attempt: int) -> bool:
        """Whether attempt number ``attempt`` (0-based) that failed with ``error`` is retried."""
        if not error.retryable or attempt >= self.max_retries:
            return False
        return error.retry_after is None or error.retry_after <= self.max_retry_after

    def delay(self, error: ProviderError, attempt: int) -> float:
        """Seconds to wait before the next attempt: Retry-After, or full-jitter backoff."""
        if error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        return random.uniform(0.0, min(self.max_delay, self.base_delay * 2**attempt))
