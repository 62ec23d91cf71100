"""Provider adapters: one module per wire protocol, all registered by name.

Importing this package registers the built-in providers: ``openai``, ``openai-compatible``,
``anthropic``, ``gemini``, ``ollama``, ``minimax``, ``qwen`` and its alias ``dashscope``, and
``local`` (an in-process Hugging Face model; its heavy imports wait until it loads).
"""

from .anthropic import AnthropicProvider
from .base import BaseProvider, StreamHandler, WireRequest
from .config import ProviderConfig
from .gemini import GeminiProvider
from .local import LocalProvider
from .minimax import MiniMaxProvider
from .ollama import OllamaProvider
from .openai import OpenAICompatibleProvider, OpenAIProvider
from .qwen import DashScopeProvider, QwenProvider
from .registry import create_provider, get_provider_class, register_provider, registered_providers

__all__ = [
    "AnthropicProvider",
    "BaseProvider",
    "DashScopeProvider",
    "GeminiProvider",
    "LocalProvider",
    "MiniMaxProvider",
    "OllamaProvider",
    "OpenAICompatibleProvider",
    "OpenAIProvider",
    "ProviderConfig",
    "QwenProvider",
    "StreamHandler",
    "WireRequest",
    "create_provider",
    "get_provider_class",
    "register_provider",
    "registered_providers",
]
