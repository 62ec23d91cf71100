"""Provider-neutral results: a whole response, a stream chunk and token usage."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .messages import ToolCall

__all__ = ["FinishReason", "LLMResponse", "StreamChunk", "ToolCallDelta", "Usage"]

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "other"]


class Usage(BaseModel):
    """Token counts of one call, as the provider reported them.

    ``input_tokens`` includes cached input tokens (``cached_input_tokens`` is the part of it served
    from the provider's prompt cache); ``output_tokens`` includes reasoning tokens.
    """

    model_config = ConfigDict(extra="forbid")

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)
    cached_input_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)

    @classmethod
    def of(
        cls,
        input_tokens: int = 0,
        output_tokens: int = 0,
        *,
        total_tokens: int | None = None,
        cached_input_tokens: int = 0,
        reasoning_tokens: int = 0,
    ) -> Usage:
        """Build usage, deriving ``total_tokens`` when the provider did not send it."""
        return cls(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens if total_tokens is None else total_tokens,
            cached_input_tokens=cached_input_tokens,
            reasoning_tokens=reasoning_tokens,
        )


class LLMResponse(BaseModel):
    """A complete answer, whichever provider produced it."""

    model_config = ConfigDict(extra="forbid")

    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: FinishReason = "stop"
    usage: Usage = Field(default_factory=Usage)
    provider_used: str
    model_used: str
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    cache_hit: bool = False
    saved_usd: float = Field(
        default=0.0, ge=0, description="on a cache hit: what the original call cost (avoided)"
    )
    route: list[str] = Field(
        default_factory=list, description="deployments tried in order; the last one answered"
    )
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)


class ToolCallDelta(BaseModel):
    """A piece of a streamed tool call; pieces with the same ``index`` form one call."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class StreamChunk(BaseModel):
    """One piece of a streamed answer.

    Every stream ends with exactly one chunk whose ``is_final`` is true; it carries the full usage,
    the assembled tool calls, the finish reason, and the provider and model that answered.
    """

    model_config = ConfigDict(extra="forbid")

    delta: str = ""
    tool_call_deltas: list[ToolCallDelta] = Field(default_factory=list)
    is_final: bool = False
    finish_reason: FinishReason | None = None
    tool_calls: list[ToolCall] | None = None
    usage: Usage | None = None
    provider_used: str | None = None
    model_used: str | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None
    cache_hit: bool = False
    saved_usd: float | None = None
    route: list[str] | None = None
