"""Provider adapters: one module per wire protocol, all registered by name.

Importing this package registers the built-in providers: ``openai``, ``openai-compatible``.
"""

from .base import BaseProvider, StreamHandler, WireRequest
from .config import ProviderConfig
from .openai import OpenAICompatibleProvider, OpenAIProvider
from .registry import create_provider, get_provider_class, register_provider, registered_providers

__all__ = [
    "BaseProvider",
    "OpenAICompatibleProvider",
    "OpenAIProvider",
    "ProviderConfig",
    "StreamHandler",
    "WireRequest",
    "create_provider",
    "get_provider_class",
    "register_provider",
    "registered_providers",
]
