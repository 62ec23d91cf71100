"""Input a provider cannot carry (video for OpenAI) is refused with :class:`UnsupportedInputError`
before any call, while a provider that can carry it sends it; both against a loopback server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm_cache_router_integrations import (
    ChatRequest,
    InvalidRequestError,
    UnsupportedInputError,
    create_provider,
)
from llm_cache_router_integrations.testing.openai_server import OpenAIServer

VIDEO = {"type": "video_url", "video_url": {"url": "https://example.com/clip.mp4"}}


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as started:
        yield started


def video_request(model: str) -> ChatRequest:
    return ChatRequest.model_validate(
        {
            "model": model,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "What?"}, VIDEO]}],
        }
    )


def test_openai_refuses_video_before_any_call(server: OpenAIServer) -> None:
    provider = create_provider(
        "openai", {"api_key": "sk-test-openai-0123456789abcdef", "base_url": server.base_url}
    )
    with pytest.raises(UnsupportedInputError, match=r"'openai' does not accept video") as raised:
        provider.complete(video_request("gpt-4o-mini"))
    assert isinstance(raised.value, InvalidRequestError)  # still caught as an invalid request
    assert server.requests == []
    provider.close()


def test_openai_compatible_sends_video(server: OpenAIServer) -> None:
    provider = create_provider("openai-compatible", {"base_url": server.base_url})
    provider.complete(video_request("Qwen/Qwen2.5-VL-7B-Instruct"))
    assert server.requests[-1].body["messages"][0]["content"][1] == VIDEO
    provider.close()


@pytest.mark.parametrize(
    ("kind", "role"), [("openai", "developer"), ("openai-compatible", "system")]
)
def test_developer_role_is_sent_only_to_openai(server: OpenAIServer, kind: str, role: str) -> None:
    """Only OpenAI knows the developer role; other OpenAI-style servers get it as system."""
    provider = create_provider(
        kind, {"api_key": "sk-test-openai-0123456789abcdef", "base_url": server.base_url}
    )
    provider.complete(
        ChatRequest.model_validate(
            {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "developer", "content": "Answer in English."},
                    {"role": "user", "content": "Say hello"},
                ],
            }
        )
    )
    assert [m["role"] for m in server.requests[-1].body["messages"]] == [role, "user"]
    provider.close()
