"""Conversion between LangChain messages and the router's unified types, in both directions.

LangChain → :class:`~llm_cache_router_integrations.types.Message`: system, human, AI (with
``tool_calls``, and ``invalid_tool_calls`` with their raw arguments), tool and generic chat messages; content given as a string or as blocks in any of
LangChain's shapes (OpenAI ``image_url``/``input_audio``, Anthropic ``image`` with a ``source``,
LangChain v0 ``source_type`` blocks and v1 standard blocks ``{"type": "image"|"audio"|"video",
"base64"|"url": ...}``). Reasoning blocks and ``tool_use`` blocks of AI messages are dropped (the
``tool_calls`` attribute carries the calls); a block the core cannot represent (files, PDFs) raises
:class:`InvalidRequestError` instead of being silently lost.

:class:`~llm_cache_router_integrations.types.LLMResponse` / ``StreamChunk`` → ``AIMessage`` /
``AIMessageChunk``: text, tool calls (``tool_call_chunks`` when streaming), ``usage_metadata``
(with ``cache_read`` and ``reasoning`` details) and ``response_metadata`` (provider, model name,
finish reason, cache hit, cost, saved cost, route and latency). A stream carries usage and
metadata exactly once, on its final chunk (``chunk_position="last"``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    InputTokenDetails,
    InvalidToolCall,
    OutputTokenDetails,
    SystemMessage,
    ToolCallChunk,
    ToolMessage,
    UsageMetadata,
)
from langchain_core.messages.tool import ToolCall as LCToolCall
from langchain_core.messages.tool import (
    invalid_tool_call,
    tool_call,
    tool_call_chunk,
)

from ..errors import InvalidRequestError
from ..streaming import ToolCallIndexer, new_tool_call_id
from ..types import (
    AnthropicImageSource,
    ContentBlock,
    ImageBlock,
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
    "StreamConverter",
    "convert_block",
    "from_langchain",
    "from_langchain_message",
    "response_metadata",
    "to_ai_message",
    "to_usage",
    "usage_metadata",
]

_SKIPPED_AI_BLOCKS = frozenset(
    {"tool_use", "tool_call", "tool_call_chunk", "thinking", "redacted_thinking", "reasoning"}
)
_ROLES = {
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
    "system": "system",
    "developer": "developer",
}
_AUDIO_FORMATS = {"mpeg": "mp3", "x-wav": "wav", "wave": "wav", "x-flac": "flac"}


# --------------------------------------------------------------------------- LangChain -> core
def _data_uri(mime_type: str | None, data: str, default: str) -> str:
    return f"data:{mime_type or default};base64,{data}"


def _audio_format(mime_type: str | None) -> str:
    subtype = (mime_type or "audio/wav").split("/")[-1].split(";")[0].strip().lower()
    return _AUDIO_FORMATS.get(subtype, subtype or "wav")


def _image(block: Mapping[str, Any]) -> ContentBlock:
    source = block.get("source")
    if isinstance(source, Mapping):  # Anthropic: {"type": "image", "source": {...}}
        return ImageBlock(source=AnthropicImageSource.model_validate(dict(source)))
    data = block.get("base64") or block.get("data")
    kind = block.get("source_type")
    if data and kind in (None, "base64"):
        mime = block.get("mime_type") or "image/png"
        return ImageBlock(source=AnthropicImageSource(type="base64", media_type=mime, data=data))
    url = block.get("url")
    if url:
        return ImageURLBlock(image_url=ImageURL(url=url))
    raise InvalidRequestError(
        "messages[].content[]: an image block needs 'base64' data or a 'url' "
        "(file ids are not supported)"
    )


def _audio(block: Mapping[str, Any]) -> ContentBlock:
    data = block.get("base64") or block.get("data")
    if not data:
        raise InvalidRequestError(
            "messages[].content[]: an audio block needs base64 'data' (audio URLs and file ids "
            "are not supported)"
        )
    return InputAudioBlock(
        input_audio=InputAudio(data=data, format=_audio_format(block.get("mime_type")))
    )


def _video(block: Mapping[str, Any]) -> ContentBlock:
    data = block.get("base64") or block.get("data")
    url = block.get("url") or (
        _data_uri(block.get("mime_type"), data, "video/mp4") if data else None
    )
    if not url:
        raise InvalidRequestError("messages[].content[]: a video block needs 'base64' or 'url'")
    return VideoBlock(video_url=VideoURL(url=url))


def convert_block(block: str | Mapping[str, Any]) -> ContentBlock:
    """One LangChain content block (a string or a dict in any LangChain shape) as a core block.

    Raises:
        InvalidRequestError: for a block the core cannot carry (files, PDFs, unknown types).
    """
    if isinstance(block, str):
        return TextBlock(text=block)
    kind = block.get("type")
    if kind in ("text", "text-plain"):
        return TextBlock(text=str(block.get("text") or ""))
    if kind == "image_url":
        image_url = block.get("image_url")
        if isinstance(image_url, str):
            return ImageURLBlock(image_url=ImageURL(url=image_url))
        return ImageURLBlock(image_url=ImageURL.model_validate(dict(image_url or {})))
    if kind == "image":
        return _image(block)
    if kind == "input_audio":
        audio = dict(block.get("input_audio") or {})
        return InputAudioBlock(input_audio=InputAudio.model_validate(audio))
    if kind == "audio":
        return _audio(block)
    if kind == "video_url":
        video = block.get("video_url")
        url = video if isinstance(video, str) else dict(video or {}).get("url")
        return VideoBlock(video_url=VideoURL(url=str(url or "")))
    if kind == "video":
        return _video(block)
    raise InvalidRequestError(
        f"messages[].content[]: content blocks of type {kind!r} are not supported by the router "
        "(supported: text, image, image_url, audio, input_audio, video, video_url)"
    )


def _blocks(
    content: str | list[str | dict[str, Any]], *, skip: frozenset[str]
) -> list[ContentBlock]:
    blocks: list[ContentBlock] = []
    for item in [content] if isinstance(content, str) else content:
        if isinstance(item, Mapping) and item.get("type") in skip:
            continue
        blocks.append(convert_block(item))
    return blocks


def _content(
    content: str | list[str | dict[str, Any]], *, skip: frozenset[str] = frozenset()
) -> str | list[ContentBlock]:
    """A string stays a string; blocks become core blocks (text-only blocks are joined)."""
    if isinstance(content, str):
        return content
    blocks = _blocks(content, skip=skip)
    if all(isinstance(b, TextBlock) for b in blocks):
        return "".join(cast(TextBlock, b).text for b in blocks)
    return blocks


def _tool_call(call: LCToolCall) -> ToolCall:
    return ToolCall(
        id=call.get("id") or new_tool_call_id(),
        function=ToolCallFunction(
            name=call["name"], arguments=json.dumps(call.get("args") or {}, ensure_ascii=False)
        ),
    )


def _invalid_tool_call(call: InvalidToolCall) -> ToolCall:
    """An invalid call sent back as it came: its raw argument string, as ``ChatOpenAI`` does."""
    return ToolCall(
        id=call.get("id") or new_tool_call_id(),
        function=ToolCallFunction(name=str(call.get("name")), arguments=call.get("args") or "{}"),
    )


def from_langchain_message(message: BaseMessage) -> Message:
    """One LangChain message as a core :class:`Message`.

    Raises:
        InvalidRequestError: for message types or content the router cannot carry.
    """
    if isinstance(message, SystemMessage):
        return Message(role="system", content=_content(message.content))
    if isinstance(message, HumanMessage):
        return Message(role="user", content=_content(message.content), name=message.name)
    if isinstance(message, AIMessage):
        text = _content(message.content, skip=_SKIPPED_AI_BLOCKS)
        calls = [_tool_call(c) for c in message.tool_calls]
        # Calls with malformed arguments stay in the turn: a ToolMessage may answer them (one
        # without a name cannot be sent to any provider).
        calls += [_invalid_tool_call(c) for c in message.invalid_tool_calls if c.get("name")]
        if isinstance(text, list):  # an assistant turn carries text only
            text = "".join(b.text for b in text if isinstance(b, TextBlock))
        return Message(
            role="assistant",
            content=None if calls and not text else text,
            tool_calls=calls or None,
            name=message.name,
        )
    if isinstance(message, ToolMessage):
        return Message(
            role="tool", content=_content(message.content), tool_call_id=message.tool_call_id
        )
    if isinstance(message, ChatMessage):
        role = _ROLES.get(message.role)
        if role is None:
            raise InvalidRequestError(
                f"messages[]: ChatMessage role {message.role!r} is not supported; use one of "
                f"{sorted(_ROLES)}"
            )
        return Message(role=role, content=_content(message.content))
    if isinstance(message, FunctionMessage):
        raise InvalidRequestError(
            "messages[]: FunctionMessage is the legacy function-calling format; answer tool calls "
            "with ToolMessage(tool_call_id=...)"
        )
    raise InvalidRequestError(f"messages[]: unsupported message type {type(message).__name__}")


def from_langchain(messages: Iterable[BaseMessage]) -> list[Message]:
    """LangChain messages as core messages, in order."""
    return [from_langchain_message(m) for m in messages]


# --------------------------------------------------------------------------- core -> LangChain
def usage_metadata(usage: Usage) -> UsageMetadata:
    """LangChain ``usage_metadata`` of ``usage`` (cache reads and reasoning as details)."""
    return UsageMetadata(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens or usage.input_tokens + usage.output_tokens,
        input_token_details=InputTokenDetails(cache_read=usage.cached_input_tokens),
        output_token_details=OutputTokenDetails(reasoning=usage.reasoning_tokens),
    )


def to_usage(metadata: Mapping[str, Any] | None) -> Usage | None:
    """Core :class:`Usage` from LangChain ``usage_metadata`` (``None`` when absent)."""
    if not metadata:
        return None
    input_details = metadata.get("input_token_details") or {}
    output_details = metadata.get("output_token_details") or {}
    total = metadata.get("total_tokens")
    return Usage.of(
        int(metadata.get("input_tokens") or 0),
        int(metadata.get("output_tokens") or 0),
        total_tokens=None if total is None else int(total),
        cached_input_tokens=int(input_details.get("cache_read") or 0),
        reasoning_tokens=int(output_details.get("reasoning") or 0),
    )


def response_metadata(response: LLMResponse | StreamChunk) -> dict[str, Any]:
    """The ``response_metadata`` of an answer: where it came from, what it cost, how fast."""
    return {
        "provider": response.provider_used,
        "model_name": response.model_used,
        "finish_reason": response.finish_reason,
        "cache_hit": response.cache_hit,
        "cost_usd": response.cost_usd or 0.0,
        "saved_usd": response.saved_usd or 0.0,
        "route": list(response.route or ()),
        "latency_ms": response.latency_ms or 0.0,
    }


def _lc_tool_calls(
    calls: Sequence[ToolCall],
) -> tuple[list[LCToolCall], list[InvalidToolCall]]:
    valid: list[LCToolCall] = []
    invalid: list[InvalidToolCall] = []
    for call in calls:
        raw = call.function.arguments
        try:
            args = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            invalid.append(
                invalid_tool_call(name=call.function.name, args=raw, id=call.id, error=str(exc))
            )
            continue
        if not isinstance(args, dict):
            invalid.append(
                invalid_tool_call(
                    name=call.function.name,
                    args=raw,
                    id=call.id,
                    error="arguments are not an object",
                )
            )
            continue
        valid.append(tool_call(name=call.function.name, args=args, id=call.id))
    return valid, invalid


def to_ai_message(response: LLMResponse) -> AIMessage:
    """A complete answer as an ``AIMessage``."""
    calls, invalid = _lc_tool_calls(response.tool_calls)
    return AIMessage(
        content=response.content or "",
        tool_calls=calls,
        invalid_tool_calls=invalid,
        usage_metadata=usage_metadata(response.usage),
        response_metadata=response_metadata(response),
    )


class StreamConverter:
    """Turns the chunks of one stream into ``AIMessageChunk``s.

    Tool calls stream as ``tool_call_chunks``; calls that only appear assembled on the final chunk
    (a cached answer replayed as a stream) are emitted there, so merging every chunk always yields
    each call exactly once.
    """

    def __init__(self) -> None:
        self._streamed: set[int] = set()
        self._indexer = ToolCallIndexer()

    def convert(self, chunk: StreamChunk) -> AIMessageChunk:
        """The ``AIMessageChunk`` of ``chunk``; the final one carries usage and metadata.

        A call's id and name go out once (the core's
        :class:`~llm_cache_router_integrations.streaming.ToolCallIndexer` drops repeats and keeps
        name fragments): LangChain concatenates both when merging chunks.
        """
        pieces: list[ToolCallChunk] = []
        for delta in chunk.tool_call_deltas:
            piece = self._indexer.normalise(delta.index, delta.id, delta.name, delta.arguments)
            self._streamed.add(piece.index)
            pieces.append(
                tool_call_chunk(
                    name=piece.name, args=piece.arguments, id=piece.id, index=piece.index
                )
            )
        if not chunk.is_final:
            return AIMessageChunk(content=chunk.delta, tool_call_chunks=pieces)
        for index, call in enumerate(chunk.tool_calls or ()):
            if index not in self._streamed:
                pieces.append(
                    tool_call_chunk(
                        name=call.function.name,
                        args=call.function.arguments,
                        id=call.id,
                        index=index,
                    )
                )
        return AIMessageChunk(
            content=chunk.delta,
            tool_call_chunks=pieces,
            usage_metadata=usage_metadata(chunk.usage or Usage()),
            response_metadata=response_metadata(chunk),
            chunk_position="last",
        )
