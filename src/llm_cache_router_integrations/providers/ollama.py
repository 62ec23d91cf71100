"""Ollama's native chat API (``POST /api/chat``), streamed as newline-delimited JSON.

:meth:`OllamaProvider.convert_message` is the one place that reshapes the unified messages: text
blocks are joined into ``content``, images become base64 strings in ``images`` (Ollama needs the
bytes, so an ``http(s)`` image URL is rejected before any call), tool-call arguments are sent as
objects and a tool result names its function in ``tool_name``.

``parallel_tool_calls`` has no Ollama equivalent and is not sent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from ..errors import InvalidRequestError, ProviderResponseError, UnsupportedInputError
from ..streaming import new_tool_call_id
from ..types import (
    ChatRequest,
    ContentBlock,
    FinishReason,
    ImageBlock,
    ImageURLBlock,
    LLMResponse,
    Message,
    NamedToolChoice,
    StreamChunk,
    TextBlock,
    ToolCall,
    ToolCallDelta,
    ToolCallFunction,
    Usage,
)
from .base import BaseProvider, StreamHandler, WireRequest
from .registry import register_provider

__all__ = ["DEFAULT_PORT", "OllamaProvider", "ollama_finish_reason", "ollama_usage"]

DEFAULT_PORT = 11434
"""The port Ollama listens on, added to an ``OLLAMA_HOST`` given without one."""

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}

# Model options accepted at the top level of config.params / request.extra; they move to "options".
_OPTION_KEYS = frozenset(
    {
        "num_ctx",
        "num_keep",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "num_thread",
        "num_predict",
        "temperature",
        "top_k",
        "top_p",
        "min_p",
        "typical_p",
        "seed",
        "stop",
        "repeat_last_n",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
        "penalize_newline",
        "use_mmap",
        "use_mlock",
        "numa",
        "low_vram",
    }
)


def ollama_finish_reason(value: str | None) -> FinishReason | None:
    """Map Ollama's ``done_reason`` to the unified one (``load``/``unload`` become ``other``)."""
    if not value:
        return None
    return _FINISH.get(value, "other")


def ollama_usage(data: Mapping[str, Any]) -> Usage:
    """Usage from a final answer: ``prompt_eval_count`` in, ``eval_count`` out."""
    return Usage.of(int(data.get("prompt_eval_count") or 0), int(data.get("eval_count") or 0))


def _arguments(value: Any) -> str:
    """Ollama sends arguments as an object; the unified tool call holds them JSON-encoded."""
    if isinstance(value, str):
        return value or "{}"
    return json.dumps(value or {})


def _tool_call(item: Mapping[str, Any], provider: str) -> ToolCall:
    function = item.get("function") or {}
    if not function.get("name"):
        raise ProviderResponseError(f"tool call without a name: {item!r:.200}", provider=provider)
    return ToolCall(
        id=item.get("id") or new_tool_call_id(),
        function=ToolCallFunction(
            name=function["name"], arguments=_arguments(function.get("arguments"))
        ),
    )


class _OllamaStreamHandler(StreamHandler):
    """NDJSON lines; the last one has ``done: true``, the finish reason and the counts."""

    def __init__(self, provider: BaseProvider, request: ChatRequest) -> None:
        super().__init__(provider, request)
        self._calls = 0

    def handle(self, event: dict[str, Any]) -> list[StreamChunk]:
        error = self.provider.body_error(event)
        if error is not None:
            raise error
        self.model = event.get("model") or self.model
        message = event.get("message") or {}
        chunks: list[StreamChunk] = []
        if message.get("content"):
            chunks.append(StreamChunk(delta=message["content"]))
        for item in message.get("tool_calls") or ():
            call = _tool_call(item, self.provider.name)
            delta = ToolCallDelta(
                index=self._calls,
                id=call.id,
                name=call.function.name,
                arguments=call.function.arguments,
            )
            self._calls += 1
            chunks.append(self.tool_delta(delta))
        if event.get("done"):
            self.usage = ollama_usage(event)
            finish = ollama_finish_reason(event.get("done_reason")) or "stop"
            self.finish_reason = "tool_calls" if self.tools and finish == "stop" else finish
            self.done = True
        return chunks


