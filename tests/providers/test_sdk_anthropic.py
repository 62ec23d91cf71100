"""Differential test: the official ``anthropic`` SDK and our adapter read the same loopback server.

If the SDK parses every answer of :class:`AnthropicServer` (JSON and streamed events) into the same
text, tool calls and usage as our adapter, the server speaks the real wire format, and the adapter's
reading of it matches Anthropic's own client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from llm_cache_router_integrations import (
    ChatRequest,
    ProviderUnavailableError,
    StreamAccumulator,
    create_provider,
)
from llm_cache_router_integrations.providers import AnthropicProvider
from llm_cache_router_integrations.testing import Brain, StreamReply
from llm_cache_router_integrations.testing.anthropic_server import AnthropicServer
from llm_cache_router_integrations.testing.server import sse
from llm_cache_router_integrations.types import LLMResponse

anthropic = pytest.importorskip("anthropic")

MODEL = "claude-haiku-4-5"
API_KEY = "sk-ant-test-0123456789abcdef"
MAX_TOKENS = 1024
CACHED = 4
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": WEATHER_TOOL["name"],
        "description": WEATHER_TOOL["description"],
        "parameters": WEATHER_TOOL["input_schema"],
    },
}


@dataclass(frozen=True)
class View:
    """What a client understood of one answer, in a client-neutral form."""

    text: str
    tool_calls: tuple[tuple[str, str, str], ...]  # (id, name, canonical JSON input)
    usage: tuple[int, int, int]  # (uncached input, cache reads, output)
    stop: str


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def sdk_view(message: Any) -> View:
    """The SDK's ``Message`` as a :class:`View`."""
    usage = message.usage
    return View(
        text="".join(b.text for b in message.content if b.type == "text"),
        tool_calls=tuple(
            (b.id, b.name, canonical(b.input)) for b in message.content if b.type == "tool_use"
        ),
        usage=(usage.input_tokens, usage.cache_read_input_tokens or 0, usage.output_tokens),
        stop={"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}[
            message.stop_reason
        ],
    )


def our_view(response: LLMResponse) -> View:
    """Our :class:`LLMResponse` as a :class:`View` (input tokens split back into cache parts)."""
    usage = response.usage
    return View(
        text=response.content or "",
        tool_calls=tuple(
            (c.id, c.function.name, canonical(json.loads(c.function.arguments)))
            for c in response.tool_calls
        ),
        usage=(
            usage.input_tokens - usage.cached_input_tokens,
            usage.cached_input_tokens,
            usage.output_tokens,
        ),
        stop=response.finish_reason,
    )


def server_view(server: AnthropicServer) -> View:
    """What the server actually sent for its last answer."""
    answer = server.last_answer
    usage = server.usage(answer)
    return View(
        text=answer.text,
        tool_calls=tuple((cid, name, canonical(args)) for cid, name, args in answer.tool_calls),
        usage=(usage["input_tokens"], usage["cache_read_input_tokens"], usage["output_tokens"]),
        stop=answer.finish,
    )


def restart_brain(server: AnthropicServer) -> None:
    """A fresh brain, so both clients get the same tool-call ids for the same prompt."""
    server.brain = Brain(call_ids="toolu")


def native_messages(prompt: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": prompt}]


def our_request(prompt: str, tools: bool) -> ChatRequest:
    return ChatRequest.model_validate(
        {
            "model": MODEL,
            "max_tokens": MAX_TOKENS,
            "messages": native_messages(prompt),
            **({"tools": [WEATHER]} if tools else {}),
        }
    )


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    server = AnthropicServer(cached_tokens=CACHED)
    with server:
        yield server


@pytest.fixture
def provider(server: AnthropicServer) -> Iterator[AnthropicProvider]:
    provider = create_provider("anthropic", {"api_key": API_KEY, "base_url": server.base_url})
    assert isinstance(provider, AnthropicProvider)
    yield provider
    provider.close()


@pytest.fixture
def client(server: AnthropicServer) -> Iterator[Any]:
    with anthropic.Anthropic(api_key=API_KEY, base_url=server.url, max_retries=0) as client:
        yield client


PROMPTS = [
    pytest.param("What is the capital of France?", False, id="text"),
    pytest.param("What is the weather in Paris?", True, id="tool"),
]


def sdk_kwargs(prompt: str, tools: bool) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": MAX_TOKENS,
        "messages": native_messages(prompt),
        **({"tools": [WEATHER_TOOL]} if tools else {}),
    }


