"""Request priorities: higher priorities are served first from every deployment's queue."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Priority"]


class Priority(IntEnum):
    """``CRITICAL`` < ``HIGH`` < ``NORMAL`` < ``LOW`` in value; a lower value is served first."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3

    @classmethod
    def parse(cls, value: Priority | str | int | None) -> Priority:
        """Accept a member, its name (any case) or its value; ``None`` is ``NORMAL``."""
        if value is None:
            return cls.NORMAL
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                raise ValueError(
                    f"unknown priority {value!r}; use one of {[p.name for p in cls]}"
                ) from None
        return cls(value)
