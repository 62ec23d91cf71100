"""Anthropic's Messages API (``POST /v1/messages``).

The unified messages are OpenAI-shaped, so :meth:`AnthropicProvider.convert_messages` is the one
place that reshapes them: system and developer messages become the top-level ``system`` prompt,
tool calls become ``tool_use`` blocks, tool results become ``tool_result`` blocks of a user turn,
and consecutive turns of one role are merged because Anthropic requires alternating roles.

``response_format`` has no native equivalent: a JSON schema is emulated with a forced tool whose
input is returned as the answer's text (as langchain-anthropic does for structured output; any
text the model writes beside that tool call is dropped), and ``json_object`` adds an instruction
to the system prompt. ``seed`` has no Anthropic equivalent and is not sent.
``parallel_tool_calls=False`` becomes ``tool_choice.disable_parallel_tool_use`` (never a top-level
field, which Anthropic rejects).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from ..errors import (
    InvalidRequestError,
    ProviderError,
    ProviderResponseError,
    UnsupportedInputError,
)
from ..types import (
    ChatRequest,
    ContentBlock,
    FinishReason,
    ImageBlock,
    ImageURLBlock,
    InputAudioBlock,
    LLMResponse,
    Message,
    StreamChunk,
    TextBlock,
    ToolCall,
    ToolCallDelta,
    ToolCallFunction,
    Usage,
)
from .base import BaseProvider, StreamHandler, WireRequest
from .classify import classify_error
from .registry import register_provider
from .sse import SSEEvent

__all__ = [
    "ANTHROPIC_VERSION",
    "DEFAULT_MAX_TOKENS",
    "AnthropicProvider",
    "anthropic_finish_reason",
    "anthropic_usage",
]

ANTHROPIC_VERSION = "2023-06-01"
"""The ``anthropic-version`` header sent with every request."""

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent when the request has none (Anthropic requires the field)."""

JSON_OBJECT_INSTRUCTION = (
    "Respond with a single valid JSON object only, with no text before or after it."
)

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# The HTTP status Anthropic pairs with each error type, used to classify in-stream error events.
_ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def anthropic_finish_reason(value: str | None) -> FinishReason | None:
    """Map Anthropic's ``stop_reason`` to the unified finish reason."""
    if value is None:
        return None
    return _FINISH.get(value, "other")


def anthropic_usage(data: Mapping[str, Any] | None) -> Usage | None:
    """Unified usage from an Anthropic ``usage`` object.

    Anthropic's ``input_tokens`` excludes the prompt-cache reads and writes; the unified
    ``input_tokens`` includes them, with the reads reported as ``cached_input_tokens``.
    """
    if not data:
        return None
    uncached = int(data.get("input_tokens") or 0)
    read = int(data.get("cache_read_input_tokens") or 0)
    written = int(data.get("cache_creation_input_tokens") or 0)
    return Usage.of(
        uncached + read + written,
        int(data.get("output_tokens") or 0),
        cached_input_tokens=read,
    )


def _image_source(url: str) -> dict[str, str]:
    """An Anthropic image ``source`` for a ``data:`` URI or an http(s) URL."""
    if not url.startswith("data:"):
        return {"type": "url", "url": url}
    header, sep, data = url.partition(",")
    media_type, _, encoding = header.removeprefix("data:").partition(";")
    if not sep or encoding != "base64" or not media_type or not data:
        raise InvalidRequestError(
            "messages[].content[].image_url.url: a data: URI must look like "
            "'data:<media type>;base64,<data>'"
        )
    return {"type": "base64", "media_type": media_type, "data": data}


