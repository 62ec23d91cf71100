"""Request priorities: higher priorities are served first from every deployment's queue."""

from __future__ import annotations

from enum import IntEnum

from ..errors import InvalidRequestError

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
        try:
            if isinstance(value, str):
                return cls[value.strip().upper()]
            return cls(value)
        except (KeyError, ValueError, TypeError):
            raise InvalidRequestError(
                f"invalid request: priority: unknown priority {value!r}; use one of "
                f"{[p.name.lower() for p in cls]} or their values {[int(p) for p in cls]}"
            ) from None