@register_provider("ollama")
class OllamaProvider(BaseProvider):
    """A local or remote Ollama server (``OLLAMA_HOST``, default ``http://localhost:11434``).

    No API key is needed; one given in the config (or ``OLLAMA_API_KEY``) is sent as a bearer
    token, e.g. for a server behind an authenticating proxy. Ollama has no ``tool_choice``:
    ``"none"`` omits the tools and a named choice offers only that tool. Model options such as
    ``num_ctx`` or ``top_k`` may be given in ``config.params``/``request.extra`` at the top level
    or inside ``options``; ``keep_alive`` and ``think`` pass through as they are.
    """

    requires_api_key: ClassVar[bool] = False
    api_key_env: ClassVar[tuple[str, ...]] = ("OLLAMA_API_KEY",)
    base_url_env: ClassVar[tuple[str, ...]] = ("OLLAMA_HOST",)
    default_base_url: ClassVar[str | None] = f"http://localhost:{DEFAULT_PORT}"
    stream_format: ClassVar[Literal["sse", "ndjson"]] = "ndjson"

    def _resolve_base_url(self) -> str:
        host = os.environ.get("OLLAMA_HOST", "").strip()
        if self.config.base_url is None and host and "://" not in host:
            parts = urlsplit(f"http://{host}")
            if parts.port is None:  # like Ollama's own CLI: a bare host means port 11434
                return f"http://{parts.netloc}:{DEFAULT_PORT}{parts.path.rstrip('/')}"
        return super()._resolve_base_url()

    # ---------------------------------------------------------------- messages
    def convert_image(self, block: ContentBlock, field: str) -> str | None:
        """The base64 data of an image block, ``None`` for a text block."""
        if isinstance(block, TextBlock):
            return None
        if isinstance(block, ImageBlock) and block.source.type == "base64":
            return block.source.data
        url = (
            block.image_url.url
            if isinstance(block, ImageURLBlock)
            else block.source.url
            if isinstance(block, ImageBlock)
            else None
        )
        if url is None:
            raise UnsupportedInputError(
                f"{field}: Ollama accepts text and images only, not {block.type!r} blocks"
            )
        if not url.startswith("data:"):
            raise UnsupportedInputError(
                f"{field}: Ollama needs the image bytes; pass a base64 data: URI instead of the "
                f"URL {url[:80]!r}"
            )
        header, sep, data = url.removeprefix("data:").partition(",")
        if not sep or not header.endswith(";base64"):
            raise InvalidRequestError(f"{field}: a data: URI must be base64 encoded")
        return data

    def convert_message(self, message: Message, request: ChatRequest, index: int) -> dict[str, Any]:
        """One unified message in Ollama's shape."""
        role = "system" if message.role == "developer" else message.role
        out: dict[str, Any] = {"role": role, "content": message.text}
        images = [
            image
            for i, block in enumerate(message.blocks())
            if (image := self.convert_image(block, f"messages[{index}].content[{i}]")) is not None
        ]
        if images:
            out["images"] = images
        if message.tool_calls:
            out["tool_calls"] = [
                {
                    "function": {
                        "name": call.function.name,
                        "arguments": call.function.parsed_arguments(),
                    }
                }
                for call in message.tool_calls
            ]
        if message.role == "tool":
            name = request.tool_name_for_call(message.tool_call_id or "") or message.name
            if name:
                out["tool_name"] = name
        return out

    def _tools(self, request: ChatRequest) -> list[dict[str, Any]]:
        choice = request.tool_choice
        if not request.tools or choice == "none":
            return []
        tools = request.tools
        if isinstance(choice, NamedToolChoice):
            tools = [t for t in tools if t.function.name == choice.function.name] or tools
        return [tool.model_dump(exclude_none=True) for tool in tools]

    def build_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The JSON body of an ``/api/chat`` request (``stream`` is always explicit)."""
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [
                self.convert_message(m, request, i) for i, m in enumerate(request.messages)
            ],
            "stream": stream,
        }
        options = {
            "temperature": request.temperature,
            "top_p": request.top_p,
            "num_predict": request.max_tokens,
            "stop": request.stop,
            "seed": request.seed,
        }
        body["options"] = {k: v for k, v in options.items() if v is not None}
        if tools := self._tools(request):
            body["tools"] = tools
        fmt = request.response_format
        if fmt is not None and fmt.type == "json_object":
            body["format"] = "json"
        elif fmt is not None and fmt.json_schema is not None:
            body["format"] = fmt.json_schema.schema_
        for extra in (self.config.params, request.extra):
            for key, value in extra.items():
                if key in _OPTION_KEYS:
                    body["options"][key] = value
                elif key == "options" and isinstance(value, Mapping):
                    body["options"].update(value)
                else:
                    body[key] = value
        if not body["options"]:
            del body["options"]
        return body

    # ---------------------------------------------------------------- wire hooks
    def build_request(self, request: ChatRequest, *, stream: bool) -> WireRequest:
        """POST ``{base_url}/api/chat``."""
        return WireRequest(
            url=f"{self.base_url}/api/chat",
            body=self.build_body(request, stream=stream),
            headers=self.request_headers(),
        )

    def parse_response(self, data: dict[str, Any], request: ChatRequest) -> LLMResponse:
        """Read a complete (``done: true``) chat answer."""
        message = data.get("message")
        if not isinstance(message, dict):
            raise ProviderResponseError("the response has no message", provider=self.name)
        tool_calls = [_tool_call(item, self.name) for item in message.get("tool_calls") or ()]
        finish = ollama_finish_reason(data.get("done_reason")) or "stop"
        if tool_calls and finish == "stop":
            finish = "tool_calls"
        content = message.get("content") or ""
        return LLMResponse(
            content=content or (None if tool_calls else ""),
            tool_calls=tool_calls,
            finish_reason=finish,
            usage=ollama_usage(data),
            provider_used=self.name,
            model_used=data.get("model") or request.model,
            raw=self.redacted_raw(data),
        )

    def stream_handler(self, request: ChatRequest) -> StreamHandler:
        """Handler for NDJSON lines ending with ``done: true``."""
        return _OllamaStreamHandler(self, request)
