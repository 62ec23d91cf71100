"""``ChatRouter``: the router as a LangChain chat model.

Everything that matters (routing, fallbacks, the semantic cache, cost, budgets, token counting and
per-provider tool-call translation) happens in :class:`~llm_cache_router_integrations.LLMRouter`;
this class only converts messages and results (see :mod:`.messages`).

Caching: the router has its own semantic cache (``ChatRouter(cache=CacheConfig(...))``), and
LangChain has a global one (``set_llm_cache(...)``) plus a per-model ``cache`` field. When the
router caches, ``ChatRouter`` sets LangChain's ``cache=False`` unless you set it yourself, so one
answer is never cached twice. A router without a cache leaves LangChain's ``cache`` as it is, so
the global cache (e.g. :class:`SemanticRouterCache`) applies; its key is the serialised set-up,
or :attr:`ChatRouter._identifying_params` for a model that cannot be serialised (``router=...``),
which describe the whole routing set-up, so two different ``ChatRouter``\\ s never share entries.

Routers: a ``ChatRouter`` builds its router once; the copies LangChain rebuilds from its fields
(``configurable_fields``) reuse it when their router settings are equal (see ``_RouterSlot``).

Serialisation: ``dumpd(chat)`` writes the declarative set-up only, never an API key (the
reloaded providers read their environment variables); see :class:`ChatRouter`.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from enum import Enum
from operator import itemgetter
from typing import Any, Literal, cast
from urllib.parse import urlsplit, urlunsplit

from langchain_core.caches import BaseCache
from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import LangSmithParams, LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.load.serializable import SerializedConstructor, SerializedNotImplemented
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import (
    JsonOutputKeyToolsParser,
    JsonOutputParser,
    PydanticOutputParser,
    PydanticToolsParser,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from ..cache import CacheConfig, CacheEngine
from ..cost.tokens import count_message_tokens, count_tokens, encoding_name_for, get_encoding
from ..errors import ConfigurationError
from ..providers.base import BaseProvider
from ..providers.config import ProviderConfig
from ..router import LLMRouter
from ..routing import Priority
from ..types import Message, ToolDefinition
from .messages import StreamConverter, from_langchain, to_ai_message

__all__ = ["ChatRouter"]

logger = logging.getLogger(__name__)

_ROUTER_LOCK = threading.Lock()
_CALL_KEYS = ("model", "priority", "namespace", "timeout", "cache_control")
_DROPPED_KWARGS = ("ls_structured_output_format", "structured_output_format", "stream")
_ROUTER_OPTIONS = (
    "strategy",
    "fallback_chain",
    "budget",
    "budget_store",
    "model_groups",
    "deployments",
    "priority_routes",
    "retry",
    "breaker",
    "pricing",
)
_DEFAULT_MODEL_NAME = "default"
# Router options serialised as plain data (``cache=`` goes as ``router_cache``).
_SERIALISED_OPTIONS = (*(n for n in _ROUTER_OPTIONS if n != "strategy"), "router_cache")
# Setting, header and body-parameter names that may hold credentials: never serialised.
_SECRET_NAME = re.compile(
    r"(?:^|[-_])(?:auth|authorization|key|apikey|token|secret|password|cookie|credentials?)"
    r"(?:$|[-_])",
    re.IGNORECASE,
)

ToolLike = Mapping[str, Any] | type | Callable[..., Any] | BaseTool


def _fingerprint(value: Any, live: list[Any]) -> Any:
    """``value`` as JSON data for a router key; live objects by identity (kept in ``live``)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, SecretStr):
        return {"secret": hashlib.sha256(value.get_secret_value().encode()).hexdigest()}
    if isinstance(value, BaseModel):
        return {"model": type(value).__qualname__, "fields": _fingerprint(dict(value), live)}
    if isinstance(value, Mapping):
        return {str(k): _fingerprint(v, live) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_fingerprint(v, live) for v in value]
    live.append(value)  # kept alive with the router, so its id is never reused meanwhile
    return {"object": id(value)}


