"""Differential test: the official ``openai`` SDK and our ``openai`` adapter read the same server.

For the same prompts (plain text, tool calls, a tool round trip, JSON output, streaming with
``stream_options={"include_usage": True}``, sync and async) both must see the same content, tool
calls (id, name, arguments), finish reason, model and usage (prompt/completion/total, cached and
reasoning tokens). Each side talks to its own fresh server so the deterministic tool-call ids
match. Agreement with the SDK shows that the loopback server speaks OpenAI's real wire format and
that our adapter reads it as OpenAI's own client does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest

from llm_cache_router_integrations import (
    ChatRequest,
    RateLimitError,
    StreamAccumulator,
    Usage,
    create_provider,
)
from llm_cache_router_integrations.testing import JSONReply, StreamReply
from llm_cache_router_integrations.testing.openai_server import OpenAIServer
from llm_cache_router_integrations.testing.server import sse
from llm_cache_router_integrations.types import LLMResponse

MODEL = "gpt-4o-mini"
API_KEY = "sk-test-sdk-0123456789abcdef"
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
SCHEMA: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
            "required": ["name", "population"],
        },
    },
}


@dataclass
class Seen:
    """What one client understood of an answer."""

    content: str | None
    tool_calls: list[tuple[str, str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None


def sdk_usage(usage: Any) -> Usage | None:
    """Our :class:`Usage` from the SDK's ``CompletionUsage``."""
    if usage is None:
        return None
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    reasoning = (
        usage.completion_tokens_details.reasoning_tokens if usage.completion_tokens_details else 0
    )
    return Usage.of(
        usage.prompt_tokens,
        usage.completion_tokens,
        total_tokens=usage.total_tokens,
        cached_input_tokens=cached or 0,
        reasoning_tokens=reasoning or 0,
    )


def from_sdk(completion: Any) -> Seen:
    """Read a ``ChatCompletion`` the SDK parsed."""
    message = completion.choices[0].message
    calls = [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or ()
    ]
    return Seen(
        content=message.content,
        tool_calls=calls,
        finish_reason=completion.choices[0].finish_reason,
        usage=sdk_usage(completion.usage),
        model=completion.model,
    )


class SDKStream:
    """Folds the SDK's ``ChatCompletionChunk`` objects into a :class:`Seen`."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, list[str]] = {}
        self.seen = Seen(content=None)

    def add(self, chunk: Any) -> None:
        self.seen.model = chunk.model
        if chunk.usage is not None:
            self.seen.usage = sdk_usage(chunk.usage)
        for choice in chunk.choices:
            if choice.delta.content:
                self.text.append(choice.delta.content)
            for call in choice.delta.tool_calls or ():
                slot = self.calls.setdefault(call.index, ["", "", ""])
                slot[0] += call.id or ""
                if call.function:
                    slot[1] += call.function.name or ""
                    slot[2] += call.function.arguments or ""
            if choice.finish_reason:
                self.seen.finish_reason = choice.finish_reason

    def result(self) -> Seen:
        self.seen.content = "".join(self.text) or None
        self.seen.tool_calls = [
            (cid, name, json.loads(args)) for _, (cid, name, args) in sorted(self.calls.items())
        ]
        return self.seen


def from_ours(response: LLMResponse) -> Seen:
    """Read our :class:`LLMResponse` (complete, or accumulated from a stream)."""
    return Seen(
        content=response.content or None,
        tool_calls=[
            (c.id, c.function.name, json.loads(c.function.arguments)) for c in response.tool_calls
        ],
        finish_reason=response.finish_reason,
        usage=response.usage,
        model=response.model_used,
    )


def sdk_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """The SDK's ``create`` arguments for a request given in our ``ChatRequest`` fields."""
    kwargs = {"model": MODEL, **params}
    if "max_tokens" in kwargs:
        kwargs["max_completion_tokens"] = kwargs.pop("max_tokens")
    return kwargs


def ours(params: dict[str, Any]) -> ChatRequest:
    return ChatRequest.model_validate({"model": MODEL, **params})


def user(text: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **extra}


ROUND_TRIP = {
    "tools": [WEATHER],
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_0001",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_0001", "content": "sunny, 21 degrees"},
    ],
}

PROMPTS: dict[str, dict[str, Any]] = {
    "text": user("What is the capital of France?"),
    "system_and_limits": {
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Tell me a very long story about the sea and ships"},
        ],
        "max_tokens": 4,
        "temperature": 0.2,
        "seed": 7,
        "stop": ["\n\n"],
    },
    "tool_call": user("What is the weather in Paris?", tools=[WEATHER]),
    "forced_tool": user(
        "Weather?",
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    ),
    "tool_round_trip": ROUND_TRIP,
    "json_schema": user("Describe Paris as JSON", response_format=SCHEMA),
    "json_object": user("Reply in JSON please", response_format={"type": "json_object"}),
}


@pytest.fixture
def servers() -> Iterator[tuple[OpenAIServer, OpenAIServer]]:
    sdk_side, our_side = (
        OpenAIServer(model_suffix="-2024-07-18"),
        OpenAIServer(model_suffix="-2024-07-18"),
    )
    with sdk_side, our_side:
        yield sdk_side, our_side


def clients(sdk_server: OpenAIServer, our_server: OpenAIServer) -> tuple[openai.OpenAI, Any]:
    sdk = openai.OpenAI(api_key=API_KEY, base_url=sdk_server.base_url, max_retries=0)
    provider = create_provider("openai", {"api_key": API_KEY, "base_url": our_server.base_url})
    return sdk, provider


