"""ChatRouter in LangChain programs, against loopback OpenAI and Anthropic servers (no mocks).

Chains, an agent loop that survives a provider outage mid-conversation, streaming callbacks,
usage reported once, the router's semantic cache, LangChain's global cache, identifying params,
construction from the environment, sync calls inside a running loop, budgets and cost totals.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.load import dumps
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from pydantic import BaseModel

from llm_cache_router_integrations import (
    BudgetExceededError,
    CacheConfig,
    ConfigurationError,
    InvalidRequestError,
    LLMRouter,
    StreamChunk,
)
from llm_cache_router_integrations.cost.pricing import default_pricing
from llm_cache_router_integrations.cost.tokens import count_message_tokens
from llm_cache_router_integrations.langchain import (
    BudgetCallbackHandler,
    ChatRouter,
    CostTrackingCallbackHandler,
    SemanticRouterCache,
    StreamingStatsCallbackHandler,
)
from llm_cache_router_integrations.langchain.messages import (
    StreamConverter,
    from_langchain,
    from_langchain_message,
)
from llm_cache_router_integrations.testing.anthropic_server import AnthropicServer
from llm_cache_router_integrations.testing.openai_server import OpenAIServer
from llm_cache_router_integrations.types import (
    ImageBlock,
    ImageURLBlock,
    InputAudioBlock,
    TextBlock,
    ToolCall,
    ToolCallFunction,
    Usage,
)

from .conftest import (
    FAST_RETRY,
    KEY,
    OVERLOADED,
    anthropic_provider,
    b64,
    openai_provider,
    png_bytes,
    wav_bytes,
)

PRICES = default_pricing()


def chat_for(server: OpenAIServer, **kwargs: Any) -> ChatRouter:
    """A ChatRouter with one OpenAI deployment on ``server``."""
    params: dict[str, Any] = {
        "providers": {"openai": openai_provider(server, "gpt-4o-mini", "gpt-4o")},
        "model": "gpt-4o-mini",
        "retry": FAST_RETRY,
        **kwargs,
    }
    return ChatRouter(**params)


class TokenCollector(BaseCallbackHandler):
    """Collects every ``on_llm_new_token``."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
        self.tokens.append(token if isinstance(token, str) else "")


@pytest.fixture
def global_cache() -> Iterator[SemanticRouterCache]:
    """LangChain's global cache set to a no-argument SemanticRouterCache, reset afterwards."""
    previous = get_llm_cache()
    cache = SemanticRouterCache()
    set_llm_cache(cache)
    try:
        yield cache
    finally:
        set_llm_cache(previous)


# --------------------------------------------------------------------------- chains and agents
def test_lcel_chain(openai_server: OpenAIServer) -> None:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You answer in one sentence."), ("human", "{question}")]
    )
    chain = prompt | chat_for(openai_server, temperature=0) | StrOutputParser()
    assert chain.invoke({"question": "What is LCEL?"}) == "Answer to: What is LCEL?"
    body = openai_server.requests[-1].body
    assert body["messages"][0] == {"role": "system", "content": "You answer in one sentence."}
    assert body["temperature"] == 0
    assert chain.batch([{"question": "a"}, {"question": "b"}]) == ["Answer to: a", "Answer to: b"]


@tool
def get_weather(location: str) -> str:
    """Get the current weather at a location."""
    return f"It is sunny in {location}."


def _run_agent(llm: Any, question: str, before_turn: Any) -> list[BaseMessage]:
    """A minimal tool loop: call the model, run the tools it asks for, feed results back."""
    messages: list[BaseMessage] = [HumanMessage(question)]
    for turn in range(4):
        before_turn(turn)
        reply = llm.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            return messages
        messages += [get_weather.invoke(call) for call in reply.tool_calls]
    raise AssertionError("the agent did not finish")


