"""Turning a failed HTTP exchange into one typed, redacted :class:`ProviderError`."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any

from ..errors import (
    AuthenticationError,
    BadRequestError,
    ContentPolicyError,
    ContextLengthExceededError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)

__all__ = ["classify_error", "error_details", "parse_retry_after"]

MAX_RETRY_AFTER_S = 300.0

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "prompt is too long",
    "input is too long",
    "too many tokens",
    "input token count",
    "string_above_max_length",
)
_POLICY_MARKERS = (
    "content_policy",
    "content policy",
    "content_filter",
    "data_inspection_failed",
    "responsible ai",
    "safety",
    "sensitive",
)
_OVERLOAD_MARKERS = ("overloaded", "unavailable", "resource_exhausted", "throttl", "rate limit")


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date), capped."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return min(max(float(value) / 1000.0, 0.0), MAX_RETRY_AFTER_S)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    delay = when.timestamp() - (time.time() if now is None else now)
    return min(max(delay, 0.0), MAX_RETRY_AFTER_S)


def error_details(body: bytes | str | Mapping[str, Any] | None) -> tuple[str, str | None]:
    """The human message and the error type/code from any provider's error body."""
    data: Any = body
    if isinstance(body, bytes | str):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return text.strip()[:500] or "no error body", None
    if isinstance(data, list) and data:  # Gemini sometimes wraps the error in a list
        data = data[0]
    if not isinstance(data, Mapping):
        return str(data)[:500], None
    error = data.get("error", data)
    if isinstance(error, str):  # Ollama: {"error": "..."}
        return error, None
    if not isinstance(error, Mapping):
        return json.dumps(data)[:500], None
    message = str(error.get("message") or data.get("message") or json.dumps(data)[:500])
    kind = error.get("code") or error.get("type") or error.get("status") or data.get("code")
    return message, (str(kind) if kind is not None else None)


def classify_error(
    provider: str,
    status: int | None,
    message: str,
    error_type: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProviderError:
    """Pick the error class from the status, the provider's error type and the message."""
    retry_after = parse_retry_after(headers) if headers is not None else None
    kwargs: dict[str, Any] = {
        "provider": provider,
        "status_code": status,
        "retry_after": retry_after,
        "error_type": error_type,
    }
    probe = f"{error_type or ''} {message}".lower()
    if any(marker in probe for marker in _CONTEXT_MARKERS) and status in (None, 400, 413, 422):
        return ContextLengthExceededError(message, **kwargs)
    if status == 429:
        quota = "insufficient_quota" in probe or "billing" in probe
        return RateLimitError(message, retryable=not quota, **kwargs)
    if status in (401, 403):
        return AuthenticationError(message, **kwargs)
    if status == 404:
        return ModelNotFoundError(message, **kwargs)
    if status == 408:
        return ProviderTimeoutError(message, **kwargs)
    if status is not None and (status >= 500 or status == 409):
        return ProviderUnavailableError(message, **kwargs)
    if any(marker in probe for marker in _POLICY_MARKERS):
        return ContentPolicyError(message, **kwargs)
    if status is None:  # an error event inside a 200 stream
        if "rate" in probe and "limit" in probe:
            return RateLimitError(message, **kwargs)
        if any(marker in probe for marker in _OVERLOAD_MARKERS) or "error" in probe:
            return ProviderUnavailableError(message, **kwargs)
    if status is not None and 400 <= status < 500:
        return BadRequestError(message, **kwargs)
    return ProviderError(message, **kwargs)
