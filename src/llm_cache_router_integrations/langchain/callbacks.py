"""LangChain callback handlers for cost, budgets and streaming speed, for any chat model or LLM.

They use the core's pricing table (:class:`PricingTable`), token counting (offline tiktoken) and
budget manager (:class:`BudgetManager`), so a ``ChatOpenAI`` or ``ChatAnthropic`` is priced and
budgeted exactly as the router prices and budgets its own calls.

* :class:`CostTrackingCallbackHandler`: tokens and USD per model. Usage comes from the message's
  ``usage_metadata`` or the ``llm_output`` token usage; without either it is counted with
  tiktoken. A :class:`ChatRouter` answer costs what the router charged
  (``response_metadata["cost_usd"]``, its own prices); other models are priced from the table. Cache hits (``response_metadata["cache_hit"]`` from :class:`ChatRouter`, or a hit of
  LangChain's own cache) cost nothing and count their avoided cost as saved.
* :class:`BudgetCallbackHandler`: reserves a call's worst-case cost (prompt tokens plus
  ``max_tokens`` at the output price) in ``on_chat_model_start``, so a call that could overspend
  raises :class:`BudgetExceededError` before it reaches the provider; the reservation is settled
  to the real cost when the call ends (a failed or abandoned stream: to its prompt plus the
  tokens streamed so far; other failures: released). With ``raise_error=False`` an over-budget
  call goes ahead unreserved and its real cost is recorded.
* :class:`StreamingStatsCallbackHandler`: time to first token and tokens per second per run.

All three are thread-safe and run inline on the event loop in async code (``run_inline``): they
never await and hold their lock only for a dictionary update.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import (
    ChatGeneration,
    ChatGenerationChunk,
    Generation,
    GenerationChunk,
    LLMResult,
)

from .._sync import run_sync
from ..cost.budget import Budget, BudgetManager, BudgetStore, Reservation
from ..cost.pricing import PricingTable, default_pricing
from ..cost.tokens import count_message_tokens, count_tokens
from ..errors import BudgetExceededError, StreamInterruptedError
from ..types import ToolDefinition, Usage
from .messages import from_langchain, to_usage

__all__ = [
    "BudgetCallbackHandler",
    "CostTrackingCallbackHandler",
    "ModelUsage",
    "RunStreamStats",
    "StreamingStatsCallbackHandler",
]

_UNKNOWN_MODEL = "unknown"
_MAX_OPEN_RUNS = 10_000
"""Bound on the runs a handler tracks between start and end (the oldest are dropped): a run that
never ends (refused by another handler, interrupted by ``KeyboardInterrupt``) cannot leak."""


# --------------------------------------------------------------------------- shared helpers
def _pricing(pricing: PricingTable | Mapping[str, Any] | None) -> PricingTable:
    if isinstance(pricing, PricingTable):
        return pricing
    table = default_pricing()
    if pricing:
        table.update(pricing)
    return table


def _model_of(
    invocation_params: Mapping[str, Any] | None, metadata: Mapping[str, Any] | None
) -> str:
    params = invocation_params or {}
    for key in ("model", "model_name", "model_id", "deployment_name"):
        value = params.get(key)
        if isinstance(value, str) and value:
            return value
    name = (metadata or {}).get("ls_model_name")
    return name if isinstance(name, str) and name else _UNKNOWN_MODEL


def _tools_of(invocation_params: Mapping[str, Any] | None) -> list[ToolDefinition]:
    tools: list[ToolDefinition] = []
    for tool in (invocation_params or {}).get("tools") or ():
        with contextlib.suppress(Exception):  # a tool in a provider-specific shape: not counted
            tools.append(ToolDefinition.model_validate(tool))
    return tools


def _prompt_tokens(messages: Sequence[BaseMessage], model: str, tools: list[ToolDefinition]) -> int:
    try:
        return count_message_tokens(from_langchain(messages), model, tools)
    except Exception:  # content the core cannot represent: count the text
        return 3 + sum(3 + count_tokens(m.text, model) for m in messages)


def _llm_output_usage(llm_output: Mapping[str, Any] | None) -> Usage | None:
    """Usage from a provider's ``llm_output`` (OpenAI ``token_usage`` or Anthropic ``usage``)."""
    if not llm_output:
        return None
    raw = llm_output.get("token_usage") or llm_output.get("usage")
    if not isinstance(raw, Mapping):
        return None
    prompt = raw.get("prompt_tokens", raw.get("input_tokens"))
    completion = raw.get("completion_tokens", raw.get("output_tokens"))
    if prompt is None and completion is None:
        return None
    total = raw.get("total_tokens")
    return Usage.of(
        int(prompt or 0), int(completion or 0), total_tokens=None if total is None else int(total)
    )