def test_agent_loop_survives_primary_failing_mid_conversation(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer
) -> None:
    chat = ChatRouter(
        providers={
            "openai": openai_provider(openai_server, "gpt-4o-mini"),
            "anthropic": anthropic_provider(anthropic_server, "claude-3-5-haiku-latest"),
        },
        model="openai/gpt-4o-mini",
        fallback_chain=["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"],
        retry=FAST_RETRY,
    )
    llm = chat.bind_tools([get_weather])

    def outage_after_first_turn(turn: int) -> None:
        if turn == 1:  # OpenAI goes down after it asked for the tool
            openai_server.push(*[OVERLOADED] * (FAST_RETRY["max_retries"] + 1))

    messages = _run_agent(
        llm, "What is the weather in 'Paris'? Use the tool.", outage_after_first_turn
    )
    first, result, final = messages[1], messages[2], messages[3]
    assert isinstance(first, AIMessage) and first.response_metadata["provider"] == "openai"
    assert first.tool_calls[0]["name"] == "get_weather"
    assert first.tool_calls[0]["args"] == {"location": "Paris"}
    assert isinstance(result, ToolMessage) and result.content == "It is sunny in Paris."
    assert isinstance(final, AIMessage) and final.response_metadata["provider"] == "anthropic"
    assert final.response_metadata["route"] == [
        "openai/gpt-4o-mini",
        "anthropic/claude-3-5-haiku-latest",
    ]
    assert "It is sunny in Paris." in final.text
    # Anthropic got the OpenAI tool call as tool_use and its result as tool_result (it validates).
    sent = anthropic_server.requests[-1].body["messages"]
    call_id = first.tool_calls[0]["id"]
    assert sent[1]["content"][0] == {
        "type": "tool_use",
        "id": call_id,
        "name": "get_weather",
        "input": {"location": "Paris"},
    }
    assert sent[2]["content"][0]["type"] == "tool_result"
    assert sent[2]["content"][0]["tool_use_id"] == call_id
    assert [t["function"]["name"] for t in openai_server.requests[0].body["tools"]] == [
        "get_weather"
    ]
    assert [t["name"] for t in anthropic_server.requests[-1].body["tools"]] == ["get_weather"]


def test_tool_choice_and_structured_output(openai_server: OpenAIServer) -> None:
    chat = chat_for(openai_server)

    class Weather(BaseModel):
        """A weather report."""

        city: str
        celsius: int

    chat.bind_tools([get_weather, Weather], tool_choice="Weather").invoke("Report it")
    assert openai_server.requests[-1].body["tool_choice"] == {
        "type": "function",
        "function": {"name": "Weather"},
    }
    chat.bind_tools([get_weather], tool_choice="any").invoke("Weather?")
    assert openai_server.requests[-1].body["tool_choice"] == "required"
    chat.bind_tools([get_weather], tool_choice={"type": "tool", "name": "get_weather"}).invoke("x")
    assert openai_server.requests[-1].body["tool_choice"]["function"] == {"name": "get_weather"}

    assert chat.with_structured_output(Weather).invoke("Paris") == Weather(city="Paris", celsius=3)
    assert openai_server.requests[-1].body["response_format"]["type"] == "json_schema"
    raw = chat.with_structured_output(Weather, method="function_calling", include_raw=True).invoke(
        "Paris"
    )
    assert raw["parsed"] == Weather(city="Paris", celsius=3) and raw["parsing_error"] is None
    assert isinstance(raw["raw"], AIMessage) and raw["raw"].tool_calls
    as_json = chat.with_structured_output(Weather.model_json_schema(), method="json_mode").invoke(
        "Give 'city' and 'celsius' as JSON"
    )
    assert as_json == {"city": "city", "celsius": "celsius"}
    assert openai_server.requests[-1].body["response_format"] == {"type": "json_object"}


# --------------------------------------------------------------------------- streaming
def test_stream_fires_new_token_for_every_token(openai_server: OpenAIServer) -> None:
    chat = chat_for(openai_server)
    collector, stats = TokenCollector(), StreamingStatsCallbackHandler()
    chunks = list(
        chat.stream(
            "Tell me about streaming tokens one by one",
            config={"callbacks": [collector, stats]},
        )
    )
    pieces = openai_server.last_answer.pieces()
    assert len(pieces) > 3
    assert [c.content for c in chunks if c.content] == pieces
    assert [t for t in collector.tokens if t] == pieces
    assert len(collector.tokens) == len(chunks)  # one callback per chunk, the final one included
    run = stats.last
    assert run is not None and run.error is None and run.ttft_ms is not None
    assert 0 <= run.ttft_ms <= run.duration_ms
    assert run.output_tokens == openai_server.last_answer.output_tokens
    assert run.tokens_per_second is not None and run.tokens_per_second > 0
    assert stats.summary()["runs"] == 1