def same_request(sdk_server: OpenAIServer, our_server: OpenAIServer) -> None:
    """Both clients sent the same conversation and tools."""
    theirs, mine = sdk_server.requests[-1].body, our_server.requests[-1].body
    for key in ("model", "messages", "tools", "tool_choice", "response_format", "stream"):
        assert mine.get(key) == theirs.get(key), key


@pytest.mark.parametrize("name", PROMPTS)
def test_complete_matches_the_sdk(servers: tuple[OpenAIServer, OpenAIServer], name: str) -> None:
    sdk_server, our_server = servers
    sdk, provider = clients(sdk_server, our_server)
    params = PROMPTS[name]
    theirs = from_sdk(sdk.chat.completions.create(**sdk_kwargs(params)))
    mine = from_ours(provider.complete(ours(params)))
    assert mine == theirs
    assert mine.usage == Usage.of(
        our_server.last_answer.input_tokens, our_server.last_answer.output_tokens
    )
    same_request(sdk_server, our_server)
    sdk.close()
    provider.close()


@pytest.mark.parametrize("name", PROMPTS)
def test_stream_matches_the_sdk(servers: tuple[OpenAIServer, OpenAIServer], name: str) -> None:
    sdk_server, our_server = servers
    sdk, provider = clients(sdk_server, our_server)
    params = PROMPTS[name]
    folded = SDKStream()
    for chunk in sdk.chat.completions.create(
        **sdk_kwargs(params), stream=True, stream_options={"include_usage": True}
    ):
        folded.add(chunk)
    acc = StreamAccumulator()
    for piece in provider.stream(ours(params)):
        acc.add(piece)
    assert from_ours(acc.response()) == folded.result()
    assert our_server.requests[-1].body["stream_options"] == {"include_usage": True}
    same_request(sdk_server, our_server)
    sdk.close()
    provider.close()


@pytest.mark.parametrize("name", ["text", "tool_call", "tool_round_trip"])
async def test_async_clients_match(servers: tuple[OpenAIServer, OpenAIServer], name: str) -> None:
    sdk_server, our_server = servers
    sdk = openai.AsyncOpenAI(api_key=API_KEY, base_url=sdk_server.base_url, max_retries=0)
    provider = create_provider("openai", {"api_key": API_KEY, "base_url": our_server.base_url})
    params = PROMPTS[name]
    theirs = from_sdk(await sdk.chat.completions.create(**sdk_kwargs(params)))
    assert from_ours(await provider.acomplete(ours(params))) == theirs

    folded = SDKStream()
    stream: AsyncIterator[Any] = await sdk.chat.completions.create(
        **sdk_kwargs(params), stream=True, stream_options={"include_usage": True}
    )
    async for chunk in stream:
        folded.add(chunk)
    acc = StreamAccumulator()
    async for piece in provider.astream(ours(params)):
        acc.add(piece)
    assert from_ours(acc.response()) == folded.result()
    await sdk.close()
    await provider.aclose()


# ---------------------------------------------------------------- cached and reasoning usage

USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 340,
    "total_tokens": 1540,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 256,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


def test_cached_and_reasoning_usage_match(
    servers: tuple[OpenAIServer, OpenAIServer],
) -> None:
    sdk_server, our_server = servers
    sdk, provider = clients(sdk_server, our_server)
    message = {"role": "assistant", "content": "Forty-two.", "refusal": None}
    body = {
        "id": "chatcmpl-usage",
        "object": "chat.completion",
        "created": 1,
        "model": "o4-mini-2025-04-16",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": USAGE,
    }
    base = {
        "id": "chatcmpl-usage",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "o4-mini-2025-04-16",
    }
    frames = [
        sse(
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ],
            }
        ),
        sse(
            {
                **base,
                "choices": [{"index": 0, "delta": {"content": "Forty-"}, "finish_reason": None}],
            }
        ),
        sse(
            {**base, "choices": [{"index": 0, "delta": {"content": "two."}, "finish_reason": None}]}
        ),
        sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        sse({**base, "choices": [], "usage": USAGE}),
        b"data: [DONE]\n\n",
    ]
    for server in servers:
        server.push(JSONReply(body), StreamReply(frames))
    params = user("What is six times seven?")
    theirs = from_sdk(sdk.chat.completions.create(**sdk_kwargs(params)))
    mine = from_ours(provider.complete(ours(params)))
    assert mine == theirs
    assert mine.usage == Usage(
        input_tokens=1200,
        output_tokens=340,
        total_tokens=1540,
        cached_input_tokens=1024,
        reasoning_tokens=256,
    )
    folded = SDKStream()
    for chunk in sdk.chat.completions.create(
        **sdk_kwargs(params), stream=True, stream_options={"include_usage": True}
    ):
        folded.add(chunk)
    acc = StreamAccumulator()
    for piece in provider.stream(ours(params)):
        acc.add(piece)
    assert from_ours(acc.response()) == folded.result() == mine
    sdk.close()
    provider.close()


def test_sdk_and_adapter_agree_on_errors(servers: tuple[OpenAIServer, OpenAIServer]) -> None:
    """The same 429 body is a rate limit for both, with the same message."""
    sdk_server, our_server = servers
    sdk, provider = clients(sdk_server, our_server)
    error = {
        "error": {
            "message": "Rate limit reached for gpt-4o-mini",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    for server in servers:
        server.push(JSONReply(error, status=429, headers={"retry-after": "1"}))
    with pytest.raises(openai.RateLimitError) as theirs:
        sdk.chat.completions.create(**sdk_kwargs(user("hi")))
    with pytest.raises(RateLimitError) as mine:
        provider.complete(ours(user("hi")))
    assert theirs.value.status_code == mine.value.status_code == 429
    assert mine.value.message in theirs.value.message
    sdk.close()
    provider.close()
