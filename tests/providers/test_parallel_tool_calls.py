"""``ChatRequest.parallel_tool_calls`` on the wire of every provider, against its loopback server.

OpenAI and compatible APIs get ``parallel_tool_calls`` (only with tools), Anthropic gets
``tool_choice.disable_parallel_tool_use`` (a top-level field is a 400 there), Gemini and Ollama have
no such switch and get nothing. The value given in ``extra`` (where it travelled before it had a
field) takes the same path, so it is never sent twice nor unchanged to a provider that rejects it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from llm_cache_router_integrations import ChatRequest, StreamAccumulator, create_provider
from llm_cache_router_integrations.providers import BaseProvider, OpenAICompatibleProvider
from llm_cache_router_integrations.testing import LoopbackServer

from .cases import ProviderCase, all_cases

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(params=all_cases(), ids=str)
def case(request: pytest.FixtureRequest) -> ProviderCase:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def served(case: ProviderCase) -> Iterator[tuple[LoopbackServer, BaseProvider]]:
    with case.server() as server:
        provider = create_provider(case.provider, case.config(server))
        yield server, provider
        provider.close()


def ask(case: ProviderCase, **kwargs: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {
            "model": case.model,
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            **kwargs,
        }
    )


def check_one_call_asked(provider: BaseProvider, body: dict[str, Any]) -> None:
    """The body asks for at most one tool call in the provider's own words, or not at all."""
    if isinstance(provider, OpenAICompatibleProvider):  # OpenAI, MiniMax, Qwen/DashScope...
        assert body["parallel_tool_calls"] is False
        return
    assert "parallel_tool_calls" not in body
    if provider.type_name == "anthropic":
        assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    else:  # gemini, ollama: no wire field exists
        assert "disable_parallel_tool_use" not in str(body)
        assert "parallel" not in str(body).lower()


@pytest.mark.parametrize("where", ["field", "extra"])
def test_one_tool_call_is_asked_in_each_providers_words(
    case: ProviderCase, served: tuple[LoopbackServer, BaseProvider], where: str
) -> None:
    server, provider = served
    value = (
        {"parallel_tool_calls": False}
        if where == "field"
        else {"extra": {"parallel_tool_calls": False}}
    )
    response = provider.complete(ask(case, tools=[WEATHER], **value))
    assert response.tool_calls  # the server accepted the body and answered with a call
    check_one_call_asked(provider, server.requests[-1].body)


async def test_streams_ask_the_same(
    case: ProviderCase, served: tuple[LoopbackServer, BaseProvider]
) -> None:
    server, provider = served
    acc = StreamAccumulator()
    async for chunk in provider.astream(ask(case, tools=[WEATHER], parallel_tool_calls=False)):
        acc.add(chunk)
    assert acc.response().tool_calls
    check_one_call_asked(provider, server.requests[-1].body)
    await provider.aclose()


def test_nothing_is_sent_without_tools_or_without_a_value(
    case: ProviderCase, served: tuple[LoopbackServer, BaseProvider]
) -> None:
    server, provider = served
    provider.complete(ask(case, parallel_tool_calls=False))  # OpenAI: 400 without tools
    provider.complete(ask(case, tools=[WEATHER]))
    for sent in server.requests[-2:]:
        assert "parallel_tool_calls" not in sent.body
        assert "disable_parallel_tool_use" not in str(sent.body)


def test_allowing_parallel_calls(
    case: ProviderCase, served: tuple[LoopbackServer, BaseProvider]
) -> None:
    server, provider = served
    provider.complete(ask(case, tools=[WEATHER], parallel_tool_calls=True))
    body = server.requests[-1].body
    if isinstance(provider, OpenAICompatibleProvider):
        assert body["parallel_tool_calls"] is True
    else:  # Anthropic's default already allows them: no switch to send
        assert "parallel_tool_calls" not in body
        assert "disable_parallel_tool_use" not in str(body)


# ------------------------------------------------------------------------------ Anthropic
@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", {"type": "any", "disable_parallel_tool_use": True}),
        ("get_weather", {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}),
        ("none", {"type": "none"}),  # "none" does not take the flag
    ],
)
def test_anthropic_merges_the_flag_into_tool_choice(choice: str, wire: dict[str, Any]) -> None:
    provider = create_provider("anthropic", {"api_key": "sk-ant-test-0123456789abcdef"})
    request = ChatRequest.model_validate(
        {
            "model": "claude-3-5-haiku-latest",
            "messages": [{"role": "user", "content": "Weather?"}],
            "tools": [WEATHER],
            "tool_choice": choice,
            "parallel_tool_calls": False,
        }
    )
    body = provider.build_request(request, stream=False).body
    assert body["tool_choice"] == wire
    assert "parallel_tool_calls" not in body
    provider.close()


# ------------------------------------------------------------------------------ the field
def test_the_field_is_a_strict_bool() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert ChatRequest.model_validate(base).parallel_tool_calls is None
    with pytest.raises(ValidationError, match="parallel_tool_calls"):
        ChatRequest.model_validate({**base, "parallel_tool_calls": "no"})
    with pytest.raises(ValidationError, match="parallel_tool_calls"):
        ChatRequest.model_validate({**base, "extra": {"parallel_tool_calls": "no"}})
    moved = ChatRequest.model_validate(
        {**base, "extra": {"parallel_tool_calls": False, "top_k": 3}}
    )
    assert (moved.parallel_tool_calls, moved.extra) == (False, {"top_k": 3})
    with pytest.raises(ValidationError, match="given twice"):
        ChatRequest.model_validate(
            {**base, "parallel_tool_calls": True, "extra": {"parallel_tool_calls": False}}
        )
