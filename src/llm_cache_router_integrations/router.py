"""``LLMRouter``: one async-first API over every provider, with routing, resilience, cost and cache.

A call goes through these steps, all in this module and nowhere else:

1. validate the request (a typed :class:`InvalidRequestError` names the bad field);
2. look it up in the cache (a hit costs 0 and adds its avoided cost to the savings);
3. resolve the candidate deployments (aliases, groups, fallback chain, priority routes) and let the
   strategy order them;
4. per candidate: skip it when its circuit is open, the prompt exceeds its context window or its
   rate limit is reached; reserve the worst-case cost in the budget (refused before any HTTP call
   when it would overspend); wait for a slot in its priority queue (a full queue skips it, and the
   call's deadline ends the wait);
5. call it with retries (exponential backoff with full jitter, Retry-After honoured); on failure,
   or when its provider cannot carry the request (refused before any HTTP call), fall back to the
   next candidate;
6. settle the budget to the real cost, update stats and store the answer in the cache.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ._sync import iterate_sync, run_sync
from .cache import CacheConfig, CacheControl, CacheEngine, CacheHit
from .cache.warmup import WarmupEntry, warmup
from .cost.budget import (
    Budget,
    BudgetManager,
    BudgetStore,
    InMemoryBudgetStore,
    RedisBudgetStore,
    Reservation,
)
from .cost.pricing import PricingTable, default_pricing
from .cost.tokens import count_message_tokens, count_tokens
from .errors import (
    AllCandidatesFailedError,
    AllCandidatesSaturatedError,
    BadRequestError,
    ConfigurationError,
    ContextLengthExceededError,
    InvalidRequestError,
    LLMRouterError,
    NoDeploymentAvailableError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
    StreamInterruptedError,
    UnsupportedInputError,
)
from .providers import BaseProvider, ProviderConfig, create_provider
from .routing import (
    BreakerConfig,
    CircuitState,
    Deployment,
    DeploymentSettings,
    Priority,
    QueueFullError,
    RetryPolicy,
    RoutingContext,
    RoutingStrategy,
    Strategy,
    build_strategy,
)
from .routing.ratelimit import RateLimiter
from .routing.shared_limits import RedisRateLimiter
from .stats import RouterStats
from .streaming import StreamAccumulator
from .types import ChatRequest, LLMResponse, Message, StreamChunk, Usage

__all__ = ["ENV_PROVIDERS", "LLMRouter", "PriorityRoute"]

logger = logging.getLogger("llm_cache_router_integrations.router")

MAX_ADHOC_DEPLOYMENTS = 256
"""Unconfigured deployments (models a caller named that no provider lists) kept with their figures;
beyond it the least recently used idle ones are forgotten, so arbitrary model names cannot grow
the router without bound."""


ENV_PROVIDERS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("openai", ("OPENAI_API_KEY",), ("gpt-4o-mini",)),
    ("anthropic", ("ANTHROPIC_API_KEY",), ("claude-3-5-haiku-latest",)),
    ("gemini", ("GEMINI_API_KEY", "GOOGLE_API_KEY"), ("gemini-2.0-flash",)),
    ("qwen", ("DASHSCOPE_API_KEY",), ("qwen-plus",)),
    ("minimax", ("MINIMAX_API_KEY",), ("MiniMax-M2",)),
    ("ollama", ("OLLAMA_HOST",), ("llama3.2",)),
)
"""``(provider, environment variables, default models)`` read by :meth:`LLMRouter.from_env`."""


class PriorityRoute(dict[str, list[str]]):
    """``{"targets": [...], "fallbacks": [...]}`` of deployment keys for one priority."""


def _describe_validation(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "request"
        parts.append(f"{where}: {item['msg']}")
    return "invalid request: " + "; ".join(parts)


def _wire_problem(value: Any) -> tuple[list[str], str] | None:
    """What a JSON body cannot carry in ``value`` (lone surrogate, NaN/inf, an object), if any:
    ``(path, reason)`` with the path innermost first. Walks models in place (no copy)."""
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, str):
        if value.isascii():
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return [], "text must be valid Unicode (it holds a lone surrogate)"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else ([], f"{value} is not a valid JSON number")
    items: Any
    if isinstance(value, BaseModel):
        items = value.__dict__.items()
    elif isinstance(value, dict):
        items = value.items()
        for key in value:
            if not isinstance(key, str | int) or (isinstance(key, str) and _wire_problem(key)):
                return [], "keys must be strings (valid Unicode)"
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return [], f"a {type(value).__name__} is not JSON data"
    for key, item in items:
        found = _wire_problem(item)
        if found is not None:
            found[0].append(str(key))
            return found
    return None


def _health_failure(error: ProviderError) -> bool:
    """Whether an error says the deployment is unhealthy (request errors do not)."""
    return not isinstance(error, BadRequestError)


DEADLINE_PASSED = "the call's deadline passed"
"""Why a candidate was skipped when the call's own deadline ran out before it could be called."""

REFUSED = "cannot take this request: "
"""Prefix of the reason a candidate was skipped when its provider cannot carry the request.

Providers refuse what they cannot carry (audio for Anthropic, an image URL for Ollama, ``n>1`` for
MiniMax) with :class:`UnsupportedInputError` while converting it, before any HTTP call: another
candidate may take it. A plain :class:`InvalidRequestError` (a malformed ``data:`` URI) is wrong
whichever provider gets it and reaches the caller at once.
"""


def _usage_or_estimate(response: LLMResponse, input_tokens: int, model: str) -> Usage:
    """The provider's usage, or when it reported none (all zero) an estimate like the one billed
    for an interrupted stream: the router's input estimate plus the answer's tokens (tiktoken)."""
    usage = response.usage
    if usage.input_tokens or usage.output_tokens or usage.total_tokens:
        return usage
    output = count_tokens(response.content or "", model)
    for call in response.tool_calls:
        output += count_tokens(call.function.name, model)
        output += count_tokens(call.function.arguments, model)
    return Usage.of(input_tokens, output)


