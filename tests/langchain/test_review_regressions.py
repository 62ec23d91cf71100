"""Regressions of the LangChain adapter, against loopback servers (no mocks).

LangChain's cache key of a ``ChatRouter`` holding a live router, cache entries that cannot be
loaded back, routers kept across ``configurable_fields`` rebuilds, invalid tool calls sent back,
streamed tool names repeated by the server, the cost handlers using the router's own cost, and
``parallel_tool_calls`` reaching each provider in its own words (never as an unknown field).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.load import dumps
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration
from langchain_core.runnables import ConfigurableField
from pydantic import BaseModel

from llm_cache_router_integrations import CacheConfig, LLMRouter, StreamChunk
from llm_cache_router_integrations._sync import run_sync
from llm_cache_router_integrations.langchain import (
    BudgetCallbackHandler,
    ChatRouter,
    CostTrackingCallbackHandler,
    SemanticRouterCache,
)
from llm_cache_router_integrations.langchain.cache import _request
from llm_cache_router_integrations.langchain.messages import (
    StreamConverter,
    from_langchain_message,
)
from llm_cache_router_integrations.testing import JSONReply
from llm_cache_router_integrations.testing.anthropic_server import AnthropicServer
from llm_cache_router_integrations.testing.openai_server import OpenAIServer
from llm_cache_router_integrations.testing.server import StreamReply, sse
from llm_cache_router_integrations.types import LLMResponse, ToolCallDelta

from .conftest import FAST_RETRY, KEY, OVERLOADED, anthropic_provider, openai_provider

EXACT = CacheConfig(semantic=False)  # exact matching: no encoder to load
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


@pytest.fixture
def exact_cache() -> Iterator[SemanticRouterCache]:
    """LangChain's global cache set to an exact-match SemanticRouterCache, reset afterwards."""
    previous = get_llm_cache()
    cache = SemanticRouterCache(config=EXACT)
    set_llm_cache(cache)
    try:
        yield cache
    finally:
        set_llm_cache(previous)


# --------------------------------------------------------------------------- LangChain cache key
def test_cache_key_of_a_shared_router_names_model_and_parameters(
    exact_cache: SemanticRouterCache, openai_server: OpenAIServer, anthropic_server: AnthropicServer
) -> None:
    router = LLMRouter(
        {"openai": openai_provider(openai_server, "gpt-4o-mini", "gpt-4o")}, retry=FAST_RETRY
    )
    mini = ChatRouter(router=router, model="gpt-4o-mini", temperature=0)
    big = ChatRouter(router=router, model="gpt-4o", temperature=0.9, max_tokens=30)
    question = "Name a primary colour"
    assert mini.invoke(question).response_metadata["model_name"] == "gpt-4o-mini"
    assert big.invoke(question).response_metadata["model_name"] == "gpt-4o"
    assert [r.body["model"] for r in openai_server.requests] == ["gpt-4o-mini", "gpt-4o"]
    assert mini.invoke(question).response_metadata["model_name"] == "gpt-4o-mini"  # a hit
    assert len(openai_server.requests) == 2
    mini.invoke(question, stop=["\n"])  # the stop list is part of the key
    assert len(openai_server.requests) == 3

    keys = {
        mini._get_llm_string(),
        big._get_llm_string(),
        ChatRouter(router=router, model="gpt-4o-mini", temperature=0.5)._get_llm_string(),
        ChatRouter(router=router, model="gpt-4o-mini", temperature=0, top_p=0.5)._get_llm_string(),
        mini._get_llm_string(stop=["x"]),
        mini._get_llm_string(tools=[WEATHER]),
        ChatRouter(
            router=LLMRouter(
                {"anthropic": anthropic_provider(anthropic_server, "gpt-4o-mini")},
                retry=FAST_RETRY,
            ),
            model="gpt-4o-mini",
            temperature=0,
        )._get_llm_string(),
    }
    assert len(keys) == 7 and not any(KEY in key for key in keys)
    # The same set-up on another router object shares entries.
    twin = LLMRouter(
        {"openai": openai_provider(openai_server, "gpt-4o-mini", "gpt-4o")}, retry=FAST_RETRY
    )
    twin_chat = ChatRouter(router=twin, model="gpt-4o-mini", temperature=0)
    assert twin_chat._get_llm_string() == mini._get_llm_string()


