"""Qwen/DashScope-specific behaviour: ``enable_thinking``, reasoning, video, seed and error shapes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llm_cache_router_integrations import (
    AuthenticationError,
    BadRequestError,
    ChatRequest,
    ConfigurationError,
    ContentPolicyError,
    ContextLengthExceededError,
    ModelNotFoundError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    StreamAccumulator,
    Usage,
    create_provider,
)
from llm_cache_router_integrations.providers import DashScopeProvider, QwenProvider
from llm_cache_router_integrations.providers.registry import get_provider_class
from llm_cache_router_integrations.testing import JSONReply, StreamReply
from llm_cache_router_integrations.testing.qwen_server import QwenServer, dashscope_error
from llm_cache_router_integrations.testing.server import sse
from llm_cache_router_integrations.types import LLMResponse, StreamChunk

API_KEY = "sk-test-dashscope-0123456789abcdef"
OPEN_MODEL = "qwen3-32b"


@pytest.fixture
def server() -> Iterator[QwenServer]:
    server = QwenServer()
    with server:
        yield server


@pytest.fixture
def provider(server: QwenServer) -> Iterator[QwenProvider]:
    provider = create_provider("qwen", {"api_key": API_KEY, "base_url": server.base_url})
    assert isinstance(provider, QwenProvider)
    yield provider
    provider.close()


def ask(text: str = "Say hello", model: str = OPEN_MODEL, **kwargs: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": model, "messages": [{"role": "user", "content": text}], **kwargs}
    )


def collect(chunks: Iterator[StreamChunk]) -> LLMResponse:
    acc = StreamAccumulator()
    for chunk in chunks:
        acc.add(chunk)
    return acc.response()


# ---------------------------------------------------------------- configuration


def test_defaults_alias_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHSCOPE_BASE_URL", raising=False)
    monkeypatch.setenv("DASHSCOPE_API_KEY", API_KEY)
    qwen = create_provider("qwen")
    assert qwen.base_url == "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
    alias = create_provider("dashscope")
    assert isinstance(alias, DashScopeProvider) and isinstance(alias, QwenProvider)
    assert get_provider_class("dashscope").type_name == "dashscope"
    assert get_provider_class("qwen").type_name == "qwen"
    mainland = "https://dashscope.aliyuncs.com/compatible-mode/v1"
    monkeypatch.setenv("DASHSCOPE_BASE_URL", mainland)
    assert create_provider("qwen").base_url == mainland
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    with pytest.raises(ConfigurationError, match="DASHSCOPE_API_KEY"):
        create_provider("qwen")


# ---------------------------------------------------------------- enable_thinking


def test_non_streaming_call_switches_thinking_off(
    server: QwenServer, provider: QwenProvider
) -> None:
    response = provider.complete(ask("What is the capital of France?"))
    assert server.requests[-1].body["enable_thinking"] is False
    assert response.content == server.last_answer.text
    assert response.usage == Usage.of(
        server.last_answer.input_tokens, server.last_answer.output_tokens
    )


def test_streaming_call_leaves_thinking_alone(server: QwenServer, provider: QwenProvider) -> None:
    chunks = list(provider.stream(ask("Tell me a short story")))
    assert "enable_thinking" not in server.requests[-1].body
    assert all("work out" not in c.delta for c in chunks)
    response = StreamAccumulator()
    for chunk in chunks:
        response.add(chunk)
    answer = server.last_answer
    reasoning = QwenServer.reasoning_tokens()
    assert response.content == answer.text
    assert response.response().usage == Usage.of(
        answer.input_tokens, answer.output_tokens + reasoning, reasoning_tokens=reasoning
    )


def test_the_callers_choice_wins(server: QwenServer, provider: QwenProvider) -> None:
    with pytest.raises(BadRequestError, match="enable_thinking must be set to false") as caught:
        provider.complete(ask(extra={"enable_thinking": True}))
    assert server.requests[-1].body["enable_thinking"] is True
    assert caught.value.status_code == 400 and not caught.value.retryable
    configured = create_provider(
        "qwen",
        {"api_key": API_KEY, "base_url": server.base_url, "params": {"enable_thinking": True}},
    )
    with pytest.raises(BadRequestError):
        configured.complete(ask())
    assert server.requests[-1].body["enable_thinking"] is True
    configured.close()


def test_thinking_only_models_get_no_flag(server: QwenServer, provider: QwenProvider) -> None:
    for model in ("qwq-plus", "qwen3-235b-a22b-thinking-2507"):
        with pytest.raises(BadRequestError):  # like DashScope: they only stream
            provider.complete(ask(model=model))
        assert "enable_thinking" not in server.requests[-1].body


async def test_reasoning_content_is_not_content(server: QwenServer, provider: QwenProvider) -> None:
    message = {
        "role": "assistant",
        "content": "x = 5",
        "reasoning_content": "3x = 15, so x = 5.",
    }
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": OPEN_MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
    }
    server.push(JSONReply(body))
    response = await provider.acomplete(ask("If 3x + 7 = 22, what is x?"))
    assert response.content == "x = 5"
    assert response.raw["choices"][0]["message"]["reasoning_content"] == "3x = 15, so x = 5."
    texts = [c.delta async for c in provider.astream(ask("If 3x + 7 = 22, what is x?"))]
    assert "".join(texts) == server.last_answer.text
    await provider.aclose()


# ---------------------------------------------------------------- video and seed


def test_video_input_is_sent(server: QwenServer, provider: QwenProvider) -> None:
    video = {"type": "video_url", "video_url": {"url": "https://example.com/clip.mp4"}}
    text = {"type": "text", "text": "What happens in this clip?"}
    request = ChatRequest.model_validate(
        {"model": "qwen-vl-max", "messages": [{"role": "user", "content": [video, text]}]}
    )
    response = provider.complete(request)
    assert server.requests[-1].body["messages"][0]["content"][0] == video
    assert response.content == server.last_answer.text


@pytest.mark.parametrize(
    ("seed", "sent"), [(0, 0), (42, 42), (2**31 - 1, 2**31 - 1), (2**31 + 5, 5), (-1, 2**31 - 1)]
)
def test_seed_is_kept_in_range(
    server: QwenServer, provider: QwenProvider, seed: int, sent: int
) -> None:
    provider.complete(ask(seed=seed))
    assert server.requests[-1].body["seed"] == sent


def test_server_rejects_out_of_range_seed(server: QwenServer) -> None:
    plain = create_provider("openai-compatible", {"base_url": server.base_url})
    with pytest.raises(BadRequestError, match="seed"):
        plain.complete(ask(seed=2**40, extra={"enable_thinking": False}))
    plain.close()


# ---------------------------------------------------------------- errors


ERRORS: list[tuple[int, str, bool, type[ProviderError], bool]] = [
    # status, code, flat shape, error class, retryable
    (400, "data_inspection_failed", False, ContentPolicyError, False),
    (400, "DataInspectionFailed", True, ContentPolicyError, False),
    (429, "Throttling", True, RateLimitError, True),
    (429, "Throttling.RateQuota", True, RateLimitError, True),
    (429, "Throttling.AllocationQuota", False, RateLimitError, True),
    (429, "limit_requests", False, RateLimitError, True),
    (403, "AllocationQuota.FreeTierOnly", True, RateLimitError, False),
    (401, "InvalidApiKey", True, AuthenticationError, False),
    (401, "invalid_api_key", False, AuthenticationError, False),
    (400, "Arrearage", True, RateLimitError, False),
    (404, "model_not_found", False, ModelNotFoundError, False),
    (500, "InternalError", True, ProviderUnavailableError, True),
    (400, "InvalidParameter", True, BadRequestError, False),
]


@pytest.mark.parametrize(("status", "code", "flat", "kind", "retryable"), ERRORS)
def test_error_codes_in_both_shapes(
    server: QwenServer,
    provider: QwenProvider,
    status: int,
    code: str,
    flat: bool,
    kind: type[ProviderError],
    retryable: bool,
) -> None:
    server.push(dashscope_error(status, code, f"dashscope says {code}", flat=flat))
    with pytest.raises(kind) as caught:
        provider.complete(ask())
    assert type(caught.value) is kind
    assert caught.value.retryable is retryable
    assert caught.value.error_type == code
    assert caught.value.status_code == status
    assert f"dashscope says {code}" in str(caught.value)


@pytest.mark.parametrize("flat", [False, True])
def test_input_length_is_context_length(
    server: QwenServer, provider: QwenProvider, flat: bool
) -> None:
    message = (
        "<400> InternalError.Algo.InvalidParameter: Range of input length should be [1, 30720]"
    )
    server.push(dashscope_error(400, "InvalidParameter", message, flat=flat))
    with pytest.raises(ContextLengthExceededError):
        provider.complete(ask())


@pytest.mark.parametrize("flat", [False, True])
def test_error_in_a_200_body(server: QwenServer, provider: QwenProvider, flat: bool) -> None:
    reply = dashscope_error(200, "Throttling.RateQuota", "Requests rate limit exceeded", flat=flat)
    server.push(reply)
    with pytest.raises(RateLimitError):
        provider.complete(ask())


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (
            {"code": "Throttling.RateQuota", "message": "rate limit exceeded", "request_id": "r"},
            RateLimitError,
        ),
        (
            {"error": {"code": "data_inspection_failed", "message": "Output data may contain"}},
            ContentPolicyError,
        ),
    ],
)
async def test_error_event_inside_a_stream(
    server: QwenServer, provider: QwenProvider, payload: dict[str, Any], kind: type[ProviderError]
) -> None:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": OPEN_MODEL,
        "choices": [{"index": 0, "delta": {"content": "Once"}, "finish_reason": None}],
    }
    server.push(StreamReply([sse(chunk), sse(payload)]))
    with pytest.raises(kind):
        async for _ in provider.astream(ask()):
            pass
    await provider.aclose()


def test_error_message_echoing_the_key_is_redacted(
    server: QwenServer, provider: QwenProvider
) -> None:
    server.push(
        dashscope_error(401, "InvalidApiKey", f"Invalid API-key provided: {API_KEY}", flat=True)
    )
    with pytest.raises(AuthenticationError) as caught:
        provider.complete(ask())
    assert API_KEY not in str(caught.value) and API_KEY not in repr(caught.value)


def test_developer_messages_are_sent_as_system(server: QwenServer, provider: QwenProvider) -> None:
    """DashScope (like every OpenAI-compatible server but OpenAI) refuses the developer role."""
    provider.complete(
        ChatRequest.model_validate(
            {
                "model": OPEN_MODEL,
                "messages": [
                    {"role": "developer", "content": "Answer in English."},
                    {"role": "user", "content": "Say hello"},
                ],
            }
        )
    )
    assert [m["role"] for m in server.requests[-1].body["messages"]] == ["system", "user"]
