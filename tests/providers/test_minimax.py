"""MiniMax-specific behaviour: parameter ranges, ``<think>`` stripping and ``base_resp`` errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_cache_router_integrations import (
    AuthenticationError,
    BadRequestError,
    ChatRequest,
    ConfigurationError,
    ContentPolicyError,
    ContextLengthExceededError,
    ProviderError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitError,
    StreamAccumulator,
    UnsupportedInputError,
    create_provider,
)
from llm_cache_router_integrations.providers import MiniMaxProvider
from llm_cache_router_integrations.providers.minimax import ThinkTagFilter, strip_think
from llm_cache_router_integrations.testing import JSONReply, StreamReply
from llm_cache_router_integrations.testing.minimax_server import MiniMaxServer, base_resp_reply
from llm_cache_router_integrations.testing.server import sse
from llm_cache_router_integrations.types import LLMResponse, StreamChunk

MODEL = "MiniMax-M2"
API_KEY = "sk-test-minimax-0123456789abcdef"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def server() -> Iterator[MiniMaxServer]:
    server = MiniMaxServer()
    with server:
        yield server


@pytest.fixture
def provider(server: MiniMaxServer) -> Iterator[MiniMaxProvider]:
    provider = create_provider("minimax", {"api_key": API_KEY, "base_url": server.base_url})
    assert isinstance(provider, MiniMaxProvider)
    yield provider
    provider.close()


def ask(text: str = "Say hello", model: str = MODEL, **kwargs: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": model, "messages": [{"role": "user", "content": text}], **kwargs}
    )


def collect(chunks: Iterator[StreamChunk]) -> tuple[list[StreamChunk], LLMResponse]:
    acc = StreamAccumulator()
    seen = []
    for chunk in chunks:
        acc.add(chunk)
        seen.append(chunk)
    return seen, acc.response()


# ---------------------------------------------------------------- configuration


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINIMAX_BASE_URL", raising=False)
    monkeypatch.setenv("MINIMAX_API_KEY", API_KEY)
    provider = create_provider("minimax")
    assert provider.base_url == "https://api.minimax.io/v1"
    assert provider.auth_headers() == {"Authorization": f"Bearer {API_KEY}"}
    monkeypatch.setenv("MINIMAX_BASE_URL", "https://api.minimaxi.com/v1")
    assert create_provider("minimax").base_url == "https://api.minimaxi.com/v1"
    monkeypatch.delenv("MINIMAX_API_KEY")
    with pytest.raises(ConfigurationError, match="MINIMAX_API_KEY"):
        create_provider("minimax")


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("given_value", "sent"), [(0.0, 0.01), (0.005, 0.01), (0.7, 0.7), (1.0, 1.0), (1.7, 1.0)]
)
def test_temperature_is_moved_into_range(
    server: MiniMaxServer, provider: MiniMaxProvider, given_value: float, sent: float
) -> None:
    response = provider.complete(ask(temperature=given_value, top_p=0.0))
    assert server.requests[-1].body["temperature"] == sent
    assert server.requests[-1].body["top_p"] == 0.01
    assert response.content == server.last_answer.text


def test_temperature_in_extra_is_moved_too(
    server: MiniMaxServer, provider: MiniMaxProvider
) -> None:
    list(provider.stream(ask(extra={"temperature": 0})))
    assert server.requests[-1].body["temperature"] == 0.01


def test_server_rejects_temperature_zero_like_minimax(server: MiniMaxServer) -> None:
    # A plain OpenAI-compatible adapter sends 0 and gets HTTP 200 with base_resp 2013 and no
    # choices: exactly the failure the MiniMax adapter avoids by sending 0.01.
    plain = create_provider("openai-compatible", {"base_url": server.base_url})
    with pytest.raises(ProviderResponseError, match="no choices"):
        plain.complete(ask(temperature=0))
    assert server.requests[-1].body["temperature"] == 0
    plain.close()


def test_n_other_than_one_is_refused_before_sending(
    server: MiniMaxServer, provider: MiniMaxProvider
) -> None:
    with pytest.raises(UnsupportedInputError, match="n=1"):
        provider.complete(ask(extra={"n": 2}))
    assert server.requests == []


def test_video_is_refused(server: MiniMaxServer, provider: MiniMaxProvider) -> None:
    video = {"type": "video_url", "video_url": {"url": "https://example.com/clip.mp4"}}
    request = ChatRequest.model_validate(
        {"model": MODEL, "messages": [{"role": "user", "content": [video]}]}
    )
    with pytest.raises(UnsupportedInputError, match="video"):
        provider.complete(request)
    assert server.requests == []


# ---------------------------------------------------------------- <think> stripping


def test_complete_strips_think(server: MiniMaxServer, provider: MiniMaxProvider) -> None:
    response = provider.complete(ask("What is the capital of France?"))
    assert response.content == server.last_answer.text
    assert "<think>" not in (response.content or "")
    raw_content = response.raw["choices"][0]["message"]["content"]
    assert raw_content.startswith("<think>") and MiniMaxServer.THINK in raw_content
    assert response.usage.reasoning_tokens == MiniMaxServer.reasoning_tokens(MODEL)


async def test_stream_strips_think_across_deltas(
    server: MiniMaxServer, provider: MiniMaxProvider
) -> None:
    acc = StreamAccumulator()
    deltas = []
    async for chunk in provider.astream(ask("Tell me a short story about a robot")):
        acc.add(chunk)
        deltas.append(chunk.delta)
    joined = "".join(deltas)
    assert joined == server.last_answer.text
    assert all("think" not in delta and "<" not in delta for delta in deltas)
    assert acc.response().usage.reasoning_tokens == MiniMaxServer.reasoning_tokens(MODEL)
    await provider.aclose()


def test_non_thinking_model_is_untouched(server: MiniMaxServer, provider: MiniMaxProvider) -> None:
    response = provider.complete(ask("Hello there", model="MiniMax-Text-01"))
    assert response.content == server.last_answer.text
    assert response.usage.reasoning_tokens == 0
    _, streamed = collect(provider.stream(ask("Hello there", model="MiniMax-Text-01")))
    assert streamed.content == server.last_answer.text


def test_tool_call_after_think_has_no_content(
    server: MiniMaxServer, provider: MiniMaxProvider
) -> None:
    response = provider.complete(ask("Weather in Paris?", tools=[WEATHER]))
    assert response.content is None
    assert response.tool_calls[0].function.name == "get_weather"
    _, streamed = collect(provider.stream(ask("Weather in Paris?", tools=[WEATHER])))
    assert streamed.content is None
    assert streamed.tool_calls[0].function.name == "get_weather"


def test_reasoning_split_answer_passes_through(
    server: MiniMaxServer, provider: MiniMaxProvider
) -> None:
    # With reasoning_split=True MiniMax moves the reasoning out of content by itself.
    body = {
        "id": "1",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": "Paris.",
                    "reasoning_details": [{"type": "reasoning.text", "text": "Easy one."}],
                },
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        "base_resp": {"status_code": 0, "status_msg": ""},
    }
    server.push(JSONReply(body))
    response = provider.complete(ask(extra={"reasoning_split": True}))
    assert server.requests[-1].body["reasoning_split"] is True
    assert response.content == "Paris."


@pytest.mark.parametrize(
    ("content", "visible"),
    [
        ("<think>\nhmm\n</think>\n\nHello!", "Hello!"),
        ("  <think>a</think>Hi", "Hi"),
        ("Hello <think>not reasoning</think>", "Hello <think>not reasoning</think>"),
        ("<think>never closed", ""),
        ("<thi", "<thi"),
        ("<b>bold</b>", "<b>bold</b>"),
        ("", ""),
        ("<think></think>", ""),
    ],
)
def test_strip_think(content: str, visible: str) -> None:
    assert strip_think(content) == visible


@settings(deadline=None)
@given(
    reasoning=st.text(alphabet=st.characters(blacklist_characters="<")),
    answer=st.text(),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
)
def test_think_filter_is_independent_of_how_text_is_split(
    reasoning: str, answer: str, cuts: list[int]
) -> None:
    text = f"<think>{reasoning}</think>\n\n{answer}"
    positions = sorted({c % (len(text) + 1) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *positions], [*positions, len(text)], strict=True)]
    tags = ThinkTagFilter()
    streamed = "".join(tags.feed(piece) for piece in pieces) + tags.flush()
    assert streamed == strip_think(text) == answer.lstrip()


# ---------------------------------------------------------------- base_resp errors


CODES: list[tuple[int, type[ProviderError], bool]] = [
    (1000, ProviderUnavailableError, True),
    (1001, ProviderUnavailableError, True),
    (1002, RateLimitError, True),
    (1004, AuthenticationError, False),
    (1008, RateLimitError, False),
    (1013, ProviderUnavailableError, True),
    (1026, ContentPolicyError, False),
    (1027, ContentPolicyError, False),
    (1039, RateLimitError, True),
    (2013, BadRequestError, False),
    (2049, AuthenticationError, False),
]


@pytest.mark.parametrize(("code", "kind", "retryable"), CODES)
def test_base_resp_errors_in_complete(
    server: MiniMaxServer,
    provider: MiniMaxProvider,
    code: int,
    kind: type[ProviderError],
    retryable: bool,
) -> None:
    server.push(base_resp_reply(code, f"minimax says {code}"))
    with pytest.raises(kind) as caught:
        provider.complete(ask())
    assert type(caught.value) is kind
    assert caught.value.retryable is retryable
    assert caught.value.error_type == str(code)
    assert caught.value.status_code is None
    assert "minimax says" in str(caught.value)


@pytest.mark.parametrize(("code", "kind", "retryable"), CODES)
async def test_base_resp_json_body_answering_a_stream(
    server: MiniMaxServer,
    provider: MiniMaxProvider,
    code: int,
    kind: type[ProviderError],
    retryable: bool,
) -> None:
    server.push(base_resp_reply(code, "failed"))
    with pytest.raises(kind) as caught:
        async for _ in provider.astream(ask()):
            pass
    assert caught.value.retryable is retryable
    await provider.aclose()


def test_base_resp_event_inside_a_stream(server: MiniMaxServer, provider: MiniMaxProvider) -> None:
    chunk = {
        "id": "1",
        "object": "chat.completion.chunk",
        "model": MODEL,
        "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}],
    }
    failure = {"choices": None, "base_resp": {"status_code": 1002, "status_msg": "rate limit"}}
    server.push(StreamReply([sse(chunk), sse(failure)]))
    seen: list[StreamChunk] = []
    with pytest.raises(RateLimitError, match="rate limit"):
        for piece in provider.stream(ask()):
            seen.append(piece)
    assert "".join(c.delta for c in seen) == "Hel"


def test_base_resp_with_http_error_status(server: MiniMaxServer, provider: MiniMaxProvider) -> None:
    server.push(base_resp_reply(1004, "not authorized", status=401))
    with pytest.raises(AuthenticationError) as caught:
        provider.complete(ask())
    assert caught.value.status_code == 401 and caught.value.error_type == "1004"
    server.push(JSONReply({"error": {"message": "overloaded", "type": "server_error"}}, status=503))
    with pytest.raises(ProviderUnavailableError):
        provider.complete(ask())


def test_context_window_message_is_context_length(
    server: MiniMaxServer, provider: MiniMaxProvider
) -> None:
    server.push(base_resp_reply(2013, "invalid params, context window exceeds limit (204800)"))
    with pytest.raises(ContextLengthExceededError):
        provider.complete(ask())


def test_unknown_code_is_still_a_provider_error(
    server: MiniMaxServer, provider: MiniMaxProvider
) -> None:
    server.push(base_resp_reply(4242, "something new"))
    with pytest.raises(ProviderError, match="something new"):
        provider.complete(ask())


def test_base_resp_message_echoing_the_key_is_redacted(
    server: MiniMaxServer, provider: MiniMaxProvider
) -> None:
    server.push(base_resp_reply(2049, f"invalid api key {API_KEY}"))
    with pytest.raises(AuthenticationError) as caught:
        provider.complete(ask())
    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(caught.value)
    assert all(API_KEY not in str(arg) for arg in caught.value.args)