def test_cache_key_of_a_declarative_set_up_is_langchains_own(openai_server: OpenAIServer) -> None:
    chat = ChatRouter(
        providers={"openai": openai_provider(openai_server, "gpt-4o-mini")},
        model="gpt-4o-mini",
        temperature=0.3,
    )
    # Entries stored before stay readable: the key is LangChain's serialised form.
    assert chat._get_llm_string(stop=["x"]) == BaseChatModel._get_llm_string(chat, stop=["x"])
    assert '"gpt-4o-mini"' in chat._get_llm_string() and KEY not in chat._get_llm_string()


# --------------------------------------------------------------------------- unloadable entries
class Joke(BaseModel):
    """A parsed structured answer, as ChatOpenAI keeps it in ``additional_kwargs["parsed"]``."""

    setup: str
    punchline: str


class Opaque:
    """A value LangChain cannot serialise."""


def test_parsed_pydantic_output_is_cached_as_data(exact_cache: SemanticRouterCache) -> None:
    model = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage("{}", additional_kwargs={"parsed": Joke(setup="a", punchline="b")}),
                AIMessage("second"),
            ]
        )
    )
    assert model.invoke("tell me a joke").content == "{}"
    again = model.invoke("tell me a joke")  # served from the cache, not the second answer
    assert again.content == "{}"
    assert again.additional_kwargs["parsed"] == {"setup": "a", "punchline": "b"}


def test_unloadable_generations_are_not_stored(
    exact_cache: SemanticRouterCache, caplog: pytest.LogCaptureFixture
) -> None:
    model = GenericFakeChatModel(
        messages=iter(
            [AIMessage("first", additional_kwargs={"handle": Opaque()}), AIMessage("second")]
        )
    )
    with caplog.at_level(logging.WARNING):
        assert model.invoke("hello").content == "first"
    assert "cannot be loaded back" in caplog.text
    assert model.invoke("hello").content == "second"  # nothing was stored: a miss


def test_an_unloadable_stored_entry_is_a_miss(
    exact_cache: SemanticRouterCache, caplog: pytest.LogCaptureFixture
) -> None:
    prompt, llm_string = dumps([HumanMessage("hello")]), "some-model"
    bad = ChatGeneration(message=AIMessage("old", additional_kwargs={"handle": Opaque()}))
    payload = dumps([bad])  # how such an entry used to be stored
    run_sync(
        exact_cache.engine.store(
            _request(prompt, llm_string),
            LLMResponse(content=payload, provider_used="langchain", model_used="m"),
        )
    )
    with caplog.at_level(logging.WARNING):
        assert exact_cache.lookup(prompt, llm_string) is None
    assert "unreadable cache entry" in caplog.text
    model = GenericFakeChatModel(messages=iter([AIMessage("fresh")]))
    assert model.invoke([HumanMessage("hello")]).content == "fresh"  # later calls still work


# --------------------------------------------------------------------------- configurable fields
def test_configurable_fields_reuse_the_router(openai_server: OpenAIServer) -> None:
    chat = ChatRouter(
        providers={"openai": openai_provider(openai_server, "gpt-4o-mini")},
        retry=FAST_RETRY,
        cache=EXACT,
        temperature=0,
        budget={"daily_usd": 1.0},
    )
    configurable = chat.configurable_fields(max_tokens=ConfigurableField(id="max_tokens"))
    config: Any = {"configurable": {"max_tokens": 50}}
    hits = [
        configurable.invoke("Name a primary colour", config=config).response_metadata["cache_hit"]
        for _ in range(3)
    ]
    assert hits == [False, True, True] and len(openai_server.requests) == 1
    assert chat.router.stats()["budget"]["spent"]["daily"] > 0  # the original router's budget
    chat.invoke("Name a primary colour", max_tokens=50)  # the direct path shares the cache
    assert len(openai_server.requests) == 1

    def rebuilt_router(max_tokens: int) -> LLMRouter:
        model, _ = configurable._prepare({"configurable": {"max_tokens": max_tokens}})  # type: ignore[attr-defined]
        return model.router  # type: ignore[no-any-return]

    with ThreadPoolExecutor(4) as pool:
        routers = list(pool.map(rebuilt_router, range(1, 17)))
    assert all(router is chat.router for router in routers)


