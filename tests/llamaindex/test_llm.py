"""RouterLLM against loopback servers: endpoints, events, metadata, tools, callbacks, settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llama_index.core import Settings
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, TextBlock, ToolCallBlock
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatInProgressEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionInProgressEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from pydantic import BaseModel

from llm_cache_router_integrations import ConfigurationError, LLMRouter, ProviderUnavailableError
from llm_cache_router_integrations.llamaindex import (
    CostEventHandler,
    FallbackEvent,
    RouteDecisionEvent,
    RouterLLM,
)
from llm_cache_router_integrations.router import ENV_PROVIDERS
from llm_cache_router_integrations.testing.anthropic_server import AnthropicServer
from llm_cache_router_integrations.testing.openai_server import OpenAIServer
from llm_cache_router_integrations.testing.server import StreamReply

from .conftest import (
    OVERLOADED,
    PRIMARY,
    SECONDARY,
    Collector,
    make_router,
    openai_config,
)


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def check_usage(extra: dict[str, object], server: OpenAIServer | AnthropicServer) -> None:
    answer = server.last_answer
    assert extra["prompt_tokens"] == answer.input_tokens
    assert extra["completion_tokens"] == answer.output_tokens
    assert extra["total_tokens"] == answer.input_tokens + answer.output_tokens


# ---------------------------------------------------------------------------------- endpoints
def test_sync_endpoints(openai_server: OpenAIServer, collector: Collector) -> None:
    router = make_router(openai_server)
    llm = RouterLLM(router=router)

    chat = llm.chat(user("What is a router?"))
    assert chat.message.content == "Answer to: What is a router?"
    check_usage(chat.additional_kwargs, openai_server)
    assert chat.additional_kwargs["cost_usd"] > 0 and chat.additional_kwargs["provider"] == "openai"

    completion = llm.complete("Name a colour")
    assert completion.text == "Answer to: Name a colour"
    check_usage(completion.additional_kwargs, openai_server)

    streamed = list(llm.stream_chat(user("Stream a few words please")))
    assert "".join(r.delta or "" for r in streamed) == "Answer to: Stream a few words please"
    assert (
        len(streamed) > 2 and streamed[-1].message.content == "Answer to: Stream a few words please"
    )
    check_usage(streamed[-1].additional_kwargs, openai_server)

    pieces = list(llm.stream_complete("Stream a completion"))
    assert pieces[-1].text == "Answer to: Stream a completion"
    assert "".join(p.delta or "" for p in pieces) == pieces[-1].text
    check_usage(pieces[-1].additional_kwargs, openai_server)

    # one start and one end event per call, whatever the number of chunks
    assert len(collector.of(LLMChatStartEvent)) == len(collector.of(LLMChatEndEvent)) == 2
    assert len(collector.of(LLMCompletionStartEvent)) == 2
    assert len(collector.of(LLMCompletionEndEvent)) == 2
    assert len(collector.of(RouteDecisionEvent)) == 4
    router.close()


async def test_async_endpoints(openai_server: OpenAIServer, collector: Collector) -> None:
    router = make_router(openai_server)
    llm = RouterLLM(router=router)

    chat = await llm.achat(user("Async chat"))
    assert chat.message.content == "Answer to: Async chat"
    check_usage(chat.additional_kwargs, openai_server)

    completion = await llm.acomplete("Async completion")
    assert completion.text == "Answer to: Async completion"

    stream = await llm.astream_chat(user("Async stream of chat words"))
    chunks = [c async for c in stream]
    assert "".join(c.delta or "" for c in chunks) == "Answer to: Async stream of chat words"
    check_usage(chunks[-1].additional_kwargs, openai_server)

    cstream = await llm.astream_complete("Async stream of completion words")
    pieces = [p async for p in cstream]
    assert pieces[-1].text == "Answer to: Async stream of completion words"
    check_usage(pieces[-1].additional_kwargs, openai_server)

    assert len(collector.of(LLMChatInProgressEvent)) == len(chunks)
    assert len(collector.of(LLMCompletionInProgressEvent)) == len(pieces)
    assert len(collector.of(LLMChatEndEvent)) == 2 and len(collector.of(LLMCompletionEndEvent)) == 2
    await router.aclose()


async def test_sync_endpoints_work_inside_a_running_loop(openai_server: OpenAIServer) -> None:
    llm = RouterLLM(router=make_router(openai_server))  # e.g. in Jupyter
    assert llm.chat(user("sync in a loop")).message.content == "Answer to: sync in a loop"
    assert [r.delta for r in llm.stream_complete("sync stream")][-1] == ""


def test_streaming_fires_in_progress_events_and_ttft(
    openai_server: OpenAIServer, collector: Collector
) -> None:
    costs = CostEventHandler().attach()
    try:
        llm = RouterLLM(router=make_router(openai_server))
        tokens = [r.delta for r in llm.stream_chat(user("Tell me a long story about llamas"))]
    finally:
        costs.detach()
    assert "".join(t or "" for t in tokens) == "Answer to: Tell me a long story about llamas"
    progress = collector.of(LLMChatInProgressEvent)
    assert len(progress) == len(tokens) >= 3
    start, end = collector.of(LLMChatStartEvent)[0], collector.of(LLMChatEndEvent)[0]
    assert {e.span_id for e in progress} == {start.span_id} == {end.span_id}
    decision = collector.of(RouteDecisionEvent)[0]
    assert decision.span_id == start.span_id and decision.route == [PRIMARY]
    figures = costs.by_model()["gpt-4o-mini"]
    assert figures["streams"] == 1 and figures["mean_ttft_ms"] is not None
    assert figures["input_tokens"] == openai_server.last_answer.input_tokens
    assert costs.open_spans == 0


def test_streams_always_yield_at_least_one_chunk(openai_server: OpenAIServer) -> None:
    from llm_cache_router_integrations.testing.brain import Brain

    openai_server.brain = Brain(reply="")  # an empty answer: no text delta at all
    llm = RouterLLM(router=make_router(openai_server))
    responses = list(llm.stream_chat(user("")))
    assert len(responses) == 1 and responses[0].delta == ""
    assert responses[0].raw["usage"]["completion_tokens"] == openai_server.last_answer.output_tokens


def test_one_event_per_call_not_per_retry(
    openai_server: OpenAIServer, collector: Collector
) -> None:
    openai_server.push(OVERLOADED)  # the first attempt fails, the router retries
    counter = TokenCountingHandler()
    llm = RouterLLM(router=make_router(openai_server), callback_manager=CallbackManager([counter]))
    response = llm.chat(user("retry me"))
    assert response.message.content == "Answer to: retry me"
    assert len(openai_server.requests) == 2
    assert len(collector.of(LLMChatStartEvent)) == 1 and len(counter.llm_token_counts) == 1


def test_errors_are_typed_and_end_the_span(
    openai_server: OpenAIServer, collector: Collector
) -> None:
    openai_server.push(OVERLOADED, OVERLOADED)
    costs = CostEventHandler().attach()
    try:
        llm = RouterLLM(router=make_router(openai_server))
        with pytest.raises(ProviderUnavailableError):
            llm.chat(user("fail"))
    finally:
        costs.detach()
    assert costs.open_spans == 0 and costs.totals()["errors"] == 1


# ---------------------------------------------------------------------------------- token counts
def test_token_counting_handler_counts_provider_usage(openai_server: OpenAIServer) -> None:
    counter = TokenCountingHandler()
    llm = RouterLLM(router=make_router(openai_server), callback_manager=CallbackManager([counter]))
    llm.chat(user("How many tokens is this prompt exactly?"))
    llm.complete("And this completion prompt?")
    list(llm.stream_chat(user("A streamed chat counts too")))
    list(llm.stream_complete("So does a streamed completion"))
    answers = openai_server.answers
    assert len(answers) == 4
    assert counter.prompt_llm_token_count == sum(a.input_tokens for a in answers)
    assert counter.completion_llm_token_count == sum(a.output_tokens for a in answers)
    assert counter.total_llm_token_count == sum(a.input_tokens + a.output_tokens for a in answers)


# ---------------------------------------------------------------------------------- metadata
def test_metadata_uses_the_smallest_candidate_window(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer
) -> None:
    router = make_router(openai_server, anthropic_server)
    llm = RouterLLM(router=router, max_tokens=300)
    meta = llm.metadata
    assert meta.context_window == 128_000  # gpt-4o-mini 128k < claude-3-5-haiku 200k
    assert meta.num_output == 300
    assert meta.is_chat_model and meta.is_function_calling_model
    assert meta.model_name == PRIMARY
    assert RouterLLM(router=router, context_window=4096).metadata.context_window == 4096
    payload = llm.to_payload()
    assert payload["candidates"] == [PRIMARY, SECONDARY] and payload["model"] == PRIMARY
    assert "api_key" not in json.dumps(payload)


def test_metadata_does_not_advance_round_robin() -> None:
    servers = [OpenAIServer() for _ in range(2)]
    for server in servers:
        server.start()
    try:
        router = LLMRouter(
            {f"p{i}": openai_config(s) for i, s in enumerate(servers)},
            strategy="round_robin",
            model_groups={"pool": ["p0/gpt-4o-mini", "p1/gpt-4o-mini"]},
        )
        llm = RouterLLM(router=router, model="pool")
        for _ in range(3):
            assert llm.metadata.context_window == 128_000
        used = [llm.chat(user(f"q{i}")).additional_kwargs["provider"] for i in range(2)]
        assert used == ["p0", "p1"]
    finally:
        for server in servers:
            server.stop()


# ---------------------------------------------------------------------------------- construction
def test_settings_llm_from_environment(
    openai_server: OpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "router.json"
    config.write_text(json.dumps({"providers": {"openai": openai_config(openai_server)}}))
    monkeypatch.setenv("LLM_ROUTER_CONFIG", str(config))
    Settings.llm = RouterLLM(temperature=0)
    assert Settings.llm.complete("from the environment").text == "Answer to: from the environment"
    assert openai_server.requests[-1].body["temperature"] == 0


def test_missing_environment_fails_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_ROUTER_CONFIG", raising=False)
    for _, variables, _ in ENV_PROVIDERS:
        for variable in variables:
            monkeypatch.delenv(variable, raising=False)
    llm = RouterLLM()  # constructing never needs credentials
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        llm.complete("hi")


def test_router_built_from_configuration(openai_server: OpenAIServer) -> None:
    llm = RouterLLM(
        providers={"openai": openai_config(openai_server)},
        strategy="fallback_chain",
        budget={"daily_usd": 5.0},
        model="gpt-4o-mini",
        max_tokens=50,
    )
    assert llm.router.budget.budget.daily_usd == 5.0
    assert llm.complete("configured").text == "Answer to: configured"
    assert openai_server.requests[-1].body["max_completion_tokens"] == 50
    with pytest.raises(ConfigurationError):
        RouterLLM(router=llm.router, providers={"openai": openai_config(openai_server)})


def test_images_reach_the_provider(openai_server: OpenAIServer) -> None:
    llm = RouterLLM(router=make_router(openai_server))
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
    llm.chat([ChatMessage(role="user", blocks=[TextBlock(text="describe"), ImageBlock(image=png)])])
    content = openai_server.requests[-1].body["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "describe"}
    assert content[1]["type"] == "image_url"
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")


# ---------------------------------------------------------------------------------- callbacks
def test_settings_callback_manager_reassignment_keeps_handlers(
    openai_server: OpenAIServer,
) -> None:
    own = TokenCountingHandler()
    shared = TokenCountingHandler()
    llm = RouterLLM(router=make_router(openai_server), callback_manager=CallbackManager([own]))
    Settings.callback_manager = CallbackManager([shared])
    Settings.llm = llm
    Settings.llm.chat(user("first"))  # the getter assigns the global callback manager
    assert len(own.llm_token_counts) == 1 and len(shared.llm_token_counts) == 1
    assert set(map(id, Settings.llm.callback_manager.handlers)) == {id(own), id(shared)}

    newer = TokenCountingHandler()
    Settings.callback_manager = CallbackManager([newer])  # a new global manager replaces the old
    Settings.llm.complete("second")
    assert len(own.llm_token_counts) == 2
    assert len(shared.llm_token_counts) == 1 and len(newer.llm_token_counts) == 1

    added = TokenCountingHandler()
    Settings.llm.callback_manager.add_handler(added)  # goes to the LLM's own handlers
    assert added not in Settings.callback_manager.handlers
    Settings.llm.chat(user("third"))
    assert len(added.llm_token_counts) == 1 and len(own.llm_token_counts) == 3

    replacement = TokenCountingHandler()
    llm.callback_manager = CallbackManager([replacement])  # explicit: new own handlers
    llm.chat(user("fourth"))
    assert len(replacement.llm_token_counts) == 1 and len(own.llm_token_counts) == 3


# ---------------------------------------------------------------------------------- tools
def weather(city: str) -> str:
    """Return the current weather in a city."""
    return f"sunny in {city}"


def test_tools_are_sent_in_openai_shape_and_selected(openai_server: OpenAIServer) -> None:
    llm = RouterLLM(router=make_router(openai_server))
    tool = FunctionTool.from_defaults(fn=weather)
    response = llm.chat_with_tools([tool], user_msg="Weather in Paris?", tool_required=True)
    body = openai_server.requests[-1].body
    assert body["tools"][0]["function"]["name"] == "weather"
    assert body["tools"][0]["function"]["parameters"]["properties"]["city"]["type"] == "string"
    assert body["tool_choice"] == "required"
    selections = llm.get_tool_calls_from_response(response)
    assert [(s.tool_name, s.tool_kwargs) for s in selections] == [("weather", {"city": "Paris"})]
    assert selections[0].tool_id == openai_server.last_answer.tool_calls[0][0]
    assert any(isinstance(b, ToolCallBlock) for b in response.message.blocks)

    llm.chat_with_tools([tool], user_msg="Weather?", tool_choice="weather")
    assert openai_server.requests[-1].body["tool_choice"] == {
        "type": "function",
        "function": {"name": "weather"},
    }
    plain = llm.chat(user("no tools"))
    assert llm.get_tool_calls_from_response(plain, error_on_no_tool_call=False) == []
    with pytest.raises(ValueError, match="at least one tool call"):
        llm.get_tool_calls_from_response(plain)


def test_parallel_tool_calls_are_trimmed_unless_allowed(openai_server: OpenAIServer) -> None:
    from llm_cache_router_integrations.testing import JSONReply

    answer = openai_server.brain.answer(turns=[], tools=[{"name": "weather"}])
    answer.tool_calls.append(("call_second", "weather", {"city": "Rome"}))
    body = openai_server._completion(answer, "gpt-4o-mini")
    openai_server.push(JSONReply(body), JSONReply(body))
    llm = RouterLLM(router=make_router(openai_server))
    tool = FunctionTool.from_defaults(fn=weather)
    single = llm.chat_with_tools([tool], user_msg="Weather in two cities?")
    assert len(llm.get_tool_calls_from_response(single)) == 1
    both = llm.chat_with_tools(
        [tool], user_msg="Weather in two cities?", allow_parallel_tool_calls=True
    )
    assert len(llm.get_tool_calls_from_response(both)) == 2


def _two_calls_stream(server: OpenAIServer) -> StreamReply:
    """A streamed answer with two tool calls (weather in two cities)."""
    answer = server.brain.answer(turns=[], tools=[{"name": "weather"}])
    answer.tool_calls.append(("call_second", "weather", {"city": "Rome"}))
    return StreamReply(server._stream(answer, "gpt-4o-mini", True))


async def test_streamed_tool_calls_keep_one_unless_parallel_allowed(
    openai_server: OpenAIServer,
) -> None:
    openai_server.push(*[_two_calls_stream(openai_server) for _ in range(3)])
    llm = RouterLLM(router=make_router(openai_server))
    tool = FunctionTool.from_defaults(fn=weather)
    single = list(llm.stream_chat_with_tools([tool], user_msg="Weather in two cities?"))
    assert len(llm.get_tool_calls_from_response(single[-1])) == 1
    assert openai_server.requests[-1].body["parallel_tool_calls"] is False
    gen = await llm.astream_chat_with_tools([tool], user_msg="Weather in two cities?")
    streamed = [r async for r in gen]
    assert len(llm.get_tool_calls_from_response(streamed[-1])) == 1
    both = list(
        llm.stream_chat_with_tools(
            [tool], user_msg="Weather in two cities?", allow_parallel_tool_calls=True
        )
    )
    assert len(llm.get_tool_calls_from_response(both[-1])) == 2
    assert "parallel_tool_calls" not in openai_server.requests[-1].body


def test_one_tool_call_is_asked_of_every_provider_of_the_router(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer
) -> None:
    # Not only for all-openai routers: each adapter translates the field, so a fallback to
    # Anthropic asks for one call in its own words instead of receiving an unknown field.
    openai_server.push(_two_calls_stream(openai_server))
    llm = RouterLLM(router=make_router(openai_server, anthropic_server))
    tool = FunctionTool.from_defaults(fn=weather)
    responses = list(llm.stream_chat_with_tools([tool], user_msg="Weather in two cities?"))
    assert len(llm.get_tool_calls_from_response(responses[-1])) == 1  # trimming stays
    assert openai_server.requests[-1].body["parallel_tool_calls"] is False

    openai_server.push(OVERLOADED, OVERLOADED)
    fell_back = llm.chat_with_tools([tool], user_msg="Weather in Oslo?")
    assert fell_back.additional_kwargs["provider"] == "anthropic"
    body = anthropic_server.requests[-1].body
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert "parallel_tool_calls" not in body

    llm.chat_with_tools([tool], user_msg="Weather in Lima?", allow_parallel_tool_calls=True)
    assert "parallel_tool_calls" not in openai_server.requests[-1].body
    llm.chat(user("no tools"))
    assert "parallel_tool_calls" not in openai_server.requests[-1].body


class Forecast(BaseModel):
    """A weather forecast for one city."""

    city: str
    temperature_c: float
    conditions: list[str]


def test_structured_predict(openai_server: OpenAIServer) -> None:
    llm = RouterLLM(router=make_router(openai_server))
    forecast = llm.structured_predict(
        Forecast, PromptTemplate("Give the forecast for {city}."), city="Paris"
    )
    assert isinstance(forecast, Forecast) and forecast.city == "Paris"
    body = openai_server.requests[-1].body
    assert body["tool_choice"] == "required" and body["tools"][0]["function"]["name"] == "Forecast"
    assert body["messages"][-1]["content"] == "Give the forecast for Paris."


async def test_astructured_predict_across_a_fallback(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer, collector: Collector
) -> None:
    openai_server.push(OVERLOADED, OVERLOADED)
    router = make_router(openai_server, anthropic_server)
    llm = RouterLLM(router=router)
    forecast = await llm.astructured_predict(
        Forecast, PromptTemplate("Give the forecast for {city}."), city="Paris"
    )
    assert isinstance(forecast, Forecast) and forecast.city == "Paris"
    assert len(openai_server.requests) == 2 and len(anthropic_server.requests) == 1
    # One call asked for (LlamaIndex's structured predict does not allow parallel calls).
    assert anthropic_server.requests[0].body["tool_choice"] == {
        "type": "any",
        "disable_parallel_tool_use": True,
    }
    fallback = collector.of(FallbackEvent)
    assert len(fallback) == 1 and fallback[0].failed == [PRIMARY]
    assert fallback[0].answered_by == SECONDARY
    decision = collector.of(RouteDecisionEvent)[-1]
    assert decision.fallback and decision.route == [PRIMARY, SECONDARY]
    await router.aclose()
