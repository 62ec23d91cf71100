"""Anthropic-specific behaviour of the adapter, against the loopback Messages API server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llm_cache_router_integrations import (
    AuthenticationError,
    BadRequestError,
    ChatRequest,
    ContextLengthExceededError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitError,
    StreamAccumulator,
    UnsupportedInputError,
    Usage,
    create_provider,
)
from llm_cache_router_integrations.providers import AnthropicProvider
from llm_cache_router_integrations.testing import JSONReply, StreamReply
from llm_cache_router_integrations.testing.anthropic_server import AnthropicServer
from llm_cache_router_integrations.testing.server import sse
from llm_cache_router_integrations.types import LLMResponse, StreamChunk

MODEL = "claude-3-5-haiku-latest"
API_KEY = "sk-ant-test-0123456789abcdef"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
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


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    server = AnthropicServer()
    with server:
        yield server


@pytest.fixture
def provider(server: AnthropicServer) -> Iterator[AnthropicProvider]:
    provider = create_provider("anthropic", {"api_key": API_KEY, "base_url": server.base_url})
    assert isinstance(provider, AnthropicProvider)
    yield provider
    provider.close()


def request(*messages: dict[str, Any], **kwargs: Any) -> ChatRequest:
    return ChatRequest.model_validate({"model": MODEL, "messages": list(messages), **kwargs})


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def collect(chunks: Iterator[StreamChunk]) -> tuple[list[StreamChunk], LLMResponse]:
    acc = StreamAccumulator()
    seen = []
    for chunk in chunks:
        acc.add(chunk)
        seen.append(chunk)
    return seen, acc.response()


def frame(kind: str, **fields: Any) -> bytes:
    return sse({"type": kind, **fields}, event=kind)


def message_start(**usage: int) -> bytes:
    message: dict[str, Any] = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-haiku-20241022",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 1, **usage},
    }
    return frame("message_start", message=message)


def text_block(*pieces: str) -> list[bytes]:
    frames = [frame("content_block_start", index=0, content_block={"type": "text", "text": ""})]
    frames += [
        frame("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
        for piece in pieces
    ]
    return [*frames, frame("content_block_stop", index=0)]


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


# ---------------------------------------------------------------------------- request shape
def test_headers_and_defaults(server: AnthropicServer, provider: AnthropicProvider) -> None:
    provider.complete(request(user("Hi there"), temperature=1.7, seed=7, stop="END", top_p=0.9))
    sent = server.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    body = sent.body
    assert body["max_tokens"] == 4096
    assert body["temperature"] == 1.0  # clamped to Anthropic's 0..1
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"]
    assert "seed" not in body and "stop" not in body and "stream" not in body


def test_params_and_extra_are_merged_last(server: AnthropicServer) -> None:
    config = {"api_key": API_KEY, "base_url": server.url, "params": {"top_k": 5, "max_tokens": 99}}
    provider = create_provider("anthropic", config)
    provider.complete(request(user("Hi"), extra={"top_k": 3, "metadata": {"user_id": "u1"}}))
    provider.close()
    body = server.requests[-1].body
    assert (body["top_k"], body["max_tokens"], body["metadata"]) == (3, 99, {"user_id": "u1"})


def test_explicit_max_tokens_and_tools(
    server: AnthropicServer, provider: AnthropicProvider
) -> None:
    provider.complete(
        request(user("Weather?"), max_tokens=64, tools=[WEATHER], tool_choice="required")
    )
    body = server.requests[-1].body
    assert body["max_tokens"] == 64
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather in a city",
            "input_schema": WEATHER["function"]["parameters"],
        }
    ]
    assert body["tool_choice"] == {"type": "any"}


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ("get_weather", {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice(provider: AnthropicProvider, choice: str, wire: dict[str, str]) -> None:
    body = provider.build_request(
        request(user("Weather?"), tools=[WEATHER], tool_choice=choice), stream=False
    ).body
    assert body["tool_choice"] == wire


def test_conversation_conversion(server: AnthropicServer, provider: AnthropicProvider) -> None:
    calls = [
        {
            "id": "toolu_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {
            "id": "toolu_b",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
        },
    ]
    response = provider.complete(
        request(
            {"role": "system", "content": "You are terse."},
            user("Weather in Paris"),
            user("and in Rome?"),
            {"role": "developer", "content": "Use Celsius."},
            {"role": "assistant", "content": "Let me check.", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "toolu_a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "toolu_b", "content": "rainy"},
            user("Compare them."),
            tools=[WEATHER],
            tool_choice="none",
        )
    )
    body = server.requests[-1].body
    assert body["system"] == "You are terse.\n\nUse Celsius."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Weather in Paris"},
        {"type": "text", "text": "and in Rome?"},
    ]
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_a", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "toolu_b", "content": "rainy"},
        {"type": "text", "text": "Compare them."},
    ]
    assert response.content == "Answer to: Compare them."


def test_images(server: AnthropicServer, provider: AnthropicProvider) -> None:
    content = [
        {"type": "text", "text": "What is in these images?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lG"}},
    ]
    provider.complete(request({"role": "user", "content": content}))
    blocks = server.requests[-1].body["messages"][0]["content"]
    assert blocks[1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lG"}},
    ]


@pytest.mark.parametrize(
    ("block", "field", "unsupported"),
    [
        (
            {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
            "input_audio",
            True,
        ),
        (
            {"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}},
            "video_url",
            True,
        ),
        # A malformed data: URI is wrong for every provider: a plain InvalidRequestError.
        (
            {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}},
            "image_url",
            False,
        ),
    ],
)
def test_unsupported_blocks_are_rejected_before_sending(
    server: AnthropicServer,
    provider: AnthropicProvider,
    block: dict[str, Any],
    field: str,
    unsupported: bool,
) -> None:
    with pytest.raises(InvalidRequestError, match=field) as raised:
        provider.complete(request({"role": "user", "content": [block]}))
    assert isinstance(raised.value, UnsupportedInputError) is unsupported
    assert server.requests == []


# ---------------------------------------------------------------------------- usage
def test_cached_usage() -> None:
    with AnthropicServer(cached_tokens=4) as server:
        provider = create_provider("anthropic", {"api_key": API_KEY, "base_url": server.url})
        response = provider.complete(request(user("Summarise the cached document please")))
        answer = server.last_answer
        assert response.raw["usage"]["cache_read_input_tokens"] == 4
        assert response.raw["usage"]["input_tokens"] == answer.input_tokens - 4
        expected = Usage.of(answer.input_tokens, answer.output_tokens, cached_input_tokens=4)
        assert response.usage == expected
        _, streamed = collect(provider.stream(request(user("And once more, streamed"))))
        answer = server.last_answer
        expected = Usage.of(answer.input_tokens, answer.output_tokens, cached_input_tokens=4)
        assert streamed.usage == expected
        provider.close()


def test_cache_creation_counts_as_input(
    server: AnthropicServer, provider: AnthropicProvider
) -> None:
    usage = {
        "input_tokens": 5,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 20,
        "output_tokens": 7,
    }
    body = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    server.push(JSONReply(body))
    response = provider.complete(request(user("Hi")))
    assert response.usage == Usage(
        input_tokens=125, output_tokens=7, total_tokens=132, cached_input_tokens=20
    )


def test_stream_usage_is_cumulative(server: AnthropicServer, provider: AnthropicProvider) -> None:
    frames = [
        message_start(cache_read_input_tokens=3),
        frame("ping"),
        *text_block("Hello ", "there ", "friend."),
        frame(
            "message_delta",
            delta={"stop_reason": "end_turn", "stop_sequence": None},
            usage={"output_tokens": 4},
        ),
        frame(
            "message_delta",
            delta={"stop_reason": "end_turn", "stop_sequence": None},
            usage={"input_tokens": 12, "output_tokens": 9},
        ),
        frame("message_stop"),
    ]
    server.push(StreamReply(frames))
    chunks, response = collect(provider.stream(request(user("Hi"))))
    assert response.content == "Hello there friend."
    assert response.finish_reason == "stop"
    # Not 1 + 4 + 9: each count replaces the one before; input_tokens came in the last delta.
    assert response.usage == Usage.of(15, 9, cached_input_tokens=3)
    assert chunks[-1].model_used == "claude-3-5-haiku-20241022"


def test_stream_ignores_thinking(server: AnthropicServer, provider: AnthropicProvider) -> None:
    thinking = [
        frame("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}),
        frame("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Hmm."}),
        frame(
            "content_block_delta", index=0, delta={"type": "signature_delta", "signature": "abc"}
        ),
        frame("content_block_stop", index=0),
    ]
    text = [f.replace(b'"index":0', b'"index":1') for f in text_block("Just ", "this.")]
    frames = [
        message_start(),
        *thinking,
        *text,
        frame("message_delta", delta={"stop_reason": "max_tokens"}, usage={"output_tokens": 6}),
        frame("message_stop"),
    ]
    server.push(StreamReply(frames))
    _, response = collect(provider.stream(request(user("Think first"))))
    assert response.content == "Just this."
    assert response.finish_reason == "length"


def test_thinking_blocks_are_not_content(
    server: AnthropicServer, provider: AnthropicProvider
) -> None:
    body = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [
            {"type": "thinking", "thinking": "Let me think.", "signature": "sig"},
            {"type": "text", "text": "Forty-two."},
        ],
        "stop_reason": "refusal",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }
    server.push(JSONReply(body))
    response = provider.complete(request(user("Meaning of life?")))
    assert response.content == "Forty-two."
    assert response.finish_reason == "content_filter"


def test_stream_tool_calls_are_indexed_from_zero(
    server: AnthropicServer, provider: AnthropicProvider
) -> None:
    chunks = list(provider.stream(request(user("Weather in Paris?"), tools=[WEATHER])))
    deltas = [d for c in chunks for d in c.tool_call_deltas]
    assert {d.index for d in deltas} == {0}
    final = chunks[-1]
    assert final.finish_reason == "tool_calls"
    assert final.tool_calls is not None
    cid, name, args = server.last_answer.tool_calls[0]
    assert final.tool_calls[0].id == cid and cid.startswith("toolu_")
    assert (
        final.tool_calls[0].function.name,
        json.loads(final.tool_calls[0].function.arguments),
    ) == (name, args)


# ---------------------------------------------------------------------------- structured output
SCHEMA: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "city_facts",
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
            "required": ["city", "population"],
        },
    },
}


def test_json_schema_is_a_forced_tool(server: AnthropicServer, provider: AnthropicProvider) -> None:
    response = provider.complete(request(user("Facts about Paris"), response_format=SCHEMA))
    body = server.requests[-1].body
    assert body["tool_choice"] == {"type": "tool", "name": "city_facts"}
    assert body["tools"][0]["name"] == "city_facts"
    assert body["tools"][0]["input_schema"] == SCHEMA["json_schema"]["schema"]
    assert "response_format" not in body
    assert json.loads(response.content or "") == server.last_answer.tool_calls[0][2]
    assert response.finish_reason == "stop"
    assert response.tool_calls == []


def test_json_schema_streams_text(server: AnthropicServer, provider: AnthropicProvider) -> None:
    chunks, response = collect(
        provider.stream(request(user("Facts about Paris"), response_format=SCHEMA))
    )
    assert len([c for c in chunks if c.delta]) >= 2
    assert not any(c.tool_call_deltas for c in chunks)
    assert json.loads(response.content or "") == server.last_answer.tool_calls[0][2]
    assert response.finish_reason == "stop"
    assert response.tool_calls == []


def test_json_object_adds_an_instruction(
    server: AnthropicServer, provider: AnthropicProvider
) -> None:
    provider.complete(
        request(
            {"role": "system", "content": "Be helpful."},
            user("List two colours"),
            response_format={"type": "json_object"},
        )
    )
    system = server.requests[-1].body["system"]
    assert system.startswith("Be helpful.\n\n") and "JSON object" in system


# ---------------------------------------------------------------------------- errors
def test_http_529_overloaded(server: AnthropicServer, provider: AnthropicProvider) -> None:
    server.push(JSONReply(error_body("overloaded_error", "Overloaded"), status=529))
    with pytest.raises(ProviderUnavailableError) as caught:
        provider.complete(request(user("Hi")))
    assert caught.value.status_code == 529 and caught.value.retryable
    assert caught.value.error_type == "overloaded_error"


async def test_http_429_retry_after(server: AnthropicServer, provider: AnthropicProvider) -> None:
    body = error_body("rate_limit_error", "Number of request tokens has exceeded your rate limit")
    server.push(JSONReply(body, status=429, headers={"retry-after": "17"}))
    with pytest.raises(RateLimitError) as caught:
        await provider.acomplete(request(user("Hi")))
    assert caught.value.retry_after == 17.0
    await provider.aclose()


@pytest.mark.parametrize("stream", [False, True])
def test_http_401_never_shows_the_key(
    server: AnthropicServer, provider: AnthropicProvider, stream: bool
) -> None:
    body = error_body("authentication_error", f"invalid x-api-key: {API_KEY}")
    server.push(JSONReply(body, status=401))
    with pytest.raises(AuthenticationError) as caught:
        if stream:
            list(provider.stream(request(user("Hi"))))
        else:
            provider.complete(request(user("Hi")))
    assert API_KEY not in str(caught.value)
    assert API_KEY not in caught.value.message
    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("status", "kind", "message", "expected"),
    [
        (403, "permission_error", "Your API key does not have permission", AuthenticationError),
        (404, "not_found_error", "model: claude-9", ModelNotFoundError),
        (
            400,
            "invalid_request_error",
            "prompt is too long: 250000 tokens > 200000 maximum",
            ContextLengthExceededError,
        ),
        (
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
            BadRequestError,
        ),
        (500, "api_error", "Internal server error", ProviderUnavailableError),
    ],
)
def test_http_errors(
    server: AnthropicServer,
    provider: AnthropicProvider,
    status: int,
    kind: str,
    message: str,
    expected: type[Exception],
) -> None:
    server.push(JSONReply(error_body(kind, message), status=status))
    with pytest.raises(expected) as caught:
        provider.complete(request(user("Hi")))
    assert type(caught.value) is expected


def test_request_too_large_is_not_context_length(
    server: AnthropicServer, provider: AnthropicProvider
) -> None:
    server.push(JSONReply(error_body("request_too_large", "Request too large"), status=413))
    with pytest.raises(BadRequestError) as caught:
        provider.complete(request(user("Hi")))
    assert not isinstance(caught.value, ContextLengthExceededError)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("overloaded_error", ProviderUnavailableError),
        ("rate_limit_error", RateLimitError),
        ("authentication_error", AuthenticationError),
    ],
)
async def test_error_event_in_200_stream(
    server: AnthropicServer, provider: AnthropicProvider, kind: str, expected: type[ProviderError]
) -> None:
    frames = [
        message_start(),
        *text_block("Partial ", "answer "),
        sse(error_body(kind, "Overloaded"), event="error"),
    ]
    server.push(StreamReply(frames))
    received: list[str] = []
    with pytest.raises(expected) as caught:
        async for chunk in provider.astream(request(user("Hi"))):
            received.append(chunk.delta)
    assert "".join(received) == "Partial answer "
    assert type(caught.value) is expected
    assert caught.value.status_code is None
    await provider.aclose()


def test_truncated_stream(server: AnthropicServer, provider: AnthropicProvider) -> None:
    frames = [
        message_start(),
        *text_block("Cut ", "off "),
        frame("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 3}),
    ]
    server.push(StreamReply(frames))
    with pytest.raises(ProviderResponseError, match="truncated"):
        list(provider.stream(request(user("Hi"))))


def test_server_rejects_a_missing_max_tokens(
    server: AnthropicServer, provider: AnthropicProvider
) -> None:
    """The server validates like the real API, so the adapter's default is really needed."""
    wire = provider.build_request(request(user("Hi")), stream=False)
    del wire.body["max_tokens"]
    reply = httpx.post(wire.url, json=wire.body, headers=wire.headers)
    error = provider.error_from_response(reply.status_code, reply.headers, reply.content)
    assert isinstance(error, BadRequestError) and "max_tokens" in str(error)


def test_whitespace_only_stop_sequences_are_dropped(
    server: AnthropicServer, provider: AnthropicProvider
) -> None:
    """Anthropic answers 400 to a stop sequence without a visible character (OpenAI callers often
    pass "\\n"): such entries are left out, the others are kept, and none leaves no field."""
    provider.complete(request(user("List three colours."), stop=["\n", " \n\n", "END"]))
    assert server.requests[-1].body["stop_sequences"] == ["END"]
    provider.complete(request(user("List three colours."), stop=["\n"]))
    assert "stop_sequences" not in server.requests[-1].body
