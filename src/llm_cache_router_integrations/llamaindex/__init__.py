"""LlamaIndex integration: the router as a LlamaIndex LLM, cost tracking and budget handlers.

Needs the ``llamaindex`` extra (``pip install 'llm-cache-router-integrations[llamaindex]'``)::

    from llama_index.core import Settings
    from llm_cache_router_integrations.llamaindex import RouterLLM

    Settings.llm = RouterLLM()  # the router is built from the environment on first use

See ``docs/llamaindex.md``.
"""

from __future__ import annotations

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the LlamaIndex integration needs llama-index-core: "
        "pip install 'llm-cache-router-integrations[llamaindex]'"
    ) from exc

from ..errors import BudgetExceededError
from .events import CacheHitEvent, FallbackEvent, RouteDecisionEvent
from .handlers import BudgetCallbackHandler, CostEventHandler, ModelCost
from .llm import RouterLLM
from .messages import to_chat_response, to_router_message, to_router_messages

__all__ = [
    "BudgetCallbackHandler",
    "BudgetExceededError",
    "CacheHitEvent",
    "CostEventHandler",
    "FallbackEvent",
    "ModelCost",
    "RouteDecisionEvent",
    "RouterLLM",
    "to_chat_response",
    "to_router_message",
    "to_router_messages",
]
