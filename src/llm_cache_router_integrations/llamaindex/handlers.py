"""Cost tracking on LlamaIndex's instrumentation, and budget enforcement on its callback manager.

* :class:`CostEventHandler` is an instrumentation ``BaseEventHandler``: attach it to the root
  dispatcher and it totals tokens, USD, cache hits, saved USD, fallbacks, errors and
  time-to-first-token of streams, per model. In-flight state is keyed by span id and released on
  the call's end event, an ``ExceptionEvent`` or a ``SpanDropEvent``, so nothing accumulates.
* :class:`BudgetCallbackHandler` is a legacy ``BaseCallbackHandler``. The instrumentation
  dispatcher swallows handler errors, but the legacy callback manager does not, so only a
  callback handler can *block* a call: on the start of an LLM event it reserves the call's
  worst-case cost in a core :class:`BudgetManager` and raises :class:`BudgetExceededError` before
  any HTTP request; on the end it settles the reservation to the real cost.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.callbacks.token_counting import get_tokens_from_response
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.exception import ExceptionEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatInProgressEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionInProgressEvent,
    LLMCompletionStartEvent,
)
from llama_index_instrumentation import get_dispatcher
from llama_index_instrumentation.events.span import SpanDropEvent
from llama_index_instrumentation.span import active_span_id
from llama_index_instrumentation.span_handlers import BaseSpanHandler
from pydantic import Field, PrivateAttr

from .._sync import run_sync
from ..cost.budget import Budget, BudgetManager, BudgetStore, Reservation
from ..cost.pricing import PricingTable, default_pricing
from ..cost.tokens import count_message_tokens
from ..errors import LLMRouterError
from ..router import LLMRouter
from ..types import Message, ToolDefinition
from .llm import RouterLLM
from .messages import to_router_messages

__all__ = ["BudgetCallbackHandler", "CostEventHandler", "ModelCost"]


# ---------------------------------------------------------------------------------- cost events
@dataclass(slots=True)
class ModelCost:
    """Totals of one model. Tokens and USD count billed calls only; cache hits count apart."""

    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cache_hits: int = 0
    saved_usd: float = 0.0
    fallbacks: int = 0
    streams: int = 0
    ttft_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain values, with the mean and last time to first token of streams."""
        return {
            "calls": self.calls,
            "errors": self.errors,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "cost_usd": round(self.cost_usd, 12),
            "cache_hits": self.cache_hits,
            "saved_usd": round(self.saved_usd, 12),
            "fallbacks": self.fallbacks,
            "streams": self.streams,
            "mean_ttft_ms": sum(self.ttft_ms) / len(self.ttft_ms) if self.ttft_ms else None,
            "last_ttft_ms": self.ttft_ms[-1] if self.ttft_ms else None,
        }


@dataclass(slots=True)
class _OpenSpan:
    model: str
    started: float
    ttft_ms: float | None = None


_STARTS = (LLMChatStartEvent, LLMCompletionStartEvent)
_PROGRESS = (LLMChatInProgressEvent, LLMCompletionInProgressEvent)
_ENDS = (LLMChatEndEvent, LLMCompletionEndEvent)
_TTFT_SAMPLES = 256
_MAX_SPANS = 100_000


class _SpanParents(BaseSpanHandler[Any]):
    """Parent of every open span, so an LLM call made inside another one can be recognised."""

    _parents: OrderedDict[str, str | None] = PrivateAttr(default_factory=OrderedDict)
    _parents_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "LLMCacheRouterSpanParents"

    def span_enter(
        self,
        id_: str,
        bound_args: Any,
        instance: Any = None,
        parent_id: str | None = None,
        tags: Any = None,
        **kwargs: Any,
    ) -> None:
        """Remember the span's parent."""
        with self._parents_lock:
            self._parents[id_] = parent_id
            while len(self._parents) > _MAX_SPANS:
                self._parents.popitem(last=False)

    def span_exit(
        self, id_: str, bound_args: Any, instance: Any = None, result: Any = None, **kwargs: Any
    ) -> None:
        """Forget the span."""
        with self._parents_lock:
            self._parents.pop(id_, None)

    def span_drop(
        self, id_: str, bound_args: Any, instance: Any = None, err: Any = None, **kwargs: Any
    ) -> None:
        """Forget the span."""
        with self._parents_lock:
            self._parents.pop(id_, None)

    def new_span(self, *args: Any, **kwargs: Any) -> None:
        """No span objects are kept."""

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        """No span objects are kept."""

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        """No span objects are kept."""

    def ancestors(self, span: str) -> list[str]:
        """The open spans ``span`` runs inside, innermost first."""
        found: list[str] = []
        with self._parents_lock:
            parent = self._parents.get(span)
            while parent is not None and len(found) < 1000:
                found.append(parent)
                parent = self._parents.get(parent)
        return found


