"""A LlamaIndex FunctionAgent on RouterLLM: OpenAI fails with 503s, Anthropic answers."""

from __future__ import annotations

import pytest
from llama_index.core.agent.workflow import AgentStream, FunctionAgent, ToolCallResult

from llm_cache_router_integrations.llamaindex import (
    CostEventHandler,
    FallbackEvent,
    RouteDecisionEvent,
    RouterLLM,
)
from llm_cache_router_integrations.testing.anthropic_server import AnthropicServer
from llm_cache_router_integrations.testing.openai_server import OpenAIServer
from llm_cache_router_integrations.testing.server import StreamReply

from .conftest import OVERLOADED, PRIMARY, SECONDARY, Collector, make_router

# llama-index-workflows inspects the agent (a pydantic model) with inspect.getmembers
pytestmark = [
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211"),
]


@pytest.mark.parametrize("streaming", [True, False])
async def test_function_agent_calls_a_tool_across_a_fallback(
    openai_server: OpenAIServer,
    anthropic_server: AnthropicServer,
    collector: Collector,
    streaming: bool,
) -> None:
    # Two agent steps (tool call, then the answer); each tries OpenAI twice (one retry).
    openai_server.push(*[OVERLOADED] * 4)
    router = make_router(openai_server, anthropic_server)
    costs = CostEventHandler().attach()
    asked: list[str] = []

    def get_weather(city: str) -> str:
        """Return the current weather in a city."""
        asked.append(city)
        return f"sunny and 21 C in {city}"

    agent = FunctionAgent(
        tools=[get_weather],
        llm=RouterLLM(router=router),
        system_prompt="You are a weather assistant.",
        streaming=streaming,
    )
    try:
        handler = agent.run(user_msg="What is the weather in Paris?")
        tool_results: list[ToolCallResult] = []
        deltas: list[str] = []
        async for event in handler.stream_events():
            if isinstance(event, ToolCallResult):
                tool_results.append(event)
            elif isinstance(event, AgentStream):
                deltas.append(event.delta)
        result = await handler
    finally:
        costs.detach()

    assert asked == ["Paris"]
    assert [r.tool_name for r in tool_results] == ["get_weather"]
    assert tool_results[0].tool_id.startswith("toolu_")  # the Anthropic server's call id
    assert str(result) == "The tool returned sunny and 21 C in Paris. That is the answer."
    if streaming:
        assert "".join(deltas) == str(result)
    assert len(openai_server.requests) == 4 and len(anthropic_server.requests) == 2
    # the second Anthropic request carries the tool call and its result
    second = anthropic_server.requests[1].body["messages"]
    assert second[-2]["content"][0]["type"] == "tool_use"
    assert second[-1]["content"][0]["type"] == "tool_result"
    assert second[-1]["content"][0]["tool_use_id"] == tool_results[0].tool_id

    decisions = collector.of(RouteDecisionEvent)
    assert [d.route for d in decisions] == [[PRIMARY, SECONDARY]] * 2
    assert all(d.provider == "anthropic" and d.fallback for d in decisions)
    assert len(collector.of(FallbackEvent)) == 2
    totals = costs.by_model()["claude-3-5-haiku-latest"]
    assert totals["calls"] == 2 and totals["fallbacks"] == 2 and totals["cost_usd"] > 0
    assert totals["input_tokens"] == sum(a.input_tokens for a in anthropic_server.answers)
    assert costs.open_spans == 0
    await router.aclose()


async def test_function_agent_without_parallel_calls_runs_one_tool_per_step(
    openai_server: OpenAIServer,
) -> None:
    asked: list[str] = []

    def get_city_weather(city: str) -> str:
        """Return the current weather in a city."""
        asked.append(city)
        return f"sunny in {city}"

    answer = openai_server.brain.answer(turns=[], tools=[{"name": "get_city_weather"}])
    answer.tool_calls[:] = [
        ("call_first", "get_city_weather", {"city": "Paris"}),
        ("call_second", "get_city_weather", {"city": "Rome"}),
    ]
    openai_server.push(StreamReply(openai_server._stream(answer, "gpt-4o-mini", True)))
    router = make_router(openai_server)
    agent = FunctionAgent(
        tools=[get_city_weather],
        llm=RouterLLM(router=router),
        streaming=True,
        allow_parallel_tool_calls=False,
    )
    await agent.run(user_msg="Weather in 'Paris' and Rome?")
    assert asked == ["Paris"]
    assert openai_server.requests[0].body["parallel_tool_calls"] is False
    await router.aclose()