def test_invoke_with_streaming_true_streams_under_the_hood(openai_server: OpenAIServer) -> None:
    collector = TokenCollector()
    result = chat_for(openai_server, streaming=True).invoke(
        "Stream this answer please", config={"callbacks": [collector]}
    )
    assert openai_server.requests[-1].body["stream"] is True
    assert "".join(collector.tokens) == result.text == "Answer to: Stream this answer please"


def _check_usage_once(chunks: list[AIMessageChunk], server: OpenAIServer) -> None:
    with_usage = [i for i, c in enumerate(chunks) if c.usage_metadata]
    with_model = [i for i, c in enumerate(chunks) if c.response_metadata.get("model_name")]
    assert with_usage == with_model == [len(chunks) - 1]
    last = chunks[-1]
    assert last.chunk_position == "last"
    answer = server.last_answer
    assert last.usage_metadata is not None
    assert last.usage_metadata["input_tokens"] == answer.input_tokens
    assert last.usage_metadata["output_tokens"] == answer.output_tokens
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    assert full.usage_metadata is not None
    assert full.usage_metadata["total_tokens"] == answer.input_tokens + answer.output_tokens
    assert full.response_metadata["model_name"] == "gpt-4o-mini"
    assert full.response_metadata["cost_usd"] > 0


def test_usage_metadata_exactly_once_when_streaming(openai_server: OpenAIServer) -> None:
    chunks = list(chat_for(openai_server).stream("Write two short haikus about caches"))
    _check_usage_once(chunks, openai_server)


async def test_usage_metadata_exactly_once_when_astreaming(openai_server: OpenAIServer) -> None:
    chunks = [c async for c in chat_for(openai_server).astream("Write two haikus about routers")]
    _check_usage_once(chunks, openai_server)


async def test_streamed_tool_calls_assemble_once(openai_server: OpenAIServer) -> None:
    llm = chat_for(openai_server).bind_tools([get_weather], tool_choice="get_weather")
    full: Any = None
    async for chunk in llm.astream("Weather in 'Oslo'?"):
        full = chunk if full is None else full + chunk
    assert full.tool_calls == [
        {
            "name": "get_weather",
            "args": {"location": "Oslo"},
            "id": "call_0001",
            "type": "tool_call",
        }
    ]


# --------------------------------------------------------------------------- caching
def test_router_cache_hit_on_paraphrase(openai_server: OpenAIServer) -> None:
    # The router's own cache with the real default encoder (all-MiniLM-L6-v2).
    chat = chat_for(openai_server, cache=CacheConfig(), temperature=0)
    assert chat.cache is False  # LangChain's cache is off: no double caching
    assert chat.router.cache is not None
    first = chat.invoke("What is the capital of France?")
    assert first.response_metadata["cache_hit"] is False
    again = chat.invoke("What's the capital of France?")
    assert again.response_metadata["cache_hit"] is True
    assert again.text == first.text and len(openai_server.requests) == 1
    assert again.response_metadata["cost_usd"] == 0.0
    assert again.response_metadata["saved_usd"] == pytest.approx(
        first.response_metadata["cost_usd"]
    )
    streamed = list(chat.stream("What is the capital of France?"))
    assert streamed[-1].response_metadata["cache_hit"] is True and len(openai_server.requests) == 1
    assert "".join(c.text for c in streamed) == first.text
    assert sum(1 for c in streamed if c.usage_metadata) == 1
    assert chat.invoke("What is the capital of Germany?").response_metadata["cache_hit"] is False


def test_cache_argument_routing(openai_server: OpenAIServer) -> None:
    assert chat_for(openai_server, cache={"threshold": 0.95}).router.cache.config.threshold == 0.95  # type: ignore[union-attr]
    langchain_cache = SemanticRouterCache()
    kept = chat_for(openai_server, cache=langchain_cache)
    assert kept.cache is langchain_cache and kept.router.cache is None
    assert chat_for(openai_server).cache is None  # no router cache: the global cache applies
    shared = LLMRouter(
        {"openai": openai_provider(openai_server, "gpt-4o-mini")}, cache=CacheConfig()
    )
    assert ChatRouter(router=shared).cache is False
    with pytest.raises(ValueError, match="either router"):
        ChatRouter(router=shared, cache=CacheConfig())


