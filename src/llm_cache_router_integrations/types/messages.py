"""Chat messages in the OpenAI-compatible shape, the lingua franca of every provider adapter.

Content is either a plain string or a list of typed blocks (text, image URL, Anthropic-style image,
input audio, video). Tool calls made by the assistant and tool results returned to it use the
OpenAI fields (``tool_calls``, ``tool_call_id``). Each provider converts these to and from its own
wire shape in exactly one place (its ``convert`` module).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "AnthropicImageSource",
    "ContentBlock",
    "ImageBlock",
    "ImageURL",
    "ImageURLBlock",
    "InputAudio",
    "InputAudioBlock",
    "Message",
    "Role",
    "TextBlock",
    "ToolCall",
    "ToolCallFunction",
    "VideoBlock",
    "VideoURL",
]

Role = Literal["system", "developer", "user", "assistant", "tool"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class TextBlock(_Model):
    """A text part of a message."""

    type: Literal["text"] = "text"
    text: str


class ImageURL(_Model):
    """An image given by URL or ``data:`` URI, as in OpenAI's ``image_url`` block."""

    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImageURLBlock(_Model):
    """An OpenAI-style image block: ``{"type": "image_url", "image_url": {"url": ...}}``."""

    type: Literal["image_url"] = "image_url"
    image_url: ImageURL


class AnthropicImageSource(_Model):
    """The ``source`` of an Anthropic image block: base64 data with a media type, or a URL."""

    type: Literal["base64", "url"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _check_payload(self) -> AnthropicImageSource:
        if self.type == "base64" and not (self.data and self.media_type):
            raise ValueError("image source of type 'base64' needs both 'data' and 'media_type'")
        if self.type == "url" and not self.url:
            raise ValueError("image source of type 'url' needs 'url'")
        return self


class ImageBlock(_Model):
    """An Anthropic-style image block: ``{"type": "image", "source": {...}}``."""

    type: Literal["image"] = "image"
    source: AnthropicImageSource


class InputAudio(_Model):
    """Base64 audio with its container format, as in OpenAI's ``input_audio`` block."""

    data: str = Field(min_length=1)
    format: str = Field(min_length=1, description="wav, mp3, flac, ogg, ...")


class InputAudioBlock(_Model):
    """An audio input block."""

    type: Literal["input_audio"] = "input_audio"
    input_audio: InputAudio


class VideoURL(_Model):
    """A video given by URL or ``data:`` URI."""

    url: str = Field(min_length=1)


class VideoBlock(_Model):
    """A video input block: ``{"type": "video_url", "video_url": {"url": ...}}`` (Qwen, Gemini)."""

    type: Literal["video_url"] = "video_url"
    video_url: VideoURL


ContentBlock = Annotated[
    TextBlock | ImageURLBlock | ImageBlock | InputAudioBlock | VideoBlock,
    Field(discriminator="type"),
]


class ToolCallFunction(_Model):
    """The function part of a tool call; ``arguments`` is a JSON-encoded object."""

    name: str = Field(min_length=1)
    arguments: str = "{}"

    def parsed_arguments(self) -> dict[str, Any]:
        """Decode ``arguments``; an empty or invalid string yields ``{}``."""
        if not self.arguments.strip():
            return {}
        try:
            value = json.loads(self.arguments)
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}


class ToolCall(_Model):
    """A complete tool call requested by the assistant."""

    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: ToolCallFunction


class Message(_Model):
    """One chat message (OpenAI-compatible).

    ``content`` may be ``None`` only for an assistant message that carries ``tool_calls``.
    A ``tool`` message answers one tool call and must name it with ``tool_call_id``.
    """

    role: Role
    content: str | list[ContentBlock] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _check_shape(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a message with role 'tool' needs 'tool_call_id'")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages may carry 'tool_calls'")
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(
                f"message with role '{self.role}' needs 'content' (only an assistant message "
                "with tool_calls may omit it)"
            )
        return self

    @property
    def text(self) -> str:
        """The concatenated text of the message (text blocks only)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(block.text for block in self.content if isinstance(block, TextBlock))

    def blocks(self) -> list[ContentBlock]:
        """The content as a list of blocks (a string becomes one text block)."""
        if self.content is None:
            return []
        if isinstance(self.content, str):
            return [TextBlock(text=self.content)]
        return list(self.content)
