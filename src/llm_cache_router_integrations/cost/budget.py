"""Daily and monthly USD budgets, enforced before a call by reserving its worst-case cost.

A call first *reserves* its worst case (estimated input tokens plus ``max_tokens`` at output price)
in the current UTC day and month; the reservation fails with :class:`BudgetExceededError` if either
window would go over its limit, so no provider is called. After the call the reservation is
*settled* to the real cost. Amounts are kept as integer nano-dollars, so concurrent updates never
drift. The store is in memory (one process) or in Redis (atomic Lua scripts; several processes
share one budget).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ..errors import BudgetExceededError, BudgetUnavailableError

__all__ = [
    "Budget",
    "BudgetManager",
    "BudgetStore",
    "InMemoryBudgetStore",
    "RedisBudgetStore",
    "Reservation",
]

NANO = 1_000_000_000

logger = logging.getLogger(__name__)


def to_nano(usd: float) -> int:
    """USD as integer nano-dollars (rounded up, so reservations never under-count)."""
    return int(-(-usd * NANO // 1))


class Budget(BaseModel):
    """Spending limits in USD; ``None`` means no limit for that window."""

    model_config = ConfigDict(extra="forbid")

    daily_usd: float | None = Field(default=None, ge=0)
    monthly_usd: float | None = Field(default=None, ge=0)


@dataclass(frozen=True, slots=True)
class Reservation:
    """A hold on budget made before a call; settle it exactly once."""

    id: str
    amount: int  # nano-USD
    keys: tuple[str, ...]


class BudgetStore(Protocol):
    """Where spent and reserved amounts live (nano-USD per window key)."""

    async def try_reserve(self, limits: list[tuple[str, int]], amount: int) -> tuple[bool, int]:
        """Add ``amount`` to every key unless one would exceed its limit.

        Returns ``(ok, index)``: on refusal ``index`` is the key that would overflow.
        """
        ...

    async def adjust(self, keys: tuple[str, ...], delta: int) -> None:
        """Add ``delta`` (may be negative) to every key."""
        ...

    async def get(self, key: str) -> int:
        """The amount under ``key``."""
        ...


class InMemoryBudgetStore:
    """A process-local store (thread-safe, usable from any event loop)."""

    def __init__(self) -> None:
        self._values: dict[str, int] = {}
        self._lock = threading.Lock()

    async def try_reserve(self, limits: list[tuple[str, int]], amount: int) -> tuple[bool, int]:
        """See :class:`BudgetStore`."""
        with self._lock:
            for index, (key, limit) in enumerate(limits):
                if self._values.get(key, 0) + amount > limit:
                    return False, index
            for key, _ in limits:
                self._values[key] = self._values.get(key, 0) + amount
                self._prune(key)
            return True, -1

    def _prune(self, current: str) -> None:
        # Keep the store bounded: drop windows older than the ones in use.
        if len(self._values) > 64:
            kind = current.split(":", 1)[0]
            old = sorted(k for k in self._values if k.startswith(kind + ":"))[:-4]
            for key in old:
                del self._values[key]

    async def adjust(self, keys: tuple[str, ...], delta: int) -> None:
        """See :class:`BudgetStore`."""
        with self._lock:
            for key in keys:
                self._values[key] = self._values.get(key, 0) + delta

    async def get(self, key: str) -> int:
        """See :class:`BudgetStore`."""
        with self._lock:
            return self._values.get(key, 0)


_RESERVE = """
for i = 1, #KEYS do
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  if current + tonumber(ARGV[1]) > tonumber(ARGV[i + 2]) then return i end
end
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[1])
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
return 0
"""


class RedisBudgetStore:
    """A store shared by every process that points at the same Redis and ``prefix``.

    Reservations run as one Lua script, so concurrent processes can never overspend together.
    """

    def __init__(
        self, url: str = "redis://localhost:6379/0", *, prefix: str = "llmr:budget"
    ) -> None:
        self.url = url
        self.prefix = prefix
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def _client(self) -> Any:
        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = aioredis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
            self._clients[loop] = client
        return client

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    async def try_reserve(self, limits: list[tuple[str, int]], amount: int) -> tuple[bool, int]:
        """See :class:`BudgetStore`."""
        keys = [self._key(k) for k, _ in limits]
        args = [amount, 40 * 24 * 3600, *[limit for _, limit in limits]]
        refused = int(await self._client().eval(_RESERVE, len(keys), *keys, *args))
        return (refused == 0, refused - 1)

    async def adjust(self, keys: tuple[str, ...], delta: int) -> None:
        """See :class:`BudgetStore`."""
        if delta:
            pipe = self._client().pipeline(transaction=True)
            for key in keys:
                pipe.incrby(self._key(key), delta)
            await pipe.execute()

    async def get(self, key: str) -> int:
        """See :class:`BudgetStore`."""
        value = await self._client().get(self._key(key))
        return int(value or 0)

    async def aclose(self) -> None:
        """Close the connection pool of the current event loop."""
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()


class BudgetManager:
    """Reserve before a call, settle after it; ``clock`` returns the current UTC time."""

    def __init__(
        self,
        budget: Budget | None = None,
        store: BudgetStore | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.budget = budget or Budget()
        self.store: BudgetStore = store or InMemoryBudgetStore()
        self._clock = clock or (lambda: datetime.now(UTC))

    def _windows(self) -> list[tuple[str, str, float | None]]:
        now = self._clock()
        return [
            ("daily", f"day:{now:%Y-%m-%d}", self.budget.daily_usd),
            ("monthly", f"month:{now:%Y-%m}", self.budget.monthly_usd),
        ]

    async def reserve(self, amount_usd: float) -> Reservation:
        """Hold ``amount_usd`` in every window or raise :class:`BudgetExceededError`."""
        amount = to_nano(max(amount_usd, 0.0))
        windows = self._windows()
        limits = [
            (key, to_nano(limit) if limit is not None else 2**62) for _, key, limit in windows
        ]
        try:
            ok, index = await self.store.try_reserve(limits, amount)
        except Exception as exc:
            raise BudgetUnavailableError(
                f"the budget store is unreachable ({type(exc).__name__}); no call was made"
            ) from exc
        if not ok:
            name, key, limit = windows[index]
            spent = await self.store.get(key)
            raise BudgetExceededError(name, float(limit or 0.0), spent / NANO, amount / NANO)
        return Reservation(id=uuid.uuid4().hex, amount=amount, keys=tuple(k for _, k, _ in windows))

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Replace the reserved amount by the real cost (0 releases it)."""
        delta = to_nano(max(actual_usd, 0.0)) - reservation.amount
        try:
            await self.store.adjust(reservation.keys, delta)
        except Exception as exc:  # the answer was already paid for: never lose it over accounting
            logger.error(
                "budget settlement failed (%s: %s); %d nano-USD unsettled",
                type(exc).__name__,
                exc,
                delta,
            )

    async def record(self, actual_usd: float) -> None:
        """Add spend that was not reserved (e.g. a cost known only afterwards)."""
        await self.store.adjust(tuple(key for _, key, _ in self._windows()), to_nano(actual_usd))

    async def spent(self) -> dict[str, float]:
        """Spent plus reserved USD in the current ``daily`` and ``monthly`` windows."""
        return {name: await self.store.get(key) / NANO for name, key, _ in self._windows()}

    async def remaining(self) -> dict[str, float | None]:
        """USD left in each window (``None`` where no limit is set)."""
        spent = await self.spent()
        return {
            name: None if limit is None else max(limit - spent[name], 0.0)
            for name, _, limit in self._windows()
        }