class _RouterSlot:
    """The routers built from one ``ChatRouter``'s settings, by a fingerprint of those settings.

    LangChain rebuilds a model from its fields for ``configurable_fields`` and
    ``configurable_alternatives`` (on every call); the rebuilt copies receive this same slot, so
    equal settings get the same router back: one cache, one budget, one set of connections.
    A ``ChatRouter`` constructed anew gets a new slot, so separate models never share a router
    unless given one with ``router=``.
    """

    __slots__ = ("_lock", "_routers")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routers: dict[str, tuple[LLMRouter, list[Any]]] = {}

    def get(self, settings: Mapping[str, Any], build: Callable[[], LLMRouter]) -> LLMRouter:
        """The router built for ``settings`` (API keys are hashed in the key), building it once."""
        live: list[Any] = []
        plain = json.dumps(_fingerprint(settings, live), sort_keys=True, default=str)
        key = hashlib.sha256(plain.encode()).hexdigest()
        with self._lock:
            found = self._routers.get(key)
            if found is None:
                found = (build(), live)
                self._routers[key] = found
            return found[0]

    def __copy__(self) -> _RouterSlot:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _RouterSlot:
        return self

    def __repr__(self) -> str:
        return f"<_RouterSlot routers={len(self._routers)}>"


def _public_url(url: str) -> str:
    """``url`` without user info (credentials never enter identifying params)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _NotDeclarative(Exception):
    """A setting that is a live object (or would carry a credential) rather than plain data."""


def _strip_userinfo(url: str) -> str:
    """``url`` without ``user:password@``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _plain(value: Any) -> Any:
    """``value`` as JSON data (pydantic settings as their fields, enums as values).

    Raises:
        _NotDeclarative: a live object, a secret or a URL with credentials.
    """
    if value is None or isinstance(value, bool | int | float):
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, str):
        if "://" in value and _strip_userinfo(value) != value:
            raise _NotDeclarative("a URL with credentials")
        return value
    if isinstance(value, SecretStr):
        raise _NotDeclarative("a secret")
    if isinstance(value, BaseModel):
        return _plain(value.model_dump(exclude_unset=True))
    if isinstance(value, Mapping):
        plain = {str(_plain(k)): _plain(v) for k, v in value.items()}
        if any(_SECRET_NAME.search(k) and v is not None for k, v in plain.items()):
            raise _NotDeclarative("a credential")
        return plain
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    raise _NotDeclarative(f"a {type(value).__name__} object")


def _provider_settings(config: Any) -> dict[str, Any]:
    """One provider's settings without credentials (no ``api_key``, no credential headers)."""
    if isinstance(config, BaseProvider):
        raise _NotDeclarative("a provider instance")
    if isinstance(config, ProviderConfig):
        settings = config.model_dump(exclude_unset=True)
    elif isinstance(config, Mapping):
        settings = dict(config)
    elif config is None:
        settings = {}
    else:
        raise _NotDeclarative(f"a {type(config).__name__} provider config")
    settings.pop("api_key", None)  # the reloaded provider reads its environment variable
    for field in ("headers", "params"):
        if isinstance(settings.get(field), Mapping):
            settings[field] = {
                k: v for k, v in settings[field].items() if not _SECRET_NAME.search(str(k))
            }
    if isinstance(settings.get("base_url"), str):
        settings["base_url"] = _strip_userinfo(settings["base_url"])
    plain: dict[str, Any] = _plain(settings)
    return plain


def _tool_choice(choice: str | bool | Mapping[str, Any] | None) -> str | dict[str, Any] | None:
    """LangChain's tool choices in the core's shape (``"any"`` and names are normalised there)."""
    if choice is None or isinstance(choice, str):
        return choice
    if isinstance(choice, bool):
        return "required" if choice else None
    kind = choice.get("type")
    if kind == "function":  # OpenAI: {"type": "function", "function": {"name": ...}}
        return dict(choice)
    if kind == "tool" and choice.get("name"):  # Anthropic: {"type": "tool", "name": ...}
        return str(choice["name"])
    if kind in ("any", "auto", "none", "required"):
        return str(kind)
    raise ValueError(f"unsupported tool_choice {dict(choice)!r}")