def test_configurable_router_settings_get_their_own_router(openai_server: OpenAIServer) -> None:
    chat = ChatRouter(
        providers={"openai": openai_provider(openai_server, "gpt-4o-mini", "gpt-4o")},
        retry=FAST_RETRY,
        fallback_chain=["openai/gpt-4o-mini"],
    )
    configurable = chat.configurable_fields(fallback_chain=ConfigurableField(id="chain"))

    def router_for(chain: list[str]) -> LLMRouter:
        model, _ = configurable._prepare({"configurable": {"chain": chain}})  # type: ignore[attr-defined]
        return model.router  # type: ignore[no-any-return]

    other = router_for(["openai/gpt-4o"])
    assert other is not chat.router and other.fallback_chain == ["openai/gpt-4o"]
    assert router_for(["openai/gpt-4o"]) is other
    assert router_for(["openai/gpt-4o-mini"]) is chat.router
    # Separately constructed models never share a router unless given one.
    twin = ChatRouter(
        providers={"openai": openai_provider(openai_server, "gpt-4o-mini", "gpt-4o")},
        retry=FAST_RETRY,
        fallback_chain=["openai/gpt-4o-mini"],
    )
    assert twin.router is not chat.router


def test_configurable_fields_from_the_environment_reuse_the_router(
    monkeypatch: pytest.MonkeyPatch, openai_server: OpenAIServer
) -> None:
    monkeypatch.delenv("LLM_ROUTER_CONFIG", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    configurable = ChatRouter(cache=EXACT, temperature=0).configurable_fields(
        max_tokens=ConfigurableField(id="max_tokens")
    )
    config: Any = {"configurable": {"max_tokens": 40}}
    hits = [
        configurable.invoke("Hello from the environment", config=config).response_metadata[
            "cache_hit"
        ]
        for _ in range(2)
    ]
    assert hits == [False, True] and len(openai_server.requests) == 1


# --------------------------------------------------------------------------- tool calls
def test_invalid_tool_calls_are_sent_back(openai_server: OpenAIServer) -> None:
    bad = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_bad",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"location": "Par'},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
    }
    chat = ChatRouter(
        providers={"openai": openai_provider(openai_server, "gpt-4o-mini")}, retry=FAST_RETRY
    ).bind_tools([WEATHER])
    openai_server.push(JSONReply(bad))
    ai = chat.invoke("weather in Paris?")
    assert ai.tool_calls == [] and [c["id"] for c in ai.invalid_tool_calls] == ["call_bad"]
    history = [
        HumanMessage("weather in Paris?"),
        ai,
        ToolMessage("Error: invalid JSON arguments", tool_call_id="call_bad", status="error"),
    ]
    chat.invoke(history)
    assistant = openai_server.requests[-1].body["messages"][1]
    assert assistant["tool_calls"] == [
        {
            "id": "call_bad",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "Par'},
        }
    ]
    nameless = AIMessage(
        "",
        invalid_tool_calls=[{"name": None, "args": "{", "id": "x", "error": "no name"}],
    )
    assert from_langchain_message(nameless).tool_calls is None  # no provider takes it


def _repeated_name_frames() -> list[bytes]:
    """An OpenAI-compatible stream that repeats the call's id and name on every delta."""
    base = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0}

    def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse({**base, "model": "gpt-4o-mini", "choices": [choice]})

    frames = [frame({"role": "assistant", "content": ""})]
    for piece in ('{"loc', 'ation": ', '"Paris"}'):
        call = {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": piece},
        }
        frames.append(frame({"tool_calls": [call]}))
    frames.append(frame({}, "tool_calls"))
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    frames.append(sse({**base, "model": "gpt-4o-mini", "choices": [], "usage": usage}))
    frames.append(b"data: [DONE]\n\n")
    return frames


