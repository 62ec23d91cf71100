"""Conversions between LlamaIndex chat types and the router's unified types.

Inbound, a LlamaIndex :class:`~llama_index.core.base.llms.types.ChatMessage` becomes a unified
:class:`~llm_cache_router_integrations.types.Message`: its role, its text, image, audio and video
blocks, the assistant's tool calls (``ToolCallBlock`` blocks or OpenAI-shaped
``additional_kwargs["tool_calls"]``) and a tool result's ``additional_kwargs["tool_call_id"]``.

Outbound, an :class:`~llm_cache_router_integrations.types.LLMResponse` (or a stream of
:class:`~llm_cache_router_integrations.types.StreamChunk`) becomes a ``ChatResponse`` or
``CompletionResponse`` whose ``raw["usage"]`` is in OpenAI's shape (so LlamaIndex's
``TokenCountingHandler`` counts the tokens the provider reported) and whose ``additional_kwargs``
carry the token counts, ``cache_hit``, ``cost_usd``, ``saved_usd``, ``provider``, ``model`` and
``route``. Provider-specific translation stays in the core providers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    AudioBlock,
    CachePoint,
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    MessageRole,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.base.llms.types import ImageBlock as LIImageBlock
from llama_index.core.base.llms.types import TextBlock as LITextBlock
from llama_index.core.base.llms.types import VideoBlock as LIVideoBlock
from pydantic import ValidationError

from ..errors import InvalidRequestError
from ..streaming import StreamAccumulator
from ..types import (
    ContentBlock,
    ImageURL,
    ImageURLBlock,
    InputAudio,
    InputAudioBlock,
    LLMResponse,
    Message,
    StreamChunk,
    TextBlock,
    ToolCall,
    ToolCallFunction,
    Usage,
    VideoBlock,
    VideoURL,
)

__all__ = [
    "ChatStreamAssembler",
    "CompletionStreamAssembler",
    "response_metadata",
    "response_raw",
    "to_chat_message",
    "to_chat_response",
    "to_completion_response",
    "to_router_message",
    "to_router_messages",
    "tool_calls_of",
    "usage_payload",
]

_ROLES: dict[str, str] = {
    MessageRole.SYSTEM.value: "system",
    MessageRole.DEVELOPER.value: "developer",
    MessageRole.USER.value: "user",
    MessageRole.ASSISTANT.value: "assistant",
    MessageRole.TOOL.value: "tool",
    MessageRole.FUNCTION.value: "tool",
    MessageRole.CHATBOT.value: "assistant",
    MessageRole.MODEL.value: "assistant",
}

_SKIPPED_BLOCKS = (CachePoint, ThinkingBlock)
"""Blocks that carry no content for the model (cache hints, earlier reasoning): dropped."""


# ---------------------------------------------------------------------------------- inbound
def _data_uri(mimetype: str | None, b64: bytes, default: str) -> str:
    return f"data:{mimetype or default};base64,{b64.decode('ascii')}"


def _image(block: LIImageBlock) -> ImageURLBlock:
    detail = block.detail if block.detail in ("auto", "low", "high") else None
    if block.url is not None and not block.image and block.path is None:
        url = str(block.url)
    else:
        url = _data_uri(
            block.image_mimetype, block.resolve_image(as_base64=True).read(), "image/png"
        )
    return ImageURLBlock(image_url=ImageURL(url=url, detail=detail))


def _audio(block: AudioBlock) -> InputAudioBlock:
    data = block.resolve_audio(as_base64=True).read().decode("ascii")
    return InputAudioBlock(input_audio=InputAudio(data=data, format=block.format or "wav"))


def _video(block: LIVideoBlock) -> VideoBlock:
    if block.url is not None and not block.video and block.path is None:
        url = str(block.url)
    else:
        url = _data_uri(
            block.video_mimetype, block.resolve_video(as_base64=True).read(), "video/mp4"
        )
    return VideoBlock(video_url=VideoURL(url=url))


def _content(message: ChatMessage) -> str | list[ContentBlock]:
    """Text-only content becomes one string (joined like ``ChatMessage.content``), else blocks."""
    blocks: list[ContentBlock] = []
    for block in message.blocks:
        if isinstance(block, LITextBlock):
            blocks.append(TextBlock(text=block.text))
        elif isinstance(block, LIImageBlock):
            blocks.append(_image(block))
        elif isinstance(block, AudioBlock):
            blocks.append(_audio(block))
        elif isinstance(block, LIVideoBlock):
            blocks.append(_video(block))
        elif isinstance(block, (ToolCallBlock, *_SKIPPED_BLOCKS)):
            continue
        else:
            raise InvalidRequestError(
                f"messages: a {type(block).__name__} ({getattr(block, 'block_type', '?')!r} "
                "block) cannot be sent through the router; use text, image, audio or video blocks"
            )
    if all(isinstance(b, TextBlock) for b in blocks):
        return "\n".join(b.text for b in blocks if isinstance(b, TextBlock))
    return blocks


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)


def _arguments(value: Any) -> str:
    if value is None:
        return "{}"
    if isinstance(value, str):
        return value or "{}"
    return json.dumps(value)


def _coerce_tool_call(item: Any) -> ToolCall | None:
    """An OpenAI-shaped dict, an SDK object or a ``ToolSelection`` as a unified tool call."""
    function = _field(item, "function")
    if function is not None:
        name, arguments, call_id = (
            _field(function, "name"),
            _field(function, "arguments"),
            _field(item, "id"),
        )
    else:
        name, arguments, call_id = (
            _field(item, "tool_name") or _field(item, "name"),
            _field(item, "tool_kwargs") or _field(item, "arguments"),
            _field(item, "tool_id") or _field(item, "id"),
        )
    if not name:
        return None
    return ToolCall(
        id=str(call_id or f"call_{name}"),
        function=ToolCallFunction(name=str(name), arguments=_arguments(arguments)),
    )


def tool_calls_of(message: ChatMessage) -> list[ToolCall]:
    """The tool calls a LlamaIndex message carries.

    ``ToolCallBlock`` blocks come first; OpenAI-shaped ``additional_kwargs["tool_calls"]`` are
    used when there are none (older integrations and memories store them there). Calls with the
    same id are kept once.
    """
    calls = [
        ToolCall(
            id=block.tool_call_id or f"call_{block.tool_name}_{index}",
            function=ToolCallFunction(
                name=block.tool_name, arguments=_arguments(block.tool_kwargs)
            ),
        )
        for index, block in enumerate(message.blocks)
        if isinstance(block, ToolCallBlock)
    ]
    if not calls:
        for item in message.additional_kwargs.get("tool_calls") or ():
            call = _coerce_tool_call(item)
            if call is not None:
                calls.append(call)
    unique: dict[str, ToolCall] = {}
    for call in calls:
        unique.setdefault(call.id, call)
    return list(unique.values())


def to_router_message(message: ChatMessage) -> Message:
    """One LlamaIndex message as a unified :class:`Message`.

    Raises:
        InvalidRequestError: an unsupported block, or a tool message without
            ``additional_kwargs["tool_call_id"]``.
    """
    role_value = message.role.value if isinstance(message.role, MessageRole) else message.role
    role = _ROLES.get(str(role_value))
    if role is None:
        raise InvalidRequestError(f"messages: unsupported role {role_value!r}")
    extra = message.additional_kwargs
    content: str | list[ContentBlock] | None = _content(message)
    fields: dict[str, Any] = {"role": role}
    if isinstance(extra.get("name"), str) and extra["name"]:
        fields["name"] = extra["name"]
    if role == "tool":
        call_id = extra.get("tool_call_id") or extra.get("tool_use_id")
        if not call_id and role_value == MessageRole.FUNCTION.value:
            call_id = extra.get("name") or "function"
        if not call_id:
            raise InvalidRequestError(
                "messages: a tool message needs additional_kwargs['tool_call_id'] naming the "
                "tool call it answers"
            )
        fields["tool_call_id"] = str(call_id)
    elif role == "assistant":
        calls = tool_calls_of(message)
        if calls:
            fields["tool_calls"] = calls
            if content == "":
                content = None
    fields["content"] = content
    try:
        return Message.model_validate(fields)
    except ValidationError as exc:
        problem = "; ".join(str(e["msg"]) for e in exc.errors()[:3])
        raise InvalidRequestError(f"messages: {problem}") from None


def to_router_messages(messages: Sequence[ChatMessage]) -> list[Message]:
    """Every message converted with :func:`to_router_message`."""
    return [to_router_message(m) for m in messages]


# ---------------------------------------------------------------------------------- outbound
def usage_payload(usage: Usage) -> dict[str, Any]:
    """Usage in OpenAI's shape: ``prompt_tokens``, ``completion_tokens``, ``total_tokens``."""
    total = usage.total_tokens or usage.input_tokens + usage.output_tokens
    payload: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": total,
    }
    if usage.cached_input_tokens:
        payload["prompt_tokens_details"] = {"cached_tokens": usage.cached_input_tokens}
    if usage.reasoning_tokens:
        payload["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return payload


def response_metadata(response: LLMResponse) -> dict[str, Any]:
    """The ``additional_kwargs`` of a converted response: tokens, cost, cache and route."""
    usage = usage_payload(response.usage)
    return {
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "total_tokens": usage["total_tokens"],
        "cache_hit": response.cache_hit,
        "cost_usd": response.cost_usd,
        "saved_usd": response.saved_usd,
        "provider": response.provider_used,
        "model": response.model_used,
        "route": list(response.route),
        "finish_reason": response.finish_reason,
        "latency_ms": response.latency_ms,
    }


def response_raw(response: LLMResponse) -> dict[str, Any]:
    """The ``raw`` of a converted response: OpenAI-shaped ``usage`` plus what answered."""
    raw: dict[str, Any] = {
        "usage": usage_payload(response.usage),
        "model": response.model_used,
        "provider": response.provider_used,
        "finish_reason": response.finish_reason,
        "cache_hit": response.cache_hit,
    }
    if response.raw:
        raw["response"] = response.raw
    return raw


def to_chat_message(response: LLMResponse) -> ChatMessage:
    """The assistant message of a response: its text, then one ``ToolCallBlock`` per tool call.

    The tool calls are also in ``additional_kwargs["tool_calls"]`` in OpenAI's shape.
    """
    blocks: list[Any] = []
    if response.content:
        blocks.append(LITextBlock(text=response.content))
    blocks += [
        ToolCallBlock(
            tool_call_id=call.id,
            tool_name=call.function.name,
            tool_kwargs=call.function.parsed_arguments(),
        )
        for call in response.tool_calls
    ]
    extra: dict[str, Any] = {}
    if response.tool_calls:
        extra["tool_calls"] = [call.model_dump() for call in response.tool_calls]
    return ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks, additional_kwargs=extra)


