"""The deterministic "model" behind every loopback server.

Given the conversation in a provider-neutral form it answers with text, a tool call (when tools are
offered and the user has just spoken), a summary of a tool result, or JSON that follows a schema.
Token usage is derived from word counts, so a test can check that an adapter reports exactly the
usage the server sent.

It follows a few instructions the way a real model would: a text quoted in the user's message
fills the first string argument of a tool call (``Create a customer named 'ACME'``); in JSON mode,
keys the user names in quotes (``with 'setup' and 'punchline' keys``) are the keys of the object,
and a system prompt asking for a "JSON object" turns JSON mode on; text stops before the first
stop sequence.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Answer", "Brain", "Turn", "sample_from_schema"]


@dataclass(slots=True)
class Turn:
    """One message: ``role`` is system/user/assistant/tool; ``text`` its textual content."""

    role: str
    text: str
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass(slots=True)
class Answer:
    """What the server will send: text and/or tool calls ``(id, name, arguments)`` and usage."""

    text: str = ""
    tool_calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    finish: str = "stop"  # stop | length | tool_calls

    def pieces(self, size: int = 2) -> list[str]:
        """The text cut into streaming pieces of ``size`` words (spaces kept)."""
        words = re.findall(r"\S+\s*", self.text)
        return ["".join(words[i : i + size]) for i in range(0, len(words), size)] or []


def _words(text: str) -> int:
    return len(text.split())


_QUOTED = re.compile(r"(?<!\w)'([^'\n]+)'(?!\w)|(?<!\w)\"([^\"\n]+)\"(?!\w)")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _quoted(text: str) -> list[str]:
    """The spans of ``text`` quoted with '...' or "..."."""
    return [a or b for a, b in _QUOTED.findall(text)]


def _fill_first_string(value: Any, schema: dict[str, Any], text: str) -> Any:
    """Put ``text`` into the first string property of an object sampled from ``schema``."""
    if not isinstance(value, dict):
        return value
    for name, sub in (schema.get("properties") or {}).items():
        kind = sub.get("type") if isinstance(sub, dict) else None
        if kind == "string" and not sub.get("enum") and name in value:
            return {**value, name: text}
    return value


def sample_from_schema(schema: dict[str, Any], hint: str = "") -> Any:
    """A small value that satisfies a JSON schema (objects, arrays, enums, scalars)."""
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return sample_from_schema(schema[key][0], hint)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: sample_from_schema(sub, name) for name, sub in props.items()}
    if kind == "array":
        return [sample_from_schema(schema.get("items") or {"type": "string"}, hint)]
    if kind == "integer":
        return 3
    if kind == "number":
        return 2.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return {"location": "Paris", "city": "Paris", "query": "weather"}.get(hint, hint or "value")


class Brain:
    """Deterministic answers; ``reply`` can be fixed to always say one text."""

    def __init__(self, reply: str | None = None, *, call_ids: str = "call") -> None:
        self.reply = reply
        self._call_ids = call_ids
        self._counter = 0

    def answer(
        self,
        turns: list[Turn],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | None = None,
        json_schema: dict[str, Any] | None = None,
        json_mode: bool = False,
        max_tokens: int | None = None,
        stop: list[str] | None = None,
    ) -> Answer:
        """``tools`` are ``{"name", "parameters"}`` dicts; ``tool_choice`` is auto/none/required/NAME."""
        input_tokens = sum(_words(t.text) + 3 for t in turns) + 2
        last = turns[-1] if turns else Turn("user", "")
        if tools and last.role == "user" and tool_choice != "none":
            chosen = next((t for t in tools if t["name"] == tool_choice), tools[0])
            self._counter += 1
            parameters = chosen.get("parameters") or {"type": "object"}
            arguments = sample_from_schema(parameters)
            quoted = _quoted(last.text)
            if quoted:
                arguments = _fill_first_string(arguments, parameters, quoted[0])
            call = (f"{self._call_ids}_{self._counter:04d}", chosen["name"], arguments)
            return Answer(
                tool_calls=[call],
                input_tokens=input_tokens,
                output_tokens=5 + _words(json.dumps(arguments)),
                finish="tool_calls",
            )
        json_mode = json_mode or any(t.role == "system" and "JSON object" in t.text for t in turns)
        if json_schema is not None:
            text = json.dumps(sample_from_schema(json_schema))
        elif json_mode:
            keys = [k for k in _quoted(last.text) if _IDENTIFIER.match(k)]
            text = json.dumps({k: k for k in keys} if keys else {"answer": last.text[:40]})
        elif last.role == "tool":
            text = f"The tool returned {last.text}. That is the answer."
        elif self.reply is not None:
            text = self.reply
        else:
            text = f"Answer to: {last.text}" if last.text else "Hello! How can I help you today?"
        for sequence in stop or ():
            if sequence and sequence in text:
                text = text[: text.index(sequence)]
        answer = Answer(text=text, input_tokens=input_tokens)
        if max_tokens is not None and _words(text) > max_tokens:
            answer.text = " ".join(text.split()[:max_tokens])
            answer.finish = "length"
        answer.output_tokens = _words(answer.text) + 1
        return answer