def test_global_langchain_cache_never_mixes_two_routers(
    global_cache: SemanticRouterCache,
    openai_server: OpenAIServer,
    anthropic_server: AnthropicServer,
) -> None:
    to_openai = chat_for(openai_server, temperature=0)
    to_anthropic = ChatRouter(
        providers={"anthropic": anthropic_provider(anthropic_server, "claude-3-5-haiku-latest")},
        temperature=0,
    )
    assert to_openai._identifying_params != to_anthropic._identifying_params
    question = "Name a primary colour"
    first = to_openai.invoke(question)
    assert first.response_metadata["provider"] == "openai"
    assert to_anthropic.invoke(question).response_metadata["provider"] == "anthropic"
    assert len(openai_server.requests) == len(anthropic_server.requests) == 1
    costs = CostTrackingCallbackHandler()
    hit = to_openai.invoke(question, config={"callbacks": [costs]})
    assert hit.response_metadata["provider"] == "openai" and len(openai_server.requests) == 1
    assert costs.cache_hits == 1 and costs.total_cost_usd == 0.0 and costs.saved_usd > 0
    assert hit.usage_metadata is not None and first.usage_metadata is not None
    assert hit.usage_metadata["input_tokens"] == first.usage_metadata["input_tokens"]  # kept
    assert to_openai.invoke(question, temperature=0.2).response_metadata  # other params: a miss
    assert len(openai_server.requests) == 2


def test_semantic_router_cache_round_trips_chat_generations(
    global_cache: SemanticRouterCache,
) -> None:
    fake = FakeListChatModel(responses=["first answer", "second answer"])
    messages = [SystemMessage("Be brief."), HumanMessage("What is a cache?")]
    assert fake.invoke(messages).content == "first answer"
    assert fake.invoke(messages).content == "first answer"  # served by SemanticRouterCache
    assert fake.invoke([SystemMessage("Be long."), HumanMessage("What is a cache?")]).content == (
        "second answer"  # another system prompt is another scope
    )
    prompt, llm_string = dumps(messages), fake._get_llm_string()
    stored = global_cache.lookup(prompt, llm_string)
    assert stored is not None and isinstance(stored[0], ChatGeneration)
    assert stored[0].message.content == "first answer"
    assert global_cache.lookup(prompt, llm_string + " temperature=1") is None  # a hard filter
    global_cache.clear()
    assert global_cache.engine.stats.snapshot()["stores"] >= 2


# --------------------------------------------------------------------------- identity, env, loops
def test_identifying_params_describe_the_routing_setup(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer
) -> None:
    a = chat_for(openai_server)
    b = chat_for(openai_server, strategy="cheapest_first")
    c = chat_for(openai_server, fallback_chain=["openai/gpt-4o-mini", "openai/gpt-4o"])
    d = ChatRouter(
        providers={"openai": openai_provider(anthropic_server, "gpt-4o-mini", "gpt-4o")},  # type: ignore[arg-type]
        model="gpt-4o-mini",
        retry=FAST_RETRY,
    )
    params = [x._identifying_params for x in (a, b, c, d)]
    assert len({json.dumps(p, sort_keys=True, default=str) for p in params}) == 4
    assert chat_for(openai_server)._identifying_params == a._identifying_params
    assert KEY not in json.dumps(params, default=str)
    assert a._llm_type == "llm-cache-router"
    assert a._identifying_params["router"]["providers"][0]["models"] == ["gpt-4o-mini", "gpt-4o"]


def test_chat_router_from_env(monkeypatch: pytest.MonkeyPatch, openai_server: OpenAIServer) -> None:
    for name in (
        "LLM_ROUTER_CONFIG",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "DASHSCOPE_API_KEY",
        "MINIMAX_API_KEY",
        "OLLAMA_HOST",
    ):
        monkeypatch.delenv(name, raising=False)
    unconfigured = ChatRouter()  # constructing needs no environment
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        unconfigured.invoke("hi")
    chat = ChatRouter()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    result = chat.invoke("Hello from the environment")
    assert result.text == "Answer to: Hello from the environment"
    assert result.response_metadata["model_name"] == "gpt-4o-mini"
    assert openai_server.requests[-1].headers["authorization"] == f"Bearer {KEY}"
    assert chat.router.fallback_chain == ["openai/gpt-4o-mini"]
    assert chat.profile is not None and chat.profile["max_input_tokens"] == 128000


