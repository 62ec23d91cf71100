"""Token counting with tiktoken that works offline and never fails a request.

``o200k_base`` is used for the gpt-4o / 4.1 / 5 and o-series models, ``cl100k_base`` for the rest
(for non-OpenAI models the count is an estimate). tiktoken downloads its encodings on first use; to
stay offline we look for an existing copy first: ``$TIKTOKEN_CACHE_DIR``, tiktoken's default cache,
and the copy shipped by ``llama-index-core``. With none available, counts fall back to a documented
estimate (one token per 4 characters, at least one per word), with a single warning.

Media blocks are estimated from above, because budgets reserve this count before a call: an image
whose size can be read from its bytes (a ``data:`` URI or base64 source: the PNG, JPEG, GIF or WebP
header) is counted with the provider's documented formula (OpenAI's 512 px tiles, Anthropic's
``width * height / 750``, Gemini's 258 tokens per 768 px tile); an image of unknown size (a URL)
as the largest image the formula allows. Audio and video of unknown duration are counted as
:data:`ASSUMED_MEDIA_SECONDS` seconds (WAV audio's duration is read from its header).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import os
import re
import struct
import tempfile
import threading
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from ..types import (
    ContentBlock,
    ImageBlock,
    ImageURLBlock,
    InputAudioBlock,
    Message,
    ToolDefinition,
    VideoBlock,
)

__all__ = [
    "ASSUMED_MEDIA_SECONDS",
    "AUDIO_TOKENS_PER_SECOND",
    "VIDEO_TOKENS_PER_SECOND",
    "count_media_tokens",
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


ASSUMED_MEDIA_SECONDS = 300
"""Duration assumed for an audio or video block whose length cannot be read (5 minutes)."""
AUDIO_TOKENS_PER_SECOND = 32
"""Gemini's documented rate, the highest of the providers' audio rates (OpenAI: ~10 per second)."""
VIDEO_TOKENS_PER_SECOND = 300
"""Gemini's documented rate at the default media resolution (frames at 1 fps plus audio)."""

_HEAD_CHARS = 174_764  # base64 characters decoded to read a header: 128 KiB of bytes
_OPENAI_TILE = (85, 170)  # base and per-512px-tile tokens of a high-detail image (gpt-4o, 4.1...)
_OPENAI_MINI_TILE = (2833, 5667)  # gpt-4o-mini counts more tokens per image (at a lower price)
_ANTHROPIC_MAX = 1600  # an image above ~1.15 megapixels is scaled down to about this many tokens
_GEMINI_TILE = 258


def _openai_tiles(width: float, height: float) -> int:
    """512 px tiles of a high-detail image: fit in 2048x2048, then shortest side at most 768."""
    if max(width, height) > 2048:
        scale = 2048 / max(width, height)
        width, height = width * scale, height * scale
    if min(width, height) > 768:
        scale = 768 / min(width, height)
        width, height = width * scale, height * scale
    return math.ceil(width / 512) * math.ceil(height / 512)


_OPENAI_MAX_TILES = _openai_tiles(2048, 768)  # the largest count any image can reach: 4 x 2