_PARENTS = _SpanParents()


def _track_span_parents() -> None:
    root = get_dispatcher()
    if not any(h is _PARENTS for h in root.span_handlers):
        root.add_span_handler(_PARENTS)


def _tokens(response: Any) -> tuple[int, int]:
    extra = getattr(response, "additional_kwargs", None) or {}
    if "prompt_tokens" in extra or "completion_tokens" in extra:
        return int(extra.get("prompt_tokens") or 0), int(extra.get("completion_tokens") or 0)
    try:
        prompt, completion = get_tokens_from_response(response)
        return int(prompt or 0), int(completion or 0)
    except Exception:  # an LLM with an unusual raw payload: count nothing rather than fail
        return 0, 0


class CostEventHandler(BaseEventHandler):
    """Per-model tokens, USD, cache hits, saved USD, fallbacks and stream TTFT.

    Attach it to the root dispatcher (``handler.attach()`` or
    ``get_dispatcher().add_event_handler(handler)``). Works with any LlamaIndex LLM; the cost,
    cache and route figures come from :class:`RouterLLM` responses. Thread-safe.
    """

    max_open_spans: int = Field(
        default=10_000, ge=1, description="bound on in-flight calls tracked (oldest dropped)"
    )

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _open: OrderedDict[str, _OpenSpan] = PrivateAttr(default_factory=OrderedDict)
    _models: dict[str, ModelCost] = PrivateAttr(default_factory=dict)
    _nested: OrderedDict[str, None] = PrivateAttr(default_factory=OrderedDict)

    def model_post_init(self, context: Any, /) -> None:
        """Start tracking span parents (to count only the outermost of nested LLM calls)."""
        _track_span_parents()

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "CostEventHandler"

    # -------------------------------------------------------------- dispatcher wiring
    def attach(self) -> CostEventHandler:
        """Add this handler to the root instrumentation dispatcher; returns itself."""
        root = get_dispatcher()
        if not any(h is self for h in root.event_handlers):
            root.add_event_handler(self)
        return self

    def detach(self) -> None:
        """Remove this handler from the root dispatcher."""
        root = get_dispatcher()
        root.event_handlers = [h for h in root.event_handlers if h is not self]

    # -------------------------------------------------------------- events
    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        """Update the totals from one event."""
        span = event.span_id or ""
        now = time.perf_counter()
        with self._lock:
            if span in self._nested:  # an LLM call inside another one (chat through complete)
                if isinstance(event, _ENDS | ExceptionEvent | SpanDropEvent):
                    del self._nested[span]
                return
            if isinstance(event, _STARTS):
                if any(parent in self._open for parent in _PARENTS.ancestors(span)):
                    self._nested[span] = None
                    while len(self._nested) > self.max_open_spans:
                        self._nested.popitem(last=False)
                    return
                self._start(span, event.model_dict, now)
            elif isinstance(event, _PROGRESS):
                opened = self._open.get(span)
                if opened is not None and opened.ttft_ms is None and event.response.delta:
                    opened.ttft_ms = (now - opened.started) * 1000.0
            elif isinstance(event, _ENDS):
                self._end(span, event.response)
            elif isinstance(event, ExceptionEvent | SpanDropEvent):
                opened = self._open.pop(span, None)
                if opened is not None:
                    self._model(opened.model).errors += 1

    def _start(self, span: str, model_dict: dict[str, Any], now: float) -> None:
        model = str(model_dict.get("model") or model_dict.get("model_name") or "unknown")
        self._open[span] = _OpenSpan(model=model, started=now)
        while len(self._open) > self.max_open_spans:
            self._open.popitem(last=False)

    def _end(self, span: str, response: Any) -> None:
        opened = self._open.pop(span, None)
        extra = (getattr(response, "additional_kwargs", None) or {}) if response else {}
        model = str(extra.get("model") or (opened.model if opened else "unknown"))
        totals = self._model(model)
        totals.calls += 1
        if opened is not None and opened.ttft_ms is not None:
            totals.streams += 1
            totals.ttft_ms.append(opened.ttft_ms)
            del totals.ttft_ms[:-_TTFT_SAMPLES]
        if extra.get("cache_hit"):
            totals.cache_hits += 1
            totals.saved_usd += float(extra.get("saved_usd") or 0.0)
            return
        if len(extra.get("route") or ()) > 1:
            totals.fallbacks += 1
        if response is not None:
            prompt, completion = _tokens(response)
            totals.input_tokens += prompt
            totals.output_tokens += completion
        totals.cost_usd += float(extra.get("cost_usd") or 0.0)

    def _model(self, model: str) -> ModelCost:
        return self._models.setdefault(model, ModelCost())

    # -------------------------------------------------------------- results
    @property
    def open_spans(self) -> int:
        """Calls started but not yet ended."""
        with self._lock:
            return len(self._open)

    def by_model(self) -> dict[str, dict[str, Any]]:
        """Totals per model that answered (plain values)."""
        with self._lock:
            return {name: totals.as_dict() for name, totals in self._models.items()}

    def totals(self) -> dict[str, Any]:
        """Totals over every model."""
        with self._lock:
            merged = ModelCost()
            for totals in self._models.values():
                merged.calls += totals.calls
                merged.errors += totals.errors
                merged.input_tokens += totals.input_tokens
                merged.output_tokens += totals.output_tokens
                merged.cost_usd += totals.cost_usd
                merged.cache_hits += totals.cache_hits
                merged.saved_usd += totals.saved_usd
                merged.fallbacks += totals.fallbacks
                merged.streams += totals.streams
                merged.ttft_ms += totals.ttft_ms
            return merged.as_dict()

    def reset(self) -> None:
        """Forget every total (in-flight calls are kept)."""
        with self._lock:
            self._models.clear()


