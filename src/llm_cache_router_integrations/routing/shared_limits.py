"""rpm/tpm token buckets kept in Redis, so several router processes share one deployment's limits.

Each deployment has one Redis hash per bucket (``tokens``, ``stamp``); a Lua script refills both
buckets from the server's clock, checks them together and charges them atomically, so two processes
can never both take the last request of a minute.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from .ratelimit import SlidingWindow

__all__ = ["RedisRateLimiter"]

_ACQUIRE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local wait = 0
local state = {}
for i = 1, #KEYS do
  local capacity = tonumber(ARGV[2 * i - 1])
  local amount = math.min(tonumber(ARGV[2 * i]), capacity)
  local rate = capacity / 60.0
  local tokens = tonumber(redis.call('HGET', KEYS[i], 'tokens') or capacity)
  local stamp = tonumber(redis.call('HGET', KEYS[i], 'stamp') or now)
  tokens = math.min(capacity, tokens + (now - stamp) * rate)
  state[i] = tokens
  if tokens < amount then wait = math.max(wait, (amount - tokens) / rate) end
end
for i = 1, #KEYS do
  local taken = 0
  if wait == 0 then taken = tonumber(ARGV[2 * i]) end
  redis.call('HSET', KEYS[i], 'tokens', state[i] - taken, 'stamp', now)
  redis.call('EXPIRE', KEYS[i], 120)
end
return tostring(wait)
"""

_GIVE = """
local capacity = tonumber(ARGV[2])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or capacity)
redis.call('HSET', KEYS[1], 'tokens', math.min(capacity, tokens + tonumber(ARGV[1])))
return 1
"""


class RedisRateLimiter:
    """rpm and tpm buckets for ``key`` (a deployment key) shared through Redis at ``url``."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        window: tuple[int, float] | None = None,
        prefix: str = "llmr:limits",
    ) -> None:
        self.url = url
        self.window = SlidingWindow(*window) if window else None  # stays per process
        self.rpm = rpm
        self.tpm = tpm
        self._keys = {"rpm": f"{prefix}:{key}:rpm", "tpm": f"{prefix}:{key}:tpm"}
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def enabled(self) -> bool:
        """Whether any limit is set."""
        return bool(self.rpm or self.tpm or self.window)

    def _client(self) -> Any:
        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = aioredis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
            self._clients[loop] = client
        return client

    async def acquire(self, tokens: int) -> float:
        """Charge one request of ``tokens`` on both buckets (0.0), or return the seconds to wait."""
        if self.window is not None and (local := self.window.wait_time()) > 0:
            return local
        wait = await self._acquire_shared(tokens)
        if wait == 0 and self.window is not None:
            self.window.record()
        return wait

    async def _acquire_shared(self, tokens: int) -> float:
        keys: list[str] = []
        args: list[int] = []
        if self.rpm:
            keys.append(self._keys["rpm"])
            args += [self.rpm, 1]
        if self.tpm:
            keys.append(self._keys["tpm"])
            args += [self.tpm, tokens]
        if not keys:
            return 0.0
        return float(await self._client().eval(_ACQUIRE, len(keys), *keys, *args))

    async def acorrect(self, estimated: int, actual: int) -> None:
        """Give back (or take more) tpm tokens once the real usage is known."""
        if self.tpm and actual != estimated:
            await self._client().eval(_GIVE, 1, self._keys["tpm"], estimated - actual, self.tpm)