@dataclass(slots=True)
class _Batch:
    """The runs LangChain started for one ``generate`` call of several prompts.

    LangChain reports a text LLM's batch usage once: the first prompt's ``llm_output`` carries
    the whole batch's ``token_usage``, the others an empty one (``LLMResult.flatten``).
    """

    size: int
    members: list[UUID] = field(default_factory=list)
    usage_reported: bool = False


@dataclass(slots=True)
class _Run:
    model: str
    prompt_tokens: int
    max_tokens: int | None = None
    reservation: Reservation | None = None
    over_budget: bool = False  # log-only budget: the call went ahead without a reservation
    batch: _Batch | None = None
    streamed: list[str] = field(default_factory=list)


class _RunTable:
    """Runs between start and end, bounded, with the batches they belong to."""

    def __init__(self) -> None:
        self.runs: OrderedDict[UUID, _Run] = OrderedDict()
        self._open_batches: dict[tuple[int, UUID | None, int], _Batch] = {}

    def __len__(self) -> int:
        return len(self.runs)

    def add(self, run_id: UUID, run: _Run, parent_run_id: UUID | None, batch_size: Any) -> None:
        """Track ``run``; runs of one multi-prompt call start in turn on one thread."""
        if isinstance(batch_size, int) and batch_size > 1:
            key = (threading.get_ident(), parent_run_id, batch_size)
            batch = self._open_batches.get(key)
            if batch is None:
                batch = self._open_batches[key] = _Batch(batch_size)
            batch.members.append(run_id)
            if len(batch.members) >= batch.size:
                del self._open_batches[key]
            run.batch = batch
        self.runs[run_id] = run
        while len(self.runs) > _MAX_OPEN_RUNS:
            self.runs.popitem(last=False)

    def pop(self, run_id: UUID) -> _Run | None:
        return self.runs.pop(run_id, None)

    def get(self, run_id: UUID) -> _Run | None:
        return self.runs.get(run_id)

    def forget(self, run_ids: Iterable[UUID]) -> list[_Run]:
        """Drop runs that will never end (and the unfinished batch they started)."""
        dropped = [run for run in map(self.pop, run_ids) if run is not None]
        batches = {id(run.batch) for run in dropped if run.batch is not None}
        for key, batch in list(self._open_batches.items()):
            if id(batch) in batches:
                del self._open_batches[key]
        return dropped


_TRACKERS: weakref.WeakSet[CostTrackingCallbackHandler | StreamingStatsCallbackHandler] = (
    weakref.WeakSet()
)
_TRACKERS_LOCK = threading.Lock()


def _forget_refused(run_ids: list[UUID]) -> None:
    """Tell every cost and streaming handler that runs refused by a budget will never end."""
    with _TRACKERS_LOCK:
        trackers = list(_TRACKERS)
    for tracker in trackers:
        tracker._forget(run_ids)


def _register(tracker: CostTrackingCallbackHandler | StreamingStatsCallbackHandler) -> None:
    with _TRACKERS_LOCK:
        _TRACKERS.add(tracker)


def _partial_cost(
    run: _Run, error: BaseException, response: Any, pricing: PricingTable
) -> tuple[Usage, float] | None:
    """The usage and cost of a stream that failed or was abandoned after output started.

    The router charges such a stream its prompt plus the tokens streamed so far; the text comes
    from :class:`StreamInterruptedError`, else the tokens this handler saw, else the partial
    generation LangChain passes with the error.
    """
    text = ""
    if isinstance(error, StreamInterruptedError):
        text = error.partial_text
    if not text:
        text = "".join(run.streamed)
    if not text and isinstance(response, LLMResult):
        text = "".join(g[0].text for g in response.generations if g)
    if not text:
        return None
    usage = Usage.of(run.prompt_tokens, count_tokens(text, run.model))
    return usage, pricing.cost(run.model, usage)


