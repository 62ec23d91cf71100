"""The decorator API of semantic-llm-cache: ``@cache(...)``, ``CachedLLM``, stats and invalidation.

Any function that takes a prompt string (its first argument, or ``prompt=``) and returns text can be
cached semantically::

    @cache(similarity=0.9, ttl=3600, namespace="docs-bot")
    async def ask(prompt: str, model: str = "gpt-4o-mini") -> str: ...

The other arguments are part of the scope, so ``ask(q, model="a")`` never serves ``ask(q, model="b")``.
Only string results are cached. The same engine pipeline as the router applies: exact match,
then similarity above ``similarity``, then the verification guard.
"""

from __future__ import annotations

import functools
import inspect
import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from .._sync import run_sync
from ..types import ChatRequest, LLMResponse, Message
from .config import CacheConfig
from .engine import CacheEngine

__all__ = ["CachedLLM", "cache", "clear_cache", "get_stats", "invalidate"]

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.Lock()
_engines: dict[tuple[Any, ...], CacheEngine] = {}


def _engine(
    similarity: float,
    ttl: float | None,
    backend: str,
    namespace: str,
    max_entries: int | None,
    options: dict[str, Any],
) -> CacheEngine:
    key = (similarity, ttl, backend, namespace, max_entries, tuple(sorted(options.items())))
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            config = CacheConfig(
                backend=backend,
                threshold=similarity,
                ttl=ttl,
                namespace=namespace,
                max_entries=max_entries,
                **options,
            )
            engine = _engines[key] = CacheEngine(config)
        return engine


def _request(name: str, prompt: str, scope: Any) -> ChatRequest:
    return ChatRequest(
        model=f"fn:{name}",
        messages=[Message(role="user", content=prompt)],
        extra={"args": json.dumps(scope, sort_keys=True, default=repr)},
    )


def _split(
    signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str | None, Any]:
    bound = signature.bind_partial(*args, **kwargs)
    params = dict(bound.arguments)
    name = "prompt" if "prompt" in params else next(iter(params), None)
    prompt = params.pop(name) if name is not None else None
    return (prompt if isinstance(prompt, str) else None), params


async def _lookup(engine: CacheEngine, request: ChatRequest) -> str | None:
    hit = await engine.lookup(request)
    return None if hit is None else hit.entry.response.content


async def _store(engine: CacheEngine, request: ChatRequest, result: object) -> None:
    if isinstance(result, str) and result:
        await engine.store(
            request, LLMResponse(content=result, provider_used="function", model_used=request.model)
        )


def cache(
    similarity: float = 0.80,
    ttl: float | None = 3600.0,
    backend: str = "memory",
    namespace: str = "default",
    *,
    max_entries: int | None = 10_000,
    **options: Any,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Cache a sync or async text function semantically (see the module docstring)."""
    engine = _engine(similarity, ttl, backend, namespace, max_entries, options)

    def decorator(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)
        name = f"{fn.__module__}.{fn.__qualname__}"

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                prompt, scope = _split(signature, args, kwargs)
                if prompt is None:
                    return await fn(*args, **kwargs)
                request = _request(name, prompt, scope)
                cached = await _lookup(engine, request)
                if cached is not None:
                    return cached
                result = await fn(*args, **kwargs)
                await _store(engine, request, result)
                return result

            async_wrapper.cache_engine = engine  # type: ignore[attr-defined]
            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            prompt, scope = _split(signature, args, kwargs)
            if prompt is None:
                return fn(*args, **kwargs)
            request = _request(name, prompt, scope)
            cached = run_sync(_lookup(engine, request))
            if cached is not None:
                return cast(R, cached)
            result = fn(*args, **kwargs)
            run_sync(_store(engine, request, result))
            return result

        sync_wrapper.cache_engine = engine  # type: ignore[attr-defined]
        return sync_wrapper

    return decorator


class CachedLLM:
    """Wrap any ``llm(prompt, **kwargs) -> str`` callable (sync or async) with the semantic cache."""

    def __init__(
        self,
        llm: Callable[..., str] | Callable[..., Awaitable[str]],
        *,
        similarity: float = 0.80,
        ttl: float | None = 3600.0,
        backend: str = "memory",
        namespace: str = "default",
        max_entries: int | None = 10_000,
        **options: Any,
    ) -> None:
        self.llm = llm
        self.engine = _engine(similarity, ttl, backend, namespace, max_entries, options)
        self.name = getattr(llm, "__qualname__", type(llm).__name__)

    async def acall(self, prompt: str, **kwargs: Any) -> str:
        """Answer ``prompt`` from the cache or by calling the wrapped LLM."""
        request = _request(self.name, prompt, kwargs)
        cached = await _lookup(self.engine, request)
        if cached is not None:
            return cached
        result = self.llm(prompt, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        await _store(self.engine, request, result)
        return result

    def __call__(self, prompt: str, **kwargs: Any) -> str:
        """Blocking twin of :meth:`acall` (the wrapped LLM may be sync or async)."""
        return run_sync(self.acall(prompt, **kwargs))


def _selected(namespace: str | None) -> list[CacheEngine]:
    with _lock:
        return [
            e for e in _engines.values() if namespace is None or e.config.namespace == namespace
        ]


def get_stats(namespace: str | None = None) -> dict[str, float | int]:
    """Hits, misses, hit rate and more, summed over the decorator caches (of one namespace)."""
    total: dict[str, float | int] = {}
    for engine in _selected(namespace):
        for key, value in engine.stats.snapshot().items():
            total[key] = total.get(key, 0) + value
    lookups = total.get("hits", 0) + total.get("misses", 0)
    total["hit_rate"] = total.get("hits", 0) / lookups if lookups else 0.0
    return total


def clear_cache(namespace: str | None = None) -> None:
    """Empty the decorator caches (of one namespace)."""
    for engine in _selected(namespace):
        run_sync(engine.clear())


def invalidate(pattern: str | None = None, namespace: str | None = None) -> int:
    """Remove entries whose prompt matches the glob ``pattern`` (in one namespace); returns how many."""
    return sum(run_sync(engine.invalidate(pattern=pattern)) for engine in _selected(namespace))
