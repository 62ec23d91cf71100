"""OpenAI Chat Completions, and the generic OpenAI-compatible provider (vLLM, LM Studio, OpenRouter...).

Our unified messages already use OpenAI's shape, so conversion here is mostly about the blocks
OpenAI names differently (an Anthropic-style image becomes a ``data:`` URI) and the parameters that
differ between OpenAI itself and compatible servers (``max_completion_tokens`` vs ``max_tokens``).
"""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar

from ..errors import ProviderResponseError, UnsupportedInputError
from ..streaming import ToolCallIndexer, new_tool_call_id
from ..types import (
    ChatRequest,
    ContentBlock,
    FinishReason,
    ImageBlock,
    LLMResponse,
    Message,
    StreamChunk,
    ToolCall,
    ToolCallFunction,
    Usage,
    VideoBlock,
)
from .base import BaseProvider, StreamHandler, WireRequest
from .registry import register_provider
from .sse import SSEEvent

__all__ = [
    "OpenAICompatibleProvider",
    "OpenAIProvider",
    "OpenAIStreamHandler",
    "openai_finish_reason",
    "openai_usage",
]

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def openai_finish_reason(value: str | None) -> FinishReason | None:
    """Map OpenAI's ``finish_reason`` to the unified one."""
    if value is None:
        return None
    return _FINISH.get(value, "other")


