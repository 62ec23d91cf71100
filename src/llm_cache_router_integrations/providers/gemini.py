"""Google Gemini through the Generative Language API (``generateContent``).

:meth:`GeminiProvider.convert_messages` is the one place that reshapes the unified messages:
system and developer messages become ``systemInstruction``, the assistant speaks as ``model``,
images, audio and video become ``inline_data`` (bytes) or ``file_data`` (a URI) parts, tool calls
become ``functionCall`` parts and tool results become ``functionResponse`` parts of a user turn.

Gemini 2.5+ attaches an opaque ``thoughtSignature`` to function calls, and Gemini 3 rejects a
replayed function call without it. The unified :class:`~..types.ToolCall` has no field for it, so
each provider instance remembers the signatures it received (by tool-call id) and sends them back;
for a Gemini 3 call it never saw, it sends Google's documented validator-skipping placeholder.

``parallel_tool_calls`` has no Gemini equivalent and is not sent (a caller that needs one call
trims the answer itself, as LlamaIndex's ``RouterLLM`` does).
"""

from __future__ import annotations

import json
import mimetypes
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from ..errors import (
    AuthenticationError,
    ContentPolicyError,
    ContextLengthExceededError,
    InvalidRequestError,
    ProviderError,
    ProviderResponseError,
    RateLimitError,
    UnsupportedInputError,
)
from ..streaming import new_tool_call_id
from ..types import (
    ChatRequest,
    ContentBlock,
    FinishReason,
    ImageBlock,
    ImageURLBlock,
    InputAudioBlock,
    LLMResponse,
    Message,
    NamedToolChoice,
    StreamChunk,
    TextBlock,
    ToolCall,
    ToolCallDelta,
    ToolCallFunction,
    ToolDefinition,
    Usage,
    VideoBlock,
)
from .base import BaseProvider, StreamHandler, WireRequest
from .classify import MAX_RETRY_AFTER_S, error_details, parse_retry_after
from .registry import register_provider
from .sse import SSEEvent

__all__ = [
    "SKIP_THOUGHT_SIGNATURE",
    "GeminiProvider",
    "gemini_finish_reason",
    "gemini_schema",
    "gemini_usage",
]

SKIP_THOUGHT_SIGNATURE = "skip_thought_signature_validator"
"""Google's placeholder signature for a replayed Gemini 3 function call whose signature is lost."""

_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}

# generationConfig fields accepted at the top level of config.params / request.extra.
_GENERATION_KEYS = frozenset(
    {
        "topK",
        "top_k",
        "candidateCount",
        "presencePenalty",
        "frequencyPenalty",
        "responseLogprobs",
        "logprobs",
        "responseModalities",
        "thinkingConfig",
        "thinking_config",
        "mediaResolution",
        "speechConfig",
        "imageConfig",
    }
)

# The fields of Gemini's Schema object that a function declaration's parameters may use.
_SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "description",
        "nullable",
        "enum",
        "items",
        "properties",
        "required",
        "anyOf",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "example",
        "propertyOrdering",
    }
)
_SCHEMA_FORMATS = {
    "string": {"enum", "date-time"},
    "integer": {"int32", "int64"},
    "number": {"float", "double"},
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)s\s*$")
_AUTH_TYPES = frozenset(
    {"API_KEY_INVALID", "API_KEY_EXPIRED", "PERMISSION_DENIED", "UNAUTHENTICATED"}
)
_MAX_SIGNATURES = 4096


def gemini_finish_reason(value: str | None) -> FinishReason | None:
    """Map Gemini's ``finishReason`` to the unified one (``None`` while a stream goes on)."""
    if not value:
        return None
    return _FINISH.get(value, "other")


