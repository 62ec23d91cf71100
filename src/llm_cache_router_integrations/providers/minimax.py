"""MiniMax through its OpenAI-compatible Chat Completions API (``https://api.minimax.io/v1``).

MiniMax speaks OpenAI's wire format with a few quirks handled here:

* ``temperature`` and ``top_p`` must lie in ``(0, 1]``: ``0`` is rejected, so it is sent as
  ``0.01`` (the closest to greedy decoding the API accepts) and values above ``1`` are clamped.
* only ``n=1`` is supported, and there is no video input.
* the M2 models put their reasoning inside the answer as ``<think>...</think>`` before the text.
  This adapter strips that block from ``content`` (in complete answers and across stream deltas,
  even when a tag is split between two deltas) and keeps the text after it. We do *not* send
  ``reasoning_split`` by default; if you pass ``extra={"reasoning_split": True}`` MiniMax moves the
  reasoning to ``reasoning_details`` itself and the stripping is simply a no-op. The untouched
  message, reasoning included, stays available in :attr:`LLMResponse.raw`.
* errors may arrive with HTTP 200 and a ``base_resp: {status_code, status_msg}`` object
  (``status_code`` 0 means success); those codes are mapped to the typed errors, in complete
  answers and in streams alike (a JSON body where a stream was expected, or an SSE event).

Mainland China accounts use ``https://api.minimaxi.com/v1`` (set ``base_url`` or
``MINIMAX_BASE_URL``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from ..errors import (
    AuthenticationError,
    BadRequestError,
    ContentPolicyError,
    ContextLengthExceededError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    UnsupportedInputError,
)
from ..types import ChatRequest, LLMResponse, StreamChunk
from .base import StreamHandler
from .classify import classify_error, error_details, parse_retry_after
from .openai import OpenAICompatibleProvider, OpenAIStreamHandler
from .registry import register_provider

__all__ = ["MiniMaxProvider", "ThinkTagFilter", "minimax_error", "strip_think"]

MIN_TEMPERATURE = 0.01

# base_resp.status_code -> (error class, retryable override or None for the class default)
_CODES: dict[int, tuple[type[ProviderError], bool | None]] = {
    1000: (ProviderUnavailableError, None),  # unknown error
    1001: (ProviderUnavailableError, None),  # request timeout
    1002: (RateLimitError, None),  # rate limit
    1004: (AuthenticationError, None),  # not authorized
    1008: (RateLimitError, False),  # insufficient balance: waiting will not help
    1013: (ProviderUnavailableError, None),  # internal service error
    1024: (ProviderUnavailableError, None),  # internal error
    1026: (ContentPolicyError, None),  # input sensitive
    1027: (ContentPolicyError, None),  # output sensitive
    1033: (ProviderUnavailableError, None),  # system error
    1039: (RateLimitError, None),  # token (TPM) limit
    1041: (RateLimitError, None),  # connection limit
    1042: (BadRequestError, None),  # too many invisible characters
    2013: (BadRequestError, None),  # invalid params
    2045: (RateLimitError, None),  # rate growth limit
    2049: (AuthenticationError, None),  # invalid api key
    2056: (RateLimitError, False),  # plan usage exhausted until the next window
}
_CONTEXT_MARKERS = ("context window", "context length", "too long", "token limit exceeded")


def minimax_error(
    provider: str,
    code: int,
    message: str,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProviderError:
    """The typed error of a MiniMax ``base_resp`` status code (unknown codes by HTTP status)."""
    error_type = str(code)
    known = _CODES.get(code)
    if known is None:
        return classify_error(provider, status, message, error_type, headers)
    cls, retryable = known
    if cls is BadRequestError and any(m in message.lower() for m in _CONTEXT_MARKERS):
        cls = ContextLengthExceededError
    return cls(
        message,
        provider=provider,
        status_code=status,
        retry_after=parse_retry_after(headers) if headers is not None else None,
        error_type=error_type,
        retryable=retryable,
    )


def _base_resp_code(data: Any) -> tuple[int, str] | None:
    """``(status_code, status_msg)`` of a failed ``base_resp``, or ``None``."""
    if not isinstance(data, dict):
        return None
    base = data.get("base_resp")
    if not isinstance(base, dict):
        return None
    try:
        code = int(base.get("status_code") or 0)
    except (TypeError, ValueError):
        return None
    if code == 0:
        return None
    return code, str(base.get("status_msg") or f"MiniMax error {code}")


class ThinkTagFilter:
    """Removes a leading ``<think>...</think>`` block from text that arrives in pieces.

    Only a block at the very start of the answer (after optional whitespace) is reasoning; the
    whitespace after its closing tag is dropped too. Tags split across pieces are recognised.
    """

    OPEN = "<think>"
    CLOSE = "</think>"

    def __init__(self) -> None:
        self._buffer = ""
        self._state = "start"  # start | think | after | text

    def feed(self, text: str) -> str:
        """The visible text that ``text`` completes (possibly empty)."""
        self._buffer += text
        out: list[str] = []
        while self._buffer:
            if self._state == "start":
                head = self._buffer.lstrip()
                if head.startswith(self.OPEN):
                    self._buffer = head[len(self.OPEN) :]
                    self._state = "think"
                elif not head or self.OPEN.startswith(head):
                    break  # whitespace or a partial "<thi": wait for more
                else:
                    self._state = "text"
            elif self._state == "think":
                end = self._buffer.find(self.CLOSE)
                if end < 0:
                    self._buffer = self._buffer[-(len(self.CLOSE) - 1) :]
                    break
                self._buffer = self._buffer[end + len(self.CLOSE) :]
                self._state = "after"
            elif self._state == "after":
                self._buffer = self._buffer.lstrip()
                if self._buffer:
                    self._state = "text"
            else:
                out.append(self._buffer)
                self._buffer = ""
        return "".join(out)

    def flush(self) -> str:
        """End of the answer: text held back (an unclosed think block is dropped)."""
        rest, self._buffer = self._buffer, ""
        return rest if self._state in ("start", "text") else ""


def strip_think(content: str) -> str:
    """``content`` without its leading ``<think>...</think>`` block."""
    tags = ThinkTagFilter()
    return tags.feed(content) + tags.flush()


class _MiniMaxStreamHandler(OpenAIStreamHandler):
    """OpenAI chunks whose text passes through a :class:`ThinkTagFilter`."""

    def __init__(self, provider: MiniMaxProvider, request: ChatRequest) -> None:
        super().__init__(provider, request)
        self.tags = ThinkTagFilter()
        self._flushed = False

    def handle(self, event: Any) -> list[StreamChunk]:
        chunks: list[StreamChunk] = []
        for chunk in super().handle(event):
            if not chunk.delta:
                chunks.append(chunk)
                continue
            visible = self.tags.feed(chunk.delta)
            if visible or chunk.tool_call_deltas:
                chunks.append(chunk.model_copy(update={"delta": visible}))
        if self.done and not self._flushed:
            self._flushed = True
            if rest := self.tags.flush():
                chunks.append(StreamChunk(delta=rest))
        return chunks


@register_provider("minimax")
class MiniMaxProvider(OpenAICompatibleProvider):
    """MiniMax (``MINIMAX_API_KEY``, ``MINIMAX_BASE_URL``); see the module docs for its quirks."""

    requires_api_key: ClassVar[bool] = True
    api_key_env: ClassVar[tuple[str, ...]] = ("MINIMAX_API_KEY",)
    base_url_env: ClassVar[tuple[str, ...]] = ("MINIMAX_BASE_URL",)
    default_base_url: ClassVar[str | None] = "https://api.minimax.io/v1"
    supports_video: ClassVar[bool] = False

    def build_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """OpenAI's body with ``temperature``/``top_p`` moved into ``(0, 1]`` and ``n`` checked."""
        body = super().build_body(request, stream=stream)
        for name in ("temperature", "top_p"):
            value = body.get(name)
            if value is not None:
                body[name] = min(max(float(value), MIN_TEMPERATURE), 1.0)
        if body.get("n", 1) != 1:
            raise UnsupportedInputError(
                f"provider {self.name!r} (MiniMax) only supports n=1, got n={body['n']!r}"
            )
        return body

    def parse_response(self, data: dict[str, Any], request: ChatRequest) -> LLMResponse:
        """OpenAI's ``chat.completion`` with the ``<think>`` block removed from the content."""
        response = super().parse_response(data, request)
        if response.content:
            content = strip_think(response.content)
            response.content = content or (None if response.tool_calls else content)
        return response

    def stream_handler(self, request: ChatRequest) -> StreamHandler:
        """OpenAI chunks with ``<think>`` stripped across deltas."""
        return _MiniMaxStreamHandler(self, request)

    def body_error(self, data: Any) -> ProviderError | None:
        """A failed ``base_resp`` (HTTP 200 errors), else OpenAI's ``{"error": ...}``."""
        failed = _base_resp_code(data)
        if failed is not None:
            code, message = failed
            return minimax_error(self.name, code, self.redact(message))
        return super().body_error(data)

    def error_from_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        """A non-2xx answer: its ``base_resp`` code when it has one, else the HTTP status."""
        message, kind = error_details(body)
        try:
            failed = _base_resp_code(json.loads(body))
        except ValueError:
            failed = None
        if failed is not None:
            code, message = failed
            return minimax_error(self.name, code, self.redact(message), status, headers)
        return self.make_error(status, message, kind, headers)