@pytest.mark.parametrize(("prompt", "tools"), PROMPTS)
def test_create(
    server: AnthropicServer, provider: AnthropicProvider, client: Any, prompt: str, tools: bool
) -> None:
    restart_brain(server)
    theirs = sdk_view(client.messages.create(**sdk_kwargs(prompt, tools)))
    assert theirs == server_view(server)
    restart_brain(server)
    ours = our_view(provider.complete(our_request(prompt, tools)))
    assert ours == theirs


@pytest.mark.parametrize(("prompt", "tools"), PROMPTS)
def test_stream_helper(
    server: AnthropicServer, provider: AnthropicProvider, client: Any, prompt: str, tools: bool
) -> None:
    restart_brain(server)
    with client.messages.stream(**sdk_kwargs(prompt, tools)) as stream:
        streamed_text = "".join(stream.text_stream)
        message = stream.get_final_message()
    theirs = sdk_view(message)
    assert theirs == server_view(server)
    assert streamed_text == theirs.text
    restart_brain(server)
    acc = StreamAccumulator()
    for chunk in provider.stream(our_request(prompt, tools)):
        acc.add(chunk)
    assert our_view(acc.response()) == theirs


@pytest.mark.parametrize(("prompt", "tools"), PROMPTS)
async def test_async_raw_events(
    server: AnthropicServer, provider: AnthropicProvider, prompt: str, tools: bool
) -> None:
    restart_brain(server)
    types: list[str] = []
    text: list[str] = []
    json_parts: list[str] = []
    output_tokens = 0
    start_usage: Any = None
    async with anthropic.AsyncAnthropic(
        api_key=API_KEY, base_url=server.url, max_retries=0
    ) as client:
        stream = await client.messages.create(stream=True, **sdk_kwargs(prompt, tools))
        async for event in stream:
            types.append(event.type)
            if event.type == "message_start":
                start_usage = event.message.usage
            elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                text.append(event.delta.text)
            elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                json_parts.append(event.delta.partial_json)
            elif event.type == "message_delta":
                output_tokens = event.usage.output_tokens
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    assert "ping" not in types  # the SDK drops pings, as our adapter does
    expected = server_view(server)
    assert "".join(text) == expected.text
    if tools:
        assert canonical(json.loads("".join(json_parts))) == expected.tool_calls[0][2]
    theirs_usage = (start_usage.input_tokens, start_usage.cache_read_input_tokens, output_tokens)
    assert theirs_usage == expected.usage

    restart_brain(server)
    acc = StreamAccumulator()
    async for chunk in provider.astream(our_request(prompt, tools)):
        acc.add(chunk)
    assert our_view(acc.response()) == expected
    await provider.aclose()


def test_tool_round_trip(server: AnthropicServer, provider: AnthropicProvider, client: Any) -> None:
    """Both clients send the tool result back the same way and get the same final answer."""
    question = "What is the weather in Paris?"
    restart_brain(server)
    first = client.messages.create(**sdk_kwargs(question, True))
    call = next(b for b in first.content if b.type == "tool_use")
    followup = [
        *native_messages(question),
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 degrees"}
            ],
        },
    ]
    theirs = sdk_view(
        client.messages.create(
            model=MODEL, max_tokens=MAX_TOKENS, messages=followup, tools=[WEATHER_TOOL]
        )
    )
    restart_brain(server)
    ours_first = provider.complete(our_request(question, True))
    ours = our_view(
        provider.complete(
            ChatRequest.model_validate(
                {
                    "model": MODEL,
                    "max_tokens": MAX_TOKENS,
                    "tools": [WEATHER],
                    "messages": [
                        *native_messages(question),
                        {"role": "assistant", "tool_calls": ours_first.tool_calls},
                        {
                            "role": "tool",
                            "tool_call_id": ours_first.tool_calls[0].id,
                            "content": "sunny, 21 degrees",
                        },
                    ],
                }
            )
        )
    )
    assert theirs.text == "The tool returned sunny, 21 degrees. That is the answer."
    assert ours == theirs
    # The same native tool_use / tool_result turns, whichever client built them.
    assert server.requests[3].body["messages"][1:] == server.requests[1].body["messages"][1:]


def test_error_event_is_an_error_for_both(
    server: AnthropicServer, provider: AnthropicProvider, client: Any
) -> None:
    """An ``error`` event inside a 200 stream fails both clients."""
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    frames = [sse(error, event="error")]
    server.push(StreamReply(frames), StreamReply(frames))
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        client.messages.stream(**sdk_kwargs("Hi", False)) as stream,
    ):
        stream.get_final_message()
    with pytest.raises(ProviderUnavailableError, match="Overloaded"):
        list(provider.stream(our_request("Hi", False)))