def _max_tokens(invocation_params: Mapping[str, Any] | None) -> int | None:
    params = invocation_params or {}
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens", "num_predict"):
        value = params.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _chat_run(
    messages: list[list[BaseMessage]],
    invocation_params: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
) -> _Run:
    """A chat run's model, prompt tokens (tools included) and output limit."""
    model = _model_of(invocation_params, metadata)
    tokens = _prompt_tokens(messages[0] if messages else [], model, _tools_of(invocation_params))
    return _Run(model, tokens, _max_tokens(invocation_params))


def _text_run(
    prompts: list[str],
    invocation_params: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
) -> _Run:
    """A text LLM run's model, prompt tokens and output limit."""
    model = _model_of(invocation_params, metadata)
    tokens = sum(count_tokens(p, model) for p in prompts)
    return _Run(model, tokens, _max_tokens(invocation_params))


@dataclass(slots=True)
class _Outcome:
    """One generation's model, usage, cost and cache status."""

    model: str
    usage: Usage
    cost_usd: float
    cache_hit: bool
    saved_usd: float
    counted: bool  # usage counted locally with tiktoken (the provider reported none)


def _outcomes(response: LLMResult, run: _Run | None, pricing: PricingTable) -> list[_Outcome]:
    """What each prompt of ``response`` used and cost (the first generation of each)."""
    llm_output = response.llm_output or {}
    output_usage = _llm_output_usage(llm_output)
    results: list[_Outcome] = []
    for generations in response.generations:
        if not generations:
            continue
        generation = generations[0]
        message = generation.message if isinstance(generation, ChatGeneration) else None
        metadata: Mapping[str, Any] = message.response_metadata if message is not None else {}
        usage_meta = getattr(message, "usage_metadata", None)
        model = str(
            metadata.get("model_name")
            or llm_output.get("model_name")
            or llm_output.get("model")
            or (run.model if run else _UNKNOWN_MODEL)
        )
        usage = to_usage(usage_meta) or output_usage
        if (
            usage is None
            and run is not None
            and run.batch is not None
            and run.batch.usage_reported
            and llm_output.get("token_usage") == {}
        ):
            usage = Usage.of(0, 0)  # in the batch total the first prompt of the batch reported
        counted = usage is None
        if usage is None:
            usage = Usage.of(run.prompt_tokens if run else 0, count_tokens(generation.text, model))
        reported = metadata.get("cost_usd")  # ChatRouter: what the router charged
        if isinstance(reported, int | float) and not isinstance(reported, bool):
            full_cost = float(reported)
        else:
            full_cost = pricing.cost(model, usage)
        hit = metadata.get("cache_hit") is True or (
            usage_meta is not None and usage_meta.get("total_cost") == 0
        )
        saved = float(metadata.get("saved_usd") or full_cost) if hit else 0.0
        results.append(_Outcome(model, usage, 0.0 if hit else full_cost, hit, saved, counted))
    if output_usage is not None and run is not None and run.batch is not None:
        run.batch.usage_reported = True
    return results


