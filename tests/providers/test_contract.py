"""Every provider, against a loopback server speaking its real wire format, sync and async:
complete, stream and a full tool-call round trip, with usage equal to what the server sent."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from llm_cache_router_integrations import ChatRequest, Message, StreamAccumulator, create_provider
from llm_cache_router_integrations.providers import BaseProvider
from llm_cache_router_integrations.testing import LoopbackServer
from llm_cache_router_integrations.types import LLMResponse, StreamChunk, ToolDefinition

from .cases import ProviderCase, all_cases

CASES = all_cases()

WEATHER = ToolDefinition.model_validate(
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name"}},
                "required": ["city"],
            },
        },
    }
)


@pytest.fixture(params=CASES, ids=str)
def case(request: pytest.FixtureRequest) -> ProviderCase:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def served(case: ProviderCase) -> Iterator[tuple[LoopbackServer, BaseProvider]]:
    with case.server() as server:
        provider = create_provider(case.provider, case.config(server))
        yield server, provider
        provider.close()


def ask(case: ProviderCase, text: str, **kwargs: object) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": case.model, "messages": [{"role": "user", "content": text}], **kwargs}
    )


def check_text(
    case: ProviderCase, server: LoopbackServer, response: LLMResponse, text: str
) -> None:
    assert response.content == server.last_answer.text
    assert text in (response.content or "")
    assert response.finish_reason == "stop"
    assert response.tool_calls == []
    assert response.usage == case.expected_usage(server.last_answer)
    assert response.provider_used == case.provider
    assert (
        response.model_used.startswith(case.model.split("/")[-1].split(":")[0])
        or response.model_used
    )
    assert response.latency_ms > 0


def check_stream(case: ProviderCase, server: LoopbackServer, chunks: list[StreamChunk]) -> None:
    assert sum(1 for c in chunks if c.is_final) == 1 and chunks[-1].is_final
    assert len([c for c in chunks if c.delta]) >= 2, "the answer must arrive in several pieces"
    acc = StreamAccumulator()
    for chunk in chunks:
        acc.add(chunk)
    response = acc.response()
    assert response.content == server.last_answer.text
    assert response.usage == case.expected_usage(server.last_answer)
    assert chunks[-1].provider_used == case.provider


def test_complete_sync(case: ProviderCase, served: tuple[LoopbackServer, BaseProvider]) -> None:
    server, provider = served
    response = provider.complete(ask(case, "What is the capital of France?"))
    check_text(case, server, response, "capital of France")


async def test_complete_async(
    case: ProviderCase, served: tuple[LoopbackServer, BaseProvider]
) -> None:
    server, provider = served
    response = await provider.acomplete(ask(case, "Name three primary colours please"))
    check_text(case, server, response, "primary colours")
    await provider.aclose()


def test_stream_sync(case: ProviderCase, served: tuple[LoopbackServer, BaseProvider]) -> None:
    server, provider = served
    chunks = list(provider.stream(ask(case, "Tell me a short story about a brave little robot")))
    check_stream(case, server, chunks)


async def test_stream_async(
    case: ProviderCase, served: tuple[LoopbackServer, BaseProvider]
) -> None:
    server, provider = served
    chunks = [
        c async for c in provider.astream(ask(case, "Explain streaming in a few short words"))
    ]
    check_stream(case, server, chunks)
    await provider.aclose()


def _tool_round_trip_request(case: ProviderCase, first: LLMResponse) -> ChatRequest:
    call = first.tool_calls[0]
    return ChatRequest(
        model=case.model,
        tools=[WEATHER],
        messages=[
            Message(role="user", content="What is the weather in Paris?"),
            Message(role="assistant", content=first.content or None, tool_calls=first.tool_calls),
            Message(role="tool", tool_call_id=call.id, content="sunny, 21 degrees"),
        ],
    )


def _check_tool_call(case: ProviderCase, server: LoopbackServer, response: LLMResponse) -> None:
    assert response.finish_reason == "tool_calls"
    assert len(response.tool_calls) == 1
    call = response.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == server.last_answer.tool_calls[0][2]
    assert call.id
    assert response.usage == case.expected_usage(server.last_answer)


def test_tool_round_trip_sync(
    case: ProviderCase, served: tuple[LoopbackServer, BaseProvider]
) -> None:
    server, provider = served
    first = provider.complete(ask(case, "What is the weather in Paris?", tools=[WEATHER]))
    _check_tool_call(case, server, first)
    final = provider.complete(_tool_round_trip_request(case, first))
    assert final.content == "The tool returned sunny, 21 degrees. That is the answer."
    assert final.finish_reason == "stop"


async def test_tool_round_trip_async_stream(
    case: ProviderCase, served: tuple[LoopbackServer, BaseProvider]
) -> None:
    server, provider = served
    acc = StreamAccumulator()
    async for chunk in provider.astream(
        ask(case, "What is the weather in Paris?", tools=[WEATHER])
    ):
        acc.add(chunk)
    first = acc.response()
    _check_tool_call(case, server, first)
    final_acc = StreamAccumulator()
    async for chunk in provider.astream(_tool_round_trip_request(case, first)):
        final_acc.add(chunk)
    assert (
        final_acc.response().content == "The tool returned sunny, 21 degrees. That is the answer."
    )
    await provider.aclose()


async def test_tool_round_trip_async(
    case: ProviderCase, served: tuple[LoopbackServer, BaseProvider]
) -> None:
    server, provider = served
    first = await provider.acomplete(
        ask(case, "What is the weather in Paris?", tools=[WEATHER], tool_choice="get_weather")
    )
    _check_tool_call(case, server, first)
    final = await provider.acomplete(_tool_round_trip_request(case, first))
    assert final.content == "The tool returned sunny, 21 degrees. That is the answer."
    await provider.aclose()


def test_stream_sync_tool_call(
    case: ProviderCase, served: tuple[LoopbackServer, BaseProvider]
) -> None:
    server, provider = served
    chunks = list(
        provider.stream(ask(case, "Weather in Paris?", tools=[WEATHER], tool_choice="required"))
    )
    final = chunks[-1]
    assert final.is_final and final.tool_calls
    assert final.tool_calls[0].function.name == "get_weather"
    assert json.loads(final.tool_calls[0].function.arguments) == server.last_answer.tool_calls[0][2]
    assert final.usage == case.expected_usage(server.last_answer)
