"""Pre-filling the cache: with known answers, or by asking the router once per question.

An entry counts as ``warmed`` only when its answer was stored, ``skipped`` when it was already
cached, and ``failed`` otherwise (the reason is logged): the cache policy refuses it (e.g. a
temperature above ``max_temperature``, checked before any provider call), the provider call
failed or gave an answer that cannot be cached, or the cache backend could not store it. A backend
outage never aborts a warm-up: the lookup counts as "not cached" and the store as failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ..cost.tokens import count_message_tokens, count_tokens
from ..errors import LLMRouterError
from ..types import LLMResponse, Message, Usage

if TYPE_CHECKING:
    from ..router import LLMRouter

__all__ = ["WarmupEntry", "warmup"]

logger = logging.getLogger(__name__)


class WarmupEntry(BaseModel):
    """One question to warm: a prompt (or messages), optionally with its known answer.

    Without ``response`` the router answers it once (a real, billed call) and caches the answer.
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str | list[Message]
    response: str | None = None
    model: str | None = None
    namespace: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


def _progress(total: int) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional
        return None
    return tqdm(total=total, desc="cache warmup", unit="entry")


async def warmup(
    router: LLMRouter,
    entries: Sequence[WarmupEntry | Mapping[str, Any]],
    *,
    concurrency: int = 5,
    skip_cached: bool = True,
    progress: bool = True,
) -> dict[str, int]:
    """Warm ``router``'s cache; returns ``{"warmed": n, "skipped": n, "failed": n}``.

    ``warmed`` counts the answers stored; see the module docstring for what ``failed`` covers.
    """
    engine = router.cache
    if engine is None:
        raise LLMRouterError(
            "warmup needs a router with a cache (LLMRouter(cache=CacheConfig(...)))"
        )
    items = [e if isinstance(e, WarmupEntry) else WarmupEntry.model_validate(e) for e in entries]
    counts = {"warmed": 0, "skipped": 0, "failed": 0}
    semaphore = asyncio.Semaphore(max(concurrency, 1))
    bar = _progress(len(items)) if progress else None

    async def one(item: WarmupEntry) -> str:
        model = router.model_name(item.model)
        request = router.build_request(item.prompt, model, **item.params)
        if not engine.accepts(request):
            logger.warning(
                "warmup entry not cached: the cache policy refuses the request "
                "(a temperature above max_temperature, or no temperature while "
                "cache_unset_temperature is off); the provider was not asked"
            )
            return "failed"
        if skip_cached and await engine.peek(request, namespace=item.namespace) is not None:
            return "skipped"
        if item.response is None:
            response = await router.complete(
                item.prompt,
                item.model,
                namespace=item.namespace,
                cache_control="no-store",  # neither served from nor stored by the router: below
                **item.params,
            )
            if not await engine.store(
                request, response, cost_usd=response.cost_usd, namespace=item.namespace
            ):
                logger.warning(
                    "warmup entry not cached: the answer could not be stored (incomplete or "
                    "empty answer, oversized entry or cache backend error)"
                )
                return "failed"
            return "warmed"
        price = router.candidates(model)[0].price
        usage = Usage.of(
            count_message_tokens(request.messages, model), count_tokens(item.response, model)
        )
        answer = LLMResponse(
            content=item.response, usage=usage, provider_used="warmup", model_used=model
        )
        if not await engine.store(
            request, answer, cost_usd=price.cost(usage), namespace=item.namespace
        ):
            logger.warning(
                "warmup entry not cached: the answer could not be stored (empty answer, "
                "oversized entry or cache backend error)"
            )
            return "failed"
        return "warmed"

    async def guarded(item: WarmupEntry) -> None:
        async with semaphore:
            try:
                outcome = await one(item)
            except LLMRouterError as exc:
                logger.warning("warmup entry failed: %s: %s", type(exc).__name__, exc)
                outcome = "failed"
        counts[outcome] += 1
        if bar is not None:
            bar.update(1)

    try:
        await asyncio.gather(*(guarded(item) for item in items))
    finally:
        if bar is not None:
            bar.close()
    return counts
