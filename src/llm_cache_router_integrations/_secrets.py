"""Keeping API keys out of logs, exceptions, reprs and stored raw responses."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["REDACTED", "redact_json", "redact_text"]

REDACTED = "***"

# Field names whose values are secrets wherever they appear in a JSON body.
_SECRET_FIELDS = frozenset(
    {
        "api_key",
        "apikey",
        "api-key",
        "x-api-key",
        "authorization",
        "x-goog-api-key",
        "access_token",
        "secret",
        "password",
    }
)
# Shapes of well-known key formats, redacted even when we were not told the key.
_KEY_PATTERNS = re.compile(
    r"(sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{12,}|AIza[0-9A-Za-z_\-]{20,}|Bearer\s+[A-Za-z0-9._\-]{8,})"
)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace the given secrets and anything shaped like an API key with ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return _KEY_PATTERNS.sub(REDACTED, text)


def redact_json(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of a JSON value with secret fields and secret strings redacted."""
    keys = tuple(secrets)
    if isinstance(value, dict):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and k.lower() in _SECRET_FIELDS
                else redact_json(v, keys)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_json(v, keys) for v in value]
    if isinstance(value, str):
        return redact_text(value, keys)
    return value