class _AnthropicStreamHandler(StreamHandler):
    """Reads Anthropic's named SSE events (``message_start`` ... ``message_stop``)."""

    def __init__(self, provider: AnthropicProvider, request: ChatRequest) -> None:
        super().__init__(provider, request)
        self.json_tool = provider.json_tool_name(request)
        self._raw_usage: dict[str, int] = {}
        self._tool_index: dict[int, int] = {}  # content block index -> tool-call index
        self._json_blocks: dict[int, bool] = {}  # emulated-JSON block -> has it sent text?

    def handle(self, event: SSEEvent) -> list[StreamChunk]:
        """Turn one event into chunks; unknown event types are ignored, as Anthropic advises."""
        if event.event == "ping":
            return []
        data = self.parse_json(event.data)
        if not isinstance(data, dict):
            raise ProviderResponseError(
                "stream event is not an object", provider=self.provider.name
            )
        kind = data.get("type") or event.event
        if kind == "error":
            raise self.provider.body_error(data) or self.provider.make_error(
                None, "the stream reported an error", "api_error"
            )
        if kind == "message_start":
            message = data.get("message") or {}
            self.model = message.get("model") or self.model
            self._update_usage(message.get("usage"))
        elif kind == "content_block_start":
            return self._block_start(int(data["index"]), data.get("content_block") or {})
        elif kind == "content_block_delta":
            return self._block_delta(int(data["index"]), data.get("delta") or {})
        elif kind == "content_block_stop":
            index = int(data["index"])
            if self._json_blocks.get(index) is False:  # the forced tool had an empty input
                self._json_blocks[index] = True
                return [StreamChunk(delta="{}")]
        elif kind == "message_delta":
            stop = anthropic_finish_reason((data.get("delta") or {}).get("stop_reason"))
            if stop is not None:
                self.finish_reason = "stop" if self.json_tool and stop == "tool_calls" else stop
            self._update_usage(data.get("usage"))
        elif kind == "message_stop":
            self.done = True
        return []

    def _update_usage(self, usage: Mapping[str, Any] | None) -> None:
        # Every count Anthropic sends is cumulative: the latest value replaces the earlier one.
        for key, value in (usage or {}).items():
            if isinstance(value, int) and not isinstance(value, bool):
                self._raw_usage[key] = value
        self.usage = anthropic_usage(self._raw_usage)

    def _block_start(self, index: int, block: Mapping[str, Any]) -> list[StreamChunk]:
        kind = block.get("type")
        if kind == "text" and block.get("text") and not self.json_tool:
            return [StreamChunk(delta=str(block["text"]))]
        if kind != "tool_use":
            return []
        if self.json_tool and block.get("name") == self.json_tool:
            self._json_blocks[index] = False
            return []
        position = self._tool_index.setdefault(index, len(self._tool_index))
        delta = ToolCallDelta(index=position, id=block.get("id") or None, name=block.get("name"))
        return [self.tool_delta(delta)]

    def _block_delta(self, index: int, delta: Mapping[str, Any]) -> list[StreamChunk]:
        kind = delta.get("type")
        if kind == "text_delta" and not self.json_tool:
            text = str(delta.get("text") or "")
            return [StreamChunk(delta=text)] if text else []
        if kind != "input_json_delta":
            return []  # thinking, signature and citation deltas carry no answer text
        partial = str(delta.get("partial_json") or "")
        if index in self._json_blocks:
            if not partial:
                return []
            self._json_blocks[index] = True
            return [StreamChunk(delta=partial)]
        if index in self._tool_index:
            return [
                self.tool_delta(ToolCallDelta(index=self._tool_index[index], arguments=partial))
            ]
        return []


