"""llm-cache-router-integrations: one LLM router with a semantic cache, for LangChain and LlamaIndex."""

from .cache import CacheConfig
from .cost import Budget, PricingTable
from .errors import (
    AllCandidatesFailedError,
    AllCandidatesSaturatedError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    BudgetUnavailableError,
    ConfigurationError,
    ContentPolicyError,
    ContextLengthExceededError,
    InvalidRequestError,
    LLMRouterError,
    ModelNotFoundError,
    NoDeploymentAvailableError,
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    StreamInterruptedError,
    SyncCallDeadlockError,
    UnsupportedInputError,
)
from .providers import BaseProvider, ProviderConfig, create_provider, register_provider
from .router import LLMRouter
from .routing import (
    BreakerConfig,
    DeploymentSettings,
    Priority,
    RetryPolicy,
    RoutingStrategy,
    Strategy,
)
from .streaming import StreamAccumulator
from .types import ChatRequest, LLMResponse, Message, StreamChunk, ToolCall, Usage

__version__ = "0.1.0"

__all__ = [
    "AllCandidatesFailedError",
    "AllCandidatesSaturatedError",
    "AuthenticationError",
    "BadRequestError",
    "BaseProvider",
    "BreakerConfig",
    "Budget",
    "BudgetExceededError",
    "BudgetUnavailableError",
    "CacheConfig",
    "ChatRequest",
    "ConfigurationError",
    "ContentPolicyError",
    "ContextLengthExceededError",
    "DeploymentSettings",
    "InvalidRequestError",
    "LLMResponse",
    "LLMRouter",
    "LLMRouterError",
    "Message",
    "ModelNotFoundError",
    "NoDeploymentAvailableError",
    "PricingTable",
    "Priority",
    "ProviderConfig",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "RateLimitError",
    "RetryPolicy",
    "RoutingStrategy",
    "Strategy",
    "StreamAccumulator",
    "StreamChunk",
    "StreamInterruptedError",
    "SyncCallDeadlockError",
    "ToolCall",
    "UnsupportedInputError",
    "Usage",
    "__version__",
    "create_provider",
    "register_provider",
]
