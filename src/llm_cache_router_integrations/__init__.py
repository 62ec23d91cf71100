"""llm-cache-router-integrations: one LLM router with a semantic cache, for LangChain and LlamaIndex."""

from .errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContentPolicyError,
    ContextLengthExceededError,
    InvalidRequestError,
    LLMRouterError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)
from .providers import BaseProvider, ProviderConfig, create_provider, register_provider
from .streaming import StreamAccumulator
from .types import ChatRequest, LLMResponse, Message, StreamChunk, ToolCall, Usage

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BaseProvider",
    "ChatRequest",
    "ConfigurationError",
    "ContentPolicyError",
    "ContextLengthExceededError",
    "InvalidRequestError",
    "LLMResponse",
    "LLMRouterError",
    "Message",
    "ModelNotFoundError",
    "ProviderConfig",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "RateLimitError",
    "StreamAccumulator",
    "StreamChunk",
    "ToolCall",
    "Usage",
    "__version__",
    "create_provider",
    "register_provider",
]
