"""Loopback OpenAI-wire servers for router tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm_cache_router_integrations.testing.openai_server import OpenAIServer

KEY = "sk-test-router-0123456789abcdef"


@pytest.fixture
def servers() -> Iterator[list[OpenAIServer]]:
    """Three independent OpenAI-compatible servers."""
    started = [OpenAIServer().start() for _ in range(3)]
    yield started
    for server in started:
        server.stop()


def provider(
    server: OpenAIServer, *models: str, kind: str = "openai", **extra: object
) -> dict[str, object]:
    """A provider config pointing at ``server``."""
    return {
        "type": kind,
        "api_key": KEY,
        "base_url": server.base_url,
        "models": list(models),
        **extra,
    }
