"""A loopback server speaking DashScope's OpenAI-compatible mode (Qwen), quirks included.

Like dashscope-intl.aliyuncs.com/compatible-mode it serves ``/compatible-mode/v1/chat/completions``,
rejects a non-streaming call that would think (open Qwen3 models think unless
``enable_thinking`` is false) with HTTP 400, rejects a ``seed`` outside ``0..2**31-1``, and streams
the reasoning of a thinking call as ``reasoning_content`` deltas before the answer.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from .brain import Answer
from .openai_server import OpenAIServer
from .server import JSONReply, RecordedRequest, Reply, StreamReply, sse

__all__ = ["QwenServer", "dashscope_error"]

PATH = "/compatible-mode/v1/chat/completions"


def dashscope_error(
    status: int, code: str, message: str, *, flat: bool = False, type_: str | None = None
) -> JSONReply:
    """A DashScope error: OpenAI-style ``{"error": {...}}``, or the gateway's flat shape."""
    request_id = str(uuid.uuid4())
    if flat:
        return JSONReply(
            {"code": code, "message": message, "request_id": request_id}, status=status
        )
    error = {"code": code, "param": None, "message": message, "type": type_ or code}
    return JSONReply(
        {"error": error, "id": f"chatcmpl-{request_id}", "request_id": request_id}, status=status
    )


class QwenServer(OpenAIServer):
    """Serves DashScope's compatible-mode chat completions.

    ``REASONING`` is what a thinking call streams as ``reasoning_content``; its words are reported
    as ``completion_tokens_details.reasoning_tokens`` and included in ``completion_tokens``.
    """

    REASONING = "Let me work out what the user is asking before I answer."

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/compatible-mode/v1``."""
        return f"{self.url}/compatible-mode/v1"

    @staticmethod
    def thinks_by_default(model: str) -> bool:
        """Open Qwen3 models and QwQ think unless told not to; commercial models do not."""
        name = model.lower()
        return name.startswith(("qwen3", "qwq")) or "-thinking" in name

    @classmethod
    def reasoning_tokens(cls) -> int:
        """Reasoning tokens reported for a thinking call."""
        return len(cls.REASONING.split())

    def answer(self, request: RecordedRequest) -> Reply:
        """Check DashScope's rules, then answer like OpenAI (with reasoning when thinking)."""
        body = request.body
        if request.path.rstrip("/") != PATH or not isinstance(body, dict):
            return dashscope_error(404, "InvalidURL", f"Invalid URL provided: {request.path}")
        seed = body.get("seed")
        if seed is not None and not 0 <= int(seed) < 2**31:
            return dashscope_error(
                400,
                "invalid_parameter_error",
                "<400> InternalError.Algo.InvalidParameter: Range of seed should be [0, 2147483647]",
                type_="invalid_request_error",
            )
        model = str(body.get("model"))
        thinking = bool(body.get("enable_thinking", self.thinks_by_default(model)))
        if thinking and not body.get("stream"):
            return dashscope_error(
                400,
                "invalid_parameter_error",
                "parameter.enable_thinking must be set to false for non-streaming calls",
                type_="invalid_request_error",
            )
        reply = super().answer(
            RecordedRequest(
                request.method,
                "/v1/chat/completions",
                request.query,
                request.headers,
                body,
                request.raw,
            )
        )
        if thinking and isinstance(reply, StreamReply):
            reply.frames = self._with_reasoning(reply.frames)
        return reply

    def _with_reasoning(self, frames: list[bytes]) -> list[bytes]:
        """Insert ``reasoning_content`` deltas after the role frame; count them in usage."""
        first = json.loads(frames[0].decode().removeprefix("data: "))
        words = self.REASONING.split(" ")
        thinking = []
        for i in range(0, len(words), 3):
            piece = " ".join(words[i : i + 3]) + (" " if i + 3 < len(words) else "")
            delta = {"content": None, "reasoning_content": piece}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
            thinking.append(sse({**first, "choices": [choice]}))
        out = [frames[0], *thinking]
        for frame in frames[1:]:
            text = frame.decode().removeprefix("data: ").strip()
            data: Any = None if text == "[DONE]" else json.loads(text)
            if isinstance(data, dict) and data.get("usage"):
                usage = data["usage"]
                usage["completion_tokens"] += self.reasoning_tokens()
                usage["total_tokens"] += self.reasoning_tokens()
                usage["completion_tokens_details"]["reasoning_tokens"] = self.reasoning_tokens()
                frame = sse(data)
            out.append(frame)
        return out

    @staticmethod
    def usage(answer: Answer) -> dict[str, Any]:
        """DashScope's ``usage`` object (prompt/completion/total plus the details)."""
        return {
            "prompt_tokens": answer.input_tokens,
            "completion_tokens": answer.output_tokens,
            "total_tokens": answer.input_tokens + answer.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
