"""A loopback server speaking Gemini's ``generateContent`` wire format (JSON, SSE and JSON array)."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from .brain import Answer, Brain, Turn
from .server import JSONReply, LoopbackServer, RecordedRequest, Reply, StreamReply, sse

__all__ = ["GeminiServer", "google_error"]

_PATH = re.compile(
    r"^/v1(?:beta)?/((?:models|tunedModels)/[^/:]+):(generateContent|streamGenerateContent)$"
)
_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
}
# Keys a real Gemini rejects inside function parameters ("Invalid JSON payload received...").
_REJECTED_SCHEMA_KEYS = ("$schema", "additionalProperties", "$defs", "$ref", "const")


def google_error(
    code: int, message: str, *, status: str | None = None, details: list[Any] | None = None
) -> dict[str, Any]:
    """A Google API error body: ``{"error": {code, message, status, details}}``."""
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": status or _STATUS.get(code, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}


def _text(parts: Any) -> str:
    return " ".join(
        p["text"]
        for p in parts or ()
        if isinstance(p, dict) and p.get("text") and not p.get("thought")
    )


def _result_text(response: Any) -> str:
    value = (
        response.get("result", response.get("output", response))
        if isinstance(response, dict)
        else response
    )
    return value if isinstance(value, str) else json.dumps(value)


def _rejected_key(schema: Any, path: str) -> str | None:
    """The path of the first key a real Gemini would reject in a function's parameters."""
    if not isinstance(schema, dict):
        return None
    for key, value in schema.items():
        if key in _REJECTED_SCHEMA_KEYS:
            return f"{path}.{key}"
        children: list[tuple[str, Any]] = []
        if key == "properties" and isinstance(value, dict):
            children = list(value.items())
        elif key in ("items", "anyOf"):
            children = [(key, v) for v in (value if isinstance(value, list) else [value])]
        for name, sub in children:
            found = _rejected_key(sub, f"{path}.{name}")
            if found:
                return found
    return None


