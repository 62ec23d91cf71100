"""Qwen on Alibaba Cloud Model Studio (DashScope) through its OpenAI-compatible mode.

The default endpoint is the international one,
``https://dashscope-intl.aliyuncs.com/compatible-mode/v1``; mainland China accounts use
``https://dashscope.aliyuncs.com/compatible-mode/v1`` (set ``base_url`` or ``DASHSCOPE_BASE_URL``).
The provider is registered as ``qwen`` and, for the same wire format, as ``dashscope``.

Quirks handled here:

* Hybrid-thinking models (the open Qwen3 models think by default) reject thinking in non-streaming
  calls ("parameter.enable_thinking must be set to false for non-streaming calls"), so a
  non-streaming request sends ``enable_thinking: false`` unless the caller set it (in
  ``extra`` or the provider's ``params``). Thinking-only models (``qwq-*``, ``*-thinking-*``) are
  left alone: they cannot switch thinking off.
* ``reasoning_content`` (in a message or a stream delta) is the model's reasoning, not answer text:
  it never reaches ``content`` (it stays in :attr:`LLMResponse.raw` for complete answers).
* video input (``video_url`` blocks) is accepted.
* ``seed`` must lie in ``0..2**31-1``: other values are wrapped into that range (``seed % 2**31``),
  so a seed chosen for another provider still gives a deterministic, valid request.
* errors come as ``{"error": {"code": ...}}`` or, from DashScope's own gateway, as a flat
  ``{"code": ..., "message": ..., "request_id": ...}``; both are mapped to the typed errors
  (``DataInspectionFailed`` -> content policy, ``Throttling*`` -> rate limit, ``InvalidApiKey`` ->
  authentication, ``Arrearage`` -> a non-retryable billing error).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..errors import (
    AuthenticationError,
    ContentPolicyError,
    ContextLengthExceededError,
    ModelNotFoundError,
    ProviderError,
    RateLimitError,
)
from ..types import ChatRequest
from .classify import classify_error, error_details, parse_retry_after
from .openai import OpenAICompatibleProvider
from .registry import register_provider

__all__ = ["DashScopeProvider", "QwenProvider", "qwen_error"]

SEED_RANGE = 2**31

_CONTEXT_MARKERS = ("range of input length", "input length", "exceeds the maximum length")


def _error_class(code: str) -> tuple[type[ProviderError], bool | None] | None:
    """The error class (and retryable override) of a DashScope error code, if it is a known one."""
    lowered = code.lower()
    if lowered.startswith("datainspectionfailed") or lowered == "data_inspection_failed":
        return ContentPolicyError, None
    if "freetieronly" in lowered or lowered in ("arrearage", "insufficient_quota"):
        return RateLimitError, False  # free tier used up or account in arrears: waiting won't help
    if lowered.startswith("throttling") or lowered in ("limit_requests", "rate_limit_exceeded"):
        return RateLimitError, None
    if lowered in ("invalidapikey", "invalid_api_key") or lowered.startswith("accessdenied"):
        return AuthenticationError, None
    if lowered in ("modelnotfound", "model_not_found"):
        return ModelNotFoundError, None
    return None


def qwen_error(
    provider: str,
    status: int | None,
    message: str,
    code: str | None,
    headers: Mapping[str, str] | None = None,
) -> ProviderError:
    """The typed error of a DashScope error code, falling back to the generic classification."""
    known = _error_class(code or "")
    lowered = message.lower()
    if (
        known is None
        and status in (None, 400, 413, 422)
        and any(m in lowered for m in _CONTEXT_MARKERS)
    ):
        known = ContextLengthExceededError, None
    if known is None:
        return classify_error(provider, status, message, code, headers)
    cls, retryable = known
    return cls(
        message,
        provider=provider,
        status_code=status,
        retry_after=parse_retry_after(headers) if headers is not None else None,
        error_type=code,
        retryable=retryable,
    )


def _thinking_only(model: str) -> bool:
    name = model.lower()
    return name.startswith("qwq") or "-thinking" in name


@register_provider("qwen")
class QwenProvider(OpenAICompatibleProvider):
    """Qwen via DashScope (``DASHSCOPE_API_KEY``, ``DASHSCOPE_BASE_URL``); see the module docs."""

    requires_api_key: ClassVar[bool] = True
    api_key_env: ClassVar[tuple[str, ...]] = ("DASHSCOPE_API_KEY",)
    base_url_env: ClassVar[tuple[str, ...]] = ("DASHSCOPE_BASE_URL",)
    default_base_url: ClassVar[str | None] = (
        "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
    )
    supports_video: ClassVar[bool] = True

    def build_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """OpenAI's body, plus ``enable_thinking: false`` for non-streaming calls and a valid seed."""
        body = super().build_body(request, stream=stream)
        if not stream and "enable_thinking" not in body and not _thinking_only(request.model):
            body["enable_thinking"] = False
        seed = body.get("seed")
        if isinstance(seed, int) and not 0 <= seed < SEED_RANGE:
            body["seed"] = seed % SEED_RANGE
        return body

    def body_error(self, data: Any) -> ProviderError | None:
        """``{"error": ...}`` or DashScope's flat ``{"code", "message"}`` inside a 2xx body."""
        if (
            isinstance(data, dict)
            and not data.get("choices")
            and data.get("code")
            and data.get("message")
        ):
            message, kind = error_details(data)
            return self.make_error(None, message, kind)
        return super().body_error(data)

    def make_error(
        self,
        status: int | None,
        message: str,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ProviderError:
        """Map DashScope's codes first (they say more than the HTTP status)."""
        return qwen_error(self.name, status, self.redact(message), error_type, headers)


@register_provider("dashscope")
class DashScopeProvider(QwenProvider):
    """The same provider under the name ``dashscope``."""
