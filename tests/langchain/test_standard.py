"""langchain-tests' standard suites for ``ChatRouter``, against loopback provider servers.

Two set-ups run the integration suite:

* ``TestChatRouterOpenAI``: one OpenAI deployment (the OpenAI wire format, served locally);
* ``TestChatRouterFallback``: the primary OpenAI server is down (503 on every request) and the
  router falls back to an Anthropic server, so every standard test also checks that conversion,
  tool calling and structured output survive a provider switch.

The standard media tests download an image / audio file; the sandbox has no internet, so
``httpx`` inside langchain-tests is replaced by :class:`OfflineMedia`, which makes the same kind
of file locally. The tests themselves run unchanged.

The standard ``test_serdes`` reloads with ``allowed_objects="all"``, which admits only the classes
in langchain-core's own serialisation mapping; ``ChatRouter`` is registered there as trusted for
that test (``additional_import_mappings``, LangChain's hook for this), and the test runs unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.load import load
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.integration_tests import chat_models as standard_integration
from langchain_tests.unit_tests import ChatModelUnitTests
from langchain_tests.unit_tests import chat_models as standard_unit

from llm_cache_router_integrations.langchain import ChatRouter
from llm_cache_router_integrations.testing.anthropic_server import AnthropicServer
from llm_cache_router_integrations.testing.openai_server import OpenAIServer

from .conftest import (
    FAST_RETRY,
    KEY,
    FailingOpenAIServer,
    OfflineMedia,
    anthropic_provider,
    openai_provider,
)


class _ChatRouterCapabilities:
    """What ChatRouter supports whichever suite asks: media, JSON mode, Anthropic-style input."""

    @property
    def chat_model_class(self) -> type[ChatRouter]:
        return ChatRouter

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_image_urls(self) -> bool:
        return True

    @property
    def supports_anthropic_inputs(self) -> bool:
        # Anthropic-style blocks (tool_use, thinking, image sources, cache_control) are converted
        # by ChatRouter, whichever provider answers.
        return True


class TestChatRouterUnit(_ChatRouterCapabilities, ChatModelUnitTests):
    """Construction, standard parameters, tool binding, structured-output wiring, serialisation.

    ``test_serdes`` checks the declarative set-up round-trips; its snapshot holds no API key (the
    reloaded provider reads ``OPENAI_API_KEY``, set by ``init_from_env_params``).
    """

    @pytest.fixture(autouse=True)
    def _trust_chat_router(self, monkeypatch: pytest.MonkeyPatch) -> None:
        path = tuple(ChatRouter.lc_id())
        trusted = functools.partial(load, additional_import_mappings={path: path})
        monkeypatch.setattr(standard_unit, "load", trusted)

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "providers": {
                "openai": {
                    "api_key": KEY,
                    "base_url": "http://127.0.0.1:9/v1",  # never called by unit tests
                    "models": ["gpt-4o-mini", "gpt-4o"],
                }
            },
            "model": "gpt-4o-mini",
        }

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        # ChatRouter() reads the environment when first used; test_chat_router.py calls one.
        return (
            {"OPENAI_API_KEY": KEY},
            {"model": "gpt-4o-mini", "temperature": 0},
            {"model": "gpt-4o-mini", "temperature": 0},
        )

    @property
    def supports_audio_inputs(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return "gpt-4o"


class _LoopbackIntegration(_ChatRouterCapabilities, ChatModelIntegrationTests):
    """What both integration set-ups share: offline media and a standard-test ``ChatRouter``."""

    @pytest.fixture(autouse=True)
    def _offline_media(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(standard_integration, "httpx", OfflineMedia())
        monkeypatch.setenv("LANGCHAIN_TESTS_USER_AGENT", "llm-cache-router-integrations tests")

    # Every answer reports input/output tokens and the provider's cache-read and reasoning counts.
    @property
    def returns_usage_metadata(self) -> bool:
        return True

    # PDFs: the core's content blocks carry text, images, audio and video, not files, so
    # supports_pdf_inputs / supports_pdf_tool_message stay False (their tests are skipped).
    # enable_vcr_tests stays False: the loopback servers make recorded cassettes pointless.

    def _model(self, **extra: Any) -> ChatRouter:
        return ChatRouter(**{**self.chat_model_params, **extra})

    def invoke_with_cache_read_input(self, *, stream: bool = False) -> AIMessage:
        model = self._model()
        if not stream:
            result = model.invoke("Hello")
            assert isinstance(result, AIMessage)
            return result
        full: AIMessageChunk | None = None
        for chunk in model.stream("Hello"):
            full = chunk if full is None else full + chunk
        assert full is not None
        return full

    invoke_with_reasoning_output = invoke_with_cache_read_input


class TestChatRouterOpenAI(_LoopbackIntegration):
    """A router with one OpenAI deployment.

    Skipped, by design:

    * ``test_pdf_inputs`` / ``test_pdf_tool_message``: no file blocks in the core (see above);
    * ``test_image_tool_message``: OpenAI's Chat Completions API accepts only text parts in
      tool messages (``supports_image_tool_message`` is False here, True for Anthropic below);
    * ``test_stream_time``: a VCR benchmark, meaningless against loopback servers.
    """

    server: OpenAIServer

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _server(cls) -> Iterator[None]:
        with OpenAIServer() as server:
            cls.server = server
            yield

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "providers": {"openai": openai_provider(self.server, "gpt-4o-mini", "gpt-4o")},
            "model": "gpt-4o-mini",
            "retry": FAST_RETRY,
        }

    @property
    def supports_audio_inputs(self) -> bool:
        # OpenAI accepts input_audio parts (audio-capable models); the core passes them through.
        return True

    @property
    def supported_usage_metadata_details(self) -> dict[str, list[Any]]:
        details = ["cache_read_input", "reasoning_output"]
        return {"invoke": details, "stream": details}

    @property
    def model_override_value(self) -> str:
        return "gpt-4o"


class TestChatRouterFallback(_LoopbackIntegration):
    """OpenAI first, down for every request; the router falls back to Anthropic.

    Skipped, by design:

    * ``test_audio_inputs``: Anthropic's Messages API takes no audio, so the fallback provider
      cannot answer (``supports_audio_inputs`` is False);
    * ``test_pdf_inputs`` / ``test_pdf_tool_message``: no file blocks in the core;
    * ``test_stream_time``: a VCR benchmark, meaningless against loopback servers.
    """

    primary: FailingOpenAIServer
    secondary: AnthropicServer

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _server(cls) -> Iterator[None]:
        # Anthropic reports part of each prompt as read from its prompt cache.
        with FailingOpenAIServer() as primary, AnthropicServer(cached_tokens=2) as secondary:
            cls.primary = primary
            cls.secondary = secondary
            yield

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "providers": {
                "openai": openai_provider(self.primary, "gpt-4o-mini"),
                "anthropic": anthropic_provider(
                    self.secondary, "claude-3-5-haiku-latest", "claude-3-7-sonnet-latest"
                ),
            },
            "model": "openai/gpt-4o-mini",
            "fallback_chain": ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"],
            "retry": FAST_RETRY,
        }

    @property
    def supports_image_tool_message(self) -> bool:
        # Anthropic takes images inside tool results.
        return True

    @property
    def supported_usage_metadata_details(self) -> dict[str, list[Any]]:
        details = ["cache_read_input"]
        return {"invoke": details, "stream": details}

    @property
    def model_override_value(self) -> str:
        return "claude-3-7-sonnet-latest"

    def test_answers_come_from_the_fallback(self) -> None:
        """Not a standard test: the set-up really fails over (OpenAI tried, Anthropic answers)."""
        tried = len(self.primary.requests)
        result = self._model().invoke("Hello")
        assert result.response_metadata["provider"] == "anthropic"
        assert result.response_metadata["route"] == [
            "openai/gpt-4o-mini",
            "anthropic/claude-3-5-haiku-latest",
        ]
        assert len(self.primary.requests) > tried
