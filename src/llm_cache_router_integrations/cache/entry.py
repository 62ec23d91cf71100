"""A cache entry as stored in every backend: plain JSON, validated when read back."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from ..types import LLMResponse

__all__ = ["CacheEntry"]

MAX_ENTRY_BYTES = 1_000_000


class CacheEntry(BaseModel):
    """What a hit returns. ``cost_usd`` is what the original call cost (a hit saves that much)."""

    model_config = ConfigDict(extra="forbid")

    exact: str
    scope: str
    query: str
    namespace: str = "default"
    response: LLMResponse
    # Finite only: a stored ``1e999`` or ``NaN`` (crafted or corrupt) must not become an infinite
    # saving or an entry that never expires; such an entry fails validation (a miss).
    cost_usd: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    created_at: float = Field(default_factory=time.time, allow_inf_nan=False)
    expires_at: float | None = Field(default=None, allow_inf_nan=False)

    def expired(self, now: float | None = None) -> bool:
        """Whether the entry's TTL has passed."""
        return (
            self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at
        )

    def to_json(self) -> str:
        """The JSON stored by backends (no pickle anywhere)."""
        return self.model_dump_json()

    def oversized(self) -> bool:
        """Whether the stored JSON exceeds ``MAX_ENTRY_BYTES`` (UTF-8 bytes).

        Every backend reads such an entry back as corrupt, so the engine never stores one.
        """
        return len(self.__pydantic_serializer__.to_json(self)) > MAX_ENTRY_BYTES

    @classmethod
    def from_json(cls, data: str | bytes) -> CacheEntry | None:
        """Parse and validate a stored entry; anything malformed or oversized yields ``None``."""
        if len(data) > MAX_ENTRY_BYTES:
            return None
        try:
            return cls.model_validate_json(data)
        except ValueError:
            return None
