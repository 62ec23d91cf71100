"""A loopback server speaking Anthropic's Messages API wire format (JSON and named SSE events).

It validates requests the way api.anthropic.com does where a client can get them wrong: an API
key (``x-api-key``, or a bearer token as recent SDKs send), ``anthropic-version``, ``max_tokens``,
the temperature range, and every ``tool_use`` answered by a ``tool_result`` in the next user turn.
So the official ``anthropic`` SDK and our adapter can both be tested against it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from .brain import Answer, Brain, Turn
from .server import JSONReply, LoopbackServer, RecordedRequest, Reply, StreamReply, sse

__all__ = ["AnthropicServer"]

_TOOL_CHOICE = {"any": "required"}
_STOP_REASON = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _error(status: int, kind: str, message: str) -> JSONReply:
    """Anthropic's error body, with a request id as the real API sends."""
    request_id = f"req_{uuid.uuid4().hex[:24]}"
    body = {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": request_id,
    }
    return JSONReply(body, status=status, headers={"request-id": request_id})


def _text(content: Any) -> str:
    """The text of a string or of a list of content blocks."""
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    return content if isinstance(content, str) else ""


def _turns(body: dict[str, Any]) -> list[Turn]:
    """The conversation in the brain's neutral form; ``tool_result`` blocks are tool turns."""
    turns: list[Turn] = []
    system = _text(body.get("system"))
    if system:
        turns.append(Turn("system", system))
    for message in body.get("messages") or []:
        role = message.get("role", "user")
        content = message.get("content")
        blocks: list[dict[str, Any]] = (
            [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        )
        texts = [b.get("text", "") for b in blocks if b.get("type") == "text"]
        if role == "assistant":
            calls: list[tuple[str, dict[str, Any]]] = [
                (b["name"], b.get("input") or {}) for b in blocks if b["type"] == "tool_use"
            ]
            turns.append(Turn("assistant", " ".join(texts), tool_calls=calls))
            continue
        turns += [
            Turn("tool", _text(b.get("content"))) for b in blocks if b["type"] == "tool_result"
        ]
        if texts:
            turns.append(Turn("user", " ".join(texts)))
    return turns


def _unanswered_tool_use(messages: list[dict[str, Any]]) -> str | None:
    """The 400 message Anthropic sends when a ``tool_use`` lacks a ``tool_result`` right after."""
    for position, message in enumerate(messages):
        if message.get("role") != "assistant" or not isinstance(message.get("content"), list):
            continue
        wanted = [b["id"] for b in message["content"] if b.get("type") == "tool_use"]
        following = messages[position + 1] if position + 1 < len(messages) else {}
        content = following.get("content")
        answered = {
            b.get("tool_use_id")
            for b in (content if isinstance(content, list) else [])
            if b.get("type") == "tool_result"
        }
        missing = [i for i in wanted if i not in answered]
        if missing and position + 1 < len(messages):
            return (
                f"messages.{position + 1}: `tool_use` ids were found without `tool_result` "
                f"blocks immediately after: {', '.join(missing)}. Each `tool_use` block must "
                "have a corresponding `tool_result` block in the next message."
            )
    return None


class AnthropicServer(LoopbackServer):
    """Serves ``POST /v1/messages`` like api.anthropic.com.

    ``cached_tokens`` of each prompt are reported as read from the prompt cache
    (``cache_read_input_tokens``); ``input_tokens`` then counts only the rest, as Anthropic does.
    Configure a provider with :attr:`base_url` (no ``/v1``: clients add ``/v1/messages``).
    """

    def __init__(self, brain: Brain | None = None, *, cached_tokens: int = 0) -> None:
        super().__init__(brain or Brain(call_ids="toolu"))
        self.cached_tokens = cached_tokens

    def usage(self, answer: Answer) -> dict[str, Any]:
        """The ``usage`` object Anthropic sends for ``answer``."""
        cached = min(self.cached_tokens, answer.input_tokens)
        return {
            "input_tokens": answer.input_tokens - cached,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached,
            "output_tokens": answer.output_tokens,
            "service_tier": "standard",
        }

    def _invalid(self, request: RecordedRequest) -> JSONReply | None:
        """The error reply api.anthropic.com would give, or ``None`` for a valid request."""
        if request.path.rstrip("/") != "/v1/messages" or request.method != "POST":
            return _error(404, "not_found_error", "Not found")
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not (request.headers.get("x-api-key") or bearer):
            return _error(401, "authentication_error", "x-api-key header is required")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        body = request.body
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "The request body is not valid JSON.")
        for name in ("model", "messages", "max_tokens"):
            if name not in body:
                return _error(400, "invalid_request_error", f"{name}: Field required")
        temperature = body.get("temperature")
        if temperature is not None and not 0 <= temperature <= 1:
            return _error(400, "invalid_request_error", "temperature: range: 0..1")
        problem = _unanswered_tool_use(body["messages"])
        return _error(400, "invalid_request_error", problem) if problem else None

    def answer(self, request: RecordedRequest) -> Reply:
        """Answer a Messages API request, as named SSE events when ``stream`` is true."""
        invalid = self._invalid(request)
        if invalid is not None:
            return invalid
        body = request.body
        tools = [
            {"name": t["name"], "parameters": t.get("input_schema")}
            for t in body.get("tools") or []
        ]
        choice = body.get("tool_choice") or {}
        kind = str(choice.get("type") or "auto")
        answer = self.think(
            turns=_turns(body),
            tools=tools or None,
            tool_choice=choice.get("name") if kind == "tool" else _TOOL_CHOICE.get(kind, kind),
            max_tokens=body["max_tokens"],
        )
        message = {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": self._content(answer),
            "stop_reason": _STOP_REASON[answer.finish],
            "stop_sequence": None,
            "usage": self.usage(answer),
        }
        if body.get("stream"):
            return StreamReply(self._stream(answer, message))
        return JSONReply(message, headers={"request-id": f"req_{uuid.uuid4().hex[:24]}"})

    @staticmethod
    def _content(answer: Answer) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if answer.text:
            blocks.append({"type": "text", "text": answer.text})
        blocks += [
            {"type": "tool_use", "id": cid, "name": name, "input": args}
            for cid, name, args in answer.tool_calls
        ]
        return blocks

    def _stream(self, answer: Answer, message: dict[str, Any]) -> list[bytes]:
        def event(kind: str, **fields: Any) -> bytes:
            return sse({"type": kind, **fields}, event=kind)

        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**message["usage"], "output_tokens": 1},
        }
        frames = [event("message_start", message=start)]
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                frames.append(
                    event(
                        "content_block_start",
                        index=index,
                        content_block={"type": "text", "text": ""},
                    )
                )
                pieces = [{"type": "text_delta", "text": piece} for piece in answer.pieces()]
            else:
                frames.append(
                    event("content_block_start", index=index, content_block={**block, "input": {}})
                )
                encoded = json.dumps(block["input"])
                pieces = [{"type": "input_json_delta", "partial_json": ""}]
                pieces += [
                    {"type": "input_json_delta", "partial_json": encoded[i : i + 7]}
                    for i in range(0, len(encoded), 7)
                ]
            if index == 0:
                frames.append(event("ping"))
            frames += [event("content_block_delta", index=index, delta=piece) for piece in pieces]
            frames.append(event("content_block_stop", index=index))
        frames.append(
            event(
                "message_delta",
                delta={"stop_reason": message["stop_reason"], "stop_sequence": None},
                usage={"output_tokens": message["usage"]["output_tokens"]},
            )
        )
        frames.append(event("message_stop"))
        return frames
