"""A loopback server speaking OpenAI's Chat Completions wire format (JSON and SSE)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from .brain import Answer, Brain, Turn
from .server import JSONReply, LoopbackServer, RecordedRequest, Reply, StreamReply, sse

__all__ = ["OpenAIServer"]


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


class OpenAIServer(LoopbackServer):
    """Serves ``POST /v1/chat/completions`` like api.openai.com (also MiniMax, Qwen, vLLM...).

    ``model_suffix`` is appended to the model name in answers (OpenAI answers with a dated
    snapshot such as ``gpt-4o-mini-2024-07-18``).
    """

    def __init__(self, brain: Brain | None = None, *, model_suffix: str = "") -> None:
        super().__init__(brain)
        self.model_suffix = model_suffix

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    def answer(self, request: RecordedRequest) -> Reply:
        """Answer a chat completion request, streamed when ``stream`` is true."""
        if request.path.rstrip("/") != "/v1/chat/completions" or not isinstance(request.body, dict):
            return JSONReply(
                {
                    "error": {
                        "message": f"Unknown request URL: {request.path}",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "unknown_url",
                    }
                },
                status=404,
            )
        body = request.body
        turns = [
            Turn(m.get("role", "user"), _text(m.get("content"))) for m in body.get("messages") or []
        ]
        tools = [
            {"name": t["function"]["name"], "parameters": t["function"].get("parameters")}
            for t in body.get("tools") or []
        ]
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            choice = choice["function"]["name"]
        fmt = body.get("response_format") or {}
        answer = self.think(
            turns=turns,
            tools=tools or None,
            tool_choice=choice,
            json_schema=(fmt.get("json_schema") or {}).get("schema")
            if fmt.get("type") == "json_schema"
            else None,
            json_mode=fmt.get("type") == "json_object",
            max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
            stop=[body["stop"]] if isinstance(body.get("stop"), str) else body.get("stop"),
        )
        model = str(body.get("model")) + self.model_suffix
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamReply(self._stream(answer, model, include_usage))
        return JSONReply(self._completion(answer, model))

    @staticmethod
    def usage(answer: Answer) -> dict[str, Any]:
        """The ``usage`` object OpenAI sends for ``answer``."""
        return {
            "prompt_tokens": answer.input_tokens,
            "completion_tokens": answer.output_tokens,
            "total_tokens": answer.input_tokens + answer.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _completion(self, answer: Answer, model: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": answer.text or None,
            "refusal": None,
            "annotations": [],
        }
        if answer.tool_calls:
            message["tool_calls"] = [
                {
                    "id": cid,
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for cid, name, args in answer.tool_calls
            ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish}
            ],
            "usage": self.usage(answer),
            "service_tier": "default",
            "system_fingerprint": "fp_loopback",
        }

    def _stream(self, answer: Answer, model: str, include_usage: bool) -> list[bytes]:
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_loopback",
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            extra = {"usage": None} if include_usage else {}
            return sse({**base, "choices": [choice], **extra})

        frames = [chunk({"role": "assistant", "content": "", "refusal": None})]
        frames += [chunk({"content": piece}) for piece in answer.pieces()]
        for index, (cid, name, args) in enumerate(answer.tool_calls):
            frames.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": cid,
                                "type": "function",
                                "function": {"name": name, "arguments": ""},
                            }
                        ]
                    }
                )
            )
            encoded = json.dumps(args)
            for start in range(0, len(encoded), 7):
                frames.append(
                    chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "function": {"arguments": encoded[start : start + 7]},
                                }
                            ]
                        }
                    )
                )
        frames.append(chunk({}, answer.finish))
        if include_usage:
            frames.append(sse({**base, "choices": [], "usage": self.usage(answer)}))
        frames.append(b"data: [DONE]\n\n")
        return frames