class ChatRouter(BaseChatModel):
    """A LangChain chat model backed by an :class:`LLMRouter`.

    Three ways to build one:

    * ``ChatRouter()``: a router from the environment (:meth:`LLMRouter.from_env`), built on first
      use, so importing and constructing never need API keys;
    * ``ChatRouter(router=my_router)``: an existing router (shared, with its cache and budget);
    * ``ChatRouter(providers={...}, cache=CacheConfig(...), strategy=..., fallback_chain=...,
      budget=..., ...)``: a new router from :class:`LLMRouter`'s arguments.

    ``configurable_fields`` / ``configurable_alternatives`` copies reuse the router built here
    (its cache, budget and connections) while their router settings are equal.

    ``cache=`` takes either LangChain's value (a ``BaseCache``, ``True``/``False``/``None``) or the
    router's own cache (a :class:`CacheConfig`, a dict of its fields or a :class:`CacheEngine`).
    When the router caches and LangChain's ``cache`` is not set, it becomes ``False`` (no double
    caching); see the module docs.

    Per-call keyword arguments (``invoke(..., model=..., priority=..., namespace=...,
    cache_control="no-cache", timeout=...)``) override the fields; any other keyword goes to the
    provider through the router (e.g. ``top_k``).

    Example:
        ```python
        chat = ChatRouter(
            providers={"openai": {"models": ["gpt-4o-mini"]}, "anthropic": {"models": [...]}},
            fallback_chain=["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"],
            cache={"threshold": 0.9},
        )
        chat.invoke("Hello!")
        ```

    Serialisation (``langchain_core.load.dumpd`` / ``load``): only the declarative set-up is
    written: the model and sampling fields, ``priority``, ``namespace``, ``model_kwargs``,
    ``fallback_chain``, ``model_groups``, the strategy's name, the providers' settings and the
    other router options given as plain data (``retry``, ``budget``, ``cache={...}``, ...).
    API keys never are: a provider's ``api_key`` is dropped, and the reloaded provider reads its
    type's environment variable (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ...), as
    ``ChatRouter()`` does. (LangChain's ``lc_secrets`` only covers top-level constructor
    arguments; a key nested in ``providers`` would be written in clear, so none is kept.)
    Credential-like headers and body parameters and ``user:password@`` in URLs are dropped too.
    A model that holds live objects (``router=...``, a ``CacheEngine``, provider
    instances, a custom strategy or budget store, or a setting with credentials in it) cannot be
    rebuilt from data, so that instance serialises as ``not_implemented`` instead of silently
    losing them. Loading needs the class to be trusted, e.g.
    ``load(data, allowed_objects=[ChatRouter], valid_namespaces=["llm_cache_router_integrations"])``.
    """

    model_config = ConfigDict(
        populate_by_name=True, arbitrary_types_allowed=True, protected_namespaces=()
    )

    llm_router: LLMRouter | None = Field(default=None, alias="router", exclude=True, repr=False)
    """A ready router (``router=`` in the constructor)."""
    providers: dict[str, Any] | None = Field(default=None, exclude=True, repr=False)
    """Provider configs for a new router (``LLMRouter(providers, ...)``)."""
    router_cache: CacheConfig | CacheEngine | dict[str, Any] | None = Field(
        default=None, exclude=True
    )
    """The router's own cache; given as ``cache=CacheConfig(...)`` or ``cache={...}``."""
    strategy: Any = Field(default=None, exclude=True)
    """A :class:`RoutingStrategy`, its value or a custom strategy object."""
    fallback_chain: list[str] | None = None
    """Deployment keys (``"provider/model"``) tried after the requested model."""
    budget: Any = Field(default=None, exclude=True)
    """``{"daily_usd": ..., "monthly_usd": ...}`` or a :class:`Budget` for a new router."""
    budget_store: Any = Field(default=None, exclude=True, repr=False)
    """A budget store or ``redis://`` URL for a new router."""
    model_groups: dict[str, list[str]] | None = None
    """Aliases: ``{"fast": ["openai/gpt-4o-mini", "gemini/gemini-2.0-flash"]}``."""
    deployments: dict[str, Any] | None = Field(default=None, exclude=True)
    """Per-deployment limits for a new router."""
    priority_routes: dict[Any, Any] | None = Field(default=None, exclude=True)
    """Routes per priority for a new router (``RoutingStrategy.PRIORITY``)."""
    retry: Any = Field(default=None, exclude=True)
    """A :class:`RetryPolicy` or its fields, for a new router."""
    breaker: Any = Field(default=None, exclude=True)
    """A :class:`BreakerConfig` or its fields, for a new router."""
    pricing: Any = Field(default=None, exclude=True)
    """Price overrides or a :class:`PricingTable`, for a new router."""
    router_slot: _RouterSlot = Field(default_factory=_RouterSlot, exclude=True, repr=False)
    """Internal: the routers built from this model's settings, shared with the copies LangChain
    rebuilds from its fields (``configurable_fields``); never set it yourself."""

    model: str | None = None
    """The model, alias or ``provider/model`` key; default: the router's default or chain head."""
    temperature: float | None = None
    """Sampling temperature."""
    max_tokens: int | None = None
    """Maximum output tokens."""
    stop: list[str] | None = None
    """Stop sequences."""
    seed: int | None = None
    """Sampling seed, where the provider supports one."""
    top_p: float | None = None
    """Nucleus sampling."""
    priority: Priority | str | int | None = None
    """Call priority (``"critical"``, ``"high"``, ``"normal"``, ``"low"``)."""
    namespace: str | None = None
    """Cache namespace of the router's cache (default: the cache's own)."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Provider-specific parameters sent with every call (e.g. ``{"top_k": 40}``)."""
    timeout: float | None = None
    """Overall deadline of one call in seconds, retries and fallbacks included."""
    max_retries: int | None = None
    """Retries per deployment for a router built here (ignored with ``router=``)."""
    streaming: bool = False
    """Whether ``invoke`` streams under the hood (callbacks then see every token)."""

    _router: LLMRouter | None = PrivateAttr(default=None)
    _signature: tuple[LLMRouter, dict[str, Any]] | None = PrivateAttr(default=None)

    # ------------------------------------------------------------------ construction
    @model_validator(mode="before")
    @classmethod
    def _route_cache_argument(cls, data: Any) -> Any:
        """Move the router's cache settings out of LangChain's ``cache`` field."""
        if isinstance(data, Mapping) and "cache" in data:
            value = data["cache"]
            if isinstance(value, CacheConfig | CacheEngine | Mapping) and not isinstance(
                value, BaseCache
            ):
                data = dict(data)
                if data.get("router_cache") is not None:
                    raise ValueError("give the router's cache once: cache=... or router_cache=...")
                data["router_cache"] = data.pop("cache")
        return data

    @model_validator(mode="after")
    def _build_router(self) -> ChatRouter:
        """Adopt or build the router now; ``ChatRouter()`` waits for the first call instead."""
        if self.llm_router is not None:
            if self.providers is not None or self.router_cache is not None:
                raise ValueError(
                    "pass either router=... or the router's settings (providers=..., cache=...), "
                    "not both"
                )
            self._adopt(self.llm_router)
        elif self.providers is not None:
            options = self._router_options()
            providers = self.providers
            self._adopt(
                self.router_slot.get(
                    {"providers": providers, **options}, lambda: LLMRouter(providers, **options)
                )
            )
        return self

    def _router_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            name: getattr(self, name) for name in _ROUTER_OPTIONS if getattr(self, name) is not None
        }
        if self.router_cache is not None:
            options["cache"] = self.router_cache
        if "retry" not in options and self.max_retries is not None:
            options["retry"] = {"max_retries": self.max_retries}
        return options

    def _adopt(self, router: LLMRouter) -> None:
        self._router = router
        if self.profile is None:
            with contextlib.suppress(Exception):
                self.profile = self._resolve_model_profile()
        if router.cache is not None and self.cache is None:
            self.cache = False  # the router caches: LangChain's cache would store answers twice
        elif router.cache is not None and self.cache is not False:
            logger.warning(
                "ChatRouter: both the router's cache and LangChain's cache=%r are enabled; "
                "answers will be cached twice",
                self.cache,
            )

    @property
    def router(self) -> LLMRouter:
        """The router (built from the environment on first use for ``ChatRouter()``)."""
        router = self._router
        if router is None:
            with _ROUTER_LOCK:
                router = self._router
                if router is None:
                    options = self._router_options()
                    router = self.router_slot.get(
                        {"from_env": True, **options}, lambda: LLMRouter.from_env(**options)
                    )
                    self._adopt(router)
        return router

    def _resolved_router(self) -> LLMRouter | None:
        try:
            return self.router
        except Exception:  # an unconfigured environment: the call itself will say what to set
            return None

    # ------------------------------------------------------------------ serialisation
    @classmethod
    def is_lc_serializable(cls) -> bool:
        """Yes, for the declarative set-up (see the class docs; some instances opt out)."""
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        """The public import path: ``["llm_cache_router_integrations", "langchain"]``."""
        return ["llm_cache_router_integrations", "langchain"]

    def _lc_settings(self) -> dict[str, Any]:
        """Serialised constructor arguments beyond the plain fields.

        Raises:
            _NotDeclarative: the model holds a live object (see the class docs).
        """
        if self.llm_router is not None:
            raise _NotDeclarative("a ready router (router=...)")
        attributes: dict[str, Any] = {}
        if self.providers is not None:
            attributes["providers"] = {
                str(name): _provider_settings(config) for name, config in self.providers.items()
            }
        if isinstance(self.strategy, str):  # a RoutingStrategy is a str (its value)
            attributes["strategy"] = str(self.strategy)
        elif self.strategy is not None:
            raise _NotDeclarative("a custom strategy object")
        for name in _SERIALISED_OPTIONS:
            value = getattr(self, name)
            if value is not None:
                attributes[name] = _plain(value)
        if self.priority is not None:
            attributes["priority"] = Priority.parse(self.priority).name.lower()
        return attributes

    def _lc_settings_or_none(self) -> dict[str, Any] | None:
        try:
            return self._lc_settings()
        except _NotDeclarative:
            return None

    @property
    def lc_attributes(self) -> dict[str, Any]:
        """Providers without keys, the strategy's name and the other router options as data."""
        return self._lc_settings_or_none() or {}

    def to_json(self) -> SerializedConstructor | SerializedNotImplemented:
        """The declarative set-up, or ``not_implemented`` when it holds live objects."""
        if self._lc_settings_or_none() is None:
            return self.to_json_not_implemented()
        return super().to_json()

    # ------------------------------------------------------------------ identity
    @property
    def _llm_type(self) -> str:
        return "llm-cache-router"

    def _model_name(self, override: Any = None) -> str:
        if isinstance(override, str) and override:
            return override
        if self.model:
            return self.model
        router = self._resolved_router()
        if router is not None:
            with contextlib.suppress(Exception):
                return router.model_name(None)
        return _DEFAULT_MODEL_NAME

    def _router_signature(self) -> dict[str, Any] | str:
        router = self._resolved_router()
        if router is None:
            return "from_env (not configured)"
        # A router's set-up is fixed once built: describe it once (this runs on every call).
        if self._signature is None or self._signature[0] is not router:
            self._signature = (router, self._describe(router))
        return self._signature[1]

    @staticmethod
    def _describe(router: LLMRouter) -> dict[str, Any]:
        return {
            "providers": [
                {
                    "name": name,
                    "type": provider.type_name,
                    "models": provider.models,
                    "base_url": _public_url(provider.base_url),
                }
                for name, provider in sorted(router.providers.items())
            ],
            "strategy": str(router.strategy_name),
            "fallback_chain": list(router.fallback_chain),
            "model_groups": {k: list(v) for k, v in sorted(router.model_groups.items())},
            "default_model": router.default_model,
        }

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """The model, sampling parameters and routing set-up (never API keys)."""
        return {
            "model": self._model_name(),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stop": self.stop,
            "seed": self.seed,
            "top_p": self.top_p,
            "priority": None if self.priority is None else Priority.parse(self.priority).name,
            "namespace": self.namespace,
            "model_kwargs": self.model_kwargs,
            "router": self._router_signature(),
        }

    def _get_llm_string(self, stop: list[str] | None = None, **kwargs: Any) -> str:
        """The ``llm_string`` of LangChain's cache: this model's set-up, ``stop`` and the keywords.

        A declarative set-up keeps LangChain's own key, its serialised form (model, sampling
        fields, providers without keys, router options). A model that serialises as
        ``not_implemented`` (``router=...`` or live objects) would leave only the class name in
        that key, so its key is built from :attr:`_identifying_params` instead.
        """
        if self._lc_settings_or_none() is not None:
            return super()._get_llm_string(stop=stop, **kwargs)
        identity = {
            "id": [*self.get_lc_namespace(), type(self).__name__],
            "params": self._identifying_params,
        }
        params = {**kwargs, "stop": stop}
        return (
            json.dumps(identity, sort_keys=True, default=str) + "---" + str(sorted(params.items()))
        )

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """LangSmith parameters; ``ls_model_name`` honours a per-call ``model``."""
        params = LangSmithParams(
            ls_provider="llm-cache-router",
            ls_model_name=self._model_name(kwargs.get("model")),
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        if isinstance(temperature, int | float):
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if isinstance(max_tokens, int):
            params["ls_max_tokens"] = max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    def _resolve_model_profile(self) -> ModelProfile | None:
        """Context window and limits from the pricing table, and what the router translates."""
        router = self._router
        if router is None:
            return None
        profile = ModelProfile(
            text_inputs=True,
            text_outputs=True,
            image_inputs=True,
            image_url_inputs=True,
            tool_calling=True,
            tool_choice=True,
            tool_call_streaming=True,
            structured_output=True,
        )
        with contextlib.suppress(Exception):
            price = router.candidates(self.model)[0].price
            if price.context_window:
                profile["max_input_tokens"] = price.context_window
            if price.max_output_tokens:
                profile["max_output_tokens"] = price.max_output_tokens
        return profile

    # ------------------------------------------------------------------ calls
    def _call(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[list[Message], dict[str, Any]]:
        """Core messages and the keyword arguments of ``LLMRouter.complete``/``stream``."""
        params: dict[str, Any] = {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "seed": self.seed,
            **self.model_kwargs,
        }
        call: dict[str, Any] = {
            "model": self.model,
            "priority": self.priority,
            "namespace": self.namespace,
            "timeout": self.timeout,
        }
        for key, value in kwargs.items():
            if key in _DROPPED_KWARGS:
                continue
            if key in _CALL_KEYS:
                call[key] = value
            else:
                params[key] = value
        params["stop"] = (stop if stop is not None else self.stop) or None
        merged = {k: v for k, v in {**params, **call}.items() if v is not None}
        return from_langchain(messages), merged

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """One routed call (blocking; safe inside a running event loop such as Jupyter's)."""
        converted, call = self._call(messages, stop, kwargs)
        response = self.router.complete_sync(converted, **call)
        return ChatResult(generations=[ChatGeneration(message=to_ai_message(response))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """One routed call on the caller's event loop."""
        converted, call = self._call(messages, stop, kwargs)
        response = await self.router.complete(converted, **call)
        return ChatResult(generations=[ChatGeneration(message=to_ai_message(response))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """Chunks as the provider sends them; the last one carries usage and metadata."""
        converted, call = self._call(messages, stop, kwargs)
        converter = StreamConverter()
        for chunk in self.router.stream_sync(converted, **call):
            if chunk.is_final or chunk.delta or chunk.tool_call_deltas:
                yield ChatGenerationChunk(message=converter.convert(chunk))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """Async twin of :meth:`_stream`."""
        converted, call = self._call(messages, stop, kwargs)
        converter = StreamConverter()
        async for chunk in self.router.stream(converted, **call):
            if chunk.is_final or chunk.delta or chunk.tool_call_deltas:
                yield ChatGenerationChunk(message=converter.convert(chunk))

    # ------------------------------------------------------------------ tools and structure
    def bind_tools(
        self,
        tools: Sequence[ToolLike],
        *,
        tool_choice: str | bool | Mapping[str, Any] | None = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (any form ``convert_to_openai_tool`` accepts).

        ``tool_choice``: ``"auto"``, ``"none"``, ``"any"``/``"required"``/``True`` (some tool),
        a tool name, or an OpenAI/Anthropic tool-choice dict. Every provider adapter translates
        tools and choices, so a fallback to another provider keeps tool calling working.

        ``parallel_tool_calls``: ``False`` asks for at most one tool call per answer (OpenAI's
        ``parallel_tool_calls``, Anthropic's ``disable_parallel_tool_use``; Gemini and Ollama have
        no such switch and get none), ``None`` leaves the provider's default.
        """
        formatted = [convert_to_openai_tool(tool, strict=strict) for tool in tools]
        choice = _tool_choice(tool_choice)
        if choice is not None:
            kwargs["tool_choice"] = choice
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: Mapping[str, Any] | type,
        *,
        include_raw: bool = False,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """A runnable that answers with ``schema`` (a Pydantic class, TypedDict or JSON schema).

        ``method``: ``"json_schema"`` (the provider's structured output; Anthropic's is emulated
        by the core with a forced tool), ``"function_calling"`` (a forced tool call) or
        ``"json_mode"`` (any JSON object; describe the keys in the prompt). With
        ``include_raw=True`` the result is ``{"raw", "parsed", "parsing_error"}``.
        """
        if kwargs:
            raise ValueError(f"Received unsupported arguments {kwargs}")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        trace = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
        parser: Runnable[Any, Any]
        if method == "function_calling":
            name = convert_to_openai_tool(schema)["function"]["name"]
            llm = self.bind_tools(
                [schema], tool_choice=name, strict=strict, ls_structured_output_format=trace
            )
            parser = (
                PydanticToolsParser(tools=[cast(type, schema)], first_tool_only=True)
                if is_pydantic
                else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
            )
        elif method in ("json_schema", "json_mode"):
            if method == "json_schema":
                function = convert_to_openai_tool(schema, strict=strict)["function"]
                json_schema: dict[str, Any] = {
                    "name": function["name"],
                    "schema": function.get("parameters") or {"type": "object"},
                }
                if function.get("description"):
                    json_schema["description"] = function["description"]
                if strict is not None:
                    json_schema["strict"] = strict
                response_format: dict[str, Any] = {
                    "type": "json_schema",
                    "json_schema": json_schema,
                }
            else:
                response_format = {"type": "json_object"}
                trace = {"kwargs": {"method": method}, "schema": schema}
            llm = self.bind(response_format=response_format, ls_structured_output_format=trace)
            parser = (
                PydanticOutputParser(pydantic_object=cast(Any, schema))
                if is_pydantic
                else JsonOutputParser()
            )
        else:
            raise ValueError(
                f"unknown method {method!r}; use 'json_schema', 'function_calling' or 'json_mode'"
            )
        if not include_raw:
            return llm | parser
        parse = RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
        )
        no_parse = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parse.with_fallbacks(
            [no_parse], exception_key="parsing_error"
        )

    # ------------------------------------------------------------------ token counting
    def get_num_tokens(self, text: str) -> int:
        """Tokens of ``text`` with the core's offline tiktoken counting."""
        return count_tokens(text, self._model_name())

    def get_token_ids(self, text: str) -> list[int]:
        """tiktoken ids of ``text`` from the core's offline encodings (never a GPT-2 download).

        Raises:
            ConfigurationError: no tiktoken encoding is available offline (set
                ``TIKTOKEN_CACHE_DIR``); :meth:`get_num_tokens` still works, with an estimate.
        """
        encoding = get_encoding(encoding_name_for(self._model_name()))
        if encoding is None:
            raise ConfigurationError(
                "no tiktoken encoding is available offline; set TIKTOKEN_CACHE_DIR to a folder "
                "holding the encodings"
            )
        return encoding.encode(text, disallowed_special=())

    def get_num_tokens_from_messages(
        self,
        messages: list[BaseMessage],
        tools: Sequence[ToolLike] | None = None,
    ) -> int:
        """Prompt tokens of ``messages`` (and ``tools``), counted as the router counts them."""
        definitions = [
            ToolDefinition.model_validate(convert_to_openai_tool(tool)) for tool in tools or ()
        ]
        return count_message_tokens(from_langchain(messages), self._model_name(), definitions)

    # ------------------------------------------------------------------ lifecycle
    async def aclose(self) -> None:
        """Close the router's connections (when this model built or adopted one)."""
        if self._router is not None:
            await self._router.aclose()

    def close(self) -> None:
        """Blocking twin of :meth:`aclose`."""
        if self._router is not None:
            self._router.close()


# LangChain asks ``inspect.signature(self._generate)`` on every call (does it take a run
# manager?); a function's ``__signature__`` answers that without re-deriving it each time.
for _name in ("_generate", "_agenerate"):
    _method = getattr(ChatRouter, _name)
    _method.__signature__ = inspect.signature(_method)