class LLMRouter:
    """Routes chat calls across providers with caching, fallbacks, limits, cost and budgets.

    Args:
        providers: ``{name: config}``; a config is a dict, a :class:`ProviderConfig` or a ready
            :class:`BaseProvider`. The provider type is ``config["type"]`` or the name.
        cache: a :class:`CacheConfig`, a ready :class:`CacheEngine`, or ``None`` for no cache.
        strategy: a :class:`RoutingStrategy` (or its value) or a custom :class:`Strategy`.
        fallback_chain: deployment keys (``"provider/model"``) tried after the requested model.
        budget: ``{"daily_usd": ..., "monthly_usd": ...}`` or a :class:`Budget`.
        budget_store: where budget counters live: a :class:`BudgetStore` or a ``redis://`` URL
            (several processes then share one budget). Default: in this process.
        limits_store: a ``redis://`` URL where rpm/tpm buckets live, so several processes share
            each deployment's limits (the ``window`` limiter stays per process).
        model_groups: aliases: ``{"fast": ["openai/gpt-4o-mini", "gemini/gemini-2.0-flash"]}``.
        deployments: per-deployment limits: ``{"openai/gpt-4o-mini": {"rpm": 500, ...}}``.
        priority_routes: for ``RoutingStrategy.PRIORITY``: ``{Priority.CRITICAL: {"targets":
            [...], "fallbacks": [...]}, ...}``; priorities without a route use the default chain.
        retry: a :class:`RetryPolicy` (or its fields as a dict).
        breaker: a :class:`BreakerConfig` (or its fields as a dict) for every deployment.
        timeout: overall deadline of one call in seconds, retries and fallbacks included.
        pricing: price overrides ``{"model": {"input": ..., "output": ...}}`` or a table.
        default_model: used when a call names no model.
    """

    def __init__(
        self,
        providers: Mapping[str, Mapping[str, Any] | ProviderConfig | BaseProvider],
        *,
        cache: CacheConfig | CacheEngine | Mapping[str, Any] | None = None,
        strategy: RoutingStrategy | str | Strategy = RoutingStrategy.FALLBACK_CHAIN,
        fallback_chain: Sequence[str] | None = None,
        budget: Budget | Mapping[str, float | None] | None = None,
        budget_store: BudgetStore | str | None = None,
        limits_store: str | None = None,
        model_groups: Mapping[str, Sequence[str]] | None = None,
        deployments: Mapping[str, DeploymentSettings | Mapping[str, Any]] | None = None,
        priority_routes: Mapping[Priority | str, Mapping[str, Sequence[str]]] | None = None,
        retry: RetryPolicy | Mapping[str, Any] | None = None,
        breaker: BreakerConfig | Mapping[str, Any] | None = None,
        timeout: float | None = None,
        pricing: PricingTable | Mapping[str, Any] | None = None,
        default_model: str | None = None,
    ) -> None:
        if not providers:
            raise ConfigurationError("LLMRouter needs at least one provider; " + _env_help())
        try:
            self.providers: dict[str, BaseProvider] = {
                name: cfg if isinstance(cfg, BaseProvider) else create_provider(name, cfg)
                for name, cfg in providers.items()
            }
            self.retry = (
                retry if isinstance(retry, RetryPolicy) else RetryPolicy.model_validate(retry or {})
            )
            self.breaker_config = (
                breaker
                if isinstance(breaker, BreakerConfig)
                else BreakerConfig.model_validate(breaker or {})
            )
            self._settings = {
                key: s
                if isinstance(s, DeploymentSettings)
                else DeploymentSettings.model_validate(s)
                for key, s in (deployments or {}).items()
            }
            budget_model = (
                budget if isinstance(budget, Budget) else Budget.model_validate(budget or {})
            )
        except ValidationError as exc:
            raise ConfigurationError(
                _describe_validation(exc).replace("invalid request", "invalid router configuration")
            ) from None
        if isinstance(pricing, PricingTable):
            self.pricing = pricing
        else:
            self.pricing = default_pricing()
            if pricing:
                self.pricing.update(pricing)
        self.strategy_name = strategy if isinstance(strategy, str) else type(strategy).__name__
        try:
            self.strategy: Strategy = build_strategy(strategy)
        except ValueError:
            raise ConfigurationError(
                f"unknown strategy {strategy!r}; use one of {[s.value for s in RoutingStrategy]} "
                "or an object with an order(candidates, context) method"
            ) from None
        self.timeout = timeout
        self.default_model = default_model
        self.limits_store = limits_store
        self._deployments: dict[str, Deployment] = {}
        self._adhoc: dict[str, None] = {}  # unconfigured deployments callers named, LRU order
        self.fallback_chain = [self._parse_key(k).key for k in fallback_chain or ()]
        self.model_groups = {
            alias: [self._parse_key(k).key for k in keys]
            for alias, keys in (model_groups or {}).items()
        }
        self.priority_routes: dict[Priority, dict[str, list[str]]] = {}
        for prio, route in (priority_routes or {}).items():
            self.priority_routes[Priority.parse(prio)] = {
                part: [self._parse_key(k).key for k in route.get(part, ())]
                for part in ("targets", "fallbacks")
            }
        if isinstance(cache, CacheEngine):
            self.cache: CacheEngine | None = cache
        elif cache is None:
            self.cache = None
        else:
            self.cache = CacheEngine(
                cache if isinstance(cache, CacheConfig) else CacheConfig.model_validate(cache)
            )
        store = RedisBudgetStore(budget_store) if isinstance(budget_store, str) else budget_store
        self.budget = BudgetManager(budget_model, store)
        self._stats = RouterStats()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_env(cls, config_path: str | Path | None = None, **overrides: Any) -> LLMRouter:
        """Build a router from ``LLM_ROUTER_CONFIG`` (a JSON file) or the usual API-key variables.

        Reads ``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY``/``GOOGLE_API_KEY``,
        ``DASHSCOPE_API_KEY``, ``MINIMAX_API_KEY`` and ``OLLAMA_HOST``; every provider found joins the
        fallback chain in that order. With nothing configured the error lists what to set.
        """
        path = config_path or os.environ.get("LLM_ROUTER_CONFIG")
        if path:
            try:
                settings = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigurationError(
                    f"cannot read router config {str(path)!r}: {exc}"
                ) from None
            return cls(**{**settings, **overrides})
        providers: dict[str, dict[str, Any]] = {}
        chain: list[str] = []
        for name, variables, models in ENV_PROVIDERS:
            if any(os.environ.get(v) for v in variables):
                providers[name] = {"models": list(models)}
                chain.append(f"{name}/{models[0]}")
        if not providers:
            raise ConfigurationError("no provider is configured; " + _env_help())
        overrides.setdefault("fallback_chain", chain)
        return cls(providers, **overrides)

    def _parse_key(self, key: str) -> Deployment:
        provider, sep, model = key.partition("/")
        if sep and provider in self.providers:
            return self._deployment(provider, model)
        matches = [n for n, p in self.providers.items() if key in p.models]
        if matches:
            return self._deployment(matches[0], key)
        raise ConfigurationError(
            f"{key!r} names no configured deployment; write it as 'provider/model' with a provider "
            f"among {sorted(self.providers)}"
        )

    def _deployment(self, provider: str, model: str) -> Deployment:
        key = f"{provider}/{model}"
        deployment = self._deployments.get(key)
        if deployment is None:
            instance = self.providers[provider]
            deployment = Deployment(
                instance,
                model,
                self.pricing.price(model, instance.type_name),
                self._settings.get(key) or self._settings.get(provider),
                self.breaker_config,
            )
            if self.limits_store is not None and (
                deployment.settings.rpm or deployment.settings.tpm
            ):
                deployment.limiter = RedisRateLimiter(
                    self.limits_store,
                    key,
                    rpm=deployment.settings.rpm,
                    tpm=deployment.settings.tpm,
                    window=deployment.settings.window,
                )
            self._deployments[key] = deployment
        return deployment

    @property
    def deployments(self) -> dict[str, Deployment]:
        """Every deployment used or configured so far, by key."""
        return dict(self._deployments)

    # ------------------------------------------------------------------ candidates
    def model_name(self, model: str | None) -> str:
        """The model a call asks for: the given one, else the default model or chain head."""
        name = (
            model or self.default_model or (self.fallback_chain[0] if self.fallback_chain else None)
        )
        if name is None:
            first = next(iter(self.providers.values()))
            if not first.models:
                raise InvalidRequestError("model: no model given and no default_model configured")
            name = f"{first.name}/{first.models[0]}"
        return name

    def _requested(self, model: str) -> list[Deployment]:
        if model in self.model_groups:
            return [self._parse_key(k) for k in self.model_groups[model]]
        provider, sep, rest = model.partition("/")
        if sep and provider in self.providers:
            return [self._adhoc_deployment(provider, rest)]
        found = [self._deployment(n, model) for n, p in self.providers.items() if model in p.models]
        if found:
            return found
        if len(self.providers) == 1 and not self.fallback_chain:
            return [self._adhoc_deployment(next(iter(self.providers)), model)]
        return []

    def _adhoc_deployment(self, provider: str, model: str) -> Deployment:
        """The deployment of a model a caller named that the configuration does not list.

        Callers may name any model, so such deployments are kept in a bounded LRU: beyond
        :data:`MAX_ADHOC_DEPLOYMENTS`, the least recently used idle ones are forgotten (with their
        figures). Configured deployments are never dropped.
        """
        key = f"{provider}/{model}"
        configured = key in self._deployments and key not in self._adhoc
        deployment = self._deployment(provider, model)
        if configured or model in self.providers[provider].models or key in self._settings:
            return deployment
        self._adhoc.pop(key, None)
        self._adhoc[key] = None  # most recently used last
        excess = len(self._adhoc) - MAX_ADHOC_DEPLOYMENTS
        for old in list(self._adhoc)[:-1] if excess > 0 else ():
            victim = self._deployments.get(old)
            if victim is None or not (victim.gate.active or victim.gate.queued):
                del self._adhoc[old]
                self._deployments.pop(old, None)
                excess -= 1
                if excess <= 0:
                    break
        return deployment

    def candidates(
        self,
        model: str | None,
        priority: Priority = Priority.NORMAL,
        *,
        stream: bool = False,
        input_tokens: int = 0,
        output_tokens: int = 0,
        apply_strategy: bool = True,
    ) -> list[Deployment]:
        """The deployments a call would try, in order.

        ``apply_strategy=False`` returns them in configuration order without consulting the strategy
        (no side effects such as advancing a round robin): for inspection, e.g. by adapters.
        """
        name = self.model_name(model)
        route = self.priority_routes.get(priority) if self.priority_routes else None
        if route is not None:
            keys = [*route["targets"], *route["fallbacks"]]
            ordered = [self._parse_key(k) for k in keys]
        else:
            ordered = [*self._requested(name), *(self._parse_key(k) for k in self.fallback_chain)]
        unique = list({d.key: d for d in ordered}.values())
        if not unique:
            configured = sorted({f"{n}/{m}" for n, p in self.providers.items() for m in p.models})
            raise NoDeploymentAvailableError(
                f"no deployment serves model {name!r}; configured: {configured or 'none'}. Name it as "
                "'provider/model', list it in a provider's 'models', or add a model group"
            )
        if not apply_strategy:
            return unique
        context = RoutingContext(name, priority, stream, input_tokens, output_tokens)
        return self.strategy.order(unique, context)

    def estimate_cost(
        self,
        messages: Sequence[Message | Mapping[str, Any]] | str,
        model: str | None = None,
        *,
        priority: Priority | str | int | None = None,
        **params: Any,
    ) -> float:
        """The worst-case USD of a call, without making it: what the budget would reserve.

        Estimated input tokens plus the output reserve (``max_tokens``, else the model's maximum
        output) at the price of the most expensive candidate. Validates the request like
        :meth:`complete` but has no side effects (no HTTP call, no reservation, no strategy step).
        """
        name = self.model_name(model)
        request = self.build_request(messages, name, **params)
        input_tokens = count_message_tokens(request.messages, name, request.tools)
        return max(
            (
                d.price.worst_case(input_tokens, request.max_tokens)
                for d in self.candidates(name, Priority.parse(priority), apply_strategy=False)
            ),
            default=0.0,
        )

    # ------------------------------------------------------------------ request building
    @staticmethod
    def build_request(
        messages: Sequence[Message | Mapping[str, Any]] | str, model: str, **params: Any
    ) -> ChatRequest:
        """Validate a call's arguments into a :class:`ChatRequest` (unknown keywords go to ``extra``)."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        elif isinstance(messages, Mapping) or not isinstance(messages, Sequence):
            raise InvalidRequestError(
                f"invalid request: messages: expected a string or a list of messages, "
                f"got {type(messages).__name__}"
            )
        known = set(ChatRequest.model_fields) - {"model", "messages", "extra"}
        body: dict[str, Any] = {k: v for k, v in params.items() if k in known and v is not None}
        extra = dict(params.get("extra") or {})
        extra.update({k: v for k, v in params.items() if k not in known and k != "extra"})
        try:
            request = ChatRequest.model_validate(
                {"model": model, "messages": list(messages), **body, "extra": extra}
            )
        except ValidationError as exc:
            raise InvalidRequestError(_describe_validation(exc)) from None
        # Validated fields may still hold what no JSON body can carry (a lone surrogate in a
        # text, NaN in ``extra`` or a tool schema): refuse here, before any cache key or HTTP call.
        for name in request.model_fields_set:
            try:
                found = _wire_problem(getattr(request, name))
            except RecursionError:
                found = [], "nested too deeply"
            if found is not None:
                where = ".".join([name, *reversed(found[0])])
                raise InvalidRequestError(f"invalid request: {where}: {found[1]}")
        return request

    def _prepare(
        self, messages: Any, model: str | None, prio: Priority, stream: bool, params: dict[str, Any]
    ) -> tuple[ChatRequest, int, list[Deployment]]:
        """Validate the request, estimate its input tokens once and order the candidates."""
        name = self.model_name(model)
        request = self.build_request(messages, name, **params)
        input_tokens = count_message_tokens(request.messages, name, request.tools)
        candidates = self.candidates(
            name,
            prio,
            stream=stream,
            input_tokens=input_tokens,
            output_tokens=request.max_tokens or 256,
        )
        return request, input_tokens, candidates

    # ------------------------------------------------------------------ cache helpers
    async def _cached(
        self, request: ChatRequest, control: CacheControl, namespace: str | None
    ) -> CacheHit | None:
        if self.cache is None or control != "default" or not self.cache.accepts(request):
            return None
        hit = await self.cache.lookup(request, namespace=namespace)
        if hit is not None:
            self._stats.cache_hit(hit.entry.cost_usd)
        return hit

    @staticmethod
    def _hit_response(hit: CacheHit) -> LLMResponse:
        return hit.entry.response.model_copy(
            update={
                "cache_hit": True,
                "cost_usd": 0.0,
                "latency_ms": 0.0,
                "saved_usd": hit.entry.cost_usd,
            }
        )

    async def _store(
        self,
        request: ChatRequest,
        response: LLMResponse,
        control: CacheControl,
        namespace: str | None,
    ) -> None:
        if self.cache is not None and control != "no-store":
            await self.cache.store(
                request, response, cost_usd=response.cost_usd, namespace=namespace
            )

    # ------------------------------------------------------------------ per-candidate admission
    async def _admit(
        self,
        deployment: Deployment,
        request: ChatRequest,
        input_tokens: int,
        priority: Priority,
        deadline: float | None,
    ) -> tuple[Reservation, int, int] | str:
        """Checks before calling ``deployment``: returns the reservation, the estimated input
        tokens and the breaker's ticket (see :meth:`CircuitBreaker.admit`), or why it was skipped.

        The wait for a slot in the deployment's queue ends at ``deadline``. Raises
        :class:`BudgetExceededError` when the call could overspend.
        """
        if deadline is not None and time.monotonic() >= deadline:
            # Never called: no reservation, and no failure charged to its breaker or stats.
            return DEADLINE_PASSED
        ticket = deployment.breaker.admit()
        if ticket is None:
            return "circuit open"
        try:
            admitted = await self._reserve(deployment, request, input_tokens, priority, deadline)
        except BaseException:  # over budget, or cancelled while waiting: free the probe slot
            deployment.breaker.release_probe(ticket)
            raise
        if isinstance(admitted, str):
            deployment.breaker.release_probe(ticket)
            return admitted
        return admitted, input_tokens, ticket

    async def _reserve(
        self,
        deployment: Deployment,
        request: ChatRequest,
        input_tokens: int,
        priority: Priority,
        deadline: float | None,
    ) -> Reservation | str:
        """The context-window, rate-limit, budget and queue steps of :meth:`_admit`: the budget
        reservation holding a queue slot, or why the deployment was skipped (nothing is held)."""
        window = deployment.price.context_window
        if window is not None and input_tokens + (request.max_tokens or 0) > window:
            return f"context window {window} exceeded by ~{input_tokens} input tokens"
        limiter = deployment.limiter
        if not await self._take_limit(deployment, input_tokens, priority, deadline):
            return "rate limited"
        try:
            reservation = await self.budget.reserve(
                deployment.price.worst_case(input_tokens, request.max_tokens)
            )
        except BaseException:
            await limiter.acorrect(input_tokens, 0)
            raise
        skip: str | None = None
        try:
            remaining = None if deadline is None else deadline - time.monotonic()
            async with asyncio.timeout(remaining):
                await deployment.gate.acquire(priority)
        except QueueFullError:
            skip = "saturated"
        except TimeoutError:
            # The deadline passed while queued: never called, so no failure of the deployment.
            skip = f"{DEADLINE_PASSED} while it waited in the queue"
        except BaseException:  # cancelled while queued: give back what was taken
            await self._release(deployment, reservation, input_tokens, 0, 0.0)
            raise
        if skip is not None:
            await self._release(deployment, reservation, input_tokens, 0, 0.0)
            return skip
        return reservation

    @staticmethod
    async def _take_limit(
        deployment: Deployment, tokens: int, priority: Priority, deadline: float | None
    ) -> bool:
        """Take one request of ``tokens`` from ``deployment``'s rate limits for an HTTP attempt
        (first or retry): ``False`` when it is limited (``on_limit="skip"``) or the limit would
        not free up within ``max_wait`` and the call's deadline (``"wait"``, served by priority)."""
        limiter = deployment.limiter
        if not limiter.enabled:
            return True
        if deployment.settings.on_limit == "skip":
            return await limiter.acquire(tokens) == 0
        until = time.monotonic() + deployment.settings.max_wait
        if deadline is not None:
            until = min(until, deadline)
        return await deployment.limit_queue.acquire(limiter, tokens, priority, until)

    async def _release(
        self,
        deployment: Deployment,
        reservation: Reservation,
        estimated: int,
        actual_tokens: int,
        cost: float,
    ) -> None:
        """Settle ``reservation`` to ``cost`` and correct the tpm charge of ``estimated`` tokens to
        ``actual_tokens``: run to the end even when the caller is cancelled meanwhile (the cancel
        still reaches it), so a slow store never leaves a reservation half settled. Settle each
        reservation through here once, and count it settled *before* awaiting this.

        With the built-in process-local budget store and rate limiter nothing in the settlement
        suspends, so no cancel can cut it in half: it runs inline (a shielding task costs two loop
        iterations, about a fifth of the router's own overhead per call)."""
        work = self._settle(deployment, reservation, estimated, actual_tokens, cost)
        # Exact types: a subclass (or any other store) may suspend, so it keeps the shield.
        if (
            type(self.budget.store) is InMemoryBudgetStore
            and type(deployment.limiter) is RateLimiter
        ):
            await work
        else:
            await _shielded(work)

    async def _settle(
        self,
        deployment: Deployment,
        reservation: Reservation,
        estimated: int,
        actual_tokens: int,
        cost: float,
    ) -> None:
        try:
            await self.budget.settle(reservation, cost)
        finally:
            await deployment.limiter.acorrect(estimated, actual_tokens)

    def _attempt_timeout(self, deployment: Deployment, deadline: float | None) -> float | None:
        timeout = deployment.settings.timeout or deployment.provider.config.timeout
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProviderTimeoutError(
                    "the call's overall deadline passed", provider=deployment.provider.name
                )
            timeout = min(timeout, remaining)
        return timeout

    def _charge_partial(self, deployment: Deployment, cost: float) -> None:
        """Count what an interrupted stream cost in the stats, as the budget does."""
        if cost > 0:
            self._stats.charge(cost)
            deployment.stats.record_cost(cost)

    def _after_success(
        self,
        deployment: Deployment,
        reservation: Reservation,
        estimated: int,
        response: LLMResponse,
    ) -> Coroutine[Any, Any, None]:
        """Price and count a successful answer; returns its settlement, for the caller to mark the
        reservation settled and then await (see :meth:`_release`)."""
        response.usage = _usage_or_estimate(response, estimated, deployment.model)
        cost = deployment.price.cost(response.usage)
        response.cost_usd = cost
        deployment.breaker.record_success()
        deployment.stats.record_success(
            response.latency_ms, response.usage.input_tokens, response.usage.output_tokens, cost
        )
        self._stats.success(cost)
        return self._release(
            deployment, reservation, estimated, response.usage.total_tokens or estimated, cost
        )

    def _retry_delay(
        self,
        deployment: Deployment,
        error: ProviderError,
        attempt: int,
        deadline: float | None,
        probe: int = 0,
    ) -> float | None:
        """Record a failed attempt; the wait before retrying ``deployment``, or ``None`` to move on.

        Retry only retryable errors while the circuit stays closed, and never wait past the call's
        deadline (the next candidate gets the time instead). ``probe`` is the call's breaker ticket.
        """
        self._after_failure(deployment, error, probe)
        if not (
            self.retry.should_retry(error, attempt)
            and deployment.breaker.state is CircuitState.CLOSED
        ):
            return None
        delay = self.retry.delay(error, attempt)
        if deadline is not None and time.monotonic() + delay >= deadline:
            return None
        return delay

    def _after_failure(self, deployment: Deployment, error: ProviderError, probe: int = 0) -> None:
        deployment.stats.record_failure()
        if _health_failure(error):
            deployment.breaker.record_failure()
        else:
            deployment.breaker.release_probe(probe)

    @staticmethod
    def _final_error(
        model: str, errors: list[ProviderError], skipped: list[tuple[str, str]]
    ) -> LLMRouterError:
        if errors:
            return (
                errors[0]
                if len(errors) == 1 and not skipped
                else AllCandidatesFailedError(model, errors)
            )
        reasons = {reason for _, reason in skipped}
        if reasons and all(r.startswith(REFUSED) for r in reasons):
            if len(skipped) == 1:  # the only candidate: its provider's own words
                return UnsupportedInputError(skipped[0][1].removeprefix(REFUSED))
            return UnsupportedInputError(
                f"no candidate for {model!r} can take this request: "
                + "; ".join(f"{k}: {r.removeprefix(REFUSED)}" for k, r in skipped)
            )
        late = [k for k, r in skipped if r.startswith(DEADLINE_PASSED)]
        if late:
            return ProviderTimeoutError(
                f"no candidate for {model!r} could be called within the call's timeout: "
                + "; ".join(f"{k}: {r}" for k, r in skipped),
                provider=late[0].partition("/")[0],
            )
        if reasons == {"saturated"}:
            return AllCandidatesSaturatedError(model, [key for key, _ in skipped])
        if all(r.startswith("context window") for r in reasons):
            return ContextLengthExceededError(
                f"the prompt exceeds the context window of every candidate for {model!r}: "
                + "; ".join(f"{k}: {r}" for k, r in skipped)
            )
        if "rate limited" in reasons and reasons <= {"rate limited", "saturated", "circuit open"}:
            return RateLimitError(
                "every candidate is rate limited or unavailable: "
                + "; ".join(f"{k}: {r}" for k, r in skipped)
            )
        return NoDeploymentAvailableError(
            f"no candidate for {model!r} could take the call: "
            + "; ".join(f"{k}: {r}" for k, r in skipped)
        )

    # ------------------------------------------------------------------ complete
    async def complete(
        self,
        messages: Sequence[Message | Mapping[str, Any]] | str,
        model: str | None = None,
        *,
        priority: Priority | str | int | None = None,
        cache_control: CacheControl = "default",
        namespace: str | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> LLMResponse:
        """Answer a chat call.

        ``params`` are the request fields (temperature, top_p, max_tokens, stop, seed, tools,
        tool_choice, response_format); other keywords pass through to the provider's body.
        """
        prio = Priority.parse(priority)
        self._stats.request(prio)
        try:
            return await self._complete(
                messages, model, prio, cache_control, namespace, timeout, params
            )
        except LLMRouterError as exc:
            self._stats.failure(exc)
            raise

    async def _complete(
        self,
        messages: Any,
        model: str | None,
        prio: Priority,
        control: CacheControl,
        namespace: str | None,
        timeout: float | None,
        params: dict[str, Any],
    ) -> LLMResponse:
        request, input_tokens, candidates = self._prepare(messages, model, prio, False, params)
        hit = await self._cached(request, control, namespace)
        if hit is not None:
            return self._hit_response(hit)
        limit = timeout if timeout is not None else self.timeout
        deadline = None if limit is None else time.monotonic() + limit
        errors: list[ProviderError] = []
        skipped: list[tuple[str, str]] = []
        route: list[str] = []
        for deployment in candidates:
            admitted = await self._admit(deployment, request, input_tokens, prio, deadline)
            if isinstance(admitted, str):
                skipped.append((deployment.key, admitted))
                continue
            reservation, estimated, probe = admitted
            route.append(deployment.key)
            target = request.model_copy(update={"model": deployment.model})
            settled = False
            try:
                for attempt in range(self.retry.max_retries + 1):
                    try:
                        attempt_timeout = self._attempt_timeout(deployment, deadline)
                    except ProviderTimeoutError as exc:
                        # The deadline passed before this attempt was sent: not the deployment's
                        # fault, so no failure is recorded (the probe slot is freed below).
                        errors.append(exc)
                        break
                    try:
                        try:
                            async with asyncio.timeout(attempt_timeout):
                                response = await deployment.provider.acomplete(
                                    target, timeout=attempt_timeout
                                )
                        except TimeoutError:
                            raise ProviderTimeoutError(
                                f"no answer within {attempt_timeout:.1f}s",
                                provider=deployment.provider.name,
                            ) from None
                    except ProviderError as exc:
                        delay = self._retry_delay(deployment, exc, attempt, deadline, probe)
                        probe = 0  # the failure was the verdict
                        if delay is None:
                            errors.append(exc)
                            break
                        await asyncio.sleep(delay)
                        # Every attempt is a request for the rate limits (tpm was charged once).
                        if not await self._take_limit(deployment, 0, prio, deadline):
                            errors.append(exc)
                            break
                        continue
                    except UnsupportedInputError as exc:
                        route.pop()
                        skipped.append((deployment.key, f"{REFUSED}{exc}"))
                        break
                    response.route = list(route)
                    settlement = self._after_success(deployment, reservation, estimated, response)
                    probe = 0
                    settled = True  # before awaiting it: a cancel meanwhile must not settle again
                    await settlement
                    await self._store(request, response, control, namespace)
                    return response
            finally:
                deployment.gate.release()
                # Cancelled, refused the request, out of time or a bug: the probe had no verdict.
                deployment.breaker.release_probe(probe)
                if not settled:
                    settled = True
                    await self._release(deployment, reservation, estimated, 0, 0.0)
        raise self._final_error(request.model, errors, skipped)

    # ------------------------------------------------------------------ stream
    async def stream(
        self,
        messages: Sequence[Message | Mapping[str, Any]] | str,
        model: str | None = None,
        *,
        priority: Priority | str | int | None = None,
        cache_control: CacheControl = "default",
        namespace: str | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> AsyncIterator[StreamChunk]:
        """Stream an answer; the final chunk carries usage, cost, provider, model and cache flag.

        Falls back to the next candidate only before the first chunk; a failure after it raises
        :class:`StreamInterruptedError` carrying the partial text. Partial streams are never cached.
        """
        prio = Priority.parse(priority)
        self._stats.request(prio)
        inner = self._stream(messages, model, prio, cache_control, namespace, timeout, params)
        try:
            async for chunk in inner:
                yield chunk
        except LLMRouterError as exc:
            self._stats.failure(exc)
            raise
        finally:
            # A caller that stops reading closes this generator: close the inner one now (not
            # whenever it is collected) so its slot, budget reservation and probe are given back.
            await inner.aclose()

    async def _stream(
        self,
        messages: Any,
        model: str | None,
        prio: Priority,
        control: CacheControl,
        namespace: str | None,
        timeout: float | None,
        params: dict[str, Any],
    ) -> AsyncGenerator[StreamChunk, None]:
        request, input_tokens, candidates = self._prepare(messages, model, prio, True, params)
        hit = await self._cached(request, control, namespace)
        if hit is not None:
            for replayed in _replay(self._hit_response(hit)):
                yield replayed
            return
        limit = timeout if timeout is not None else self.timeout
        deadline = None if limit is None else time.monotonic() + limit
        errors: list[ProviderError] = []
        skipped: list[tuple[str, str]] = []
        route: list[str] = []
        for deployment in candidates:
            admitted = await self._admit(deployment, request, input_tokens, prio, deadline)
            if isinstance(admitted, str):
                skipped.append((deployment.key, admitted))
                continue
            reservation, estimated, probe = admitted
            route.append(deployment.key)
            target = request.model_copy(update={"model": deployment.model})
            accumulator = StreamAccumulator()
            started_output = False
            settled = False
            try:
                for attempt in range(self.retry.max_retries + 1):
                    started = time.perf_counter()
                    try:
                        attempt_timeout = self._attempt_timeout(deployment, deadline)
                    except ProviderTimeoutError as exc:
                        # The deadline passed before this attempt was sent: not the deployment's
                        # fault, so no failure is recorded (the probe slot is freed below).
                        errors.append(exc)
                        break
                    agen = deployment.provider.astream(target, timeout=attempt_timeout)
                    try:
                        first = await self._next(agen, deployment, deadline)
                    except ProviderError as exc:
                        await _aclose(agen)
                        delay = self._retry_delay(deployment, exc, attempt, deadline, probe)
                        probe = 0  # the failure was the verdict
                        if delay is None:
                            errors.append(exc)
                            break
                        await asyncio.sleep(delay)
                        # Every attempt is a request for the rate limits (tpm was charged once).
                        if not await self._take_limit(deployment, 0, prio, deadline):
                            errors.append(exc)
                            break
                        continue
                    except InvalidRequestError as exc:
                        await _aclose(agen)
                        if not isinstance(exc, UnsupportedInputError):
                            raise
                        route.pop()
                        skipped.append((deployment.key, f"{REFUSED}{exc}"))
                        break
                    deployment.stats.record_ttft((time.perf_counter() - started) * 1000.0)
                    chunk: StreamChunk | None = first
                    try:
                        while chunk is not None:
                            accumulator.add(chunk)
                            if chunk.is_final:
                                chunk.route = list(route)
                                response = accumulator.response()
                                response.route = list(route)
                                settlement = self._after_success(
                                    deployment, reservation, estimated, response
                                )
                                probe = 0
                                settled = True  # before awaiting it (see complete)
                                await settlement
                                chunk.cost_usd = response.cost_usd
                                chunk.usage = response.usage
                                await self._store(request, response, control, namespace)
                                started_output = True
                                yield chunk
                                return
                            started_output = True
                            yield chunk
                            chunk = await self._next(agen, deployment, deadline)
                        raise ProviderResponseError(
                            "the stream ended without a final chunk",
                            provider=deployment.provider.name,
                        )
                    except ProviderError as exc:
                        self._after_failure(deployment, exc, probe)
                        probe = 0
                        partial_cost = deployment.price.estimate(
                            estimated, count_tokens(accumulator.content, deployment.model)
                        )
                        settled = True
                        self._charge_partial(deployment, partial_cost)
                        await _shielded(self.budget.settle(reservation, partial_cost))
                        raise StreamInterruptedError(
                            f"the stream from {deployment.key} failed after it had started: {exc}",
                            partial_text=accumulator.content,
                            provider=deployment.provider.name,
                            cause=exc,
                        ) from exc
                    finally:
                        await _aclose(agen)
            finally:
                deployment.gate.release()
                # Abandoned, cancelled, refused the request, out of time or a bug: no verdict.
                deployment.breaker.release_probe(probe)
                if not settled:
                    # Abandoned by the caller mid-stream, or never started: bill what was streamed.
                    settled = True
                    partial = (
                        count_tokens(accumulator.content, deployment.model) if started_output else 0
                    )
                    cost = deployment.price.estimate(estimated, partial) if started_output else 0.0
                    self._charge_partial(deployment, cost)
                    await self._release(
                        deployment,
                        reservation,
                        estimated,
                        estimated + partial if started_output else 0,
                        cost,
                    )
        raise self._final_error(request.model, errors, skipped)

    async def _next(
        self, agen: AsyncIterator[StreamChunk], deployment: Deployment, deadline: float | None
    ) -> StreamChunk | None:
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            raise ProviderTimeoutError(
                "the call's overall deadline passed", provider=deployment.provider.name
            )
        try:
            async with asyncio.timeout(timeout):
                return await agen.__anext__()
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise ProviderTimeoutError(
                "the stream stalled past the deadline", provider=deployment.provider.name
            ) from None

    # ------------------------------------------------------------------ cache warmup
    async def warmup(
        self,
        entries: Sequence[WarmupEntry | Mapping[str, Any]],
        *,
        concurrency: int = 5,
        skip_cached: bool = True,
        progress: bool = True,
    ) -> dict[str, int]:
        """Pre-fill the cache (known answers are stored, others are asked once); see :func:`warmup`."""
        return await warmup(
            self, entries, concurrency=concurrency, skip_cached=skip_cached, progress=progress
        )

    def warmup_sync(
        self, entries: Sequence[WarmupEntry | Mapping[str, Any]], **kwargs: Any
    ) -> dict[str, int]:
        """Blocking twin of :meth:`warmup`."""
        return run_sync(self.warmup(entries, **kwargs))

    # ------------------------------------------------------------------ sync twins
    def complete_sync(
        self,
        messages: Sequence[Message | Mapping[str, Any]] | str,
        model: str | None = None,
        **kwargs: Any,
    ) -> LLMResponse:
        """Blocking twin of :meth:`complete`; works inside a running event loop (Jupyter) too."""
        hit = self._exact_hit_nowait(messages, model, **kwargs)
        if hit is not None:
            return hit
        return run_sync(self.complete(messages, model, **kwargs))

    def _exact_hit_nowait(
        self,
        messages: Any,
        model: str | None,
        *,
        priority: Priority | str | int | None = None,
        cache_control: CacheControl = "default",
        namespace: str | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> LLMResponse | None:
        """An exact cache hit answered on the calling thread, when the cache needs no I/O.

        The sync twins otherwise hand every call to the portal loop (a thread hop); an exact hit
        of the in-memory cache needs neither. ``None``: take the normal path, which also raises
        any error (nothing is counted here unless it is a hit).
        """
        cache = self.cache
        if cache is None or cache_control != "default":
            return None
        try:
            prio = Priority.parse(priority)
            request = self.build_request(messages, self.model_name(model), **params)
        except LLMRouterError:
            return None
        if not cache.accepts(request):
            return None
        hit = cache.lookup_exact_nowait(request, namespace=namespace)
        if hit is None:
            return None
        self._stats.request(prio)
        self._stats.cache_hit(hit.entry.cost_usd)
        return self._hit_response(hit)

    def stream_sync(
        self,
        messages: Sequence[Message | Mapping[str, Any]] | str,
        model: str | None = None,
        **kwargs: Any,
    ) -> Iterator[StreamChunk]:
        """Blocking twin of :meth:`stream`."""
        return iterate_sync(self.stream(messages, model, **kwargs))

    # ------------------------------------------------------------------ stats and lifecycle
    async def astats(self) -> dict[str, Any]:
        """Totals, spend, savings, budget, cache and per-deployment figures (async)."""
        snapshot: dict[str, Any] = self._stats.snapshot()
        snapshot["budget"] = {
            "limits": self.budget.budget.model_dump(),
            "spent": await self.budget.spent(),
            "remaining": await self.budget.remaining(),
        }
        cache = self.cache.stats.snapshot() if self.cache is not None else None
        snapshot["cache"] = cache
        lookups = (cache or {}).get("hits", 0) + (cache or {}).get("misses", 0)
        snapshot["cache_hit_rate"] = (cache or {}).get("hits", 0) / lookups if lookups else 0.0
        snapshot["deployments"] = {
            key: {
                **d.stats.snapshot(),
                "circuit": d.breaker.state.value,
                "provider": d.provider.name,
                "model": d.model,
                "active": d.gate.active,
                "queued": d.gate.queued,
            }
            for key, d in self._deployments.items()
        }
        return snapshot

    def stats(self) -> dict[str, Any]:
        """Blocking twin of :meth:`astats`."""
        return run_sync(self.astats())

    async def aclose(self) -> None:
        """Close every provider's connections, the cache and a Redis budget store."""
        for provider in self.providers.values():
            await provider.aclose()
        if self.cache is not None:
            await self.cache.aclose()
        closer = getattr(self.budget.store, "aclose", None)
        if closer is not None:
            with suppress(Exception):
                await closer()

    def close(self) -> None:
        """Blocking twin of :meth:`aclose`."""
        run_sync(self.aclose())
        for provider in self.providers.values():
            provider.close()

    async def __aenter__(self) -> LLMRouter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> LLMRouter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LLMRouter providers={sorted(self.providers)} strategy={self.strategy_name!r}>"


def _replay(response: LLMResponse) -> Iterator[StreamChunk]:
    """A cached answer as a stream: its text in pieces, then a final chunk flagged ``cache_hit``."""
    text = response.content or ""
    step = 32
    for start in range(0, len(text), step):
        yield StreamChunk(delta=text[start : start + step], cache_hit=True)
    yield StreamChunk(
        is_final=True,
        finish_reason=response.finish_reason,
        tool_calls=response.tool_calls,
        usage=response.usage,
        provider_used=response.provider_used,
        model_used=response.model_used,
        latency_ms=0.0,
        cost_usd=0.0,
        cache_hit=True,
        saved_usd=response.saved_usd,
        route=response.route,
    )


_SETTLING: set[asyncio.Future[None]] = set()
"""Settlements running on after their caller was cancelled (referenced until they end)."""


async def _shielded(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` to the end even if the caller is cancelled meanwhile; the cancel still reaches
    the caller (at once), while ``work`` finishes in the background."""
    task = asyncio.ensure_future(work)
    _SETTLING.add(task)
    task.add_done_callback(_SETTLING.discard)
    await asyncio.shield(task)


async def _aclose(agen: AsyncIterator[StreamChunk]) -> None:
    closer = getattr(agen, "aclose", None)
    if closer is not None:
        with suppress(Exception):
            await closer()


def _env_help() -> str:
    names = ", ".join(" or ".join(v) for _, v, _ in ENV_PROVIDERS)
    return f"set one of {names}, or point LLM_ROUTER_CONFIG at a JSON config file"
