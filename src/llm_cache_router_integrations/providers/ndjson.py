"""An incremental newline-delimited JSON decoder (Ollama's streaming format)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["NDJSONDecoder", "NDJSONError"]


class NDJSONError(ValueError):
    """A complete line of the stream is not a JSON object."""


@dataclass(slots=True)
class NDJSONDecoder:
    """``feed(bytes) -> list[dict]`` for each complete line; ``flush()`` parses a last unterminated line."""

    _buffer: bytes = b""

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        """Return the objects of every line completed by ``chunk``."""
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        return [obj for line in lines if (obj := self._parse(line)) is not None]

    def flush(self) -> list[dict[str, Any]]:
        """Parse what is left at the end of the stream (a final line without a newline)."""
        rest, self._buffer = self._buffer, b""
        obj = self._parse(rest)
        return [] if obj is None else [obj]

    @staticmethod
    def _parse(line: bytes) -> dict[str, Any] | None:
        line = line.strip()
        if not line:
            return None
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise NDJSONError(f"malformed NDJSON line: {line[:200]!r}") from exc
        if not isinstance(value, dict):
            raise NDJSONError(f"NDJSON line is not an object: {line[:200]!r}")
        return value
