"""Loopback provider servers and offline media for the LangChain integration tests."""

from __future__ import annotations

import base64
import io
import struct
import wave
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from llm_cache_router_integrations.testing import JSONReply, RecordedRequest, Reply
from llm_cache_router_integrations.testing.anthropic_server import AnthropicServer
from llm_cache_router_integrations.testing.openai_server import OpenAIServer

KEY = "sk-test-langchain-0123456789abcdef"
FAST_RETRY = {"max_retries": 1, "base_delay": 0.001, "max_delay": 0.01}
OVERLOADED = JSONReply({"error": {"message": "overloaded", "type": "server_error"}}, status=503)


class FailingOpenAIServer(OpenAIServer):
    """An OpenAI server that is down: every request gets a 503."""

    def answer(self, request: RecordedRequest) -> Reply:
        """Always ``503 overloaded``."""
        return OVERLOADED


def openai_provider(server: OpenAIServer, *models: str) -> dict[str, Any]:
    """An ``openai`` provider config pointing at ``server``."""
    return {"type": "openai", "api_key": KEY, "base_url": server.base_url, "models": list(models)}


def anthropic_provider(server: AnthropicServer, *models: str) -> dict[str, Any]:
    """An ``anthropic`` provider config pointing at ``server``."""
    return {
        "type": "anthropic",
        "api_key": KEY,
        "base_url": server.base_url,
        "models": list(models),
    }


def png_bytes(width: int = 2, height: int = 2) -> bytes:
    """A small valid RGB PNG, made here (the standard tests would download one)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def wav_bytes(seconds: float = 0.1, rate: int = 8000) -> bytes:
    """A short silent mono WAV, made here."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * int(seconds * rate))
    return buffer.getvalue()


class OfflineMedia:
    """Stands in for ``httpx`` in langchain-tests, whose media tests download their inputs.

    The sandbox has no internet; images (``.png``) and audio (``.wav``) are made locally, any other
    download fails loudly.
    """

    class _Response:
        def __init__(self, content: bytes) -> None:
            self.content = content

    def get(self, url: str, **_: Any) -> OfflineMedia._Response:
        """The local stand-in for ``url``'s bytes."""
        if url.endswith(".png"):
            return self._Response(png_bytes())
        if url.endswith(".wav"):
            return self._Response(wav_bytes())
        raise RuntimeError(f"no network in tests: cannot download {url}")


def b64(data: bytes) -> str:
    """Base64 text of ``data``."""
    return base64.b64encode(data).decode()


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A fresh OpenAI loopback server."""
    with OpenAIServer() as server:
        yield server


@pytest.fixture
def anthropic_server() -> Iterator[AnthropicServer]:
    """A fresh Anthropic loopback server."""
    with AnthropicServer() as server:
        yield server


@pytest.fixture
def failing_openai_server() -> Iterator[FailingOpenAIServer]:
    """An OpenAI server that answers 503 to everything."""
    with FailingOpenAIServer() as server:
        yield server