def gemini_usage(data: Mapping[str, Any] | None) -> Usage | None:
    """Unified usage from ``usageMetadata``; thinking tokens count as (reasoning) output."""
    if not data:
        return None
    # Tokens of built-in tool prompts (search, code execution) are billed as input.
    prompt = int(data.get("promptTokenCount") or 0) + int(data.get("toolUsePromptTokenCount") or 0)
    thoughts = int(data.get("thoughtsTokenCount") or 0)
    output = int(data.get("candidatesTokenCount") or 0) + thoughts
    total = data.get("totalTokenCount")
    return Usage.of(
        prompt,
        output,
        total_tokens=None if total is None else int(total),
        cached_input_tokens=int(data.get("cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
    )


def gemini_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON schema reduced to the subset Gemini accepts for function parameters.

    Keys Gemini rejects (``$schema``, ``additionalProperties``, ``title``, ``default``...) are
    dropped, local ``$ref`` references are inlined, ``const`` becomes a one-value ``enum`` and a
    ``["T", "null"]`` type becomes ``T`` with ``nullable``.
    """
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    return _clean_schema(schema, defs, frozenset())


def _clean_schema(
    node: Mapping[str, Any], defs: Mapping[str, Any], seen: frozenset[str]
) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name in seen or not isinstance(defs.get(name), Mapping):
            return {"type": "object"}  # a recursive or unknown reference
        node = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        seen = seen | {name}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties" and isinstance(value, Mapping):
            out[key] = {
                name: _clean_schema(sub, defs, seen)
                for name, sub in value.items()
                if isinstance(sub, Mapping)
            }
        elif key == "items" and isinstance(value, Mapping):
            out[key] = _clean_schema(value, defs, seen)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [_clean_schema(sub, defs, seen) for sub in value if isinstance(sub, Mapping)]
        elif key == "type" and isinstance(value, list):
            kinds = [kind for kind in value if kind != "null"]
            out[key] = kinds[0] if kinds else "null"
            if "null" in value:
                out["nullable"] = True
        elif key == "const":
            out["enum"] = [value]
        elif key in _SCHEMA_KEYS:
            out[key] = value
    if "format" in out and out["format"] not in _SCHEMA_FORMATS.get(str(out.get("type")), ()):
        del out["format"]  # Gemini rejects formats such as "email" or "uri"
    return out


def _function_declaration(tool: ToolDefinition) -> dict[str, Any]:
    function = tool.function
    declaration: dict[str, Any] = {"name": function.name}
    if function.description:
        declaration["description"] = function.description
    parameters = gemini_schema(function.parameters)
    # Gemini rejects an OBJECT schema with no properties: a function without arguments has none.
    if parameters.get("properties") or parameters.get("type") not in (None, "object"):
        declaration["parameters"] = parameters
    return declaration


def _calling_config(choice: str | NamedToolChoice) -> dict[str, Any]:
    if isinstance(choice, NamedToolChoice):
        return {"mode": "ANY", "allowedFunctionNames": [choice.function.name]}
    return {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]}


def _split_data_uri(url: str, field: str) -> tuple[str | None, str]:
    header, sep, data = url.removeprefix("data:").partition(",")
    mime, _, encoding = header.partition(";")
    if not sep or "base64" not in encoding:
        raise InvalidRequestError(f"{field}: a data: URI must be base64 encoded")
    return mime or None, data


def _media_part(url: str, kind: str, field: str) -> dict[str, Any]:
    """A ``data:`` URI as ``inline_data``, any other URI as ``file_data`` (MIME type guessed)."""
    default = "image/jpeg" if kind == "image" else "video/mp4"
    if url.startswith("data:"):
        mime, data = _split_data_uri(url, field)
        return {"inline_data": {"mime_type": mime or default, "data": data}}
    mime = mimetypes.guess_type(urlsplit(url).path)[0]
    return {"file_data": {"mime_type": mime or default, "file_uri": url}}


def _function_result(content: str) -> Any:
    """A tool result as Gemini wants it: a JSON object or array as such, other text as text."""
    try:
        value = json.loads(content)
    except json.JSONDecodeError:
        return content
    return value if isinstance(value, dict | list) else content


def _retry_delay(details: Any) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "30s"``), capped."""
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return min(float(match.group(1)), MAX_RETRY_AFTER_S)
    return None


def _error_reason(details: Any) -> str | None:
    """The ``reason`` of a ``google.rpc.ErrorInfo`` detail (e.g. ``API_KEY_INVALID``)."""
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, Mapping) and detail.get("reason"):
            return str(detail["reason"])
    return None


def _error_object(body: bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    data: Any = body
    if isinstance(body, bytes):
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}
    if isinstance(data, list) and data:  # the non-SSE stream wraps errors in an array
        data = data[0]
    error = data.get("error") if isinstance(data, Mapping) else None
    return error if isinstance(error, Mapping) else {}


def _is_gemini_3_or_later(model: str) -> bool:
    match = re.search(r"gemini-(\d+)", model)
    return match is not None and int(match.group(1)) >= 3


class _GeminiStreamHandler(StreamHandler):
    """Each SSE event is a whole ``GenerateContentResponse``; its usage is cumulative."""

    def __init__(self, provider: GeminiProvider, request: ChatRequest) -> None:
        super().__init__(provider, request)
        self.gemini = provider
        self._calls = 0

    def handle(self, event: SSEEvent) -> list[StreamChunk]:
        data = self.parse_json(event.data)
        error = self.gemini.body_error(data)
        if error is not None:
            raise error
        if not isinstance(data, dict):
            raise ProviderResponseError("stream event is not an object", provider=self.gemini.name)
        self.model = data.get("modelVersion") or self.model
        usage = gemini_usage(data.get("usageMetadata"))
        if usage is not None:
            self.usage = usage  # cumulative: the last event has the final numbers
        candidate = self.gemini.first_candidate(data)
        if candidate is None:
            return []
        chunks: list[StreamChunk] = []
        for part in (candidate.get("content") or {}).get("parts") or ():
            if "functionCall" in part:
                call = self.gemini.read_function_call(part)
                delta = ToolCallDelta(
                    index=self._calls,
                    id=call.id,
                    name=call.function.name,
                    arguments=call.function.arguments,
                )
                self._calls += 1
                chunks.append(self.tool_delta(delta))
            elif part.get("text") and not part.get("thought"):
                chunks.append(StreamChunk(delta=part["text"]))
        finish = gemini_finish_reason(candidate.get("finishReason"))
        if finish is not None:
            self.finish_reason = "tool_calls" if self.tools and finish == "stop" else finish
            self.done = True
        return chunks


@register_provider("gemini")
class GeminiProvider(BaseProvider):
    """Google Gemini (``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``).

    The key travels in the ``x-goog-api-key`` header, never in the URL. Gemini-only parameters go
    in ``config.params`` or ``request.extra`` under their API names (``safetySettings``,
    ``cachedContent``, ``generationConfig``...); generation fields such as ``topK`` or
    ``thinkingConfig`` may also be given at the top level and are moved into ``generationConfig``.
    """

    api_key_env: ClassVar[tuple[str, ...]] = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    default_base_url: ClassVar[str | None] = "https://generativelanguage.googleapis.com/v1beta"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._signatures: OrderedDict[str, str] = OrderedDict()
        self._signatures_lock = threading.Lock()

    # ---------------------------------------------------------------- thought signatures
    def _remember_signature(self, call_id: str, signature: str) -> None:
        with self._signatures_lock:
            self._signatures[call_id] = signature
            self._signatures.move_to_end(call_id)
            while len(self._signatures) > _MAX_SIGNATURES:
                self._signatures.popitem(last=False)

    def _signature(self, call_id: str) -> str | None:
        with self._signatures_lock:
            return self._signatures.get(call_id)

    # ---------------------------------------------------------------- messages
    def convert_block(self, block: ContentBlock, field: str = "content") -> dict[str, Any]:
        """One unified content block as a Gemini ``Part``."""
        if isinstance(block, TextBlock):
            return {"text": block.text}
        if isinstance(block, ImageURLBlock):
            return _media_part(block.image_url.url, "image", f"{field}.image_url")
        if isinstance(block, ImageBlock):
            source = block.source
            if source.type == "base64":
                return {"inline_data": {"mime_type": source.media_type, "data": source.data}}
            return _media_part(source.url or "", "image", f"{field}.source")
        if isinstance(block, InputAudioBlock):
            audio = block.input_audio
            return {"inline_data": {"mime_type": f"audio/{audio.format}", "data": audio.data}}
        if isinstance(block, VideoBlock):
            return _media_part(block.video_url.url, "video", f"{field}.video_url")
        raise UnsupportedInputError(f"{field}: unsupported content block {block!r}")

    def _parts(self, message: Message, field: str) -> list[dict[str, Any]]:
        parts = [
            self.convert_block(block, f"{field}.content[{i}]")
            for i, block in enumerate(message.blocks())
        ]
        return [part for part in parts if part.get("text") != ""]

    def _function_calls(self, message: Message, model: str) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        for call in message.tool_calls or ():
            part: dict[str, Any] = {
                "functionCall": {
                    "name": call.function.name,
                    "args": call.function.parsed_arguments(),
                    "id": call.id,
                }
            }
            signature = self._signature(call.id)
            if signature:
                part["thoughtSignature"] = signature
            parts.append(part)
        signed = any("thoughtSignature" in part for part in parts)
        if parts and not signed and _is_gemini_3_or_later(model):
            parts[0]["thoughtSignature"] = SKIP_THOUGHT_SIGNATURE
        return parts

    def _function_response(
        self, message: Message, request: ChatRequest, field: str
    ) -> dict[str, Any]:
        call_id = message.tool_call_id or ""
        name = request.tool_name_for_call(call_id) or message.name
        if not name:
            raise UnsupportedInputError(
                f"{field}.tool_call_id: no earlier assistant tool call has id {call_id!r}, and "
                "Gemini needs the function name of every tool result: set the tool message's 'name'"
            )
        return {
            "functionResponse": {
                "name": name,
                "id": call_id,
                "response": {"result": _function_result(message.text)},
            }
        }

    def convert_messages(
        self, request: ChatRequest
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """``(systemInstruction, contents)`` for ``request``: the one place messages are reshaped."""
        system: list[dict[str, Any]] = []
        contents: list[dict[str, Any]] = []
        tool_turn: dict[str, Any] | None = None  # consecutive tool results share one content
        for index, message in enumerate(request.messages):
            field = f"messages[{index}]"
            if message.role in ("system", "developer"):
                if message.text:
                    system.append({"text": message.text})
                continue
            if message.role == "tool":
                part = self._function_response(message, request, field)
                if tool_turn is None:
                    tool_turn = {"role": "user", "parts": []}
                    contents.append(tool_turn)
                tool_turn["parts"].append(part)
                continue
            tool_turn = None
            parts = self._parts(message, field)
            if message.role == "assistant":
                parts += self._function_calls(message, request.model)
            if parts:
                role = "model" if message.role == "assistant" else "user"
                contents.append({"role": role, "parts": parts})
        return ({"parts": system} if system else None), contents

    # ---------------------------------------------------------------- body
    def build_body(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body of a ``generateContent`` request (the same for streams)."""
        system, contents = self.convert_messages(request)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = system
        generation: dict[str, Any] = {
            "temperature": request.temperature,
            "topP": request.top_p,
            "maxOutputTokens": request.max_tokens,
            "stopSequences": request.stop,
            "seed": request.seed,
        }
        config: dict[str, Any] = {
            key: value for key, value in generation.items() if value is not None
        }
        fmt = request.response_format
        if fmt is not None and fmt.type != "text":
            config["responseMimeType"] = "application/json"
            if fmt.json_schema is not None:
                config["responseJsonSchema"] = fmt.json_schema.schema_
        if config:
            body["generationConfig"] = config
        if request.tools:
            body["tools"] = [
                {"functionDeclarations": [_function_declaration(t) for t in request.tools]}
            ]
            if request.tool_choice is not None:
                body["toolConfig"] = {"functionCallingConfig": _calling_config(request.tool_choice)}
        self._merge(body, self.config.params)
        self._merge(body, request.extra)
        return body

    @staticmethod
    def _merge(body: dict[str, Any], extra: Mapping[str, Any]) -> None:
        for key, value in extra.items():
            if key in _GENERATION_KEYS:
                body.setdefault("generationConfig", {})[key] = value
            elif isinstance(value, Mapping) and isinstance(body.get(key), dict):
                body[key] = {**body[key], **value}
            else:
                body[key] = value

    # ---------------------------------------------------------------- wire hooks
    def auth_headers(self) -> dict[str, str]:
        """The key goes in ``x-goog-api-key`` (a URL ``?key=`` would leak into logs)."""
        return {"x-goog-api-key": self._api_key} if self._api_key else {}

    def build_request(self, request: ChatRequest, *, stream: bool) -> WireRequest:
        """POST ``{base}/models/{model}:generateContent`` (``:streamGenerateContent?alt=sse``)."""
        model = request.model
        if not model.startswith(("models/", "tunedModels/")):
            model = f"models/{model}"
        method = "streamGenerateContent" if stream else "generateContent"
        return WireRequest(
            url=f"{self.base_url}/{quote(model, safe='/-._~')}:{method}",
            body=self.build_body(request),
            headers=self.request_headers(),
            params={"alt": "sse"} if stream else {},
        )

    def first_candidate(self, data: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The first candidate of a response; a blocked prompt raises :class:`ContentPolicyError`."""
        for candidate in data.get("candidates") or ():
            if candidate.get("index", 0) == 0:
                return candidate  # type: ignore[no-any-return]
        feedback = data.get("promptFeedback") or {}
        reason = feedback.get("blockReason")
        if reason:
            detail = feedback.get("blockReasonMessage") or "the prompt was blocked"
            raise ContentPolicyError(
                self.redact(f"{detail} (blockReason {reason})"),
                provider=self.name,
                error_type=reason,
            )
        return None

    def read_function_call(self, part: Mapping[str, Any]) -> ToolCall:
        """A ``functionCall`` part as a :class:`ToolCall`, remembering its thought signature."""
        call = part["functionCall"]
        if not isinstance(call, Mapping) or not call.get("name"):
            raise ProviderResponseError(
                f"functionCall part without a name: {str(call)[:200]!r}", provider=self.name
            )
        tool_call = ToolCall(
            id=call.get("id") or new_tool_call_id(),
            function=ToolCallFunction(
                name=call["name"], arguments=json.dumps(call.get("args") or {})
            ),
        )
        signature = part.get("thoughtSignature")
        if isinstance(signature, str) and signature:
            self._remember_signature(tool_call.id, signature)
        return tool_call

    def parse_response(self, data: dict[str, Any], request: ChatRequest) -> LLMResponse:
        """Read a ``GenerateContentResponse``."""
        candidate = self.first_candidate(data)
        if candidate is None:
            raise ProviderResponseError("the response has no candidates", provider=self.name)
        texts: list[str] = []
        tool_calls: list[ToolCall] = []
        for part in (candidate.get("content") or {}).get("parts") or ():
            if "functionCall" in part:
                tool_calls.append(self.read_function_call(part))
            elif "text" in part and not part.get("thought"):
                texts.append(part["text"])
        finish = gemini_finish_reason(candidate.get("finishReason")) or "stop"
        if tool_calls and finish == "stop":
            finish = "tool_calls"
        return LLMResponse(
            content="".join(texts) if texts or not tool_calls else None,
            tool_calls=tool_calls,
            finish_reason=finish,
            usage=gemini_usage(data.get("usageMetadata")) or Usage(),
            provider_used=self.name,
            model_used=data.get("modelVersion") or request.model,
            raw=self.redacted_raw(data),
        )

    def stream_handler(self, request: ChatRequest) -> StreamHandler:
        """Handler for SSE events that each carry a ``GenerateContentResponse``."""
        return _GeminiStreamHandler(self, request)

    # ---------------------------------------------------------------- errors
    def google_error(
        self,
        status: int | None,
        body: bytes | Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> ProviderError:
        """The typed error of a Google ``{"error": {code, message, status, details}}`` body.

        The ``ErrorInfo`` reason (e.g. ``API_KEY_INVALID``) or the status name becomes the error
        type; a ``RetryInfo`` delay sets ``retry_after`` when no ``Retry-After`` header did.
        """
        error = _error_object(body)
        message = str(error.get("message") or error_details(body)[0])
        details = error.get("details")
        kind = _error_reason(details) or error.get("status") or error.get("code")
        code = error.get("code")
        if status is None and isinstance(code, int):
            status = code  # an error event inside a 200 stream carries its own code
        result = self.make_error(status, message, None if kind is None else str(kind), headers)
        delay = _retry_delay(details)
        if delay is not None:
            if result.retry_after is None:
                result.retry_after = delay
            if isinstance(result, RateLimitError):
                result.retryable = True  # a per-minute quota: the delay says when it resets
        return result

    def error_from_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        """The typed error of a non-2xx answer."""
        return self.google_error(status, body, headers)

    def body_error(self, data: Any) -> ProviderError | None:
        """An ``{"error": ...}`` object in a 2xx body or stream event."""
        if isinstance(data, Mapping) and data.get("error"):
            return self.google_error(None, data)
        return None

    def make_error(
        self,
        status: int | None,
        message: str,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ProviderError:
        """Gemini's own codes first (an invalid key is a 400), then the generic rules."""
        lowered = message.lower()
        kwargs: dict[str, Any] = {
            "provider": self.name,
            "status_code": status,
            "retry_after": parse_retry_after(headers) if headers is not None else None,
            "error_type": error_type,
        }
        if (error_type or "").upper() in _AUTH_TYPES or "api key not valid" in lowered:
            return AuthenticationError(self.redact(message), **kwargs)
        if "exceeds the maximum number of tokens" in lowered:
            return ContextLengthExceededError(self.redact(message), **kwargs)
        return super().make_error(status, message, error_type, headers)