def openai_usage(data: dict[str, Any] | None) -> Usage | None:
    """Unified usage from an OpenAI ``usage`` object (with cached and reasoning details)."""
    if not data:
        return None
    prompt = int(data.get("prompt_tokens") or 0)
    completion = int(data.get("completion_tokens") or 0)
    cached = int((data.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    reasoning = int((data.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    total = data.get("total_tokens")
    return Usage.of(
        prompt,
        completion,
        total_tokens=None if total is None else int(total),
        cached_input_tokens=cached,
        reasoning_tokens=reasoning,
    )


def _tool_call(item: dict[str, Any]) -> ToolCall:
    function = item.get("function") or {}
    arguments = function.get("arguments")
    if not isinstance(arguments, str):  # some compatible servers send an object
        arguments = json.dumps(arguments or {})
    return ToolCall(
        id=item.get("id") or new_tool_call_id(),
        function=ToolCallFunction(name=function["name"], arguments=arguments or "{}"),
    )


def _text_of(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # a few compatible servers answer with content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


class OpenAIStreamHandler(StreamHandler):
    """Reads ``chat.completion.chunk`` events until ``[DONE]`` (or a finish reason)."""

    saw_choice: bool = False
    """Whether any event carried a choice: ``[DONE]`` without one is no answer at all."""
    refused: bool = False
    """Whether the model refused (``delta.refusal``): the answer then ends as ``content_filter``."""

    def __init__(self, provider: BaseProvider, request: ChatRequest) -> None:
        super().__init__(provider, request)
        # Servers that omit ``index`` or reuse it get one index per call in the chunks we emit.
        self.indexer = ToolCallIndexer()

    def handle(self, event: SSEEvent) -> list[StreamChunk]:
        if event.data.strip() == "[DONE]":
            if not self.saw_choice:  # like a JSON answer with an empty ``choices`` list
                raise ProviderResponseError(
                    "the stream has no choices", provider=self.provider.name
                )
            self.done = True
            return []
        data = self.parse_json(event.data)
        error = self.provider.body_error(data)
        if error is not None:
            raise error
        if not isinstance(data, dict):
            raise ProviderResponseError(
                "stream event is not an object", provider=self.provider.name
            )
        self.model = data.get("model") or self.model
        usage = openai_usage(data.get("usage"))
        if usage is not None:
            self.usage = usage
        chunks: list[StreamChunk] = []
        for choice in data.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            self.saw_choice = True
            delta = choice.get("delta") or {}
            text = _text_of(delta.get("content"))
            refusal = delta.get("refusal")
            if not text and isinstance(refusal, str) and refusal:
                text, self.refused = refusal, True  # the refusal is the answer's text
            if text:
                chunks.append(StreamChunk(delta=text))
            for item in delta.get("tool_calls") or ():
                function = item.get("function") or {}
                sent = item.get("index")
                call_id = item.get("id") or None
                name = function.get("name") or None
                piece = self.indexer.normalise(
                    None if sent is None else int(sent),
                    call_id,
                    name,
                    function.get("arguments") or "",
                )
                chunks.append(self.tool_delta(piece))
            finish = openai_finish_reason(choice.get("finish_reason"))
            if finish is not None:
                self.finish_reason = "content_filter" if self.refused else finish
                self.done = True
        return chunks


@register_provider("openai-compatible")
class OpenAICompatibleProvider(BaseProvider):
    """Any server that speaks OpenAI's ``/chat/completions`` (vLLM, LM Studio, OpenRouter...).

    ``base_url`` is required; an API key is optional. Subclasses adjust the class attributes and
    override :meth:`convert_block`, :meth:`build_body` or :meth:`make_error` for their quirks.
    """

    requires_api_key: ClassVar[bool] = False
    api_key_env: ClassVar[tuple[str, ...]] = ()
    max_tokens_field: ClassVar[str] = "max_tokens"
    supports_video: ClassVar[bool] = True
    supports_stream_usage: ClassVar[bool] = True
    developer_role: ClassVar[str] = "system"
    """The role a ``developer`` message is sent as: only OpenAI itself knows ``developer``; other
    servers (DashScope, MiniMax, most local servers) answer 400 to it, and take ``system``."""

    # ---------------------------------------------------------------- messages
    def convert_block(self, block: ContentBlock) -> dict[str, Any]:
        """One unified content block in OpenAI's shape."""
        if isinstance(block, ImageBlock):
            source = block.source
            url = (
                source.url
                if source.type == "url"
                else f"data:{source.media_type};base64,{source.data}"
            )
            return {"type": "image_url", "image_url": {"url": url}}
        if isinstance(block, VideoBlock) and not self.supports_video:
            raise UnsupportedInputError(
                f"provider {self.name!r} does not accept video input (messages[].content[].video_url)"
            )
        return block.model_dump(exclude_none=True)

    def convert_message(self, message: Message) -> dict[str, Any]:
        """One unified message in OpenAI's shape."""
        role = self.developer_role if message.role == "developer" else message.role
        out: dict[str, Any] = {"role": role}
        if isinstance(message.content, list):
            out["content"] = [self.convert_block(block) for block in message.content]
        else:
            out["content"] = message.content
        if message.name:
            out["name"] = message.name
        if message.tool_calls:
            out["tool_calls"] = [call.model_dump() for call in message.tool_calls]
        if message.tool_call_id:
            out["tool_call_id"] = message.tool_call_id
        return out

    def build_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The JSON body of a ``/chat/completions`` request."""
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [self.convert_message(m) for m in request.messages],
        }
        optional = {
            "temperature": request.temperature,
            "top_p": request.top_p,
            self.max_tokens_field: request.max_tokens,
            "stop": request.stop,
            "seed": request.seed,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if request.tools:
            body["tools"] = [tool.model_dump(exclude_none=True) for tool in request.tools]
        if request.tool_choice is not None:
            choice = request.tool_choice
            body["tool_choice"] = choice if isinstance(choice, str) else choice.model_dump()
        if request.response_format is not None:
            body["response_format"] = request.response_format.model_dump(
                exclude_none=True, by_alias=True
            )
        if stream:
            body["stream"] = True
            if self.supports_stream_usage:
                body["stream_options"] = {"include_usage": True}
        body.update(self.config.params)
        if request.tools and request.parallel_tool_calls is not None:
            # The request's own choice beats a provider-wide default; only with tools (OpenAI
            # rejects the parameter without them). ``extra`` never holds it (see ChatRequest).
            body["parallel_tool_calls"] = request.parallel_tool_calls
        body.update(request.extra)
        return body

    # ---------------------------------------------------------------- wire hooks
    def build_request(self, request: ChatRequest, *, stream: bool) -> WireRequest:
        """POST ``{base_url}/chat/completions``."""
        return WireRequest(
            url=f"{self.base_url}/chat/completions",
            body=self.build_body(request, stream=stream),
            headers=self.request_headers(),
        )

    def parse_response(self, data: dict[str, Any], request: ChatRequest) -> LLMResponse:
        """Read a ``chat.completion`` object."""
        choices = data.get("choices") or []
        if not choices:
            raise ProviderResponseError("the response has no choices", provider=self.name)
        choice = choices[0]
        message = choice.get("message") or {}
        tool_calls = [_tool_call(item) for item in message.get("tool_calls") or ()]
        finish = openai_finish_reason(choice.get("finish_reason"))
        content = _text_of(message.get("content"))
        refusal = message.get("refusal")
        if not content and isinstance(refusal, str) and refusal:
            # A refusal (structured outputs): its text is the answer, flagged as content_filter
            # so that it is never cached or mistaken for an empty success.
            content, finish = refusal, "content_filter"
        return LLMResponse(
            content=content,
            tool_calls=tool_calls,
            finish_reason=finish or ("tool_calls" if tool_calls else "stop"),
            usage=openai_usage(data.get("usage")) or Usage(),
            provider_used=self.name,
            model_used=data.get("model") or request.model,
            raw=self.redacted_raw(data),
        )

    def stream_handler(self, request: ChatRequest) -> StreamHandler:
        """Handler for ``chat.completion.chunk`` events ending with ``[DONE]``."""
        return OpenAIStreamHandler(self, request)


@register_provider("openai")
class OpenAIProvider(OpenAICompatibleProvider):
    """OpenAI's Chat Completions API (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``)."""

    requires_api_key: ClassVar[bool] = True
    api_key_env: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    base_url_env: ClassVar[tuple[str, ...]] = ("OPENAI_BASE_URL",)
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    max_tokens_field: ClassVar[str] = "max_completion_tokens"
    supports_video: ClassVar[bool] = False
    developer_role: ClassVar[str] = "developer"

    def auth_headers(self) -> dict[str, str]:
        """Bearer token plus the optional organization/project headers from the environment."""
        headers = super().auth_headers()
        if org := os.environ.get("OPENAI_ORG_ID"):
            headers["OpenAI-Organization"] = org
        if project := os.environ.get("OPENAI_PROJECT_ID"):
            headers["OpenAI-Project"] = project
        return headers