async def test_sync_invoke_inside_a_running_loop(openai_server: OpenAIServer) -> None:
    asyncio.get_running_loop()  # like a Jupyter cell: a loop is running in this thread
    chat = chat_for(openai_server)
    assert chat.invoke("Sync inside a loop").text == "Answer to: Sync inside a loop"
    assert "".join(c.text for c in chat.stream("Stream inside a loop")) == (
        "Answer to: Stream inside a loop"
    )
    assert (await chat.ainvoke("And async")).text == "Answer to: And async"
    assert [m.text for m in await chat.abatch(["x", "y"])] == ["Answer to: x", "Answer to: y"]


def test_token_counting_uses_the_core(openai_server: OpenAIServer) -> None:
    chat = chat_for(openai_server)
    messages = [SystemMessage("Be brief."), HumanMessage("How many tokens is this?")]
    assert chat.get_num_tokens_from_messages(messages) == count_message_tokens(
        from_langchain(messages), "gpt-4o-mini"
    )
    with_tools = chat.get_num_tokens_from_messages(messages, tools=[get_weather])
    assert with_tools > chat.get_num_tokens_from_messages(messages)
    assert chat.get_num_tokens("hello world") == len(chat.get_token_ids("hello world")) == 2
    assert chat.profile is not None and chat.profile["max_input_tokens"] == 128000


# --------------------------------------------------------------------------- callbacks
def test_budget_handler_blocks_before_any_http_request(openai_server: OpenAIServer) -> None:
    chat = chat_for(openai_server, model="gpt-4o", max_tokens=2000)
    tight = BudgetCallbackHandler(budget={"daily_usd": 0.001})
    with pytest.raises(BudgetExceededError) as refused:
        chat.invoke("An expensive question", config={"callbacks": [tight]})
    assert openai_server.requests == []
    assert refused.value.requested_usd == pytest.approx(
        PRICES.price("gpt-4o").estimate(
            count_message_tokens(from_langchain([HumanMessage("An expensive question")]), "gpt-4o"),
            2000,
        )
    )
    assert tight.spent()["daily"] == 0.0  # nothing was reserved

    roomy = BudgetCallbackHandler(budget={"daily_usd": 1.0})
    result = chat.invoke("A cheap question", config={"callbacks": [roomy]})
    assert roomy.spent()["daily"] == pytest.approx(result.response_metadata["cost_usd"], abs=1e-9)


async def test_budget_handler_blocks_async_calls(openai_server: OpenAIServer) -> None:
    handler = BudgetCallbackHandler(budget={"daily_usd": 0.0})
    with pytest.raises(BudgetExceededError):
        await chat_for(openai_server).ainvoke("no budget", config={"callbacks": [handler]})
    with pytest.raises(BudgetExceededError):
        async for _ in chat_for(openai_server).astream("no", config={"callbacks": [handler]}):
            pass
    assert openai_server.requests == []


def test_cost_handler_totals(openai_server: OpenAIServer) -> None:
    costs = CostTrackingCallbackHandler()
    chat = chat_for(openai_server, cache=CacheConfig(), temperature=0)
    config: Any = {"callbacks": [costs]}
    answers = [chat.invoke("How much does this cost?", config=config)]
    answers.append(
        sum(chat.stream("And a streamed answer?", config=config), AIMessageChunk(content=""))  # type: ignore[arg-type]
    )
    hit = chat.invoke("How much does this cost?", config=config)  # the router's cache
    assert hit.response_metadata["cache_hit"] is True
    fake = FakeListChatModel(responses=["counted with tiktoken"])
    fake.invoke("a model that reports no usage", config=config)

    usage = [Usage.of(a.input_tokens, a.output_tokens) for a in openai_server.answers]
    expected = sum(PRICES.cost("gpt-4o-mini", u) for u in usage)
    router_model = costs.by_model["gpt-4o-mini"]
    assert router_model["calls"] == 3 and router_model["cache_hits"] == 1
    assert router_model["input_tokens"] == sum(u.input_tokens for u in usage)
    assert router_model["output_tokens"] == sum(u.output_tokens for u in usage)
    assert router_model["cost_usd"] == pytest.approx(expected)
    assert router_model["cost_usd"] == pytest.approx(
        sum(a.response_metadata["cost_usd"] for a in answers)
    )
    assert router_model["saved_usd"] == pytest.approx(answers[0].response_metadata["cost_usd"])
    assert costs.by_model["unknown"]["estimated_calls"] == 1  # FakeListChatModel: counted locally
    assert costs.by_model["unknown"]["output_tokens"] > 0
    totals = costs.totals()
    assert totals["calls"] == 4 and totals["cache_hits"] == 1
    assert totals["cost_usd"] == pytest.approx(expected)


