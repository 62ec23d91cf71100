"""An incremental Server-Sent Events decoder (the WHATWG event-stream format).

Feed it bytes as they arrive; it returns every event completed so far. It handles events split
across reads, multi-line ``data``, named events, comments and keep-alives, and LF, CRLF or CR line
endings (also a CRLF split between two reads). An event not closed by a blank line when the stream
ends is dropped, as the specification says: a truncated frame never becomes content.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

__all__ = ["SSEDecoder", "SSEEvent"]


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: ``event`` defaults to ``"message"``; ``data`` lines joined by LF."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


@dataclass(slots=True)
class SSEDecoder:
    """Incremental decoder: ``feed(bytes) -> list[SSEEvent]``, then ``flush()`` at the end."""

    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _buffer: str = ""
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _id: str | None = None
    _retry: int | None = None
    _has_data: bool = False
    _skip_lf: bool = False
    _first: bool = True

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode ``chunk`` and return the events it completes."""
        text = self._decoder.decode(chunk)
        if self._first and text:
            self._first = False
            text = text.removeprefix("\ufeff")
        return self._consume(text)

    def flush(self) -> list[SSEEvent]:
        """End of stream: decode what is left; an unterminated event is discarded."""
        events = self._consume(self._decoder.decode(b"", final=True))
        self._buffer = ""
        self._reset_event()
        return events

    def _consume(self, text: str) -> list[SSEEvent]:
        if not text:  # e.g. only part of a UTF-8 character: a pending CR still awaits its LF
            return []
        if self._skip_lf and text.startswith("\n"):
            text = text[1:]
        self._skip_lf = False
        buffer = self._buffer + text
        events: list[SSEEvent] = []
        start = 0
        length = len(buffer)
        while True:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, nxt = lf, lf + 1
            elif cr + 1 < length:
                end, nxt = cr, cr + 2 if buffer[cr + 1] == "\n" else cr + 1
            else:  # a CR at the very end: its LF may come in the next read
                end, nxt = cr, cr + 1
                self._skip_lf = True
            event = self._line(buffer[start:end])
            if event is not None:
                events.append(event)
            start = nxt
        self._buffer = buffer[start:]
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment or keep-alive
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        if not self._has_data:
            self._event = ""
            return None
        event = SSEEvent(
            data="\n".join(self._data),
            event=self._event or "message",
            id=self._id,
            retry=self._retry,
        )
        self._reset_event()
        return event

    def _reset_event(self) -> None:
        self._data = []
        self._event = ""
        self._has_data = False
