"""LangChain integration: the router as a chat model, its cache as LangChain's cache, callbacks.

* :class:`ChatRouter`: a ``BaseChatModel`` over :class:`~llm_cache_router_integrations.LLMRouter`
  (routing, fallbacks, semantic cache, cost and budgets in every chain, agent and tool loop);
* :class:`SemanticRouterCache`: ``set_llm_cache(SemanticRouterCache())`` gives any LangChain
  model the router's exact + semantic cache;
* :class:`CostTrackingCallbackHandler`, :class:`BudgetCallbackHandler`,
  :class:`StreamingStatsCallbackHandler`: cost per model, budgets enforced before a call, and
  streaming speed, for any LangChain model.

Needs the ``langchain`` extra: ``pip install "llm-cache-router-integrations[langchain]"``.
"""

from .cache import SemanticRouterCache
from .callbacks import (
    BudgetCallbackHandler,
    CostTrackingCallbackHandler,
    ModelUsage,
    RunStreamStats,
    StreamingStatsCallbackHandler,
)
from .chat_model import ChatRouter

__all__ = [
    "BudgetCallbackHandler",
    "ChatRouter",
    "CostTrackingCallbackHandler",
    "ModelUsage",
    "RunStreamStats",
    "SemanticRouterCache",
    "StreamingStatsCallbackHandler",
]
