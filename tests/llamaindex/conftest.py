"""Loopback provider servers, routers and clean LlamaIndex global state for the adapter tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core import Settings
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index_instrumentation import get_dispatcher
from pydantic import Field

from llm_cache_router_integrations import LLMRouter
from llm_cache_router_integrations.testing import JSONReply
from llm_cache_router_integrations.testing.anthropic_server import AnthropicServer
from llm_cache_router_integrations.testing.openai_server import OpenAIServer

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-haiku-latest"
PRIMARY = f"openai/{OPENAI_MODEL}"
SECONDARY = f"anthropic/{ANTHROPIC_MODEL}"
FAST_RETRY = {"max_retries": 1, "base_delay": 0.001, "max_delay": 0.005}
OVERLOADED = JSONReply({"error": {"message": "overloaded", "type": "server_error"}}, status=503)


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """An OpenAI-wire loopback server."""
    server = OpenAIServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def anthropic_server() -> Iterator[AnthropicServer]:
    """An Anthropic-wire loopback server."""
    server = AnthropicServer()
    server.start()
    yield server
    server.stop()


def openai_config(server: OpenAIServer) -> dict[str, Any]:
    """Provider config for the OpenAI loopback server."""
    return {
        "type": "openai",
        "api_key": "sk-test-llamaindex-0123456789",
        "base_url": server.base_url,
        "models": [OPENAI_MODEL],
    }


def anthropic_config(server: AnthropicServer) -> dict[str, Any]:
    """Provider config for the Anthropic loopback server."""
    return {
        "type": "anthropic",
        "api_key": "sk-ant-test-0123456789abcdef",
        "base_url": server.base_url,
        "models": [ANTHROPIC_MODEL],
    }


def make_router(
    openai: OpenAIServer, anthropic: AnthropicServer | None = None, **kwargs: Any
) -> LLMRouter:
    """OpenAI first; with ``anthropic``, a fallback chain OpenAI -> Anthropic."""
    providers: dict[str, Any] = {"openai": openai_config(openai)}
    if anthropic is not None:
        providers["anthropic"] = anthropic_config(anthropic)
        kwargs.setdefault("fallback_chain", [PRIMARY, SECONDARY])
    kwargs.setdefault("retry", FAST_RETRY)
    return LLMRouter(providers, **kwargs)


class Collector(BaseEventHandler):
    """Records every instrumentation event it sees."""

    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Collector"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)

    def of(self, kind: type[BaseEvent]) -> list[Any]:
        """The recorded events of one type."""
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A collector on the root dispatcher, removed afterwards."""
    root = get_dispatcher()
    handler = Collector()
    root.add_event_handler(handler)
    yield handler
    root.event_handlers = [h for h in root.event_handlers if h is not handler]


@pytest.fixture(autouse=True)
def clean_settings() -> Iterator[None]:
    """Restore LlamaIndex's global Settings after each test."""
    saved = (Settings._llm, Settings._embed_model, Settings._callback_manager)
    yield
    Settings._llm, Settings._embed_model, Settings._callback_manager = saved