def _image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG, GIF, WebP or JPEG header, or ``None``."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8 ":
            width, height = struct.unpack("<HH", data[26:30])
            return width & 0x3FFF, height & 0x3FFF
        if kind == b"VP8L":
            b = data[21:25]
            return 1 + (b[0] | (b[1] & 0x3F) << 8), 1 + (b[1] >> 6 | b[2] << 2 | (b[3] & 0xF) << 10)
        if kind == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(
                data[27:30], "little"
            )
        return None
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0x01, *range(0xD0, 0xD9)):  # markers without a length
                i += 2
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return width, height
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _b64_head(data: str) -> bytes | None:
    """The first bytes of base64 ``data`` (enough for any header), or ``None`` if undecodable."""
    head = "".join(data[:_HEAD_CHARS].split())
    try:
        return base64.b64decode(head[: len(head) // 4 * 4])
    except (binascii.Error, ValueError):
        return None


def _data_url_payload(url: str) -> str | None:
    if url.startswith("data:"):
        meta, _, payload = url.partition(",")
        if meta.endswith(";base64"):
            return payload
    return None


def _image_tokens(block: ImageURLBlock | ImageBlock, model: str) -> int:
    if isinstance(block, ImageURLBlock):
        payload, detail = _data_url_payload(block.image_url.url), block.image_url.detail
    else:
        payload = block.source.data if block.source.type == "base64" else None
        detail = None
    head = None if payload is None else _b64_head(payload)
    size = None if head is None else _image_size(head)
    if size is not None and min(size) <= 0:
        size = None
    name = model.split("/")[-1].lower()
    if name.startswith("claude"):  # detail does not apply
        if size is None:
            return _ANTHROPIC_MAX
        width, height = size
        scale = min(1.0, 1568 / max(width, height))
        return min(_ANTHROPIC_MAX, math.ceil(width * scale * height * scale / 750))
    if name.startswith("gemini") and size is not None:
        width, height = size
        if max(width, height) <= 384:
            return _GEMINI_TILE
        return _GEMINI_TILE * math.ceil(width / 768) * math.ceil(height / 768)
    base, tile = _OPENAI_MINI_TILE if name.startswith("gpt-4o-mini") else _OPENAI_TILE
    if detail == "low":
        return base
    tiles = _OPENAI_MAX_TILES if size is None else _openai_tiles(*size)
    return base + tile * tiles


def _wav_seconds(data: str) -> float | None:
    """Duration of base64 WAV audio from its byte rate, or ``None``."""
    head = _b64_head(data[:64])
    if not head or head[:4] != b"RIFF" or head[8:16] != b"WAVEfmt " or len(head) < 32:
        return None
    byte_rate = int.from_bytes(head[28:32], "little")
    return len(data) * 3 / 4 / byte_rate if byte_rate > 0 else None


def count_media_tokens(block: ContentBlock, model: str = "gpt-4o-mini") -> int:
    """An upper-bound token estimate of one image, audio or video block (0 for text).

    Images use the formula of the model's provider when the size can be read from inline bytes,
    else the largest image that formula allows; audio and video count
    :data:`AUDIO_TOKENS_PER_SECOND` / :data:`VIDEO_TOKENS_PER_SECOND` over their duration, or over
    :data:`ASSUMED_MEDIA_SECONDS` when it is unknown.
    """
    if isinstance(block, ImageURLBlock | ImageBlock):
        return _image_tokens(block, model)
    if isinstance(block, InputAudioBlock):
        seconds = None
        if block.input_audio.format.lower() == "wav":
            seconds = _wav_seconds(block.input_audio.data)
        seconds = ASSUMED_MEDIA_SECONDS if seconds is None else seconds
        return math.ceil(seconds * AUDIO_TOKENS_PER_SECOND)
    if isinstance(block, VideoBlock):
        return ASSUMED_MEDIA_SECONDS * VIDEO_TOKENS_PER_SECOND
    return 0


def count_message_tokens(
    messages: Sequence[Message],
    model: str = "gpt-4o-mini",
    tools: Sequence[ToolDefinition] | None = None,
) -> int:
    """Prompt tokens of a chat request, following OpenAI's accounting (3 per message + 3).

    Images, audio and video are estimated from above by :func:`count_media_tokens`, so that a
    budget reservation built on this count is not exceeded by the call.
    """
    total = 3
    for message in messages:
        total += 3 + sum(count_tokens(part, model) for part in _message_text(message))
        if isinstance(message.content, list):
            total += sum(count_media_tokens(block, model) for block in message.content)
    if tools:
        total += count_tokens(json.dumps([t.model_dump(exclude_none=True) for t in tools]), model)
    return total