def to_chat_response(response: LLMResponse, *, delta: str | None = None) -> ChatResponse:
    """A LlamaIndex ``ChatResponse`` for a complete answer."""
    return ChatResponse(
        message=to_chat_message(response),
        raw=response_raw(response),
        delta=delta,
        additional_kwargs=response_metadata(response),
    )


def to_completion_response(
    response: LLMResponse, *, delta: str | None = None
) -> CompletionResponse:
    """A LlamaIndex ``CompletionResponse`` for a complete answer (tool calls in kwargs)."""
    extra = response_metadata(response)
    if response.tool_calls:
        extra["tool_calls"] = [call.model_dump() for call in response.tool_calls]
    return CompletionResponse(
        text=response.content or "",
        raw=response_raw(response),
        delta=delta,
        additional_kwargs=extra,
    )


class ChatStreamAssembler:
    """Turns the router's stream chunks into streamed ``ChatResponse`` objects.

    Each text delta yields a response holding the text so far; the final chunk always yields one
    (possibly with an empty delta) carrying tool calls, usage, cost and cache flags.
    """

    def __init__(self) -> None:
        self.accumulator = StreamAccumulator()
        self.response: LLMResponse | None = None

    def add(self, chunk: StreamChunk) -> ChatResponse | None:
        """Record one chunk; returns the response to yield, if any."""
        self.accumulator.add(chunk)
        if chunk.is_final:
            self.response = self.accumulator.response()
            return to_chat_response(self.response, delta=chunk.delta)
        if not chunk.delta:
            return None
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=self.accumulator.content),
            delta=chunk.delta,
        )


class CompletionStreamAssembler:
    """Like :class:`ChatStreamAssembler`, for streamed ``CompletionResponse`` objects."""

    def __init__(self) -> None:
        self.accumulator = StreamAccumulator()
        self.response: LLMResponse | None = None

    def add(self, chunk: StreamChunk) -> CompletionResponse | None:
        """Record one chunk; returns the response to yield, if any."""
        self.accumulator.add(chunk)
        if chunk.is_final:
            self.response = self.accumulator.response()
            return to_completion_response(self.response, delta=chunk.delta)
        if not chunk.delta:
            return None
        return CompletionResponse(text=self.accumulator.content, delta=chunk.delta)
