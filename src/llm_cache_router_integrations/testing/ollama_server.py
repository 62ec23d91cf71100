"""A loopback server speaking Ollama's native ``/api/chat`` wire format (JSON and NDJSON)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from .brain import Answer, Brain, Turn
from .server import JSONReply, LoopbackServer, RawReply, RecordedRequest, Reply, StreamReply, ndjson

__all__ = ["OllamaServer"]


def _created_at() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class OllamaServer(LoopbackServer):
    """Serves ``POST /api/chat`` like an Ollama 0.x server.

    As in Ollama, a request without ``"stream"`` is streamed (NDJSON, ``application/x-ndjson``);
    tool calls arrive whole in a line before the final ``done: true`` line, which carries
    ``done_reason``, the durations and ``prompt_eval_count``/``eval_count``. When ``models`` is
    given, any other model answers 404 like a model that was never pulled.
    """

    def __init__(
        self, brain: Brain | None = None, *, models: Collection[str] | None = None
    ) -> None:
        super().__init__(brain)
        self.models = set(models) if models is not None else None

    def answer(self, request: RecordedRequest) -> Reply:
        """Answer a chat request, streamed unless ``"stream": false``."""
        if request.path.rstrip("/") != "/api/chat" or request.method != "POST":
            return RawReply(b"404 page not found", status=404, content_type="text/plain")
        body = request.body
        if not isinstance(body, dict):
            return JSONReply({"error": "invalid character in request body"}, status=400)
        model = body.get("model")
        if not model:
            return JSONReply({"error": "model is required"}, status=400)
        if self.models is not None and model not in self.models:
            return JSONReply(
                {"error": f'model "{model}" not found, try pulling it first'}, status=404
            )
        tools = [
            {"name": t["function"]["name"], "parameters": t["function"].get("parameters")}
            for t in body.get("tools") or ()
        ]
        fmt = body.get("format")
        num_predict = (body.get("options") or {}).get("num_predict")
        answer = self.think(
            turns=self.turns(body),
            tools=tools or None,
            json_schema=fmt if isinstance(fmt, dict) else None,
            json_mode=fmt == "json",
            max_tokens=num_predict if isinstance(num_predict, int) and num_predict > 0 else None,
        )
        if body.get("stream", True):
            return StreamReply(self._stream(answer, model), content_type="application/x-ndjson")
        return JSONReply(self._final(answer, model, answer.text, with_calls=True))

    @staticmethod
    def turns(body: Mapping[str, Any]) -> list[Turn]:
        """The conversation of a request; ``tool`` messages become tool turns."""
        turns: list[Turn] = []
        for message in body.get("messages") or ():
            calls = [
                (c["function"]["name"], c["function"].get("arguments") or {})
                for c in message.get("tool_calls") or ()
            ]
            turns.append(Turn(message.get("role", "user"), message.get("content") or "", calls))
        return turns

    @staticmethod
    def _message(content: str, answer: Answer | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if answer is not None and answer.tool_calls:
            message["tool_calls"] = [
                {"function": {"name": name, "arguments": args}}
                for _, name, args in answer.tool_calls
            ]
        return message

    def _final(
        self, answer: Answer, model: str, content: str, *, with_calls: bool
    ) -> dict[str, Any]:
        return {
            "model": model,
            "created_at": _created_at(),
            "message": self._message(content, answer if with_calls else None),
            "done_reason": "length" if answer.finish == "length" else "stop",
            "done": True,
            "total_duration": 1_250_000_000,
            "load_duration": 20_000_000,
            "prompt_eval_count": answer.input_tokens,
            "prompt_eval_duration": 150_000_000,
            "eval_count": answer.output_tokens,
            "eval_duration": 1_000_000_000,
        }

    def _stream(self, answer: Answer, model: str) -> list[bytes]:
        def line(message: dict[str, Any]) -> bytes:
            return ndjson(
                {"model": model, "created_at": _created_at(), "message": message, "done": False}
            )

        frames = [line(self._message(piece)) for piece in answer.pieces()]
        if answer.tool_calls:
            frames.append(line(self._message("", answer)))
        frames.append(ndjson(self._final(answer, model, "", with_calls=False)))
        return frames