# ---------------------------------------------------------------------------------- budgets
_NOT_LLM: list[CBEventType] = [t for t in CBEventType if t is not CBEventType.LLM]


@dataclass(slots=True)
class _Pending:
    reservation: Reservation
    model: str
    span: str | None = None


class BudgetCallbackHandler(BaseCallbackHandler):
    """Blocks LLM calls that could overspend a budget, before any HTTP request.

    Args:
        budget: ``{"daily_usd": ..., "monthly_usd": ...}``, a :class:`Budget`, or a ready
            :class:`BudgetManager` (e.g. shared by several handlers). Use a budget of its own,
            not the router's ``router.budget``: the router already records its calls there.
        store: where the counters live when ``budget`` is not a manager (default: in memory;
            a ``RedisBudgetStore`` shares them across processes).
        router: an :class:`LLMRouter` or :class:`RouterLLM` whose candidates and prices give
            the worst case; without one, the pricing table and the ``model``/``candidates`` of
            the call's payload are used (so it works for other LlamaIndex LLMs too).
        pricing: the prices used without a router (default: the shipped table).

    On the start of an LLM event the worst case (estimated input tokens plus ``max_tokens``, or
    the model's maximum output, at the most expensive candidate's price) is reserved, raising
    :class:`BudgetExceededError` when it does not fit; on the end the reservation is settled to
    the response's ``cost_usd`` (or its token usage at the model's price), or released on error.
    """

    def __init__(
        self,
        budget: Budget | BudgetManager | dict[str, float | None] | None = None,
        *,
        store: BudgetStore | None = None,
        router: LLMRouter | RouterLLM | None = None,
        pricing: PricingTable | None = None,
    ) -> None:
        super().__init__(event_starts_to_ignore=_NOT_LLM, event_ends_to_ignore=_NOT_LLM)
        if isinstance(budget, BudgetManager):
            self.manager = budget
        else:
            limits = budget if isinstance(budget, Budget) else Budget.model_validate(budget or {})
            self.manager = BudgetManager(limits, store)
        self._router_source = router
        self._pricing = pricing
        self._pending: dict[str, _Pending] = {}
        self._nested: set[str] = set()
        self._lock = threading.Lock()
        _track_span_parents()

    # -------------------------------------------------------------- helpers
    @property
    def router(self) -> LLMRouter | None:
        """The router used for estimates, if any."""
        source = self._router_source
        return source.router if isinstance(source, RouterLLM) else source

    @property
    def pricing(self) -> PricingTable:
        """The prices used when no router is given (or it cannot price the call)."""
        if self._pricing is None:
            router = self.router
            self._pricing = router.pricing if router is not None else default_pricing()
        return self._pricing

    @staticmethod
    def _messages(payload: dict[str, Any]) -> list[Message]:
        if EventPayload.MESSAGES in payload:
            return to_router_messages(payload[EventPayload.MESSAGES])
        return [Message(role="user", content=str(payload.get(EventPayload.PROMPT) or ""))]

    def estimate(self, payload: dict[str, Any]) -> tuple[float, str]:
        """The worst-case USD of the call an LLM start payload describes, and its model."""
        serialized: dict[str, Any] = dict(payload.get(EventPayload.SERIALIZED) or {})
        kwargs: dict[str, Any] = dict(payload.get(EventPayload.ADDITIONAL_KWARGS) or {})
        model = str(kwargs.get("model") or serialized.get("model") or serialized.get("model_name"))
        max_tokens = kwargs.get("max_tokens") or serialized.get("max_tokens")
        tools = kwargs.get("tools")
        messages = self._messages(payload)
        router = self.router
        if router is not None:
            try:
                cost = router.estimate_cost(
                    messages,
                    model,
                    priority=serialized.get("priority"),
                    max_tokens=max_tokens,
                    tools=tools,
                )
                return cost, model
            except LLMRouterError:
                pass  # not a model this router serves: price it from the table below
        definitions: list[ToolDefinition] = []
        for tool in tools or ():
            try:
                definitions.append(ToolDefinition.model_validate(tool))
            except ValueError:
                continue
        input_tokens = count_message_tokens(messages, model, definitions or None)
        keys = serialized.get("candidates") or [model]
        prices = [self.pricing.price(str(key)) for key in keys]
        cost = max(price.worst_case(input_tokens, max_tokens) for price in prices)
        return cost, model

    def actual_cost(self, payload: dict[str, Any], model: str) -> float:
        """The real USD of an ended call: its ``cost_usd``, or its usage at the model's price."""
        response = payload.get(EventPayload.RESPONSE) or payload.get(EventPayload.COMPLETION)
        if response is None:
            return 0.0
        extra = getattr(response, "additional_kwargs", None) or {}
        if "cost_usd" in extra:
            return float(extra["cost_usd"] or 0.0)
        prompt, completion = _tokens(response)
        return self.pricing.price(model).estimate(prompt, completion)

    # -------------------------------------------------------------- callback protocol
    def on_event_start(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        parent_id: str = "",
        **kwargs: Any,
    ) -> str:
        """Reserve the worst case of an LLM call or raise :class:`BudgetExceededError`."""
        if event_type is not CBEventType.LLM:
            return event_id
        span = active_span_id.get()
        with self._lock:
            open_spans = {p.span for p in self._pending.values() if p.span is not None}
            if span is not None and open_spans.intersection(_PARENTS.ancestors(span)):
                # An LLM call made by another one (a CustomLLM's chat through its complete):
                # the outer call's reservation covers it.
                self._nested.add(event_id)
                return event_id
        estimate, model = self.estimate(payload or {})
        reservation = run_sync(self.manager.reserve(estimate))  # raises BudgetExceededError
        with self._lock:
            self._pending[event_id] = _Pending(reservation, model, span)
        return event_id

    def on_event_end(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        **kwargs: Any,
    ) -> None:
        """Settle the reservation to the real cost (or release it when the call failed)."""
        if event_type is not CBEventType.LLM:
            return
        payload = payload or {}
        with self._lock:
            if event_id in self._nested:
                self._nested.discard(event_id)
                return
            pending = self._pending.pop(event_id, None)
        failed = EventPayload.EXCEPTION in payload
        if pending is None:
            cost = 0.0 if failed else self.actual_cost(payload, "unknown")
            if cost > 0:
                run_sync(self.manager.record(cost))
            return
        cost = 0.0 if failed else self.actual_cost(payload, pending.model)
        run_sync(self.manager.settle(pending.reservation, cost))

    def start_trace(self, trace_id: str | None = None) -> None:
        """Nothing to do at the start of a trace."""

    def end_trace(
        self,
        trace_id: str | None = None,
        trace_map: dict[str, list[str]] | None = None,
    ) -> None:
        """Nothing to do at the end of a trace."""

    @property
    def pending(self) -> int:
        """Calls whose reservation is not settled yet."""
        with self._lock:
            return len(self._pending)

    async def aspent(self) -> dict[str, float]:
        """Spent plus reserved USD in the current daily and monthly windows."""
        return await self.manager.spent()

    def spent(self) -> dict[str, float]:
        """Blocking twin of :meth:`aspent`."""
        return run_sync(self.manager.spent())