@register_provider("anthropic")
class AnthropicProvider(BaseProvider):
    """Anthropic's Messages API (``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``).

    Authenticates with ``x-api-key`` and pins ``anthropic-version``; extra headers such as
    ``anthropic-beta`` go in the config's ``headers``.
    """

    api_key_env: ClassVar[tuple[str, ...]] = ("ANTHROPIC_API_KEY",)
    base_url_env: ClassVar[tuple[str, ...]] = ("ANTHROPIC_BASE_URL",)
    default_base_url: ClassVar[str | None] = "https://api.anthropic.com"

    # ---------------------------------------------------------------- messages
    def convert_block(self, block: ContentBlock) -> dict[str, Any]:
        """One unified content block in Anthropic's shape (text or image only)."""
        if isinstance(block, TextBlock):
            return {"type": "text", "text": block.text}
        if isinstance(block, ImageBlock):
            return block.model_dump(exclude_none=True)
        if isinstance(block, ImageURLBlock):
            return {"type": "image", "source": _image_source(block.image_url.url)}
        if isinstance(block, InputAudioBlock):
            raise UnsupportedInputError(
                f"provider {self.name!r} does not accept audio input "
                "(messages[].content[].input_audio)"
            )
        raise UnsupportedInputError(
            f"provider {self.name!r} does not accept video input (messages[].content[].video_url)"
        )

    def _blocks(self, message: Message) -> list[dict[str, Any]]:
        blocks = [self.convert_block(block) for block in message.blocks()]
        # Anthropic rejects empty text blocks.
        return [b for b in blocks if b["type"] != "text" or b["text"]]

    def _turn(self, message: Message) -> tuple[str, list[dict[str, Any]]]:
        """One non-system message as ``(role, content blocks)``."""
        if message.role == "tool":
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
            if isinstance(message.content, str):
                if message.content:
                    result["content"] = message.content
            elif content := self._blocks(message):
                result["content"] = content
            return "user", [result]
        blocks = self._blocks(message)
        for call in message.tool_calls or ():
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.function.name,
                    "input": call.function.parsed_arguments(),
                }
            )
        return message.role, blocks

    def convert_messages(self, request: ChatRequest) -> tuple[str | None, list[dict[str, Any]]]:
        """The ``system`` prompt and the alternating ``messages`` of an Anthropic request."""
        system = request.system_prompt
        if request.response_format is not None and request.response_format.type == "json_object":
            system = f"{system}\n\n{JSON_OBJECT_INSTRUCTION}" if system else JSON_OBJECT_INSTRUCTION
        messages: list[dict[str, Any]] = []
        for message in request.messages:
            if message.role in ("system", "developer"):
                continue
            role, blocks = self._turn(message)
            if not blocks:
                continue
            if messages and messages[-1]["role"] == role:
                merged = messages[-1]["content"] + blocks
                # Tool results must open the user turn that answers the tool calls.
                merged.sort(key=lambda b: b["type"] != "tool_result")
                messages[-1]["content"] = merged
            else:
                messages.append({"role": role, "content": blocks})
        return system, messages

    # ---------------------------------------------------------------- body
    @staticmethod
    def json_tool_name(request: ChatRequest) -> str | None:
        """The forced tool that emulates a ``json_schema`` response format, if any."""
        fmt = request.response_format
        if fmt is None or fmt.type != "json_schema" or fmt.json_schema is None:
            return None
        return fmt.json_schema.name

    def _tools(self, request: ChatRequest) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        tools: list[dict[str, Any]] = []
        for tool in request.tools or ():
            spec: dict[str, Any] = {
                "name": tool.function.name,
                "input_schema": tool.function.parameters,
            }
            if tool.function.description:
                spec["description"] = tool.function.description
            tools.append(spec)
        choice: dict[str, Any] | None = None
        if request.tool_choice == "required":
            choice = {"type": "any"}
        elif isinstance(request.tool_choice, str):
            choice = {"type": request.tool_choice}
        elif request.tool_choice is not None:
            choice = {"type": "tool", "name": request.tool_choice.function.name}
        fmt = request.response_format
        if fmt is not None and fmt.type == "json_schema" and fmt.json_schema is not None:
            schema = fmt.json_schema
            tools.append(
                {
                    "name": schema.name,
                    "description": schema.description
                    or "Give the answer as this tool's input; it follows the required schema.",
                    "input_schema": schema.schema_,
                }
            )
            choice = {"type": "tool", "name": schema.name}
        if tools and request.parallel_tool_calls is False:
            # Anthropic's switch lives in tool_choice (auto/any/tool; "none" does not take it).
            choice = choice or {"type": "auto"}
            if choice["type"] != "none":
                choice["disable_parallel_tool_use"] = True
        return tools, choice if tools else None

    def build_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The JSON body of a ``/v1/messages`` request (``seed`` is dropped: unsupported).

        ``parallel_tool_calls=False`` becomes ``tool_choice.disable_parallel_tool_use``.
        """
        system, messages = self.convert_messages(request)
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": messages,
        }
        optional = {
            "system": system,
            "temperature": None if request.temperature is None else min(request.temperature, 1.0),
            "top_p": request.top_p,
            # Anthropic refuses a stop sequence without a visible character ("\n"): such entries
            # are dropped rather than failing the call (a fallback from OpenAI often carries "\n").
            "stop_sequences": [s for s in request.stop or () if s.strip()] or None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        tools, choice = self._tools(request)
        if tools:
            body["tools"] = tools
        if choice is not None:
            body["tool_choice"] = choice
        if stream:
            body["stream"] = True
        body.update(self.config.params)
        body.update(request.extra)
        return body

    # ---------------------------------------------------------------- wire hooks
    def auth_headers(self) -> dict[str, str]:
        """``x-api-key`` and the pinned ``anthropic-version``."""
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    def build_request(self, request: ChatRequest, *, stream: bool) -> WireRequest:
        """POST ``{base_url}/v1/messages``."""
        return WireRequest(
            url=f"{self.base_url}/v1/messages",
            body=self.build_body(request, stream=stream),
            headers=self.request_headers(),
        )

    def parse_response(self, data: dict[str, Any], request: ChatRequest) -> LLMResponse:
        """Read a ``message`` object; thinking blocks are not part of the answer's text."""
        json_tool = self.json_tool_name(request)
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in data["content"]:
            if block.get("type") == "text" and not json_tool:
                texts.append(block.get("text") or "")
            elif block.get("type") == "tool_use":
                arguments = json.dumps(block.get("input") or {})
                if json_tool and block.get("name") == json_tool:
                    texts.append(arguments)
                else:
                    function = ToolCallFunction(name=block["name"], arguments=arguments)
                    calls.append(ToolCall(id=block["id"], function=function))
        finish = anthropic_finish_reason(data.get("stop_reason"))
        if json_tool and finish == "tool_calls" and not calls:
            finish = "stop"
        return LLMResponse(
            content="".join(texts) if texts else (None if calls else ""),
            tool_calls=calls,
            finish_reason=finish or ("tool_calls" if calls else "stop"),
            usage=anthropic_usage(data.get("usage")) or Usage(),
            provider_used=self.name,
            model_used=data.get("model") or request.model,
            raw=self.redacted_raw(data),
        )

    def stream_handler(self, request: ChatRequest) -> StreamHandler:
        """Handler for the named events of a ``stream: true`` answer."""
        return _AnthropicStreamHandler(self, request)

    def make_error(
        self,
        status: int | None,
        message: str,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ProviderError:
        """Classify by status; an in-stream ``error`` event is classified by its error type."""
        if status is not None or error_type not in _ERROR_STATUS:
            return super().make_error(status, message, error_type, headers)
        error = classify_error(
            self.name, _ERROR_STATUS[error_type], self.redact(message), error_type, headers
        )
        error.status_code = None  # it came inside a 200 stream
        return error
