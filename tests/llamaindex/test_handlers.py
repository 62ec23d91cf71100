"""CostEventHandler, BudgetCallbackHandler and the cache-hit flag, against loopback servers."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMChatStartEvent
from llama_index.core.llms import CompletionResponse, CompletionResponseGen, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback

from llm_cache_router_integrations import CacheConfig, StreamInterruptedError
from llm_cache_router_integrations.cache import CacheEngine
from llm_cache_router_integrations.llamaindex import (
    BudgetCallbackHandler,
    BudgetExceededError,
    CacheHitEvent,
    CostEventHandler,
    RouteDecisionEvent,
    RouterLLM,
)
from llm_cache_router_integrations.testing import StreamReply, Turn
from llm_cache_router_integrations.testing.openai_server import OpenAIServer

from .conftest import Collector, make_router

EXPENSIVE = {"gpt-4o-mini": {"input": 1000.0, "output": 1000.0, "context_window": 128000}}
"""USD 0.001 per token, so a handful of calls reaches a small budget."""


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


# ---------------------------------------------------------------------------------- budgets
def test_budget_handler_blocks_before_any_http_request(openai_server: OpenAIServer) -> None:
    router = make_router(openai_server)
    budget = BudgetCallbackHandler({"daily_usd": 0.001}, router=router)
    counter = TokenCountingHandler()
    llm = RouterLLM(
        router=router, max_tokens=4000, callback_manager=CallbackManager([budget, counter])
    )
    # worst case: ~10 input tokens + 4000 output tokens at $0.60/1M = $0.0024 > $0.001
    with pytest.raises(BudgetExceededError) as caught:
        llm.chat(user("a question that may cost too much"))
    assert openai_server.requests == []
    assert caught.value.window == "daily" and caught.value.requested_usd > 0.002
    # the same worst case the core computes (and the router itself would reserve)
    assert caught.value.requested_usd == pytest.approx(
        llm.estimate_cost(user("a question that may cost too much")), abs=1e-9
    )
    assert budget.pending == 0 and budget.spent()["daily"] == 0.0
    assert counter.llm_token_counts == []


async def test_budget_handler_records_real_costs_then_blocks(
    openai_server: OpenAIServer, collector: Collector
) -> None:
    router = make_router(openai_server, pricing=EXPENSIVE)
    budget = BudgetCallbackHandler({"daily_usd": 0.1}, router=router)
    costs = CostEventHandler().attach()
    llm = RouterLLM(router=router, max_tokens=10, callback_manager=CallbackManager([budget]))
    spent: list[float] = []
    try:
        with pytest.raises(BudgetExceededError):
            for i in range(50):
                if i % 2:
                    response = await llm.achat(user(f"question number {i}"))
                    spent.append(response.additional_kwargs["cost_usd"])
                else:
                    chunks = [c async for c in await llm.astream_chat(user(f"question {i}"))]
                    spent.append(chunks[-1].additional_kwargs["cost_usd"])
    finally:
        costs.detach()
    assert len(openai_server.requests) == len(spent) >= 3  # the blocked call sent nothing
    assert budget.spent()["daily"] == pytest.approx(sum(spent))
    assert sum(spent) <= 0.1 and budget.pending == 0
    # the instrumentation saw the blocked call start and end (span dropped), nothing leaked
    assert len(collector.of(LLMChatStartEvent)) == len(spent) + 1
    assert len(collector.of(LLMChatEndEvent)) == len(spent)
    assert costs.open_spans == 0 and costs.totals()["errors"] == 1
    assert costs.totals()["cost_usd"] == pytest.approx(sum(spent))
    # the router keeps its own (separate) spend counters; the handler did not add to them
    assert (await router.budget.spent())["daily"] == pytest.approx(sum(spent))
    await router.aclose()


def test_budget_handler_without_router_uses_the_pricing_table(
    openai_server: OpenAIServer,
) -> None:
    budget = BudgetCallbackHandler({"daily_usd": 0.001})
    llm = RouterLLM(
        router=make_router(openai_server),
        max_tokens=5000,
        callback_manager=CallbackManager([budget]),
    )
    with pytest.raises(BudgetExceededError):
        llm.complete("too expensive for the table's gpt-4o-mini price")
    assert openai_server.requests == []
    llm.max_tokens = 100
    response = llm.complete("cheap enough")
    assert budget.spent()["daily"] == pytest.approx(response.additional_kwargs["cost_usd"])


def test_budget_handler_releases_on_failure(openai_server: OpenAIServer) -> None:
    answer = openai_server.brain.answer(turns=[Turn("user", "one two three four five six")])
    frames = openai_server._stream(answer, "gpt-4o-mini", True)
    openai_server.push(StreamReply(frames[:3], then="reset"))
    router = make_router(openai_server)
    budget = BudgetCallbackHandler({"daily_usd": 1.0}, router=router)
    costs = CostEventHandler().attach()
    llm = RouterLLM(router=router, max_tokens=50, callback_manager=CallbackManager([budget]))
    try:
        with pytest.raises(StreamInterruptedError):
            for _ in llm.stream_chat(user("one two three four five six")):
                pass
    finally:
        costs.detach()
    assert budget.pending == 0 and budget.spent()["daily"] == 0.0
    assert costs.open_spans == 0 and costs.totals()["errors"] == 1


# ---------------------------------------------------------------------------------- cache
async def test_paraphrase_cache_hit_is_flagged_and_free(
    openai_server: OpenAIServer, sentence_encoder: Any, collector: Collector
) -> None:
    router = make_router(openai_server, cache=CacheEngine(CacheConfig(), encoder=sentence_encoder))
    costs = CostEventHandler().attach()
    counter = TokenCountingHandler()
    llm = RouterLLM(router=router, temperature=0, callback_manager=CallbackManager([counter]))
    try:
        first = await llm.achat(user("What is the capital of France?"))
        second = await llm.achat(user("What is the capital city of France?"))
        streamed = [c async for c in await llm.astream_chat(user("Tell me the capital of France"))]
    finally:
        costs.detach()

    assert len(openai_server.requests) == 1
    assert first.additional_kwargs["cache_hit"] is False and first.additional_kwargs["cost_usd"] > 0
    for hit in (second, streamed[-1]):
        assert hit.additional_kwargs["cache_hit"] is True
        assert hit.additional_kwargs["cost_usd"] == 0.0
        assert hit.additional_kwargs["saved_usd"] == pytest.approx(
            first.additional_kwargs["cost_usd"]
        )
    assert (
        second.message.content
        == first.message.content
        == "Answer to: What is the capital of France?"
    )
    assert "".join(c.delta or "" for c in streamed) == first.message.content

    hits = collector.of(CacheHitEvent)
    assert len(hits) == 2 and hits[0].saved_usd == pytest.approx(
        first.additional_kwargs["cost_usd"]
    )
    assert [d.cache_hit for d in collector.of(RouteDecisionEvent)] == [False, True, True]
    totals = costs.totals()
    assert totals["calls"] == 3 and totals["cache_hits"] == 2
    assert totals["cost_usd"] == pytest.approx(first.additional_kwargs["cost_usd"])
    assert totals["saved_usd"] == pytest.approx(2 * first.additional_kwargs["cost_usd"])
    assert totals["input_tokens"] == openai_server.last_answer.input_tokens  # hits are not billed
    # raw["usage"] of a hit is the cached answer's usage, so TokenCountingHandler counts it again;
    # additional_kwargs["cache_hit"] (or CostEventHandler) tells billed calls apart
    assert counter.prompt_llm_token_count == 3 * openai_server.last_answer.input_tokens
    await router.aclose()


class _CompleteOnlyLLM(CustomLLM):
    """A CustomLLM whose chat goes through its decorated ``complete`` (nested LLM events)."""

    model: str = "gpt-4o-mini"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
        usage = {"prompt_tokens": 1000, "completion_tokens": 1000}
        return CompletionResponse(text="ok", raw={"usage": usage})

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kw: Any
    ) -> CompletionResponseGen:
        usage = {"prompt_tokens": 1000, "completion_tokens": 1000}
        yield CompletionResponse(text="ok", delta="ok", raw={"usage": usage})


def test_a_chat_made_through_complete_is_counted_and_budgeted_once() -> None:
    costs = CostEventHandler().attach()
    budget = BudgetCallbackHandler({"daily_usd": 10.0})
    llm = _CompleteOnlyLLM(callback_manager=CallbackManager([budget]))
    per_call = budget.pricing.price("gpt-4o-mini").estimate(1000, 1000)
    try:
        llm.chat([ChatMessage(role="user", content="hi")])
        totals = costs.totals()
        assert (totals["calls"], totals["input_tokens"]) == (1, 1000)
        assert budget.spent()["daily"] == pytest.approx(per_call)
        assert (budget.pending, costs.open_spans) == (0, 0)
        llm.complete("hi")  # a direct completion still counts
        assert costs.totals()["calls"] == 2
        assert budget.spent()["daily"] == pytest.approx(2 * per_call)
    finally:
        costs.detach()