# --------------------------------------------------------------------------- cost tracking
@dataclass(slots=True)
class ModelUsage:
    """Totals of one model: calls, tokens, USD spent, cache hits and USD saved by them."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    cache_hits: int = 0
    saved_usd: float = 0.0
    estimated_calls: int = 0
    """Calls whose usage was counted with tiktoken because the provider reported none."""


class CostTrackingCallbackHandler(BaseCallbackHandler):
    """Tokens and USD per model for every LLM and chat-model run it sees.

    Args:
        pricing: a :class:`PricingTable` or price overrides
            (``{"my-model": {"input": 1.0, "output": 2.0}}``, USD per 1M tokens).

    Example:
        ```python
        costs = CostTrackingCallbackHandler()
        chain.invoke(inputs, config={"callbacks": [costs]})
        print(costs.total_cost_usd, costs.by_model)
        ```
    """

    run_inline = True

    def __init__(self, pricing: PricingTable | Mapping[str, Any] | None = None) -> None:
        self.pricing = _pricing(pricing)
        self._lock = threading.Lock()
        self._runs = _RunTable()
        self._models: dict[str, ModelUsage] = {}
        _register(self)

    def _forget(self, run_ids: list[UUID]) -> None:
        with self._lock:
            self._runs.forget(run_ids)

    # ------------------------------------------------------------------ callbacks
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        invocation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Remember the run's model and its prompt size (for providers that report no usage)."""
        run = _chat_run(messages, invocation_params, metadata)
        with self._lock:
            self._runs.add(run_id, run, kwargs.get("parent_run_id"), kwargs.get("batch_size"))

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        invocation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Remember a text LLM run's model and prompt size."""
        run = _text_run(prompts, invocation_params, metadata)
        with self._lock:
            self._runs.add(run_id, run, kwargs.get("parent_run_id"), kwargs.get("batch_size"))

    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        **kwargs: Any,
    ) -> Any:
        """Collect the streamed text (an interrupted stream is charged for it)."""
        _collect(self._lock, self._runs, run_id, token, chunk)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> Any:
        """Add the run's usage and cost to its model's totals."""
        with self._lock:
            run = self._runs.pop(run_id)
        outcomes = _outcomes(response, run, self.pricing)
        with self._lock:
            for outcome in outcomes:
                totals = self._models.setdefault(outcome.model, ModelUsage())
                totals.calls += 1
                totals.cache_hits += int(outcome.cache_hit)
                totals.saved_usd += outcome.saved_usd
                totals.estimated_calls += int(outcome.counted)
                if outcome.cache_hit:
                    continue  # a hit uses no provider tokens
                totals.input_tokens += outcome.usage.input_tokens
                totals.output_tokens += outcome.usage.output_tokens
                totals.total_tokens += outcome.usage.total_tokens
                totals.cached_input_tokens += outcome.usage.cached_input_tokens
                totals.reasoning_tokens += outcome.usage.reasoning_tokens
                totals.cost_usd += outcome.cost_usd

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> Any:
        """Count what a stream cost before it failed or was abandoned; forget other failures.

        The prompt plus the tokens streamed so far are counted (with tiktoken, as the router
        charges an interrupted stream) as an estimated call.
        """
        with self._lock:
            run = self._runs.pop(run_id)
        if run is None:
            return
        partial = _partial_cost(run, error, kwargs.get("response"), self.pricing)
        if partial is None:
            return
        usage, cost = partial
        with self._lock:
            totals = self._models.setdefault(run.model, ModelUsage())
            totals.calls += 1
            totals.estimated_calls += 1
            totals.input_tokens += usage.input_tokens
            totals.output_tokens += usage.output_tokens
            totals.total_tokens += usage.total_tokens
            totals.cost_usd += cost

    # ------------------------------------------------------------------ results
    @property
    def by_model(self) -> dict[str, dict[str, Any]]:
        """A snapshot of the totals per model (the model that answered, when it is known)."""
        with self._lock:
            return {model: asdict(totals) for model, totals in self._models.items()}

    def _sum(self, name: str) -> Any:
        with self._lock:
            return sum(getattr(t, name) for t in self._models.values())

    @property
    def total_cost_usd(self) -> float:
        """USD spent across every model."""
        return float(self._sum("cost_usd"))

    @property
    def saved_usd(self) -> float:
        """USD that cache hits avoided."""
        return float(self._sum("saved_usd"))

    @property
    def total_tokens(self) -> int:
        """Provider tokens used across every model (cache hits use none)."""
        return int(self._sum("total_tokens"))

    @property
    def calls(self) -> int:
        """Completed runs, cache hits included."""
        return int(self._sum("calls"))

    @property
    def cache_hits(self) -> int:
        """Runs answered from a cache."""
        return int(self._sum("cache_hits"))

    def totals(self) -> dict[str, Any]:
        """Calls, cache hits, tokens, spent and saved USD across every model."""
        return {
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "input_tokens": int(self._sum("input_tokens")),
            "output_tokens": int(self._sum("output_tokens")),
            "total_tokens": self.total_tokens,
            "cost_usd": self.total_cost_usd,
            "saved_usd": self.saved_usd,
        }

    def reset(self) -> None:
        """Forget every total."""
        with self._lock:
            self._models.clear()

    def __repr__(self) -> str:
        return (
            f"<CostTrackingCallbackHandler calls={self.calls} cost_usd={self.total_cost_usd:.6f} "
            f"saved_usd={self.saved_usd:.6f}>"
        )


