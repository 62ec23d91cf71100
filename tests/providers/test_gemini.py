"""Gemini specifics: the request on the wire, conversions, cumulative usage, errors, secrets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llm_cache_router_integrations import (
    AuthenticationError,
    ChatRequest,
    ConfigurationError,
    ContentPolicyError,
    ContextLengthExceededError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitError,
    StreamAccumulator,
    UnsupportedInputError,
    create_provider,
)
from llm_cache_router_integrations.providers.gemini import (
    SKIP_THOUGHT_SIGNATURE,
    GeminiProvider,
    gemini_schema,
)
from llm_cache_router_integrations.testing import JSONReply, StreamReply
from llm_cache_router_integrations.testing.gemini_server import GeminiServer, google_error
from llm_cache_router_integrations.testing.server import RawReply, sse
from llm_cache_router_integrations.types import ToolCall, ToolCallFunction, Usage

KEY = "gm-secret-key-0123456789abcdef"
MODEL = "gemini-2.0-flash"
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": "GetWeather",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "city": {"type": "string", "title": "City", "format": "email"},
                "title": {"type": ["string", "null"], "default": None},
                "unit": {"const": "celsius"},
                "where": {"$ref": "#/$defs/Place"},
            },
            "required": ["city"],
            "$defs": {"Place": {"type": "object", "properties": {"lat": {"type": "number"}}}},
        },
    },
}


@pytest.fixture
def server() -> Iterator[GeminiServer]:
    running = GeminiServer()
    running.start()
    yield running
    running.stop()


@pytest.fixture
def provider(server: GeminiServer) -> Iterator[GeminiProvider]:
    instance = GeminiProvider({"api_key": KEY, "base_url": server.base_url})
    yield instance
    instance.close()


def ask(*messages: dict[str, Any], **kwargs: Any) -> ChatRequest:
    return ChatRequest.model_validate({"model": MODEL, "messages": list(messages), **kwargs})


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def sent(server: GeminiServer) -> dict[str, Any]:
    body = server.requests[-1].body
    assert isinstance(body, dict)
    return body


# ---------------------------------------------------------------------------- the request
def test_request_url_headers_and_generation_config(
    server: GeminiServer, provider: GeminiProvider
) -> None:
    provider.complete(
        ask(
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in English."},
            user("Hello there"),
            {"role": "assistant", "content": "Hi!"},
            user("How are you?"),
            temperature=0.2,
            top_p=0.9,
            max_tokens=64,
            stop=["END"],
            seed=7,
            extra={"topK": 20, "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT"}]},
        )
    )
    recorded = server.requests[-1]
    assert recorded.path == f"/v1beta/models/{MODEL}:generateContent"
    assert recorded.query == {}
    assert recorded.headers["x-goog-api-key"] == KEY
    assert "authorization" not in recorded.headers
    body = sent(server)
    assert body["systemInstruction"] == {
        "parts": [{"text": "Be brief."}, {"text": "Answer in English."}]
    }
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][1]["parts"] == [{"text": "Hi!"}]
    assert body["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 64,
        "stopSequences": ["END"],
        "seed": 7,
        "topK": 20,
    }
    assert body["safetySettings"] == [{"category": "HARM_CATEGORY_HARASSMENT"}]


def test_stream_uses_sse_endpoint(server: GeminiServer, provider: GeminiProvider) -> None:
    chunks = list(provider.stream(ask(user("Stream a few words for me please"))))
    recorded = server.requests[-1]
    assert recorded.path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert recorded.query == {"alt": "sse"}
    assert chunks[-1].is_final and chunks[-1].finish_reason == "stop"


def test_params_generation_config_is_merged(server: GeminiServer) -> None:
    provider = GeminiProvider(
        {
            "api_key": KEY,
            "base_url": server.base_url,
            "params": {"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}},
        }
    )
    provider.complete(ask(user("hi"), temperature=0.5))
    assert sent(server)["generationConfig"] == {
        "temperature": 0.5,
        "thinkingConfig": {"thinkingBudget": 0},
    }


def test_media_blocks_become_inline_or_file_data(
    server: GeminiServer, provider: GeminiProvider
) -> None:
    provider.complete(
        ask(
            user(
                [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp"}},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/gif", "data": PIXEL},
                    },
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {"type": "video_url", "video_url": {"url": "https://example.com/clip.mov"}},
                    {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}},
                ]
            )
        )
    )
    assert sent(server)["contents"][0]["parts"] == [
        {"text": "What is in these?"},
        {"inline_data": {"mime_type": "image/png", "data": PIXEL}},
        {"file_data": {"mime_type": "image/webp", "file_uri": "https://example.com/cat.webp"}},
        {"inline_data": {"mime_type": "image/gif", "data": PIXEL}},
        {"inline_data": {"mime_type": "audio/wav", "data": "UklGRg=="}},
        {"file_data": {"mime_type": "video/quicktime", "file_uri": "https://example.com/clip.mov"}},
        {"inline_data": {"mime_type": "video/mp4", "data": "AAAA"}},
    ]


def test_non_base64_data_uri_is_rejected_before_any_call(
    server: GeminiServer, provider: GeminiProvider
) -> None:
    block = {"type": "image_url", "image_url": {"url": "data:image/svg+xml,<svg/>"}}
    with pytest.raises(
        InvalidRequestError, match=r"messages\[0\]\.content\[0\]\.image_url"
    ) as raised:
        provider.complete(ask(user([block])))
    assert not isinstance(raised.value, UnsupportedInputError)  # wrong for every provider
    assert server.requests == []


def test_tools_are_sanitized_and_accepted(server: GeminiServer, provider: GeminiProvider) -> None:
    response = provider.complete(
        ask(user("Weather in Paris?"), tools=[WEATHER], tool_choice="get_weather")
    )
    body = sent(server)
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration["name"] == "get_weather"
    assert declaration["description"] == "Current weather in a city"
    assert declaration["parameters"] == {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "title": {"type": "string", "nullable": True},
            "unit": {"enum": ["celsius"]},
            "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
        },
        "required": ["city"],
    }
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    assert response.tool_calls[0].function.name == "get_weather"


def test_unsanitized_schema_is_what_gemini_rejects(server: GeminiServer) -> None:
    # The loopback server rejects the raw schema exactly as Gemini does, so the test above matters.
    raw = {"functionDeclarations": [WEATHER["function"]]}
    provider = GeminiProvider({"api_key": KEY, "base_url": server.base_url})
    with pytest.raises(ProviderError, match="Unknown name"):
        provider.complete(ask(user("Weather?"), extra={"tools": [raw]}))


@pytest.mark.parametrize(
    ("choice", "config"),
    [("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}), ("required", {"mode": "ANY"})],
)
def test_tool_choice_modes(
    server: GeminiServer, provider: GeminiProvider, choice: str, config: dict[str, Any]
) -> None:
    provider.complete(ask(user("Weather?"), tools=[WEATHER], tool_choice=choice))
    assert sent(server)["toolConfig"] == {"functionCallingConfig": config}


def test_json_schema_response_format(server: GeminiServer, provider: GeminiProvider) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    response = provider.complete(
        ask(
            user("Which city?"),
            response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
        )
    )
    config = sent(server)["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    assert json.loads(response.content or "") == {"city": "Paris"}


def test_json_object_response_format(server: GeminiServer, provider: GeminiProvider) -> None:
    provider.complete(ask(user("Give JSON"), response_format={"type": "json_object"}))
    assert sent(server)["generationConfig"] == {"responseMimeType": "application/json"}


# ---------------------------------------------------------------------------- tool results
def _calls(*names: str) -> list[ToolCall]:
    return [
        ToolCall(
            id=f"call_{i}", function=ToolCallFunction(name=name, arguments='{"city": "Paris"}')
        )
        for i, name in enumerate(names)
    ]


def test_tool_results_are_merged_function_responses(
    server: GeminiServer, provider: GeminiProvider
) -> None:
    calls = _calls("get_weather", "get_time")
    response = provider.complete(
        ask(
            user("Weather and time in Paris?"),
            {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
            {"role": "tool", "tool_call_id": "call_0", "content": '{"sky": "sunny"}'},
            {"role": "tool", "tool_call_id": "call_1", "content": "noon"},
        )
    )
    contents = sent(server)["contents"]
    assert len(contents) == 3
    assert contents[1] == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_0"}},
            {"functionCall": {"name": "get_time", "args": {"city": "Paris"}, "id": "call_1"}},
        ],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [
            {
                "functionResponse": {
                    "name": "get_weather",
                    "id": "call_0",
                    "response": {"result": {"sky": "sunny"}},
                }
            },
            {
                "functionResponse": {
                    "name": "get_time",
                    "id": "call_1",
                    "response": {"result": "noon"},
                }
            },
        ],
    }
    assert response.content == "The tool returned noon. That is the answer."


def test_tool_result_for_unknown_call_needs_a_name(provider: GeminiProvider) -> None:
    request = ask(user("hi"), {"role": "tool", "tool_call_id": "call_x", "content": "42"})
    # Other providers (Ollama, OpenAI-compatible servers) carry a tool result without a name.
    with pytest.raises(UnsupportedInputError, match=r"messages\[1\]\.tool_call_id.*'name'"):
        provider.build_request(request, stream=False)


def test_thought_signature_is_sent_back(server: GeminiServer, provider: GeminiProvider) -> None:
    first = provider.complete(ask(user("Weather in Paris?"), tools=[WEATHER]))
    call = first.tool_calls[0]
    provider.complete(
        ask(
            user("Weather in Paris?"),
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
            tools=[WEATHER],
        )
    )
    replayed = sent(server)["contents"][1]["parts"][0]
    assert replayed["functionCall"]["id"] == call.id
    assert replayed["thoughtSignature"] == GeminiServer.signature(
        server.answers[0].tool_calls[0][0]
    )


def test_unknown_signature_on_gemini_3_uses_the_placeholder(provider: GeminiProvider) -> None:
    history = [
        user("Weather?"),
        {"role": "assistant", "tool_calls": [c.model_dump() for c in _calls("a", "b")]},
        {"role": "tool", "tool_call_id": "call_0", "content": "1"},
        {"role": "tool", "tool_call_id": "call_1", "content": "2"},
    ]
    gemini3 = ChatRequest.model_validate({"model": "gemini-3-pro-preview", "messages": history})
    parts = provider.build_request(gemini3, stream=False).body["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == SKIP_THOUGHT_SIGNATURE
    assert "thoughtSignature" not in parts[1]
    older = ChatRequest.model_validate({"model": "gemini-2.5-flash", "messages": history})
    parts = provider.build_request(older, stream=False).body["contents"][1]["parts"]
    assert all("thoughtSignature" not in part for part in parts)


# ---------------------------------------------------------------------------- responses
def test_thinking_parts_are_skipped_and_counted(server: GeminiServer) -> None:
    server.thoughts_tokens = 11
    provider = GeminiProvider({"api_key": KEY, "base_url": server.base_url})
    response = provider.complete(ask(user("Think about it")))
    answer = server.last_answer
    assert response.content == answer.text
    assert response.usage == Usage.of(
        answer.input_tokens, answer.output_tokens + 11, reasoning_tokens=11
    )


def test_stream_usage_is_cumulative_not_summed(server: GeminiServer) -> None:
    def event(text: str, candidates: int, finish: str | None = None) -> bytes:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
        if finish:
            candidate["finishReason"] = finish
        usage = {
            "promptTokenCount": 10,
            "candidatesTokenCount": candidates,
            "totalTokenCount": 10 + candidates,
            "cachedContentTokenCount": 4,
        }
        return sse({"candidates": [candidate], "usageMetadata": usage, "modelVersion": "g-001"})

    server.push(StreamReply([event("One ", 1), event("two ", 2), event("three.", 3, "STOP")]))
    provider = GeminiProvider({"api_key": KEY, "base_url": server.base_url})
    acc = StreamAccumulator()
    for chunk in provider.stream(ask(user("Count"))):
        acc.add(chunk)
    response = acc.response()
    assert response.content == "One two three."
    assert response.usage == Usage.of(10, 3, cached_input_tokens=4)
    assert response.model_used == "g-001"


def test_stream_tool_call_arrives_whole(server: GeminiServer, provider: GeminiProvider) -> None:
    chunks = list(provider.stream(ask(user("Weather in Paris?"), tools=[WEATHER])))
    deltas = [d for c in chunks for d in c.tool_call_deltas]
    assert len(deltas) == 1
    assert deltas[0].name == "get_weather"
    assert json.loads(deltas[0].arguments) == server.last_answer.tool_calls[0][2]
    assert chunks[-1].finish_reason == "tool_calls"


def test_max_tokens_finish_is_length(server: GeminiServer, provider: GeminiProvider) -> None:
    response = provider.complete(ask(user("Tell me a long story about dragons"), max_tokens=2))
    assert response.finish_reason == "length"
    assert server.last_answer.finish == "length"


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("SAFETY", "content_filter"), ("RECITATION", "content_filter"), ("OTHER", "other")],
)
def test_finish_reasons(
    server: GeminiServer, provider: GeminiProvider, reason: str, finish: str
) -> None:
    server.push(
        JSONReply(
            {
                "candidates": [{"finishReason": reason, "index": 0}],
                "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5},
            }
        )
    )
    response = provider.complete(ask(user("hi")))
    assert response.finish_reason == finish
    assert response.content == ""
    assert response.usage == Usage.of(5, 0)


def test_blocked_prompt_is_content_policy_error(
    server: GeminiServer, provider: GeminiProvider
) -> None:
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 3},
    }
    server.push(JSONReply(blocked), StreamReply([sse(blocked)]))
    with pytest.raises(ContentPolicyError, match="SAFETY"):
        provider.complete(ask(user("something bad")))
    with pytest.raises(ContentPolicyError):
        list(provider.stream(ask(user("something bad"))))


# ---------------------------------------------------------------------------- errors
RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}
QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. "
    "Quota exceeded for metric: generate_content_free_tier_requests, limit: 10"
)
KEY_INVALID = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]


@pytest.mark.parametrize(
    ("status", "body", "error_class"),
    [
        (429, google_error(429, QUOTA, details=[RETRY_INFO]), RateLimitError),
        (
            400,
            google_error(
                400,
                "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            ),
            ContextLengthExceededError,
        ),
        (400, google_error(400, "API key not valid.", details=KEY_INVALID), AuthenticationError),
        (403, google_error(403, "Permission denied on resource."), AuthenticationError),
        (
            503,
            google_error(503, "The model is overloaded.", status="UNAVAILABLE"),
            ProviderUnavailableError,
        ),
        (
            404,
            google_error(404, "models/gemini-9 is not found for API version v1beta."),
            ModelNotFoundError,
        ),
    ],
)
def test_error_classification(
    server: GeminiServer,
    provider: GeminiProvider,
    status: int,
    body: dict[str, Any],
    error_class: type[ProviderError],
) -> None:
    server.push(JSONReply(body, status=status), JSONReply(body, status=status))
    with pytest.raises(error_class) as info:
        provider.complete(ask(user("hi")))
    assert type(info.value) is error_class
    assert info.value.status_code == status
    with pytest.raises(error_class):
        list(provider.stream(ask(user("hi"))))


def test_retry_after_from_retry_info(server: GeminiServer, provider: GeminiProvider) -> None:
    server.push(JSONReply(google_error(429, QUOTA, details=[RETRY_INFO]), status=429))
    with pytest.raises(RateLimitError) as info:
        provider.complete(ask(user("hi")))
    assert info.value.retry_after == 30.0
    assert info.value.retryable  # a per-minute quota resets: "billing" in the text is no hint
    assert info.value.error_type == "RESOURCE_EXHAUSTED"


def test_retry_after_header_wins(server: GeminiServer, provider: GeminiProvider) -> None:
    body = google_error(429, "Resource exhausted.", details=[RETRY_INFO])
    server.push(JSONReply(body, status=429, headers={"Retry-After": "7"}))
    with pytest.raises(RateLimitError) as info:
        provider.complete(ask(user("hi")))
    assert info.value.retry_after == 7.0


def test_api_key_invalid_reason_is_the_error_type(
    server: GeminiServer, provider: GeminiProvider
) -> None:
    server.push(JSONReply(google_error(400, "API key not valid.", details=KEY_INVALID), status=400))
    with pytest.raises(AuthenticationError) as info:
        provider.complete(ask(user("hi")))
    assert info.value.error_type == "API_KEY_INVALID"
    assert not info.value.retryable


def test_error_inside_a_200_stream(server: GeminiServer, provider: GeminiProvider) -> None:
    first = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}]}
    error = google_error(
        503, "The model is overloaded. Please try again later.", status="UNAVAILABLE"
    )
    server.push(StreamReply([sse(first), sse(error)]))
    chunks = []
    with pytest.raises(ProviderUnavailableError, match="overloaded"):
        for chunk in provider.stream(ask(user("hi"))):
            chunks.append(chunk)
    assert [c.delta for c in chunks] == ["Hel"]


async def test_truncated_stream_raises(server: GeminiServer, provider: GeminiProvider) -> None:
    partial = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Once upon"}]}}]}
    server.push(StreamReply([sse(partial)]))
    with pytest.raises(ProviderResponseError, match="truncated"):
        async for _ in provider.astream(ask(user("story"))):
            pass
    await provider.aclose()


def test_malformed_event_raises(server: GeminiServer, provider: GeminiProvider) -> None:
    server.push(StreamReply([b"data: {not json\n\n"]))
    with pytest.raises(ProviderResponseError, match="malformed JSON"):
        list(provider.stream(ask(user("hi"))))


def test_malformed_body_raises(server: GeminiServer, provider: GeminiProvider) -> None:
    server.push(RawReply(b"<html>oops</html>"))
    with pytest.raises(ProviderResponseError):
        provider.complete(ask(user("hi")))


def test_non_sse_stream_is_a_json_array(server: GeminiServer) -> None:
    # The server also speaks Google's default stream format (one JSON array), as the real API does.
    response = httpx.post(
        f"{server.base_url}/models/{MODEL}:streamGenerateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "Say several words please"}]}]},
        headers={"x-goog-api-key": KEY},
    )
    items = response.json()
    assert len(items) > 1
    assert items[-1]["candidates"][0]["finishReason"] == "STOP"


# ---------------------------------------------------------------------------- secrets
def test_key_never_in_url_or_error_text(server: GeminiServer, provider: GeminiProvider) -> None:
    body = google_error(400, f"API key not valid: {KEY}.", details=KEY_INVALID)
    server.push(JSONReply(body, status=400), StreamReply([sse(body)]))
    with pytest.raises(AuthenticationError) as info:
        provider.complete(ask(user("hi")))
    assert KEY not in str(info.value) and KEY not in info.value.message
    with pytest.raises(AuthenticationError) as streamed:
        list(provider.stream(ask(user("hi"))))
    assert KEY not in str(streamed.value)
    for recorded in server.requests:
        assert KEY not in recorded.path and KEY not in json.dumps(recorded.query)
    assert KEY not in repr(provider)


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch, server: GeminiServer) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "google-env-key-123")
    provider = create_provider("gemini", {"base_url": server.base_url})
    provider.complete(ask(user("hi")))
    assert server.requests[-1].headers["x-goog-api-key"] == "google-env-key-123"
    monkeypatch.delenv("GOOGLE_API_KEY")
    with pytest.raises(ConfigurationError, match="GEMINI_API_KEY"):
        create_provider("gemini", {"base_url": server.base_url})


def test_default_base_url() -> None:
    provider = GeminiProvider({"api_key": KEY})
    wire = provider.build_request(ask(user("hi")), stream=True)
    assert wire.url == (
        f"https://generativelanguage.googleapis.com/v1beta/models/{MODEL}:streamGenerateContent"
    )
    assert wire.params == {"alt": "sse"}
    assert KEY not in wire.url


def test_schema_recursion_and_formats() -> None:
    tree = {
        "type": "object",
        "properties": {
            "child": {"$ref": "#/$defs/Node"},
            "when": {"type": "string", "format": "date-time"},
        },
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
    }
    assert gemini_schema(tree) == {
        "type": "object",
        "properties": {
            "child": {"type": "object", "properties": {"next": {"type": "object"}}},
            "when": {"type": "string", "format": "date-time"},
        },
    }


def test_function_without_arguments_has_no_parameters(
    server: GeminiServer, provider: GeminiProvider
) -> None:
    tool = {"type": "function", "function": {"name": "now"}}
    provider.complete(ask(user("What time is it?"), tools=[tool]))
    assert sent(server)["tools"] == [{"functionDeclarations": [{"name": "now"}]}]