async def test_cost_handler_is_async_and_thread_safe(openai_server: OpenAIServer) -> None:
    costs = CostTrackingCallbackHandler()
    chat = chat_for(openai_server)
    await asyncio.gather(
        *(chat.ainvoke(f"question {i}", config={"callbacks": [costs]}) for i in range(8)),
        *(
            asyncio.to_thread(chat.invoke, f"thread {i}", config={"callbacks": [costs]})
            for i in range(4)
        ),
    )
    assert costs.by_model["gpt-4o-mini"]["calls"] == 12
    assert costs.by_model["gpt-4o-mini"]["output_tokens"] == sum(
        a.output_tokens for a in openai_server.answers
    )


# --------------------------------------------------------------------------- conversion
def test_message_conversion_covers_langchain_shapes() -> None:
    png, wav = b64(png_bytes()), b64(wav_bytes())
    human = from_langchain_message(
        HumanMessage(
            [
                "plain",
                {"type": "text", "text": "text", "cache_control": {"type": "ephemeral"}},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                {"type": "image", "base64": png, "mime_type": "image/png"},
                {"type": "image", "url": "https://example.com/cat.png"},
                {"type": "image", "source_type": "base64", "data": png, "mime_type": "image/png"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": png},
                },
                {"type": "audio", "base64": wav, "mime_type": "audio/wav"},
                {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}},
            ],
            name="ada",
        )
    )
    kinds = [type(b) for b in human.blocks()]
    assert kinds == [
        TextBlock,
        TextBlock,
        ImageURLBlock,
        ImageBlock,
        ImageURLBlock,
        ImageBlock,
        ImageBlock,
        InputAudioBlock,
        InputAudioBlock,
    ]
    assert human.role == "user" and human.name == "ada"
    ai = from_langchain_message(
        AIMessage(
            [
                {"type": "thinking", "thinking": "hmm", "signature": "x"},
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "t1",
                    "name": "get_weather",
                    "input": {"location": "Rome"},
                },
            ],
            tool_calls=[{"name": "get_weather", "args": {"location": "Rome"}, "id": "t1"}],
        )
    )
    assert ai.content == "Let me look."
    assert ai.tool_calls == [
        ToolCall(
            id="t1", function=ToolCallFunction(name="get_weather", arguments='{"location": "Rome"}')
        )
    ]
    tool_result = from_langchain_message(ToolMessage("sunny", tool_call_id="t1"))
    assert (tool_result.role, tool_result.tool_call_id, tool_result.content) == (
        "tool",
        "t1",
        "sunny",
    )
    with pytest.raises(InvalidRequestError, match="file"):
        from_langchain_message(
            HumanMessage([{"type": "file", "base64": "JVBERi0=", "mime_type": "application/pdf"}])
        )


def test_stream_converter_emits_replayed_tool_calls_once() -> None:
    call = ToolCall(id="c1", function=ToolCallFunction(name="f", arguments='{"a": 1}'))
    converter = StreamConverter()
    final = converter.convert(
        StreamChunk(
            is_final=True, tool_calls=[call], usage=Usage.of(3, 4), model_used="m", cache_hit=True
        )
    )
    assert final.tool_call_chunks[0]["args"] == '{"a": 1}' and final.chunk_position == "last"
    assert final.response_metadata["cache_hit"] is True
    assert final.usage_metadata == {
        "input_tokens": 3,
        "output_tokens": 4,
        "total_tokens": 7,
        "input_token_details": {"cache_read": 0},
        "output_token_details": {"reasoning": 0},
    }


def test_api_keys_never_in_repr_or_dump(openai_server: OpenAIServer) -> None:
    chat = chat_for(openai_server, budget_store="redis://user:secret-pass@127.0.0.1:9/0")
    for text in (repr(chat), str(chat), json.dumps(chat.model_dump(), default=str), dumps(chat)):
        assert KEY not in text and "secret-pass" not in text
