"""A loopback server speaking MiniMax's OpenAI-compatible API, quirks included.

Like api.minimax.io it answers every call with a ``base_resp`` object, reports invalid parameters
(``temperature`` outside ``(0, 1]``, ``n`` other than 1) as ``base_resp`` code 2013 with HTTP 200,
and lets the M2 models (``MiniMax-M*``) think aloud in ``<think>...</think>`` at the start of
``content``; streamed, the tags are cut across deltas.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from .brain import Answer
from .openai_server import OpenAIServer
from .server import JSONReply, RecordedRequest, Reply, sse

__all__ = ["MiniMaxServer", "base_resp_reply"]


def base_resp_reply(code: int, message: str, status: int = 200) -> JSONReply:
    """A MiniMax error answer: no choices, a failed ``base_resp`` (HTTP 200 by default)."""
    return JSONReply(
        {
            "id": "0589f8c2d1e1a3b4c5d6e7f8a9b0c1d2",
            "choices": None,
            "created": 0,
            "model": "",
            "object": "chat.completion",
            "usage": {},
            "input_sensitive": False,
            "output_sensitive": False,
            "base_resp": {"status_code": code, "status_msg": message},
        },
        status=status,
    )


_OK = {"status_code": 0, "status_msg": ""}


def _payload(frame: bytes) -> dict[str, Any] | None:
    """The JSON object of an SSE ``data:`` frame (``None`` for ``[DONE]``)."""
    data = frame.decode().removeprefix("data: ").strip()
    return None if data == "[DONE]" else dict(json.loads(data))


class MiniMaxServer(OpenAIServer):
    """Serves ``POST /v1/chat/completions`` the way MiniMax does.

    ``THINK`` is the reasoning an M2 model emits; its words are reported as reasoning tokens (and
    included in ``completion_tokens``), as MiniMax does.
    """

    THINK = "The user wants a short answer. I will reply directly and clearly."

    @classmethod
    def reasoning_tokens(cls, model: str) -> int:
        """Reasoning tokens reported for an answer of ``model`` (0 for non-thinking models)."""
        return len(cls.THINK.split()) if cls.thinks(model) else 0

    @staticmethod
    def thinks(model: str) -> bool:
        """Whether ``model`` is an M-series reasoning model that emits ``<think>``."""
        return model.lower().startswith("minimax-m")

    def answer(self, request: RecordedRequest) -> Reply:
        """Reject what MiniMax rejects (with HTTP 200), else answer like OpenAI plus ``base_resp``."""
        body = request.body
        if isinstance(body, dict):
            temperature = body.get("temperature")
            if temperature is not None and not 0 < float(temperature) <= 1:
                return base_resp_reply(
                    2013, f"invalid params, temperature must be in (0, 1], got {temperature}"
                )
            top_p = body.get("top_p")
            if top_p is not None and not 0 < float(top_p) <= 1:
                return base_resp_reply(
                    2013, f"invalid params, top_p must be in (0, 1], got {top_p}"
                )
            if body.get("n", 1) != 1:
                return base_resp_reply(2013, "invalid params, n only supports 1")
        return super().answer(request)

    def minimax_usage(self, answer: Answer, model: str) -> dict[str, Any]:
        """MiniMax's ``usage``: reasoning counted in ``completion_tokens`` and detailed."""
        reasoning = self.reasoning_tokens(model)
        completion = answer.output_tokens + reasoning
        return {
            "total_tokens": answer.input_tokens + completion,
            "total_characters": 0,
            "prompt_tokens": answer.input_tokens,
            "completion_tokens": completion,
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }

    def _completion(self, answer: Answer, model: str) -> dict[str, Any]:
        data = super()._completion(answer, model)
        message = data["choices"][0]["message"]
        for key in ("refusal", "annotations"):
            message.pop(key, None)
        message["name"] = "MiniMax AI"
        message["audio_content"] = ""
        if self.thinks(model):
            message["content"] = f"<think>\n{self.THINK}\n</think>\n\n{answer.text}"
        data["usage"] = self.minimax_usage(answer, model)
        for key in ("service_tier", "system_fingerprint"):
            data.pop(key, None)
        data.update(
            {
                "input_sensitive": False,
                "output_sensitive": False,
                "input_sensitive_type": 0,
                "output_sensitive_type": 0,
                "output_sensitive_int": 0,
                "base_resp": dict(_OK),
            }
        )
        return data

    def _stream(self, answer: Answer, model: str, include_usage: bool) -> list[bytes]:
        frames = super()._stream(answer, model, include_usage)
        first = _payload(frames[0])
        assert first is not None
        out = [frames[0]]
        if self.thinks(model):
            think = f"<think>\n{self.THINK}\n</think>\n\n"
            cuts = [0, 4, 12, len(think) - 8, len(think) - 3, len(think)]  # split inside tags
            for start, end in itertools.pairwise(cuts):
                delta = {"content": think[start:end], "role": "assistant"}
                choice = {"index": 0, "delta": delta, "finish_reason": None}
                out.append(sse({**first, "choices": [choice]}))
        for frame in frames[1:]:
            data = _payload(frame)
            if data is None:
                out.append(frame)
                continue
            if data.get("usage"):
                data["usage"] = self.minimax_usage(answer, model)
            if data.get("usage") or any(c.get("finish_reason") for c in data["choices"]):
                data["base_resp"] = dict(_OK)
            out.append(sse(data))
        return out
