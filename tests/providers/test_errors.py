"""Error classification, ``Retry-After`` parsing and every failure mode of the OpenAI adapter.

The failures are produced by the loopback OpenAI server (scripted replies, resets and delays), so
each test exercises the real HTTP path: status, headers, body parsing, streaming and timeouts.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llm_cache_router_integrations import (
    AuthenticationError,
    BadRequestError,
    ChatRequest,
    ContentPolicyError,
    ContextLengthExceededError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    create_provider,
)
from llm_cache_router_integrations.providers import BaseProvider, ProviderConfig
from llm_cache_router_integrations.providers.classify import (
    MAX_RETRY_AFTER_S,
    classify_error,
    error_details,
    parse_retry_after,
)
from llm_cache_router_integrations.testing import JSONReply, ResetConnection, StreamReply
from llm_cache_router_integrations.testing.anthropic_server import AnthropicServer
from llm_cache_router_integrations.testing.gemini_server import GeminiServer
from llm_cache_router_integrations.testing.ollama_server import OllamaServer
from llm_cache_router_integrations.testing.openai_server import OpenAIServer
from llm_cache_router_integrations.testing.server import LoopbackServer, RawReply, sse

MODEL = "gpt-4o-mini"
API_KEY = "sk-test-openai-0123456789abcdef"
# A key that no key-shaped pattern matches: only redaction of the configured key can hide it.
PLAIN_KEY = "tenant42-secret-value-XYZ"

# ---------------------------------------------------------------- parse_retry_after

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the precise one wins
        ({"retry-after-ms": "junk", "retry-after": "9"}, 9.0),
        ({"retry-after": "100000"}, MAX_RETRY_AFTER_S),
        ({"retry-after-ms": "99999999"}, MAX_RETRY_AFTER_S),
        ({"retry-after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),
        ({"retry-after": email.utils.formatdate(NOW + 86400, usegmt=True)}, MAX_RETRY_AFTER_S),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def test_parse_retry_after_reads_http_headers_case_insensitively() -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": "12"})) == 12.0
    assert parse_retry_after(httpx.Headers({"Retry-After-Ms": "40"})) == 0.04


# ---------------------------------------------------------------- classify_error


@pytest.mark.parametrize(
    ("status", "message", "error_type", "kind", "retryable"),
    [
        (429, "Rate limit reached", "rate_limit_exceeded", RateLimitError, True),
        (429, "You exceeded your current quota", "insufficient_quota", RateLimitError, False),
        (
            400,
            "This model's maximum context length is 8192 tokens",
            None,
            ContextLengthExceededError,
            False,
        ),
        (400, "bad", "context_length_exceeded", ContextLengthExceededError, False),
        (413, "prompt is too long", None, ContextLengthExceededError, False),
        (400, "blocked by content_filter", None, ContentPolicyError, False),
        (400, "Invalid 'messages'", "invalid_request_error", BadRequestError, False),
        (422, "unprocessable", None, BadRequestError, False),
        (401, "Incorrect API key", "invalid_api_key", AuthenticationError, False),
        (403, "not allowed", None, AuthenticationError, False),
        (404, "model not found", "model_not_found", ModelNotFoundError, False),
        (408, "request timeout", None, ProviderTimeoutError, True),
        (409, "conflict", None, ProviderUnavailableError, True),
        (500, "boom", "server_error", ProviderUnavailableError, True),
        (502, "bad gateway", None, ProviderUnavailableError, True),
        (503, "overloaded", None, ProviderUnavailableError, True),
        (529, "overloaded", "overloaded_error", ProviderUnavailableError, True),
        # errors inside a 200 stream have no status
        (None, "Rate limit reached for requests", None, RateLimitError, True),
        (None, "The server had an error", "server_error", ProviderUnavailableError, True),
        (None, "the model is overloaded", None, ProviderUnavailableError, True),
        (None, "maximum context length exceeded", None, ContextLengthExceededError, False),
        (None, "something odd", None, ProviderError, False),
    ],
)
def test_classify_error(
    status: int | None,
    message: str,
    error_type: str | None,
    kind: type[ProviderError],
    retryable: bool,
) -> None:
    error = classify_error("p", status, message, error_type, {"retry-after": "2"})
    assert type(error) is kind
    assert error.retryable is retryable
    assert error.status_code == status
    assert error.error_type == error_type
    assert error.provider == "p"
    assert error.retry_after == 2.0
    assert message in str(error)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": {"message": "m", "type": "t", "code": "c"}}', ("m", "c")),
        (b'{"error": {"message": "m", "type": "t"}}', ("m", "t")),
        ({"error": {"message": "m", "status": "RESOURCE_EXHAUSTED"}}, ("m", "RESOURCE_EXHAUSTED")),
        (
            '[{"error": {"message": "gemini", "status": "INVALID_ARGUMENT"}}]',
            ("gemini", "INVALID_ARGUMENT"),
        ),
        (b'{"error": "ollama says no"}', ("ollama says no", None)),
        (b'{"code": "Throttling", "message": "flat", "request_id": "r"}', ("flat", "Throttling")),
        (b"<html>502 Bad Gateway</html>", ("<html>502 Bad Gateway</html>", None)),
        (b"", ("no error body", None)),
        (None, ("None", None)),
    ],
)
def test_error_details(body: Any, expected: tuple[str, str | None]) -> None:
    assert error_details(body) == expected


# ---------------------------------------------------------------- against the loopback server


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    server = OpenAIServer()
    with server:
        yield server


def make_provider(server: OpenAIServer, key: str = API_KEY, **config: Any) -> BaseProvider:
    return create_provider("openai", {"api_key": key, "base_url": server.base_url, **config})


@pytest.fixture
def provider(server: OpenAIServer) -> Iterator[BaseProvider]:
    provider = make_provider(server)
    yield provider
    provider.close()


def ask(text: str = "Hello there", **kwargs: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": MODEL, "messages": [{"role": "user", "content": text}], **kwargs}
    )


def openai_error(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return sse(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def drain(provider: BaseProvider, request: ChatRequest | None = None) -> str:
    return "".join(c.delta for c in provider.stream(request or ask()))


async def adrain(provider: BaseProvider, request: ChatRequest | None = None) -> str:
    return "".join([c.delta async for c in provider.astream(request or ask())])


def test_429_with_retry_after(server: OpenAIServer, provider: BaseProvider) -> None:
    body = openai_error("Rate limit reached for gpt-4o-mini", "requests", "rate_limit_exceeded")
    server.push(JSONReply(body, status=429, headers={"Retry-After": "3"}))
    with pytest.raises(RateLimitError) as caught:
        provider.complete(ask())
    error = caught.value
    assert error.retryable and error.retry_after == 3.0 and error.status_code == 429
    assert error.error_type == "rate_limit_exceeded"
    assert error.provider == "openai"


async def test_429_on_a_stream_with_retry_after_ms(
    server: OpenAIServer, provider: BaseProvider
) -> None:
    body = openai_error("Rate limit reached", "requests", "rate_limit_exceeded")
    server.push(JSONReply(body, status=429, headers={"retry-after-ms": "750"}))
    with pytest.raises(RateLimitError) as caught:
        await adrain(provider)
    assert caught.value.retry_after == 0.75
    await provider.aclose()


def test_429_insufficient_quota_is_not_retryable(
    server: OpenAIServer, provider: BaseProvider
) -> None:
    body = openai_error(
        "You exceeded your current quota", "insufficient_quota", "insufficient_quota"
    )
    server.push(JSONReply(body, status=429))
    with pytest.raises(RateLimitError) as caught:
        provider.complete(ask())
    assert caught.value.retryable is False


def test_400_context_length_exceeded(server: OpenAIServer, provider: BaseProvider) -> None:
    message = "This model's maximum context length is 128000 tokens. However, you requested 130000."
    body = openai_error(message, "invalid_request_error", "context_length_exceeded")
    server.push(JSONReply(body, status=400))
    with pytest.raises(ContextLengthExceededError) as caught:
        provider.complete(ask())
    assert isinstance(caught.value, BadRequestError) and not caught.value.retryable
    assert caught.value.status_code == 400


def test_400_other_is_bad_request(server: OpenAIServer, provider: BaseProvider) -> None:
    server.push(JSONReply(openai_error("Invalid 'tools'", "invalid_request_error"), status=400))
    with pytest.raises(BadRequestError) as caught:
        provider.complete(ask())
    assert type(caught.value) is BadRequestError


@pytest.mark.parametrize("key", [API_KEY, PLAIN_KEY])
async def test_401_echoing_the_key_never_shows_it(server: OpenAIServer, key: str) -> None:
    provider = make_provider(server, key)
    message = f"Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com."
    body = openai_error(message, "invalid_request_error", "invalid_api_key")
    server.push(JSONReply(body, status=401), JSONReply(body, status=401))
    for attempt in ("sync", "async"):
        with pytest.raises(AuthenticationError) as caught:
            if attempt == "sync":
                provider.complete(ask())
            else:
                await provider.acomplete(ask())
        error = caught.value
        assert not error.retryable and error.status_code == 401
        assert "Incorrect API key provided" in str(error)
        for text in (str(error), repr(error), error.message, *map(str, error.args)):
            assert key not in text
    assert server.requests[-1].headers["authorization"] == f"Bearer {key}"
    await provider.aclose()


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retryable_unavailable(
    server: OpenAIServer, provider: BaseProvider, status: int
) -> None:
    server.push(JSONReply(openai_error("The server had an error", "server_error"), status=status))
    with pytest.raises(ProviderUnavailableError) as caught:
        provider.complete(ask())
    assert caught.value.retryable and caught.value.status_code == status


def test_5xx_with_an_html_body(server: OpenAIServer, provider: BaseProvider) -> None:
    server.push(RawReply(b"<html>502 Bad Gateway</html>", status=502, content_type="text/html"))
    with pytest.raises(ProviderUnavailableError, match="Bad Gateway"):
        provider.complete(ask())


def test_404_is_model_not_found(server: OpenAIServer, provider: BaseProvider) -> None:
    body = openai_error(
        "The model `gpt-9` does not exist", "invalid_request_error", "model_not_found"
    )
    server.push(JSONReply(body, status=404))
    with pytest.raises(ModelNotFoundError) as caught:
        provider.complete(ask())
    assert not caught.value.retryable


def test_wrong_path_is_model_not_found(server: OpenAIServer) -> None:
    provider = create_provider("openai", {"api_key": API_KEY, "base_url": server.url + "/v2"})
    with pytest.raises(ModelNotFoundError, match="Unknown request URL"):
        provider.complete(ask())
    provider.close()


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b'{"choices": [{"message"'])
def test_malformed_json_body(server: OpenAIServer, provider: BaseProvider, body: bytes) -> None:
    server.push(RawReply(body))
    with pytest.raises(ProviderResponseError, match="malformed JSON") as caught:
        provider.complete(ask())
    assert caught.value.retryable and caught.value.status_code == 200


def test_json_that_is_not_an_object(server: OpenAIServer, provider: BaseProvider) -> None:
    server.push(JSONReply([1, 2, 3]))
    with pytest.raises(ProviderResponseError, match="not a JSON object"):
        provider.complete(ask())


@pytest.mark.parametrize("choices", [[], None])
def test_empty_choices(server: OpenAIServer, provider: BaseProvider, choices: Any) -> None:
    body = {"id": "x", "object": "chat.completion", "model": MODEL, "choices": choices}
    server.push(JSONReply(body))
    with pytest.raises(ProviderResponseError, match="no choices"):
        provider.complete(ask())


def test_unexpected_shape_is_a_response_error(server: OpenAIServer, provider: BaseProvider) -> None:
    call = {"id": "c1", "type": "function", "function": {"arguments": "{}"}}  # no name
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    body = {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}
    server.push(JSONReply(body))
    with pytest.raises(ProviderResponseError, match="unexpected response shape"):
        provider.complete(ask())


def test_error_object_in_a_200_body(server: OpenAIServer, provider: BaseProvider) -> None:
    server.push(JSONReply(openai_error("overloaded, try again", "server_error")))
    with pytest.raises(ProviderUnavailableError) as caught:
        provider.complete(ask())
    assert caught.value.status_code is None


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (
            openai_error("The server had an error while processing", "server_error"),
            ProviderUnavailableError,
        ),
        (
            openai_error("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
            RateLimitError,
        ),
        (
            openai_error("flagged by our content_filter", "invalid_request_error"),
            ContentPolicyError,
        ),
    ],
)
def test_error_event_inside_a_200_stream(
    server: OpenAIServer, provider: BaseProvider, error: dict[str, Any], kind: type[ProviderError]
) -> None:
    server.push(
        StreamReply(
            [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"}), sse(error)]
        )
    )
    seen: list[str] = []
    with pytest.raises(kind) as caught:
        for piece in provider.stream(ask()):
            seen.append(piece.delta)
    assert "".join(seen) == "Hi"
    assert caught.value.status_code is None


def test_malformed_event_inside_a_stream(server: OpenAIServer, provider: BaseProvider) -> None:
    server.push(StreamReply([chunk({"content": "Hi"}), b"data: {broken\n\n"]))
    with pytest.raises(ProviderResponseError, match="malformed JSON in stream event"):
        drain(provider)


@pytest.mark.parametrize(
    "frames",
    [
        [chunk({"content": "Hel"}), chunk({"content": "lo"})],  # no finish, no [DONE]
        [],  # an empty 200 stream
        [chunk({"content": "Hel"}), b'data: {"choices": [{"index": 0, "delta": {}, "fini'],
    ],
)
async def test_truncated_stream(
    server: OpenAIServer, provider: BaseProvider, frames: list[bytes]
) -> None:
    server.push(StreamReply(frames), StreamReply(frames))
    with pytest.raises(ProviderResponseError, match="truncated"):
        drain(provider)
    with pytest.raises(ProviderResponseError, match="truncated"):
        await adrain(provider)
    await provider.aclose()


def test_json_body_where_a_stream_was_expected(
    server: OpenAIServer, provider: BaseProvider
) -> None:
    server.push(JSONReply({"id": "x", "object": "chat.completion", "choices": []}))
    with pytest.raises(ProviderResponseError, match="expected an event stream"):
        drain(provider)


async def test_connection_reset(server: OpenAIServer, provider: BaseProvider) -> None:
    server.push(ResetConnection(), ResetConnection())
    with pytest.raises(ProviderConnectionError) as caught:
        provider.complete(ask())
    assert caught.value.retryable and caught.value.status_code is None
    with pytest.raises(ProviderConnectionError):
        await provider.acomplete(ask())
    await provider.aclose()


async def test_connection_reset_mid_stream(server: OpenAIServer, provider: BaseProvider) -> None:
    frames = [chunk({"content": "Hel"}), chunk({"content": "lo"})]
    server.push(StreamReply(frames, then="reset"), StreamReply(frames, then="reset"))
    with pytest.raises(ProviderConnectionError):
        drain(provider)
    with pytest.raises(ProviderConnectionError):
        await adrain(provider)
    await provider.aclose()


def test_nothing_listening_is_a_connection_error() -> None:
    server = OpenAIServer()
    with server:
        url = server.base_url
    provider = create_provider("openai", {"api_key": API_KEY, "base_url": url})
    with pytest.raises(ProviderConnectionError):
        provider.complete(ask())


async def test_slow_reply_times_out(server: OpenAIServer) -> None:
    provider = make_provider(server, timeout=0.2)
    server.push(JSONReply({}, delay=0.8), JSONReply({}, delay=0.8))
    with pytest.raises(ProviderTimeoutError) as caught:
        provider.complete(ask())
    assert caught.value.retryable
    with pytest.raises(ProviderTimeoutError):
        await provider.acomplete(ask())
    # A per-call timeout overrides the configured one.
    server.push(JSONReply({}, delay=0.8))
    with pytest.raises(ProviderTimeoutError):
        make_provider(server).complete(ask(), timeout=0.2)
    await provider.aclose()


def test_stalled_stream_times_out(server: OpenAIServer) -> None:
    provider = make_provider(server, timeout=0.2)
    server.push(StreamReply([chunk({"content": "Hel"}), chunk({"content": "lo"})], delay=0.8))
    with pytest.raises(ProviderTimeoutError):
        drain(provider)
    provider.close()


# ---------------------------------------------------------------- secrets


@pytest.mark.parametrize("key", [API_KEY, PLAIN_KEY])
def test_repr_and_config_never_show_the_key(server: OpenAIServer, key: str) -> None:
    provider = make_provider(server, key)
    for text in (
        repr(provider),
        str(provider),
        repr(provider.config),
        str(provider.config),
        str(provider.config.model_dump()),
        provider.config.model_dump_json(),
        repr(provider.api_key),
        str(provider.api_key),
    ):
        assert key not in text
    assert provider.api_key is not None and provider.api_key.get_secret_value() == key


def test_config_repr_leaves_out_custom_headers() -> None:
    """A key passed in a custom header (Azure's ``api-key``) never shows in the config's repr."""
    config = ProviderConfig(type="openai", headers={"api-key": PLAIN_KEY})
    assert PLAIN_KEY not in repr(config) and PLAIN_KEY not in str(config)
    assert config.headers == {"api-key": PLAIN_KEY}


@pytest.mark.parametrize("key", [API_KEY, PLAIN_KEY])
def test_raw_response_is_redacted(server: OpenAIServer, key: str) -> None:
    provider = make_provider(server, key)
    message = {"role": "assistant", "content": f"Your key is {key}"}
    body = {
        "id": "x",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        "debug": {"api_key": "anything", "authorization": f"Bearer {key}"},
    }
    server.push(JSONReply(body))
    response = provider.complete(ask())
    raw = json.dumps(response.raw)
    assert key not in raw
    assert response.raw["debug"] == {"api_key": "***", "authorization": "***"}
    assert response.raw["choices"][0]["message"]["content"] == "Your key is ***"
    provider.close()


# ---------------------------------------------------------------- impossible numbers in usage

BIG = b"1" + b"0" * 400  # a JSON integer that no float holds


@pytest.mark.parametrize("number", [b"1e999", b"Infinity", b"-Infinity", b"NaN", BIG])
async def test_impossible_usage_number_is_a_response_error(
    server: OpenAIServer, provider: BaseProvider, number: bytes
) -> None:
    body = (
        b'{"id":"x","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,'
        b'"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":' + number + b',"completion_tokens":2,"total_tokens":7}}'
    )
    server.push(RawReply(body), RawReply(body))
    with pytest.raises(ProviderResponseError) as caught:
        provider.complete(ask())
    assert caught.value.retryable  # the router falls back to the next candidate
    with pytest.raises(ProviderResponseError):
        await provider.acomplete(ask())
    usage = b'{"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[],'
    usage += b'"usage":{"prompt_tokens":' + number + b',"completion_tokens":2}}'
    frames = [chunk({"content": "hi"}, "stop"), b"data: " + usage + b"\n\n", b"data: [DONE]\n\n"]
    server.push(StreamReply(frames))
    with pytest.raises(ProviderResponseError):
        await adrain(provider)
    await provider.aclose()


@pytest.mark.parametrize(
    ("provider_type", "server_class", "body"),
    [
        (
            "anthropic",
            AnthropicServer,
            b'{"id":"m","type":"message","role":"assistant","model":"claude-haiku-4-5",'
            b'"content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn",'
            b'"usage":{"input_tokens":1e999,"output_tokens":1}}',
        ),
        (
            "gemini",
            GeminiServer,
            b'{"candidates":[{"content":{"role":"model","parts":[{"text":"hi"}]},'
            b'"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":1e999,'
            b'"candidatesTokenCount":1}}',
        ),
        (
            "ollama",
            OllamaServer,
            b'{"model":"llama3.1","message":{"role":"assistant","content":"hi"},"done":true,'
            b'"done_reason":"stop","prompt_eval_count":1e999,"eval_count":1}',
        ),
    ],
)
def test_impossible_usage_number_is_a_response_error_for_every_provider(
    provider_type: str, server_class: type[LoopbackServer], body: bytes
) -> None:
    with server_class() as fake:
        fake.push(RawReply(body))
        provider = create_provider(provider_type, {"api_key": API_KEY, "base_url": fake.base_url})
        model = {"anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}.get(
            provider_type, "llama3.1"
        )
        request = ChatRequest.model_validate(
            {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
        )
        with pytest.raises(ProviderResponseError):
            provider.complete(request)
        provider.close()


# ---------------------------------------------------------------- whole-request deadline


def _dripped_answer(pieces: int, delay: float) -> StreamReply:
    body = json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        }
    ).encode()
    size = len(body) // pieces + 1
    frames = [body[i : i + size] for i in range(0, len(body), size)]
    return StreamReply(frames, content_type="application/json", delay=delay)


async def test_timeout_bounds_the_whole_request_not_each_read(server: OpenAIServer) -> None:
    # Each piece arrives well within the timeout, the whole body (~1.6 s) does not.
    provider = make_provider(server, timeout=0.5)
    server.push(_dripped_answer(8, 0.2), _dripped_answer(8, 0.2))
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError) as caught:
        provider.complete(ask())
    assert time.monotonic() - started < 1.0
    assert caught.value.retryable and "0.5s" in str(caught.value)
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError):
        await provider.acomplete(ask())
    assert time.monotonic() - started < 0.8
    # A per-call timeout is a whole-request deadline too; a fast drip still answers.
    server.push(_dripped_answer(8, 0.2), _dripped_answer(4, 0.01))
    with pytest.raises(ProviderTimeoutError):
        await make_provider(server).acomplete(ask(), timeout=0.5)
    assert (await provider.acomplete(ask())).content == "hi"
    await provider.aclose()


# ---------------------------------------------------------------- refusals


def test_a_refusal_is_the_answer_flagged_content_filter(
    server: OpenAIServer, provider: BaseProvider
) -> None:
    """OpenAI's ``message.refusal`` (content null) is not an empty success: its text is the
    answer and the finish reason is content_filter, in a complete call and in a stream."""
    refusal = "I'm sorry, I can't help with that."
    message = {"role": "assistant", "content": None, "refusal": refusal}
    body = {
        "id": "x",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 9, "total_tokens": 10},
    }
    server.push(JSONReply(body))
    response = provider.complete(ask())
    assert response.content == refusal and response.finish_reason == "content_filter"

    frames = [
        chunk({"role": "assistant", "content": None, "refusal": ""}),
        chunk({"refusal": "I'm sorry, "}),
        chunk({"refusal": "I can't help with that."}),
        chunk({}, "stop"),
        b"data: [DONE]\n\n",
    ]
    server.push(StreamReply(frames))
    chunks = list(provider.stream(ask()))
    assert "".join(c.delta for c in chunks) == refusal
    assert chunks[-1].finish_reason == "content_filter"
