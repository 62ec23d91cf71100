"""Assembling a stream: tool-call deltas into tool calls, chunks into one :class:`LLMResponse`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from .types import (
    FinishReason,
    LLMResponse,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
    ToolCallFunction,
    Usage,
)

__all__ = ["StreamAccumulator", "ToolCallAssembler", "new_tool_call_id"]


def new_tool_call_id() -> str:
    """A fresh id for providers that do not send one (Gemini, Ollama)."""
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(slots=True)
class _PartialCall:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ToolCallAssembler:
    """Joins streamed tool-call pieces by ``index`` into complete :class:`ToolCall` objects."""

    _calls: dict[int, _PartialCall] = field(default_factory=dict)

    def add(self, delta: ToolCallDelta) -> None:
        """Add one piece; the id and name arrive once, arguments arrive in fragments."""
        call = self._calls.setdefault(delta.index, _PartialCall())
        if delta.id:
            call.id = delta.id
        if delta.name and delta.name != call.name:
            # Most servers send the name once; some repeat it on every piece, a few fragment it.
            call.name += delta.name
        if delta.arguments:
            call.arguments.append(delta.arguments)

    def __bool__(self) -> bool:
        return bool(self._calls)

    def complete(self) -> list[ToolCall]:
        """The assembled calls in index order (missing ids are generated)."""
        return [
            ToolCall(
                id=call.id or new_tool_call_id(),
                function=ToolCallFunction(
                    name=call.name, arguments="".join(call.arguments) or "{}"
                ),
            )
            for _, call in sorted(self._calls.items())
            if call.name
        ]


@dataclass(slots=True)
class StreamAccumulator:
    """Collects a stream's chunks; ``response()`` gives the equivalent complete answer."""

    text: list[str] = field(default_factory=list)
    tools: ToolCallAssembler = field(default_factory=ToolCallAssembler)
    final: StreamChunk | None = None

    def add(self, chunk: StreamChunk) -> None:
        """Record one chunk (text, tool-call pieces, or the final chunk)."""
        if chunk.delta:
            self.text.append(chunk.delta)
        for delta in chunk.tool_call_deltas:
            self.tools.add(delta)
        if chunk.is_final:
            self.final = chunk

    @property
    def content(self) -> str:
        """The text streamed so far."""
        return "".join(self.text)

    def response(self) -> LLMResponse:
        """The complete answer; only valid once the final chunk has arrived."""
        if self.final is None:
            raise ValueError("the stream has not finished: no final chunk was received")
        final = self.final
        tool_calls = final.tool_calls if final.tool_calls is not None else self.tools.complete()
        finish: FinishReason = final.finish_reason or ("tool_calls" if tool_calls else "stop")
        return LLMResponse(
            content=self.content or (None if tool_calls else ""),
            tool_calls=tool_calls,
            finish_reason=finish,
            usage=final.usage or Usage(),
            provider_used=final.provider_used or "",
            model_used=final.model_used or "",
            latency_ms=final.latency_ms or 0.0,
            cost_usd=final.cost_usd or 0.0,
            cache_hit=final.cache_hit,
            saved_usd=final.saved_usd or 0.0,
            route=final.route or [],
        )
