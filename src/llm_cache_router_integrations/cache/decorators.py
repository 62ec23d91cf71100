"""The decorator API of semantic-llm-cache: ``@cache(...)``, ``CachedLLM``, stats and invalidation.

Any function that takes a prompt string and returns text can be cached semantically::

    @cache(similarity=0.9, ttl=3600, namespace="docs-bot")
    async def ask(prompt: str, model: str = "gpt-4o-mini") -> str: ...

The prompt is the parameter named ``prompt_arg=`` (default: the one named ``prompt``, else the
first parameter). The arguments are bound to the signature with defaults applied, and every other
argument, by name, is part of the scope, so ``ask(q, model="a")`` never serves
``ask(q, model="b")``. Only string results are cached. The same engine pipeline as the router
applies: exact match, then similarity above ``similarity``, then the verification guard.

Scope values are exact, never a lossy ``repr``: JSON values (and sets) as such, ``bytes`` and
numpy arrays as a SHA-256 of their bytes (with dtype and shape). A call with any other argument
type bypasses the cache (logged once): a miss is better than a wrong answer.

The function itself is identified by ``module.qualname`` plus the values its closure captures (and
``CachedLLM`` by the wrapped callable: a function, a ``functools.partial`` with its arguments, or an
instance's class plus its ``model``/``model_name`` attribute). A captured object that has no such
stable identity scopes the cache to that live object: its entries are not reused after a restart.
``name=`` replaces the derived identity (the caller then vouches that equal names answer alike).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import threading
import uuid
import weakref
from collections.abc import Awaitable, Callable
from types import CodeType
from typing import Any, ParamSpec, TypeVar, cast

import numpy as np

from .._sync import run_sync
from ..errors import ConfigurationError
from ..types import ChatRequest, LLMResponse, Message
from .config import CacheConfig
from .engine import CacheEngine

__all__ = ["CachedLLM", "cache", "clear_cache", "get_stats", "invalidate"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.Lock()
_engines: dict[tuple[Any, ...], CacheEngine] = {}

# Per-object tokens for captured objects without a stable identity. An RLock because the weakref
# callback may run (on garbage collection) while this thread already holds it.
_token_lock = threading.RLock()
_tokens: dict[int, tuple[weakref.ref[Any], str]] = {}
_warned: set[tuple[str, str]] = set()

_MEAN_KEYS = ("mean_embed_ms", "mean_search_ms", "mean_guard_ms")


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


class _Uncacheable(Exception):
    """A value with no exact, stable description: the call bypasses the cache."""

    def __init__(self, value: object) -> None:
        super().__init__(type(value).__qualname__)


def _warn_once(name: str, kind: str, message: str) -> None:
    with _lock:
        if (name, kind) in _warned:
            return
        _warned.add((name, kind))
    logger.warning(message, name, kind)


def _canonical(value: Any, other: Callable[[Any], Any] | None = None) -> Any:
    """An exact JSON description of ``value``.

    A value with none (not JSON, bytes or a numpy array) goes to ``other``, or raises
    :class:`_Uncacheable` without it. Tagged forms are one-key dicts whose key starts with a single
    ``$``; a user dict key starting with ``$`` gets one more ``$``, so the two never coincide.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, list | tuple):
        return [_canonical(item, other) for item in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {
                ("$" + k if k.startswith("$") else str.__str__(k)): _canonical(v, other)
                for k, v in value.items()
            }
        pairs = [[_canonical(k, other), _canonical(v, other)] for k, v in value.items()]
        return {"$dict": sorted(pairs, key=lambda pair: json.dumps(pair, sort_keys=True))}
    if isinstance(value, set | frozenset):
        items = [_canonical(item, other) for item in value]
        return {"$set": sorted(items, key=lambda item: json.dumps(item, sort_keys=True))}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": hashlib.sha256(bytes(value)).hexdigest()}
    if isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value)
        if not array.dtype.hasobject:
            digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
            return {"$ndarray": [digest, array.dtype.str, list(array.shape)]}
    if other is None:
        raise _Uncacheable(value)
    return other(value)


def _code(code: CodeType) -> str:
    """A fingerprint of a function's code: bytecode, constants and names (not line numbers)."""
    consts = [
        _code(c)
        if isinstance(c, CodeType)
        else sorted(map(repr, c))
        if isinstance(c, frozenset)
        else repr(c)
        for c in code.co_consts
    ]
    payload = json.dumps([code.co_code.hex(), consts, code.co_names, code.co_varnames])
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def _qualified(obj: Any) -> str:
    return (
        f"{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"
    )


def _object_token(obj: object) -> str:
    """A random token for ``obj`` that lasts as long as ``obj`` (never reused for another object)."""
    key = id(obj)
    with _token_lock:
        found = _tokens.get(key)
        if found is not None and found[0]() is obj:
            return found[1]

        def forget(ref: weakref.ref[Any], key: int = key) -> None:
            with _token_lock:
                entry = _tokens.get(key)
                if entry is not None and entry[0] is ref:
                    del _tokens[key]

        try:
            ref = weakref.ref(obj, forget)
        except TypeError:
            raise _Uncacheable(obj) from None
        token = uuid.uuid4().hex
        _tokens[key] = (ref, token)
        return token