# --------------------------------------------------------------------------- budgets
class BudgetCallbackHandler(BaseCallbackHandler):
    """Enforces a USD budget on any LangChain model, before each call reaches its provider.

    Args:
        budget: ``{"daily_usd": ..., "monthly_usd": ...}``, a :class:`Budget`, or a
            :class:`BudgetManager` (e.g. one shared by several handlers).
        raise_error: raise :class:`BudgetExceededError` from ``invoke``/``stream`` when a call
            could overspend (``False``: LangChain only logs it and the call goes ahead).
        pricing: a :class:`PricingTable` or price overrides.
        store: where spending is kept for a new manager (a Redis store shares it between
            processes); default: this process.

    The worst case is the prompt's tokens (tiktoken) plus ``max_tokens`` from the call's
    invocation parameters (else the model's maximum output, else 4096) at the model's prices.
    Do not attach it to a :class:`ChatRouter` whose router has the same budget: the router
    already enforces its own.
    """

    run_inline = True

    def __init__(
        self,
        budget: Budget | Mapping[str, float | None] | BudgetManager,
        *,
        raise_error: bool = True,
        pricing: PricingTable | Mapping[str, Any] | None = None,
        store: BudgetStore | None = None,
    ) -> None:
        if isinstance(budget, BudgetManager):
            self.manager = budget
        else:
            limits = budget if isinstance(budget, Budget) else Budget.model_validate(dict(budget))
            self.manager = BudgetManager(limits, store)
        self.raise_error = raise_error
        self.pricing = _pricing(pricing)
        self._lock = threading.Lock()
        self._runs = _RunTable()

    def _worst_case(self, run: _Run) -> float:
        return self.pricing.price(run.model).worst_case(run.prompt_tokens, run.max_tokens)

    def _reserve(self, run_id: UUID, run: _Run, kwargs: Mapping[str, Any]) -> None:
        with self._lock:
            self._runs.add(run_id, run, kwargs.get("parent_run_id"), kwargs.get("batch_size"))
        try:
            run.reservation = run_sync(self.manager.reserve(self._worst_case(run)))
        except BudgetExceededError:
            if not self.raise_error:
                run.over_budget = True  # LangChain logs the error and the call goes ahead
                raise
            # Refused: none of this call's prompts reaches the provider and LangChain sends no
            # end or error event for the runs it already started, so release them here.
            members = run.batch.members if run.batch is not None else [run_id]
            with self._lock:
                dropped = self._runs.forget(members)
            for other in dropped:
                if other.reservation is not None:
                    run_sync(self.manager.settle(other.reservation, 0.0))
            _forget_refused(members)
            raise

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        invocation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Reserve the worst-case cost or raise :class:`BudgetExceededError`."""
        self._reserve(run_id, _chat_run(messages, invocation_params, metadata), kwargs)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        invocation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Reserve the worst-case cost of a text LLM call or raise."""
        self._reserve(run_id, _text_run(prompts, invocation_params, metadata), kwargs)

    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        **kwargs: Any,
    ) -> Any:
        """Collect the streamed text (an interrupted stream is charged for it)."""
        _collect(self._lock, self._runs, run_id, token, chunk)

    def _settle(self, run: _Run, cost: float) -> None:
        if run.reservation is not None:
            run_sync(self.manager.settle(run.reservation, cost))
        elif run.over_budget and cost > 0:  # log-only: the call went ahead over the budget
            run_sync(self.manager.record(cost))

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> Any:
        """Settle the reservation to the real cost (cache hits cost nothing)."""
        with self._lock:
            run = self._runs.pop(run_id)
        if run is None:
            return
        cost = sum(o.cost_usd for o in _outcomes(response, run, self.pricing))
        self._settle(run, cost)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> Any:
        """Settle a failed call: to what it streamed before failing, else release it."""
        with self._lock:
            run = self._runs.pop(run_id)
        if run is None:
            return
        partial = _partial_cost(run, error, kwargs.get("response"), self.pricing)
        self._settle(run, 0.0 if partial is None else partial[1])

    def spent(self) -> dict[str, float]:
        """USD spent or reserved in the current ``daily`` and ``monthly`` windows."""
        return run_sync(self.manager.spent())

    def remaining(self) -> dict[str, float | None]:
        """USD left in each window (``None`` where no limit is set)."""
        return run_sync(self.manager.remaining())


# --------------------------------------------------------------------------- streaming stats
@dataclass(slots=True)
class RunStreamStats:
    """Timing of one run: time to first token, duration and output speed."""

    run_id: UUID
    model: str
    ttft_ms: float | None = None
    duration_ms: float = 0.0
    chunks: int = 0
    output_tokens: int = 0
    tokens_per_second: float | None = None
    error: str | None = None
    _started: float = field(default=0.0, repr=False)
    _first: float | None = field(default=None, repr=False)
    _text: list[str] = field(default_factory=list, repr=False)


