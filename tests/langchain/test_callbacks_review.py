"""Regressions of the callback handlers: batches, log-only budgets, refused runs, partial streams."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.language_models.llms import BaseLLM
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult, Generation, LLMResult

from llm_cache_router_integrations import LLMRouter
from llm_cache_router_integrations.errors import BudgetExceededError
from llm_cache_router_integrations.langchain import ChatRouter
from llm_cache_router_integrations.langchain.callbacks import (
    BudgetCallbackHandler,
    CostTrackingCallbackHandler,
    StreamingStatsCallbackHandler,
)
from llm_cache_router_integrations.testing.openai_server import OpenAIServer

from .conftest import openai_provider

MODEL = "gpt-4o-mini"


class BatchLLM(BaseLLM):
    """Reports the whole batch's token usage in ``llm_output``, as ``langchain_openai.OpenAI``."""

    max_tokens: int = 1000
    report_usage: bool = True

    @property
    def _llm_type(self) -> str:
        return "batch-llm"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": MODEL, "max_tokens": self.max_tokens}

    def _get_invocation_params(
        self, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        params = super()._get_invocation_params(stop=stop, **kwargs)
        return {**params, "model_name": MODEL, "max_tokens": self.max_tokens}

    def _generate(
        self, prompts: list[str], stop: list[str] | None = None, run_manager: Any = None, **kw: Any
    ) -> LLMResult:
        n = len(prompts)
        usage = (
            {"prompt_tokens": 100 * n, "completion_tokens": 100 * n, "total_tokens": 200 * n}
            if self.report_usage
            else {}
        )
        return LLMResult(
            generations=[[Generation(text="answer " * 10)] for _ in prompts],
            llm_output={"token_usage": usage, "model_name": MODEL},
        )


class UsageChat(BaseChatModel):
    """A chat model answering with 1000 input and 1000 output tokens of ``gpt-4o``."""

    @property
    def _llm_type(self) -> str:
        return "usage-chat"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kw: Any,
    ) -> ChatResult:
        message = AIMessage(
            content="hi",
            usage_metadata={"input_tokens": 1000, "output_tokens": 1000, "total_tokens": 2000},
            response_metadata={"model_name": "gpt-4o"},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def test_batch_usage_of_a_text_llm_is_counted_once() -> None:
    costs = CostTrackingCallbackHandler()
    BatchLLM().batch(["p1", "p2", "p3", "p4"], config={"callbacks": [costs]})
    totals = costs.by_model[MODEL]
    assert (totals["calls"], totals["input_tokens"], totals["output_tokens"]) == (4, 400, 400)
    assert totals["estimated_calls"] == 0
    assert costs.total_cost_usd == pytest.approx(costs.pricing.price(MODEL).estimate(400, 400))


def test_batch_without_usage_is_still_estimated() -> None:
    costs = CostTrackingCallbackHandler()
    BatchLLM(report_usage=False).batch(["p1", "p2"], config={"callbacks": [costs]})
    totals = costs.by_model[MODEL]
    assert totals["estimated_calls"] == 2
    assert totals["output_tokens"] > 0


def test_a_refused_batch_releases_the_reservations_of_its_earlier_prompts() -> None:
    worst = BudgetCallbackHandler({"daily_usd": 1.0}).pricing.price(MODEL).worst_case(5, 1000)
    budget = BudgetCallbackHandler({"daily_usd": worst * 2.5})
    costs, speed = CostTrackingCallbackHandler(), StreamingStatsCallbackHandler()
    llm = BatchLLM()
    with pytest.raises(BudgetExceededError):
        llm.batch(["a", "b", "c"], config={"callbacks": [costs, budget, speed]})
    assert budget.spent()["daily"] == 0.0
    assert (len(budget._runs), len(costs._runs), len(speed._active)) == (0, 0, 0)
    assert llm.invoke("a", config={"callbacks": [budget]})  # the budget is free again


def test_log_only_budget_records_the_spend_of_calls_over_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = UsageChat()
    budget = BudgetCallbackHandler({"daily_usd": 0.05}, raise_error=False)
    config: Any = {"callbacks": [budget], "metadata": {"ls_model_name": "gpt-4o"}}
    per_call = budget.pricing.price("gpt-4o").estimate(1000, 1000)
    with caplog.at_level(logging.WARNING):
        for _ in range(10):
            model.invoke("hi", config=config)
    assert "BudgetExceededError" in caplog.text  # over the budget: logged, not raised
    assert budget.spent()["daily"] == pytest.approx(10 * per_call)
    assert len(budget._runs) == 0


def test_runs_refused_by_the_budget_leave_nothing_in_the_other_handlers() -> None:
    model = FakeListChatModel(responses=["x"])
    costs, speed = CostTrackingCallbackHandler(), StreamingStatsCallbackHandler()
    budget = BudgetCallbackHandler({"daily_usd": 0.0})
    config: Any = {"callbacks": [costs, budget, speed], "metadata": {"ls_model_name": "gpt-4o"}}
    for _ in range(50):
        with pytest.raises(BudgetExceededError):
            model.invoke("hi", config=config)
    assert (len(costs._runs), len(speed._active), costs.calls) == (0, 0, 0)


def test_an_abandoned_chat_router_stream_is_charged_by_the_handlers(
    openai_server: OpenAIServer,
) -> None:
    chat = ChatRouter(
        router=LLMRouter({"openai": openai_provider(openai_server, "gpt-4o")}), model="gpt-4o"
    )
    budget, costs = BudgetCallbackHandler({"daily_usd": 10.0}), CostTrackingCallbackHandler()
    prompt = "Write a very long essay about the history of the ocean and waves " * 5
    stream = chat.stream(prompt, config={"callbacks": [budget, costs]})
    for i, _ in enumerate(stream):
        if i == 2:
            break
    stream.close()
    charged = chat.router.stats()["total_cost_usd"]
    assert charged > 0
    assert budget.spent()["daily"] == pytest.approx(charged, rel=0.05)
    assert costs.total_cost_usd == pytest.approx(charged, rel=0.05)
    assert costs.by_model["gpt-4o"]["estimated_calls"] == 1