def _identity(obj: Any, name: str, seen: frozenset[int] = frozenset()) -> Any:
    """A JSON description of what ``obj`` (a function or captured value) computes.

    Stable across restarts for JSON values, functions (``module.qualname``, code, defaults and
    captured values), partials, bound methods and objects with a ``model``/``model_name``
    attribute; any other object gets a per-object token (logged once).
    """
    return _canonical(obj, functools.partial(_object_identity, name=name, seen=seen))


def _object_identity(obj: Any, name: str, seen: frozenset[int]) -> Any:
    if id(obj) in seen:
        return {"$cycle": _qualified(obj)}
    seen = seen | {id(obj)}
    if isinstance(obj, functools.partial):
        return {
            "$partial": [
                _identity(obj.func, name, seen),
                _identity(obj.args, name, seen),
                _identity(obj.keywords, name, seen),
            ]
        }
    if getattr(obj, "cache_engine", None) is not None and hasattr(obj, "__wrapped__"):
        return _identity(obj.__wrapped__, name, seen)  # a function decorated by @cache
    if inspect.ismethod(obj):
        return {"$method": _identity([obj.__func__, obj.__self__], name, seen)}
    if inspect.isfunction(obj):
        closure: dict[str, Any] = {}
        for var, cell in zip(obj.__code__.co_freevars, obj.__closure__ or (), strict=True):
            try:
                closure[var] = _identity(cell.cell_contents, name, seen)
            except ValueError:  # an empty cell (e.g. the function's own, not yet bound, name)
                closure[var] = {"$unbound": None}
        return {
            "$function": [
                _qualified(obj),
                _code(obj.__code__),
                _identity(obj.__defaults__, name, seen),
                _identity(obj.__kwdefaults__, name, seen),
                closure,
            ]
        }
    if inspect.isclass(obj) or inspect.ismodule(obj):
        return {"$named": _qualified(obj) if inspect.isclass(obj) else obj.__name__}
    if inspect.isbuiltin(obj):
        owner = getattr(obj, "__self__", None)
        bound = None if owner is None or inspect.ismodule(owner) else _identity(owner, name, seen)
        return {"$builtin": [_qualified(obj), bound]}
    for attribute in ("model", "model_name"):
        model = getattr(obj, attribute, None)
        if model is None:
            continue
        try:
            return {"$instance": [_qualified(type(obj)), attribute, _canonical(model)]}
        except _Uncacheable:
            continue
    token = _object_token(obj)
    _warn_once(
        name,
        type(obj).__qualname__,
        "cache of %s: a captured %s has no stable identity (no JSON value, no model attribute); "
        "its entries are scoped to this process. Pass name= to reuse them after a restart.",
    )
    return {"$object": token}


def _fixed_identity(obj: Any, label: str, name: str | None) -> tuple[bool, Any]:
    """Whether ``obj`` can be cached, and its identity (computed once, when it is wrapped)."""
    if name is not None:
        return True, None
    try:
        return True, _identity(obj, label)
    except (_Uncacheable, RecursionError) as exc:
        _warn_once(
            label,
            str(exc),
            "cache of %s: a captured %s has no stable identity and cannot be tracked; calls "
            "bypass the cache (pass name= to cache them).",
        )
        return False, None


def _request(name: str, prompt: str, identity: Any, scope: Any) -> ChatRequest:
    return ChatRequest(
        model=f"fn:{name}",
        messages=[Message(role="user", content=prompt)],
        extra={
            "fn": json.dumps(identity, sort_keys=True),
            "args": json.dumps(scope, sort_keys=True),
        },
    )


def _prompt_parameter(signature: inspect.Signature, prompt_arg: str | None, name: str) -> str:
    parameters = signature.parameters
    if prompt_arg is None:
        rest = [p for p in parameters if p != _receiver(signature)]
        prompt_arg = "prompt" if "prompt" in parameters else next(iter(rest), None)
    parameter = parameters.get(prompt_arg) if prompt_arg is not None else None
    if parameter is None or parameter.kind in (
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.VAR_KEYWORD,
    ):
        raise ConfigurationError(
            f"@cache on {name}: no prompt parameter {prompt_arg!r}; pass "
            "prompt_arg='<name of the parameter holding the prompt>'"
        )
    return parameter.name


def _receiver(signature: inspect.Signature) -> str | None:
    """The name of a method's ``self`` / ``cls`` parameter (the first one), if any."""
    first = next(iter(signature.parameters), None)
    return first if first in ("self", "cls") else None


