"""The provider registry: ``@register_provider("name")`` and ``create_provider``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from .base import BaseProvider
    from .config import ProviderConfig

__all__ = ["create_provider", "get_provider_class", "register_provider", "registered_providers"]

P = TypeVar("P", bound="type[BaseProvider]")

_REGISTRY: dict[str, type[BaseProvider]] = {}


def register_provider(name: str) -> Callable[[P], P]:
    """Class decorator that makes a provider available under ``name``.

    Example::

        @register_provider("my-llm")
        class MyProvider(OpenAICompatibleProvider):
            default_base_url = "https://llm.example.com/v1"
    """
    key = name.strip().lower()
    if not key:
        raise ConfigurationError("a provider name must not be empty")

    def decorator(cls: P) -> P:
        cls.type_name = key
        _REGISTRY[key] = cls
        return cls

    return decorator


def registered_providers() -> list[str]:
    """The names of every registered provider type."""
    return sorted(_REGISTRY)


def get_provider_class(type_name: str) -> type[BaseProvider]:
    """The class registered under ``type_name``; a clear error lists the known types."""
    try:
        return _REGISTRY[type_name.strip().lower()]
    except KeyError:
        known = ", ".join(registered_providers())
        raise ConfigurationError(
            f"unknown provider type {type_name!r}; known types: {known}. Set 'type' to one of "
            "them, or register your own class with @register_provider."
        ) from None


def create_provider(
    name: str, config: ProviderConfig | Mapping[str, Any] | None = None, **kwargs: Any
) -> BaseProvider:
    """Build the provider instance ``name``; its type is ``config["type"]`` or the name itself."""
    from .config import ProviderConfig

    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"a provider name must be a non-empty string, got {name!r}")
    settings: dict[str, Any]
    if isinstance(config, ProviderConfig):
        settings = config.model_dump(exclude_unset=True)
        if config.api_key is not None:
            settings["api_key"] = config.api_key
    elif config is None or isinstance(config, Mapping):
        settings = dict(config or {})
    else:
        raise ConfigurationError(
            f"invalid configuration for provider {name!r}: expected a mapping of its settings "
            f"(or a ProviderConfig), got {type(config).__name__}"
        )
    type_name = settings.get("type") or name
    if not isinstance(type_name, str):
        raise ConfigurationError(
            f"invalid configuration for provider {name!r}: type must be a string naming a "
            f"registered provider type, got {type(type_name).__name__}"
        )
    return get_provider_class(type_name)(settings, name=name, **kwargs)