def _token_text(token: Any, chunk: Any) -> str:
    if isinstance(token, str):
        return token
    if isinstance(chunk, ChatGenerationChunk):
        return chunk.message.text
    if isinstance(chunk, Generation):
        return chunk.text
    return ""


def _collect(lock: threading.Lock, runs: _RunTable, run_id: UUID, token: Any, chunk: Any) -> None:
    text = _token_text(token, chunk)
    if text:
        with lock:
            run = runs.get(run_id)
            if run is not None:
                run.streamed.append(text)


class StreamingStatsCallbackHandler(BaseCallbackHandler):
    """Records time to first token and tokens per second of every run.

    Output tokens come from the final ``usage_metadata`` when the model reports it, else from
    counting the streamed text; speed is output tokens over the time from the first token to the
    end (the whole run when everything arrived at once).
    """

    run_inline = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: OrderedDict[UUID, RunStreamStats] = OrderedDict()
        self.runs: list[RunStreamStats] = []
        """Finished runs, oldest first."""
        _register(self)

    def _forget(self, run_ids: list[UUID]) -> None:
        with self._lock:
            for run_id in run_ids:
                self._active.pop(run_id, None)

    def _start(self, run_id: UUID, model: str) -> None:
        with self._lock:
            self._active[run_id] = RunStreamStats(run_id, model, _started=time.perf_counter())
            while len(self._active) > _MAX_OPEN_RUNS:
                self._active.popitem(last=False)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        invocation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Start the run's clock."""
        self._start(run_id, _model_of(invocation_params, metadata))

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        invocation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Start a text LLM run's clock."""
        self._start(run_id, _model_of(invocation_params, metadata))

    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Note the first token's time and collect the text."""
        now = time.perf_counter()
        text = _token_text(token, chunk)
        with self._lock:
            stats = self._active.get(run_id)
            if stats is None:
                return
            stats.chunks += 1
            if text:
                stats._text.append(text)
                if stats._first is None:
                    stats._first = now

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> Any:
        """Finish the run: duration, output tokens and speed."""
        now = time.perf_counter()
        with self._lock:
            stats = self._active.pop(run_id, None)
        if stats is None:
            return
        stats.duration_ms = (now - stats._started) * 1000.0
        first = stats._first
        stats.ttft_ms = None if first is None else (first - stats._started) * 1000.0
        usage = None
        model = stats.model
        for generations in response.generations:
            for generation in generations[:1]:
                if isinstance(generation, ChatGeneration):
                    usage = to_usage(getattr(generation.message, "usage_metadata", None)) or usage
                    model = str(generation.message.response_metadata.get("model_name") or model)
        stats.model = model
        text = "".join(stats._text)
        if not text:
            text = "".join(g[0].text for g in response.generations if g)
        stats.output_tokens = usage.output_tokens if usage else count_tokens(text, model)
        window = now - first if first is not None and now > first else now - stats._started
        stats.tokens_per_second = stats.output_tokens / window if window > 0 else None
        with self._lock:
            self.runs.append(stats)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> Any:
        """Record a failed run with its error."""
        with self._lock:
            stats = self._active.pop(run_id, None)
        if stats is not None:
            stats.error = f"{type(error).__name__}: {error}"
            stats.duration_ms = (time.perf_counter() - stats._started) * 1000.0
            with self._lock:
                self.runs.append(stats)

    @property
    def last(self) -> RunStreamStats | None:
        """The most recently finished run."""
        with self._lock:
            return self.runs[-1] if self.runs else None

    def summary(self) -> dict[str, float | int | None]:
        """Runs, mean time to first token (ms) and mean tokens per second of finished runs."""
        with self._lock:
            done = [r for r in self.runs if r.error is None]
        ttfts = [r.ttft_ms for r in done if r.ttft_ms is not None]
        speeds = [r.tokens_per_second for r in done if r.tokens_per_second is not None]
        return {
            "runs": len(done),
            "mean_ttft_ms": sum(ttfts) / len(ttfts) if ttfts else None,
            "mean_tokens_per_second": sum(speeds) / len(speeds) if speeds else None,
        }
