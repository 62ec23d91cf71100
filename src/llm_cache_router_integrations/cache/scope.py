"""Cache keys: the *scope* (a hard filter) and the *exact key* (scope + last user turn).

The scope covers everything that changes the answer besides the last user question: the model,
every sampling/output parameter, the tools, the system prompt, the earlier turns and the namespace.
``parallel_tool_calls`` enters the key inside ``extra``, where it travelled before it had a field,
so the keys persisted then still hit and a request without it keeps its key.
Two requests with different scopes never share a hit. Media blocks enter keys as SHA-256
fingerprints of their bytes or URL, never as base64.

A message made of text blocks only enters the key as the list of its texts (the encoding every
persisted key of such messages was computed with). A message with a media block, or with a text
that reads like a media fingerprint, enters it as a list of typed ``[type, value]`` parts, so a
text can never take the key of an image (and no such list equals a list of plain texts).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ..types import ChatRequest, ContentBlock, Message, TextBlock

__all__ = ["CacheKey", "cache_key", "fingerprint", "last_user_index"]


def fingerprint(block: ContentBlock) -> str:
    """A stable, short description of a content block (media as a SHA-256 of bytes or URL)."""
    if isinstance(block, TextBlock):
        return block.text
    payload = block.model_dump(exclude_none=True)
    payload.pop("type", None)
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return f"<{block.type}:{digest}>"


_MEDIA_MARKER = re.compile(r"<[A-Za-z0-9_.-]+:[0-9a-f]{64}>")
"""What :func:`fingerprint` makes of a media block: a text of this form could pass for one."""


def _canonical_content(blocks: list[ContentBlock]) -> list[str] | list[list[str]]:
    """Plain texts for a text-only message (unchanged keys); typed parts once media is involved."""
    if all(
        isinstance(block, TextBlock) and not _MEDIA_MARKER.fullmatch(block.text) for block in blocks
    ):
        return [block.text for block in blocks if isinstance(block, TextBlock)]
    return [[block.type, fingerprint(block)] for block in blocks]


def _canonical_message(message: Message) -> dict[str, Any]:
    content = (
        message.content
        if isinstance(message.content, str) or message.content is None
        else _canonical_content(message.content)
    )
    out: dict[str, Any] = {"role": message.role, "content": content}
    if message.name:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [[c.function.name, c.function.arguments] for c in message.tool_calls]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


def last_user_index(messages: list[Message]) -> int:
    """The index of the last user message (or of the last message when there is none)."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            return index
    return len(messages) - 1


def _digest(value: Any) -> str:
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # "surrogatepass": a text holding a lone surrogate (valid in a Python str, not in UTF-8)
    # still gets a stable key instead of failing the lookup outside the engine's error handling.
    return hashlib.sha256(encoded.encode("utf-8", "surrogatepass")).hexdigest()


_NO_EARLIER_TURNS = _digest([])
"""The digest of an empty conversation history (a first turn), computed once."""


@dataclass(frozen=True, slots=True)
class CacheKey:
    """``scope`` filters, ``exact`` identifies; ``query`` is the text to embed (last user turn)."""

    scope: str
    exact: str
    query: str


def cache_key(request: ChatRequest, namespace: str = "default") -> CacheKey:
    """Scope and exact key of ``request`` within ``namespace``."""
    messages = request.messages
    last = last_user_index(messages)
    system = [_canonical_message(m) for m in messages if m.role in ("system", "developer")]
    earlier = [
        _canonical_message(m) for m in messages[:last] if m.role not in ("system", "developer")
    ]
    after = [_canonical_message(m) for m in messages[last + 1 :]]
    params = request.model_dump(
        include={
            "temperature",
            "top_p",
            "max_tokens",
            "stop",
            "seed",
            "tool_choice",
            "response_format",
            "extra",
        },
        exclude_none=True,
        by_alias=True,
    )
    if request.parallel_tool_calls is not None:
        # Keyed as it was when it travelled in ``extra``: those persisted keys keep hitting,
        # and a request without it keeps its key unchanged.
        params["extra"] = {**params["extra"], "parallel_tool_calls": request.parallel_tool_calls}
    scope = {
        "namespace": namespace,
        "model": request.model,
        "params": params,
        "tools": [t.model_dump(exclude_none=True) for t in request.tools or ()],
        "system": system,
        "earlier": _digest(earlier) if earlier else _NO_EARLIER_TURNS,
        "after": after,
    }
    scope_hash = _digest(scope)
    last_message = _canonical_message(messages[last])
    query = messages[last].text
    return CacheKey(scope=scope_hash, exact=_digest([scope_hash, last_message]), query=query)
