"""``SemanticRouterCache``: the router's cache engine as LangChain's global LLM cache.

``set_llm_cache(SemanticRouterCache())`` gives every LangChain model (ChatOpenAI, ChatAnthropic,
plain LLMs...) the same exact + semantic cache the router uses. LangChain hands a cache two
strings: the prompt (the messages as LangChain JSON, or a plain prompt for text LLMs) and
``llm_string`` (the model and its parameters). They become a core :class:`ChatRequest` whose scope
(a hard filter) covers ``llm_string``, the system prompt and the earlier turns; only the last
human message is embedded for the semantic match. Generations are stored as LangChain JSON
(``dumps``) inside the cached answer's text and revived with an allow-list of output and message
classes: nothing is pickled.
"""

from __future__ import annotations

import json
import logging
import warnings
from typing import Any

from langchain_core._api import LangChainBetaWarning
from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import dumps, loads
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation, GenerationChunk

from .._sync import run_sync
from ..cache import CacheConfig, CacheEngine
from ..errors import InvalidRequestError
from ..types import ChatRequest, LLMResponse, Message
from .messages import from_langchain

__all__ = ["SemanticRouterCache"]

logger = logging.getLogger(__name__)

_CACHE_MODEL = "langchain-llm-cache"
_ALLOWED = [
    Generation,
    GenerationChunk,
    ChatGeneration,
    ChatGenerationChunk,
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    ChatMessage,
]

# What ``loads`` raises for an entry it cannot revive (``NotImplementedError``: an object that
# was dumped as ``not_implemented``).
_UNREADABLE = (ValueError, TypeError, KeyError, NotImplementedError, json.JSONDecodeError)


def _quiet_loads(text: str, allowed: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LangChainBetaWarning)
        return loads(text, allowed_objects=allowed)


def _prompt_messages(prompt: str) -> list[Message]:
    """The prompt's messages: LangChain JSON of a message list, else one user turn of text."""
    if prompt.lstrip().startswith(("[", "{")):
        try:
            revived = _quiet_loads(prompt, "messages")
        except (ValueError, TypeError, KeyError, json.JSONDecodeError):
            revived = None
        if isinstance(revived, BaseMessage):
            revived = [revived]
        if (
            isinstance(revived, list)
            and revived
            and all(isinstance(m, BaseMessage) for m in revived)
        ):
            try:
                return from_langchain(revived)
            except (InvalidRequestError, ValueError):
                pass  # content the core cannot carry: fall back to the prompt as text
    return [Message(role="user", content=prompt)]


def _request(prompt: str, llm_string: str) -> ChatRequest:
    """A request whose scope hashes ``llm_string`` (in ``extra``) with the system prompt and
    earlier turns; its last user turn is the embedded query.

    The temperature is pinned to 0: LangChain decides whether a call is cached, so the engine's
    deterministic-only policy must not refuse it.
    """
    return ChatRequest(
        model=_CACHE_MODEL,
        messages=_prompt_messages(prompt),
        temperature=0.0,
        extra={"llm_string": llm_string},
    )


class SemanticRouterCache(BaseCache):
    """LangChain's ``BaseCache`` over the router's :class:`CacheEngine`.

    Args:
        engine: a ready engine (any backend, encoder and guard); shared engines are fine.
        config: a :class:`CacheConfig` for a new engine (ignored when ``engine`` is given).

    With neither, the engine keeps entries in memory and uses the default encoder
    (all-MiniLM-L6-v2 when sentence-transformers is installed, exact matching otherwise).

    Example:
        ```python
        from langchain_core.globals import set_llm_cache

        set_llm_cache(SemanticRouterCache(config=CacheConfig(threshold=0.92, ttl=86400)))
        ```
    """

    def __init__(
        self, engine: CacheEngine | None = None, *, config: CacheConfig | None = None
    ) -> None:
        self.engine = engine if engine is not None else CacheEngine(config)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _response(return_val: RETURN_VAL_TYPE) -> LLMResponse | None:
        """The generations as a storable answer; ``None`` when they would not load back.

        Each generation is dumped on its own, so LangChain converts a Pydantic object in
        ``additional_kwargs["parsed"]`` (structured output) to a dict as its own caches do; what
        still cannot be revived (another live object) is not stored.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LangChainBetaWarning)
            payload = "[" + ", ".join(dumps(generation) for generation in return_val) + "]"
        try:
            _quiet_loads(payload, _ALLOWED)
        except _UNREADABLE as exc:
            logger.warning("not caching generations that cannot be loaded back: %s", exc)
            return None
        return LLMResponse(content=payload, provider_used="langchain", model_used=_CACHE_MODEL)

    @staticmethod
    def _generations(response: LLMResponse) -> list[Generation] | None:
        try:
            revived = _quiet_loads(response.content or "[]", _ALLOWED)
        except _UNREADABLE as exc:
            logger.warning("ignoring an unreadable cache entry: %s", exc)
            return None
        if not isinstance(revived, list) or not all(isinstance(g, Generation) for g in revived):
            return None
        return revived

    # ------------------------------------------------------------------ async API
    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """The generations stored for this prompt (or a paraphrase of its last turn)."""
        hit = await self.engine.lookup(_request(prompt, llm_string))
        return None if hit is None else self._generations(hit.entry.response)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Store ``return_val`` for this prompt and ``llm_string``."""
        if not return_val:
            return
        response = self._response(return_val)
        if response is not None:
            await self.engine.store(_request(prompt, llm_string), response)

    async def aclear(self, **kwargs: Any) -> None:
        """Remove every entry."""
        await self.engine.clear()

    # ------------------------------------------------------------------ sync API
    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Blocking twin of :meth:`alookup` (safe inside a running event loop)."""
        return run_sync(self.alookup(prompt, llm_string))

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Blocking twin of :meth:`aupdate`."""
        run_sync(self.aupdate(prompt, llm_string, return_val))

    def clear(self, **kwargs: Any) -> None:
        """Blocking twin of :meth:`aclear`."""
        run_sync(self.aclear(**kwargs))

    def __repr__(self) -> str:
        return f"<SemanticRouterCache namespace={self.engine.config.namespace!r}>"
