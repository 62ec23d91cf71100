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

__all__ = ["StreamAccumulator", "ToolCallAssembler", "ToolCallIndexer", "new_tool_call_id"]


def new_tool_call_id() -> str:
    """A fresh id for providers that do not send one (Gemini, Ollama)."""
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(slots=True)
class _PartialCall:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ToolCallIndexer:
    """Gives each streamed tool call its own index, whatever index the server sent.

    OpenAI numbers the calls of one answer ``0, 1, ...`` and sends a call's ``id`` (and name) on its
    first piece only. Some compatible servers omit ``index`` (Gemini's OpenAI endpoint) or send
    ``0`` for every call (Ollama's ``/v1``): there, a piece carrying a *different* ``id`` than the
    call it would continue (or, when that call has no id, an id with a different name) starts a new
    call. A piece without an id continues the current call, and a repeated id or name is the same
    call (some servers repeat them on every piece).
    """

    _calls: dict[int, list[str | None]] = field(default_factory=dict)  # index -> [id, name]
    _sent: dict[int, int] = field(default_factory=dict)  # index as sent -> index of its call
    _last: int | None = None

    def index_for(self, sent: int | None, call_id: str | None, name: str | None) -> int:
        """The index of the call a piece belongs to (``sent`` is ``None`` when it had none)."""
        return self._place(sent, call_id, name)[0]

    def normalise(
        self, sent: int | None, call_id: str | None, name: str | None, arguments: str
    ) -> ToolCallDelta:
        """The piece as a :class:`ToolCallDelta` with its call's own index, carrying the id and
        the name only where they are new (a repeated id or name is left out, a name fragment
        kept), so consumers that concatenate pieces, as LangChain's chunks do, get each once."""
        index, new_id, new_name = self._place(sent, call_id, name)
        return ToolCallDelta(
            index=index,
            id=call_id if new_id else None,
            name=name if new_name else None,
            arguments=arguments,
        )

    def _place(
        self, sent: int | None, call_id: str | None, name: str | None
    ) -> tuple[int, bool, bool]:
        """(index of the piece's call, whether its id is new, whether its name is new)."""
        current = self._last if sent is None else self._sent.get(sent)
        if current is None or self._starts_new(current, call_id, name):
            free = sent is not None and sent not in self._calls
            current = sent if free and sent is not None else max(self._calls, default=-1) + 1
            self._calls[current] = [call_id, name]
            new_id, new_name = bool(call_id), bool(name)
        else:
            info = self._calls[current]
            new_id = bool(call_id) and not info[0]
            info[0] = info[0] or call_id
            new_name = bool(name) and name != info[1]
            if new_name:  # joined like ToolCallAssembler joins a fragmented name
                info[1] = (info[1] or "") + (name or "")
        if sent is not None:
            self._sent[sent] = current
        self._last = current
        return current, new_id, new_name

    def _starts_new(self, current: int, call_id: str | None, name: str | None) -> bool:
        known_id, known_name = self._calls[current]
        if not call_id:
            return False
        if known_id:
            return call_id != known_id
        return bool(name and known_name and name != known_name)


@dataclass(slots=True)
class ToolCallAssembler:
    """Joins streamed tool-call pieces by ``index`` into complete :class:`ToolCall` objects.

    A piece with a new, different ``id`` at an index already in use starts a new call (see
    :class:`ToolCallIndexer`), so servers that reuse an index cannot merge two calls into one.
    """

    _calls: dict[int, _PartialCall] = field(default_factory=dict)
    _indexer: ToolCallIndexer = field(default_factory=ToolCallIndexer)

    def add(self, delta: ToolCallDelta) -> None:
        """Add one piece; the id and name arrive once, arguments arrive in fragments."""
        index = self._indexer.index_for(delta.index, delta.id, delta.name)
        call = self._calls.setdefault(index, _PartialCall())
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