class GeminiServer(LoopbackServer):
    """Serves ``models/{model}:generateContent`` and ``:streamGenerateContent`` like Google does.

    It needs an ``x-goog-api-key`` header (or ``?key=``), streams as SSE with ``alt=sse`` (a JSON
    array otherwise) with cumulative ``usageMetadata``, and rejects function parameters that use
    JSON-schema keys Gemini does not accept. ``thoughts_tokens`` makes it a thinking model (a
    ``thought`` part and ``thoughtsTokenCount``); ``call_ids`` adds ids to function calls; function
    calls carry a ``thoughtSignature`` unless ``thought_signatures`` is false.
    """

    def __init__(
        self,
        brain: Brain | None = None,
        *,
        model_suffix: str = "",
        thoughts_tokens: int = 0,
        call_ids: bool = False,
        thought_signatures: bool = True,
    ) -> None:
        super().__init__(brain)
        self.model_suffix = model_suffix
        self.thoughts_tokens = thoughts_tokens
        self.call_ids = call_ids
        self.thought_signatures = thought_signatures

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1beta``."""
        return f"{self.url}/v1beta"

    @staticmethod
    def signature(call_id: str) -> str:
        """The ``thoughtSignature`` this server attaches to the function call ``call_id``."""
        return base64.b64encode(f"signature:{call_id}".encode()).decode()

    # -------------------------------------------------------------- requests
    def answer(self, request: RecordedRequest) -> Reply:
        """Answer a ``generateContent`` or ``streamGenerateContent`` request."""
        match = _PATH.match(request.path)
        if request.method != "POST" or match is None:
            return JSONReply(google_error(404, f"Method not found: {request.path}"), status=404)
        if not (request.headers.get("x-goog-api-key") or request.query.get("key")):
            return JSONReply(
                google_error(
                    403,
                    "Method doesn't allow unregistered callers (callers without established "
                    "identity). Please use API Key or other form of API consumer identity.",
                ),
                status=403,
            )
        body = request.body
        if not isinstance(body, dict) or not body.get("contents"):
            return JSONReply(
                google_error(400, "* GenerateContentRequest.contents: contents is not specified"),
                status=400,
            )
        tools = []
        for tool in body.get("tools") or ():
            for index, decl in enumerate(tool.get("functionDeclarations") or ()):
                params = decl.get("parameters") or decl.get("parametersJsonSchema")
                rejected = _rejected_key(
                    decl.get("parameters"), f"function_declarations[{index}].parameters"
                )
                if rejected:
                    message = f"Invalid JSON payload received. Unknown name \"{rejected.rsplit('.', 1)[-1]}\" at 'tools[0].{rejected}'"
                    return JSONReply(google_error(400, message), status=400)
                tools.append({"name": decl["name"], "parameters": params})
        calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        mode = calling.get("mode", "AUTO")
        choice = {"NONE": "none", "ANY": "required"}.get(mode)
        if mode == "ANY" and calling.get("allowedFunctionNames"):
            choice = calling["allowedFunctionNames"][0]
        config = body.get("generationConfig") or {}
        json_mode = config.get("responseMimeType") == "application/json"
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        answer = self.think(
            turns=self.turns(body),
            tools=tools or None,
            tool_choice=choice,
            json_schema=schema if json_mode else None,
            json_mode=json_mode,
            max_tokens=config.get("maxOutputTokens"),
        )
        model = match.group(1).split("/", 1)[1] + self.model_suffix
        if match.group(2) == "generateContent":
            return JSONReply(
                self._response(self._parts(answer, include_thought=True), answer, model, last=True)
            )
        frames = list(self._stream(answer, model))
        if request.query.get("alt") == "sse":
            return StreamReply([sse(frame) for frame in frames])
        # Without alt=sse Google streams one JSON array, an element per chunk.
        pieces = [json.dumps(frame).encode() for frame in frames]
        array = [b"[" + pieces[0]] + [b",\r\n" + piece for piece in pieces[1:]] + [b"]"]
        return StreamReply(array, content_type="application/json; charset=UTF-8")

    @staticmethod
    def turns(body: Mapping[str, Any]) -> list[Turn]:
        """The conversation of a request: ``functionResponse`` parts become tool turns."""
        turns: list[Turn] = []
        system = _text((body.get("systemInstruction") or {}).get("parts"))
        if system:
            turns.append(Turn("system", system))
        for content in body.get("contents") or ():
            parts = content.get("parts") or []
            responses = [p.get("functionResponse") or p.get("function_response") for p in parts]
            if any(responses):
                turns.extend(Turn("tool", _result_text(r.get("response"))) for r in responses if r)
                continue
            calls = [
                (p["functionCall"]["name"], p["functionCall"].get("args") or {})
                for p in parts
                if "functionCall" in p
            ]
            role = "assistant" if content.get("role") == "model" else "user"
            turns.append(Turn(role, _text(parts), calls))
        return turns

    # -------------------------------------------------------------- responses
    def usage_metadata(self, answer: Answer, candidates: int | None = None) -> dict[str, Any]:
        """The ``usageMetadata`` for ``answer`` (``candidates`` overrides the output count)."""
        output = answer.output_tokens if candidates is None else candidates
        meta: dict[str, Any] = {
            "promptTokenCount": answer.input_tokens,
            "candidatesTokenCount": output,
            "totalTokenCount": answer.input_tokens + output + self.thoughts_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": answer.input_tokens}],
        }
        if self.thoughts_tokens:
            meta["thoughtsTokenCount"] = self.thoughts_tokens
        return meta

    def _parts(self, answer: Answer, *, include_thought: bool) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        if include_thought and self.thoughts_tokens:
            parts.append(
                {"text": "**Considering the question**\n\nThinking it over.", "thought": True}
            )
        if answer.text:
            parts.append({"text": answer.text})
        parts.extend(self._call_parts(answer))
        return parts

    def _call_parts(self, answer: Answer) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        for index, (cid, name, args) in enumerate(answer.tool_calls):
            call: dict[str, Any] = {"name": name, "args": args}
            if self.call_ids:
                call["id"] = cid
            part: dict[str, Any] = {"functionCall": call}
            if self.thought_signatures and index == 0:  # Gemini signs the first call of a turn
                part["thoughtSignature"] = self.signature(cid)
            parts.append(part)
        return parts

    def _response(
        self,
        parts: list[dict[str, Any]],
        answer: Answer,
        model: str,
        *,
        last: bool,
        candidates: int | None = None,
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if last:
            candidate["finishReason"] = "MAX_TOKENS" if answer.finish == "length" else "STOP"
        return {
            "candidates": [candidate],
            "usageMetadata": self.usage_metadata(answer, None if last else candidates),
            "modelVersion": model,
            "responseId": uuid.uuid4().hex[:22],
        }

    def _stream(self, answer: Answer, model: str) -> Iterator[dict[str, Any]]:
        groups: list[list[dict[str, Any]]] = []
        if self.thoughts_tokens:
            groups.append(self._parts(Answer(), include_thought=True))
        groups += [[{"text": piece}] for piece in answer.pieces()]
        if answer.tool_calls:
            groups.append(self._call_parts(answer))  # function calls arrive whole
        groups = groups or [[{"text": ""}]]
        emitted = 0
        for index, parts in enumerate(groups):
            emitted += sum(len(p.get("text", "").split()) for p in parts if not p.get("thought"))
            last = index == len(groups) - 1
            yield self._response(
                parts, answer, model, last=last, candidates=min(emitted, answer.output_tokens)
            )