def test_streamed_tool_name_repeated_by_the_server_is_sent_once(
    openai_server: OpenAIServer,
) -> None:
    chat = ChatRouter(
        providers={"openai": openai_provider(openai_server, "gpt-4o-mini")}, retry=FAST_RETRY
    ).bind_tools([WEATHER])
    openai_server.push(StreamReply(_repeated_name_frames()))
    merged = sum(chat.stream("weather?"), AIMessageChunk(content=""))
    assert isinstance(merged, AIMessageChunk)
    assert merged.tool_calls == [
        {"name": "get_weather", "args": {"location": "Paris"}, "id": "call_1", "type": "tool_call"}
    ]


def test_stream_converter_joins_a_fragmented_name() -> None:
    converter = StreamConverter()
    pieces = [
        ToolCallDelta(index=0, id="c1", name="get_", arguments=""),
        ToolCallDelta(index=0, id="c1", name="weather", arguments='{"a": '),
        ToolCallDelta(index=0, name="get_weather", arguments="1}"),
    ]
    merged = AIMessageChunk(content="")
    for piece in pieces:
        merged = merged + converter.convert(StreamChunk(tool_call_deltas=[piece]))
    assert merged.tool_calls == [
        {"name": "get_weather", "args": {"a": 1}, "id": "c1", "type": "tool_call"}
    ]


# --------------------------------------------------------------------------- cost handlers
def test_cost_handlers_use_the_cost_the_router_charged(openai_server: OpenAIServer) -> None:
    chat = ChatRouter(
        providers={"openai": openai_provider(openai_server, "gpt-4o-mini")},
        retry=FAST_RETRY,
        pricing={"gpt-4o-mini": {"input": 1000.0, "output": 1000.0}},
    )
    costs = CostTrackingCallbackHandler()
    budget = BudgetCallbackHandler(budget={"daily_usd": 100.0})
    config: Any = {"callbacks": [costs, budget]}
    answer = chat.invoke("hello there", config=config)
    streamed = sum(chat.stream("and streamed", config=config), AIMessageChunk(content=""))
    assert isinstance(streamed, AIMessageChunk)
    charged = answer.response_metadata["cost_usd"] + streamed.response_metadata["cost_usd"]
    assert answer.response_metadata["cost_usd"] > 0.001  # the router's own prices
    assert costs.total_cost_usd == pytest.approx(charged)
    assert budget.spent()["daily"] == pytest.approx(charged)


# --------------------------------------------------------------------------- parallel tool calls
def _openai_then_anthropic(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer
) -> ChatRouter:
    return ChatRouter(
        providers={
            "openai": openai_provider(openai_server, "gpt-4o-mini"),
            "anthropic": anthropic_provider(anthropic_server, "claude-3-5-haiku-latest"),
        },
        model="openai/gpt-4o-mini",
        fallback_chain=["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"],
        retry=FAST_RETRY,
    )


def test_bind_tools_parallel_tool_calls_survives_a_fallback_to_anthropic(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer
) -> None:
    # It used to travel in ``extra``, copied unchanged into Anthropic's body (a 400 there).
    llm = _openai_then_anthropic(openai_server, anthropic_server).bind_tools(
        [WEATHER], parallel_tool_calls=False
    )
    llm.invoke("weather in Paris?")
    assert openai_server.requests[-1].body["parallel_tool_calls"] is False

    openai_server.push(OVERLOADED, OVERLOADED)
    ai = llm.invoke("weather in Rome?")
    assert ai.response_metadata["provider"] == "anthropic"
    body = anthropic_server.requests[-1].body
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert "parallel_tool_calls" not in body


def test_parallel_tool_calls_given_as_a_call_keyword_is_the_field(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer
) -> None:
    llm = _openai_then_anthropic(openai_server, anthropic_server).bind_tools(
        [WEATHER], tool_choice="get_weather"
    )
    openai_server.push(OVERLOADED, OVERLOADED)
    llm.invoke("weather in Oslo?", parallel_tool_calls=False)
    body = anthropic_server.requests[-1].body
    assert body["tool_choice"] == {
        "type": "tool",
        "name": "get_weather",
        "disable_parallel_tool_use": True,
    }
    assert "parallel_tool_calls" not in body
    llm.invoke("weather in Lima?")  # unset: the provider's default, nothing sent
    assert "parallel_tool_calls" not in openai_server.requests[-1].body