def _split(
    signature: inspect.Signature,
    prompt_arg: str,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[str, Any] | None:
    """The prompt and the scope of one call, or ``None`` when the call must bypass the cache."""
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return None  # the call itself raises the right TypeError
    bound.apply_defaults()
    params = dict(bound.arguments)
    prompt = params.pop(prompt_arg, None)
    if not isinstance(prompt, str):
        return None
    receiver = _receiver(signature)
    try:
        if receiver is not None and receiver in params:
            # A method's instance is identified like a captured value (its model attribute, or
            # the live object), so ``@cache`` works on methods.
            params[receiver] = {"$receiver": _identity(params[receiver], name)}
        return prompt, _canonical(params)
    except (_Uncacheable, RecursionError) as exc:
        _warn_once(
            name,
            str(exc),
            "cache of %s: an argument of type %s has no exact JSON form; such calls bypass the "
            "cache (pass JSON values, bytes or numpy arrays to cache them).",
        )
        return None


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
    prompt_arg: str | None = None,
    name: str | None = None,
    **options: Any,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Cache a sync or async text function semantically (see the module docstring).

    ``prompt_arg`` names the prompt parameter (default: ``prompt``, else the first parameter).
    ``name`` replaces the derived identity of the function (``module.qualname`` plus captured
    values): functions given the same ``name`` share entries.
    """
    engine = _engine(similarity, ttl, backend, namespace, max_entries, options)

    def decorator(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)
        label = name or _qualified(fn)
        prompt_param = _prompt_parameter(signature, prompt_arg, label)

        cacheable, identity = _fixed_identity(fn, label, name)

        def prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> ChatRequest | None:
            split = _split(signature, prompt_param, label, args, kwargs) if cacheable else None
            return None if split is None else _request(label, split[0], identity, split[1])

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                request = prepare(args, kwargs)
                if request is None:
                    return await fn(*args, **kwargs)
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
            request = prepare(args, kwargs)
            if request is None:
                return fn(*args, **kwargs)
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
    """Wrap any ``llm(prompt, **kwargs) -> str`` callable (sync or async) with the semantic cache.

    The wrapped callable is identified by what it computes (see the module docstring): two
    ``functools.partial`` objects with other arguments, or two clients with another ``model``
    attribute, never share entries. ``name=`` sets the identity explicitly instead.
    """

    def __init__(
        self,
        llm: Callable[..., str] | Callable[..., Awaitable[str]],
        *,
        similarity: float = 0.80,
        ttl: float | None = 3600.0,
        backend: str = "memory",
        namespace: str = "default",
        max_entries: int | None = 10_000,
        name: str | None = None,
        **options: Any,
    ) -> None:
        self.llm = llm
        self.engine = _engine(similarity, ttl, backend, namespace, max_entries, options)
        target = llm.func if isinstance(llm, functools.partial) else llm
        self.name = name or (
            _qualified(target) if hasattr(target, "__qualname__") else _qualified(type(target))
        )
        self._cacheable, self._identity = _fixed_identity(llm, self.name, name)

    def _request(self, prompt: str, kwargs: dict[str, Any]) -> ChatRequest | None:
        if not self._cacheable:
            return None
        try:
            scope = _canonical(kwargs)
        except (_Uncacheable, RecursionError) as exc:
            _warn_once(
                self.name,
                str(exc),
                "cache of %s: an argument of type %s has no exact JSON form; such calls bypass "
                "the cache (pass JSON values, bytes or numpy arrays to cache them).",
            )
            return None
        return _request(self.name, prompt, self._identity, scope)

    async def acall(self, prompt: str, **kwargs: Any) -> str:
        """Answer ``prompt`` from the cache or by calling the wrapped LLM."""
        request = self._request(prompt, kwargs)
        if request is not None:
            cached = await _lookup(self.engine, request)
            if cached is not None:
                return cached
        result = self.llm(prompt, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        if request is not None:
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
    """Hits, misses, hit rate and more over the decorator caches (of one namespace).

    Counts are summed; the ``mean_*_ms`` latencies are averaged, weighted by semantic lookups.
    """
    total: dict[str, float | int] = {}
    weighted = dict.fromkeys(_MEAN_KEYS, 0.0)
    semantic_lookups = 0
    for engine in _selected(namespace):
        snapshot = engine.stats.snapshot()
        weight = engine.stats.semantic_lookups
        semantic_lookups += weight
        for key, value in snapshot.items():
            if key in weighted:
                weighted[key] += value * weight
            else:
                total[key] = total.get(key, 0) + value
    for key, value in weighted.items():
        total[key] = value / semantic_lookups if semantic_lookups else 0.0
    lookups = total.get("hits", 0) + total.get("misses", 0)
    total["hit_rate"] = total.get("hits", 0) / lookups if lookups else 0.0
    return total


def clear_cache(namespace: str | None = None) -> None:
    """Empty the decorator caches (of one namespace); other namespaces sharing a store stay."""
    for engine in _selected(namespace):
        run_sync(engine.invalidate(namespace=engine.config.namespace))


def invalidate(pattern: str | None = None, namespace: str | None = None) -> int:
    """Remove entries whose prompt matches the glob ``pattern`` (in one namespace); returns how many.

    Only the decorator caches' own namespaces are touched, even in a store shared with others.
    """
    return sum(
        run_sync(engine.invalidate(pattern=pattern, namespace=engine.config.namespace))
        for engine in _selected(namespace)
    )
