"""Ollama specifics: the native request body, images, tool results, NDJSON streams and errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llm_cache_router_integrations import (
    BadRequestError,
    ChatRequest,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderResponseError,
    ProviderUnavailableError,
    StreamAccumulator,
    UnsupportedInputError,
    create_provider,
)
from llm_cache_router_integrations.providers.ollama import OllamaProvider
from llm_cache_router_integrations.testing import JSONReply, StreamReply
from llm_cache_router_integrations.testing.ollama_server import OllamaServer
from llm_cache_router_integrations.testing.server import ndjson
from llm_cache_router_integrations.types import Usage

MODEL = "llama3.1:8b"
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
WEATHER = {
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
CLOCK = {"type": "function", "function": {"name": "get_time"}}


@pytest.fixture
def server() -> Iterator[OllamaServer]:
    running = OllamaServer(models={MODEL})
    running.start()
    yield running
    running.stop()


@pytest.fixture
def provider(server: OllamaServer) -> Iterator[OllamaProvider]:
    instance = OllamaProvider({"base_url": server.base_url})
    yield instance
    instance.close()


def ask(*messages: dict[str, Any], **kwargs: Any) -> ChatRequest:
    return ChatRequest.model_validate({"model": MODEL, "messages": list(messages), **kwargs})


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def sent(server: OllamaServer) -> dict[str, Any]:
    body = server.requests[-1].body
    assert isinstance(body, dict)
    return body


def line(**fields: Any) -> bytes:
    return ndjson({"model": MODEL, "created_at": "2025-01-01T00:00:00.000001Z", **fields})


# ---------------------------------------------------------------------------- the request
def test_request_body(server: OllamaServer) -> None:
    provider = OllamaProvider(
        {"base_url": server.base_url, "params": {"keep_alive": "10m", "num_ctx": 8192}}
    )
    response = provider.complete(
        ask(
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Use English."},
            user("What is the capital of France?"),
            temperature=0.1,
            top_p=0.8,
            max_tokens=100,
            stop=["###"],
            seed=3,
            extra={"top_k": 40, "options": {"repeat_penalty": 1.1}, "think": False},
        )
    )
    recorded = server.requests[-1]
    assert recorded.path == "/api/chat"
    assert "authorization" not in recorded.headers
    assert sent(server) == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Use English."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "stream": False,
        "options": {
            "temperature": 0.1,
            "top_p": 0.8,
            "num_predict": 100,
            "stop": ["###"],
            "seed": 3,
            "num_ctx": 8192,
            "top_k": 40,
            "repeat_penalty": 1.1,
        },
        "keep_alive": "10m",
        "think": False,
    }
    assert response.model_used == MODEL
    assert response.usage == Usage.of(
        server.last_answer.input_tokens, server.last_answer.output_tokens
    )


def test_stream_flag_is_explicit(server: OllamaServer, provider: OllamaProvider) -> None:
    list(provider.stream(ask(user("Say hello"))))
    assert sent(server)["stream"] is True
    assert "options" not in sent(server)


def test_server_streams_when_stream_is_absent(server: OllamaServer) -> None:
    # Like Ollama itself: no "stream" field means an NDJSON stream.
    response = httpx.post(
        f"{server.url}/api/chat",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hello there friend"}]},
    )
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(text) for text in response.text.splitlines()]
    assert len(lines) > 2
    assert lines[-1]["done"] is True and not any(item["done"] for item in lines[:-1])


def test_images_become_base64_list(server: OllamaServer, provider: OllamaProvider) -> None:
    provider.complete(
        ask(
            user(
                [
                    {"type": "text", "text": "Compare "},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                    {"type": "text", "text": "these."},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
                    },
                ]
            )
        )
    )
    assert sent(server)["messages"] == [
        {"role": "user", "content": "Compare these.", "images": [PIXEL, PIXEL]}
    ]


@pytest.mark.parametrize(
    ("block", "field"),
    [
        (
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            r"messages\[0\]\.content\[1\].*image bytes",
        ),
        (
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
            r"messages\[0\]\.content\[1\].*image bytes",
        ),
        (
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            r"messages\[0\]\.content\[1\].*'input_audio'",
        ),
    ],
)
def test_unsupported_media_is_rejected_before_any_call(
    server: OllamaServer, provider: OllamaProvider, block: dict[str, Any], field: str
) -> None:
    # Another provider can carry these: the router skips Ollama and tries the next candidate.
    with pytest.raises(UnsupportedInputError, match=field):
        provider.complete(ask(user([{"type": "text", "text": "Look"}, block])))
    assert server.requests == []


def test_malformed_data_uri_is_invalid_for_every_provider(
    server: OllamaServer, provider: OllamaProvider
) -> None:
    block = {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}
    with pytest.raises(InvalidRequestError, match=r"content\[0\]: a data: URI must") as raised:
        provider.complete(ask(user([block])))
    assert not isinstance(raised.value, UnsupportedInputError)
    assert server.requests == []


def test_tool_calls_and_results(server: OllamaServer, provider: OllamaProvider) -> None:
    first = provider.complete(ask(user("Weather in Paris?"), tools=[WEATHER]))
    assert first.finish_reason == "tool_calls"
    call = first.tool_calls[0]
    assert call.id.startswith("call_")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert first.content is None
    final = provider.complete(
        ask(
            user("Weather in Paris?"),
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
            tools=[WEATHER],
        )
    )
    messages = sent(server)["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
    }
    assert messages[2] == {"role": "tool", "content": "sunny", "tool_name": "get_weather"}
    assert sent(server)["tools"] == [WEATHER]
    assert final.content == "The tool returned sunny. That is the answer."


def test_tool_choice_none_and_named(server: OllamaServer, provider: OllamaProvider) -> None:
    provider.complete(ask(user("Weather?"), tools=[WEATHER, CLOCK], tool_choice="none"))
    assert "tools" not in sent(server)
    response = provider.complete(ask(user("Time?"), tools=[WEATHER, CLOCK], tool_choice="get_time"))
    assert [t["function"]["name"] for t in sent(server)["tools"]] == ["get_time"]
    assert response.tool_calls[0].function.name == "get_time"


def test_response_formats(server: OllamaServer, provider: OllamaProvider) -> None:
    provider.complete(ask(user("JSON please"), response_format={"type": "json_object"}))
    assert sent(server)["format"] == "json"
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    response = provider.complete(
        ask(
            user("Which city?"),
            response_format={"type": "json_schema", "json_schema": {"schema": schema}},
        )
    )
    assert sent(server)["format"] == schema
    assert json.loads(response.content or "") == {"city": "Paris"}


def test_length_finish(server: OllamaServer, provider: OllamaProvider) -> None:
    response = provider.complete(ask(user("Tell me a long story about a dragon"), max_tokens=2))
    assert response.finish_reason == "length"
    chunks = list(provider.stream(ask(user("Tell me a long story about a dragon"), max_tokens=2)))
    assert chunks[-1].finish_reason == "length"


# ---------------------------------------------------------------------------- streams
def test_stream_tool_call_in_a_non_final_line(server: OllamaServer) -> None:
    call = {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    server.push(
        StreamReply(
            [
                line(
                    message={"role": "assistant", "content": "", "tool_calls": [call]}, done=False
                ),
                line(
                    message={"role": "assistant", "content": ""},
                    done=True,
                    done_reason="stop",
                    prompt_eval_count=21,
                    eval_count=9,
                ),
            ],
            content_type="application/x-ndjson",
        )
    )
    provider = OllamaProvider({"base_url": server.base_url})
    acc = StreamAccumulator()
    for chunk in provider.stream(ask(user("Weather in Oslo?"), tools=[WEATHER])):
        acc.add(chunk)
    response = acc.response()
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls[0].function.name == "get_weather"
    assert json.loads(response.tool_calls[0].function.arguments) == {"city": "Oslo"}
    assert response.usage == Usage.of(21, 9)


def test_error_line_inside_a_200_stream(server: OllamaServer, provider: OllamaProvider) -> None:
    server.push(
        StreamReply(
            [
                line(message={"role": "assistant", "content": "Hel"}, done=False),
                ndjson(
                    {"error": "an error was encountered while running the model: unexpected EOF"}
                ),
            ],
            content_type="application/x-ndjson",
        )
    )
    deltas = []
    with pytest.raises(ProviderUnavailableError, match="unexpected EOF") as info:
        for chunk in provider.stream(ask(user("hi"))):
            deltas.append(chunk.delta)
    assert deltas == ["Hel"]
    assert info.value.status_code is None


async def test_truncated_stream_raises(server: OllamaServer, provider: OllamaProvider) -> None:
    server.push(
        StreamReply(
            [line(message={"role": "assistant", "content": "Once upon"}, done=False)],
            content_type="application/x-ndjson",
        )
    )
    with pytest.raises(ProviderResponseError, match="truncated"):
        async for _ in provider.astream(ask(user("story"))):
            pass
    await provider.aclose()


def test_malformed_line_raises(server: OllamaServer, provider: OllamaProvider) -> None:
    server.push(
        StreamReply(
            [line(message={"role": "assistant", "content": "ok"}, done=False), b"{not json\n"],
            content_type="application/x-ndjson",
        )
    )
    with pytest.raises(ProviderResponseError, match="malformed NDJSON"):
        list(provider.stream(ask(user("hi"))))


async def test_stream_async_usage(server: OllamaServer, provider: OllamaProvider) -> None:
    chunks = [c async for c in provider.astream(ask(user("Explain NDJSON in a few words")))]
    final = chunks[-1]
    assert final.is_final and final.finish_reason == "stop"
    assert final.usage == Usage.of(
        server.last_answer.input_tokens, server.last_answer.output_tokens
    )
    await provider.aclose()


# ---------------------------------------------------------------------------- errors
def test_unknown_model_is_model_not_found(server: OllamaServer, provider: OllamaProvider) -> None:
    request = ChatRequest.model_validate(
        {"model": "mistral:7b", "messages": [{"role": "user", "content": "hi"}]}
    )
    with pytest.raises(ModelNotFoundError, match="try pulling it first") as info:
        provider.complete(request)
    assert info.value.status_code == 404
    with pytest.raises(ModelNotFoundError):
        list(provider.stream(request))


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(500, ProviderUnavailableError), (400, BadRequestError), (503, ProviderUnavailableError)],
)
def test_http_errors(
    server: OllamaServer, provider: OllamaProvider, status: int, error_class: type[ProviderError]
) -> None:
    server.push(JSONReply({"error": "llama runner process has terminated"}, status=status))
    with pytest.raises(error_class, match="llama runner") as info:
        provider.complete(ask(user("hi")))
    assert type(info.value) is error_class


# ---------------------------------------------------------------------------- configuration
def test_optional_bearer_key(server: OllamaServer) -> None:
    provider = OllamaProvider({"base_url": server.base_url, "api_key": "ollama-secret-123456"})
    provider.complete(ask(user("hi")))
    assert server.requests[-1].headers["authorization"] == "Bearer ollama-secret-123456"
    assert "ollama-secret-123456" not in repr(provider)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1:11500", "http://127.0.0.1:11500"),
        ("gpu-box", "http://gpu-box:11434"),
        ("https://ollama.example.com", "https://ollama.example.com"),
        ("http://10.0.0.5:8080/", "http://10.0.0.5:8080"),
    ],
)
def test_ollama_host(monkeypatch: pytest.MonkeyPatch, host: str, url: str) -> None:
    monkeypatch.setenv("OLLAMA_HOST", host)
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    assert create_provider("ollama").base_url == url


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    provider = create_provider("ollama")
    assert provider.base_url == "http://localhost:11434"
    assert provider.build_request(ask(user("hi")), stream=False).url == (
        "http://localhost:11434/api/chat"
    )


def test_env_host_served(monkeypatch: pytest.MonkeyPatch, server: OllamaServer) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{server.port}")
    provider = create_provider("ollama")
    assert provider.complete(ask(user("Hello"))).content == server.last_answer.text
