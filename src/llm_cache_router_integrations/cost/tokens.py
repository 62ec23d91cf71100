"""Token counting with tiktoken that works offline and never fails a request.

``o200k_base`` is used for the gpt-4o / 4.1 / 5 and o-series models, ``cl100k_base`` for the rest
(for non-OpenAI models the count is an estimate). tiktoken downloads its encodings on first use; to
stay offline we look for an existing copy first: ``$TIKTOKEN_CACHE_DIR``, tiktoken's default cache,
and the copy shipped by ``llama-index-core``. With none available, counts fall back to a documented
estimate (one token per 4 characters, at least one per word), with a single warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from ..types import Message, ToolDefinition

__all__ = [
    "count_message_tokens",
    "count_tokens",
    "encoding_name_for",
    "estimate_tokens",
    "get_encoding",
]

logger = logging.getLogger(__name__)

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
_O200K = re.compile(r"^(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o1|o3|o4|chatgpt-4o|gpt-oss)")
_LOCK = threading.Lock()
_warned = False


class Encoding(Protocol):
    """The part of ``tiktoken.Encoding`` we use."""

    def encode(self, text: str, *, disallowed_special: Any = ...) -> list[int]: ...


def encoding_name_for(model: str) -> str:
    """``o200k_base`` for OpenAI's newer models, ``cl100k_base`` otherwise."""
    return "o200k_base" if _O200K.match(model.split("/")[-1].lower()) else "cl100k_base"


def _cache_dirs() -> list[Path]:
    dirs: list[Path] = []
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if value := os.environ.get(var):
            dirs.append(Path(value))
    dirs.append(Path(tempfile.gettempdir()) / "data-gym-cache")
    try:
        import llama_index.core as li_core

        dirs.append(Path(li_core.__file__).parent / "_static" / "tiktoken_cache")
    except Exception:  # llama-index is optional
        pass
    return dirs


def _cached_dir_for(name: str) -> Path | None:
    key = hashlib.sha1(_BLOB.format(name).encode()).hexdigest()
    return next((d for d in _cache_dirs() if (d / key).is_file()), None)


@lru_cache(maxsize=4)
def get_encoding(name: str) -> Encoding | None:
    """The tiktoken encoding ``name`` from a local copy, or ``None`` when none exists offline."""
    global _warned
    try:
        import tiktoken
    except ImportError:  # pragma: no cover - tiktoken is a core dependency
        return None
    directory = _cached_dir_for(name)
    if directory is not None:
        with _LOCK:  # tiktoken reads the cache directory from the environment at load time
            previous = os.environ.get("TIKTOKEN_CACHE_DIR")
            os.environ["TIKTOKEN_CACHE_DIR"] = str(directory)
            try:
                encoding: Encoding = tiktoken.get_encoding(name)
                return encoding
            except Exception as exc:
                logger.debug("loading %s from %s failed: %s", name, directory, exc)
            finally:
                if previous is None:
                    os.environ.pop("TIKTOKEN_CACHE_DIR", None)
                else:
                    os.environ["TIKTOKEN_CACHE_DIR"] = previous
    if not _warned:
        _warned = True
        logger.warning(
            "tiktoken encoding %r is not available offline; token counts are estimated "
            "(~4 characters per token). Set TIKTOKEN_CACHE_DIR to a folder holding the "
            "encodings (llama-index-core ships one) for exact counts.",
            name,
        )
    return None


def estimate_tokens(text: str) -> int:
    """The fallback estimate: ``max(words, ceil(chars / 4))``."""
    return max(len(text.split()), -(-len(text) // 4))


def count_tokens(text: str, model: str = "gpt-4o-mini") -> int:
    """Tokens of ``text`` for ``model``; never raises."""
    if not text:
        return 0
    try:
        encoding = get_encoding(encoding_name_for(model))
        if encoding is not None:
            return len(encoding.encode(text, disallowed_special=()))
    except Exception as exc:  # counting must never fail a request
        logger.debug("token counting failed, estimating: %s", exc)
    return estimate_tokens(text)


def _message_text(message: Message) -> Iterable[str]:
    yield message.role
    if message.name:
        yield message.name
    yield message.text
    for call in message.tool_calls or ():
        yield call.function.name
        yield call.function.arguments


def count_message_tokens(
    messages: Sequence[Message],
    model: str = "gpt-4o-mini",
    tools: Sequence[ToolDefinition] | None = None,
) -> int:
    """Prompt tokens of a chat request, following OpenAI's accounting (3 per message + 3).

    Images, audio and video are counted as a fixed 85 tokens each (OpenAI's low-detail image).
    """
    total = 3
    for message in messages:
        total += 3 + sum(count_tokens(part, model) for part in _message_text(message))
        if isinstance(message.content, list):
            total += 85 * sum(1 for block in message.content if block.type != "text")
    if tools:
        total += count_tokens(json.dumps([t.model_dump(exclude_none=True) for t in tools]), model)
    return total
