"""``RouterLLM``: the router as a LlamaIndex function-calling LLM.

The class is a thin adapter: routing, fallbacks, retries, the cache, cost, budgets, token
counting and per-provider tool-call translation all happen in :class:`LLMRouter`. This module only
converts messages and results (see :mod:`.messages`) and dispatches the router's decisions as
instrumentation events (see :mod:`.events`).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    ToolCallBlock,
)
from llama_index.core.callbacks import CallbackManager
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW, DEFAULT_NUM_OUTPUTS
from llama_index.core.instrumentation.span import active_span_id
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from llama_index_instrumentation import get_dispatcher
from pydantic import Field, PrivateAttr

from ..cache import CacheConfig, CacheEngine
from ..cost.budget import Budget
from ..errors import ConfigurationError
from ..router import LLMRouter
from ..routing import Priority, RoutingStrategy, Strategy
from ..types import LLMResponse, Message
from .events import CacheHitEvent, FallbackEvent, RouteDecisionEvent
from .messages import (
    ChatStreamAssembler,
    CompletionStreamAssembler,
    to_chat_response,
    to_completion_response,
    to_router_messages,
    tool_calls_of,
)

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

__all__ = ["RouterLLM"]

dispatcher = get_dispatcher(__name__)

_LLAMA_ONLY_KWARGS = frozenset(
    {"formatted", "verbose", "allow_parallel_tool_calls", "tool_required", "error_on_no_tool_call"}
)
"""Keywords LlamaIndex passes through ``chat(**kwargs)`` that are not request parameters."""


class _MergedCallbackManager(CallbackManager):
    """A global callback manager plus the handlers a :class:`RouterLLM` was given itself.

    ``handlers`` is computed on every access, so handlers added to either manager later are seen.
    Handlers added through this object go to the LLM's own manager, never to the global one.
    """

    def __init__(self, base: CallbackManager, own: CallbackManager) -> None:
        # CallbackManager.__init__ is not called: it would copy (and extend) the handler lists.
        self.base = base
        self.own = own
        self._trace_map = defaultdict(list)

    @property
    def handlers(self) -> list[BaseCallbackHandler]:
        base = list(self.base.handlers)
        return base + [h for h in self.own.handlers if not any(h is b for b in base)]

    @handlers.setter
    def handlers(self, value: list[BaseCallbackHandler]) -> None:
        self.own.handlers = value

    def add_handler(self, handler: BaseCallbackHandler) -> None:
        """Add a handler to the LLM's own handlers."""
        self.own.add_handler(handler)

    def remove_handler(self, handler: BaseCallbackHandler) -> None:
        """Remove a handler from the LLM's own handlers, else from the global manager."""
        if any(handler is h for h in self.own.handlers):
            self.own.remove_handler(handler)
        else:
            self.base.remove_handler(handler)

    def set_handlers(self, handlers: list[BaseCallbackHandler]) -> None:
        """Replace the LLM's own handlers (the global manager is left alone)."""
        self.own.set_handlers(handlers)


def _global_callback_manager() -> CallbackManager | None:
    from llama_index.core.settings import Settings

    manager: CallbackManager | None = Settings._callback_manager
    return manager


class RouterLLM(FunctionCallingLLM):
    """An :class:`LLMRouter` as a LlamaIndex ``FunctionCallingLLM``.

    ``Settings.llm = RouterLLM()`` builds the router from the environment on first use
    (:meth:`LLMRouter.from_env`). Or pass a ready router (``RouterLLM(router=...)``), or the
    router's configuration: ``RouterLLM(providers={...}, cache=..., strategy=...,
    fallback_chain=[...], budget={...}, model="openai/gpt-4o-mini")``; further router options go
    in ``router_options``.

    Every endpoint (``chat``, ``complete``, their stream and async forms) makes one router call,
    so LlamaIndex sees one LLM event per call whatever retries and fallbacks happen inside. The
    responses' ``additional_kwargs`` hold the tokens, ``cost_usd``, ``cache_hit``, ``saved_usd``,
    ``provider``, ``model`` and ``route``; ``raw["usage"]`` is in OpenAI's shape.

    Callback managers: a manager given to the constructor (or assigned later) holds this LLM's
    own handlers. When ``Settings.llm`` assigns the global ``Settings.callback_manager``, both
    are used, so no handler is lost.
    """

    model: str | None = Field(
        default=None,
        description="model, 'provider/model' or alias; default: the router's default model",
    )
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1, description="maximum output tokens")
    priority: str | int | None = Field(default=None, description="router priority of calls")
    namespace: str | None = Field(default=None, description="cache namespace")
    cache_control: Literal["default", "no-cache", "no-store"] = "default"
    timeout: float | None = Field(default=None, gt=0, description="overall deadline per call")
    context_window: int | None = Field(
        default=None,
        ge=1,
        description="override; default: the smallest context window among the candidates",
    )
    additional_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="extra request parameters sent with every call"
    )

    _router: LLMRouter | None = PrivateAttr(default=None)
    _router_options: dict[str, Any] = PrivateAttr(default_factory=dict)
    _router_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _own_callbacks: CallbackManager | None = PrivateAttr(default=None)

    def __init__(
        self,
        router: LLMRouter | None = None,
        *,
        providers: Mapping[str, Any] | None = None,
        cache: CacheConfig | CacheEngine | Mapping[str, Any] | None = None,
        strategy: RoutingStrategy | str | Strategy | None = None,
        fallback_chain: Sequence[str] | None = None,
        budget: Budget | Mapping[str, float | None] | None = None,
        router_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        explicit_callbacks = kwargs.get("callback_manager") is not None
        super().__init__(**kwargs)
        options: dict[str, Any] = {
            key: value
            for key, value in {
                "cache": cache,
                "strategy": strategy,
                "fallback_chain": fallback_chain,
                "budget": budget,
            }.items()
            if value is not None
        }
        options.update(router_options or {})
        if router is not None and (providers is not None or options):
            raise ConfigurationError(
                "RouterLLM: pass either a ready router or the router's configuration, not both"
            )
        if router is None and providers is not None:
            router = LLMRouter(providers, **options)
        self._router = router
        self._router_options = options
        global_manager = _global_callback_manager()
        if explicit_callbacks or (
            global_manager is None or self.callback_manager.handlers is not global_manager.handlers
        ):
            self._own_callbacks = self.callback_manager

    # ------------------------------------------------------------------ configuration
    def __setattr__(self, name: str, value: Any) -> None:
        if (
            name == "callback_manager"
            and isinstance(value, CallbackManager)
            and getattr(self, "__pydantic_private__", None) is not None
        ):
            value = self._adopt_callback_manager(value)
        super().__setattr__(name, value)

    def _adopt_callback_manager(self, manager: CallbackManager) -> CallbackManager:
        """The global manager is merged with this LLM's own handlers; any other becomes its own."""
        if isinstance(manager, _MergedCallbackManager):
            return manager
        own = self._own_callbacks
        if manager is _global_callback_manager() and manager is not own:
            current = self.__dict__.get("callback_manager")
            if isinstance(current, _MergedCallbackManager) and (
                current.base is manager and current.own is own
            ):
                return current
            if own is None or not own.handlers:
                return manager
            return _MergedCallbackManager(manager, own)
        self._own_callbacks = manager
        return manager

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "RouterLLM"

    @property
    def router(self) -> LLMRouter:
        """The router; built from the environment on first use when none was given."""
        if self._router is None:
            with self._router_lock:
                if self._router is None:
                    self._router = LLMRouter.from_env(**self._router_options)
        return self._router

    def _model_name(self) -> str:
        return self.router.model_name(self.model)

    @property
    def metadata(self) -> LLMMetadata:
        """Context window: the smallest among the candidate models (from the pricing table)."""
        name = self._model_name()
        deployments = self.router.candidates(
            name, Priority.parse(self.priority), apply_strategy=False
        )
        windows = [d.price.context_window for d in deployments if d.price.context_window]
        return LLMMetadata(
            context_window=self.context_window
            or (min(windows) if windows else DEFAULT_CONTEXT_WINDOW),
            num_output=self.max_tokens or DEFAULT_NUM_OUTPUTS,
            is_chat_model=True,
            is_function_calling_model=True,
            model_name=name,
        )

    def to_payload(self) -> dict[str, Any]:
        """Metadata plus the model, its candidate deployments and the request defaults."""
        name = self._model_name()
        candidates = self.router.candidates(
            name, Priority.parse(self.priority), apply_strategy=False
        )
        return {
            **super().to_payload(),
            "model": name,
            "candidates": [d.key for d in candidates],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "priority": self.priority,
        }

    # ------------------------------------------------------------------ request building
    def _call(self, messages: list[Message], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of one router call."""
        params = {**self.additional_kwargs, **kwargs}
        for key in _LLAMA_ONLY_KWARGS:
            params.pop(key, None)
        if self.temperature is not None:
            params.setdefault("temperature", self.temperature)
        if self.max_tokens is not None:
            params.setdefault("max_tokens", self.max_tokens)
        params.setdefault("priority", self.priority)
        params.setdefault("cache_control", self.cache_control)
        params.setdefault("namespace", self.namespace)
        params.setdefault("timeout", self.timeout)
        model = params.pop("model", None) or self.model
        return {"messages": messages, "model": model, **params}

    def _chat_call(
        self, messages: Sequence[ChatMessage], kwargs: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self._call(to_router_messages(messages), kwargs)

    def _prompt_call(self, prompt: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        return self._call([Message(role="user", content=prompt)], kwargs)

    def estimate_cost(self, messages: Sequence[ChatMessage] | str, **kwargs: Any) -> float:
        """Worst-case USD of a call with these messages and keywords (no call is made)."""
        call = (
            self._prompt_call(messages, kwargs)
            if isinstance(messages, str)
            else self._chat_call(messages, kwargs)
        )
        for key in ("cache_control", "namespace", "timeout"):
            call.pop(key, None)
        return self.router.estimate_cost(**call)

    def _emit(
        self, response: LLMResponse | None, requested: str | None, span_id: str | None
    ) -> None:
        """Dispatch the route, fallback and cache-hit decisions of one answer."""
        if response is None:
            return
        name = requested or self._model_name()
        answered = response.route[-1] if response.route else response.provider_used
        dispatcher.event(
            RouteDecisionEvent(
                requested=name,
                provider=response.provider_used,
                model=response.model_used,
                route=list(response.route),
                fallback=not response.cache_hit and len(response.route) > 1,
                cache_hit=response.cache_hit,
                cost_usd=response.cost_usd,
                span_id=span_id,
            )
        )
        if response.cache_hit:
            dispatcher.event(
                CacheHitEvent(
                    requested=name,
                    provider=response.provider_used,
                    model=response.model_used,
                    saved_usd=response.saved_usd,
                    span_id=span_id,
                )
            )
        elif len(response.route) > 1:
            dispatcher.event(
                FallbackEvent(
                    requested=name,
                    failed=list(response.route[:-1]),
                    answered_by=answered,
                    span_id=span_id,
                )
            )

    # ------------------------------------------------------------------ chat
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Answer a chat (blocking; works inside a running event loop too)."""
        call = self._chat_call(messages, kwargs)
        response = self.router.complete_sync(**call)
        self._emit(response, call["model"], active_span_id.get())
        return to_chat_response(response)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Answer a chat."""
        call = self._chat_call(messages, kwargs)
        response = await self.router.complete(**call)
        self._emit(response, call["model"], active_span_id.get())
        return to_chat_response(response)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream a chat answer; the last response carries tool calls, usage and cost."""
        call = self._chat_call(messages, kwargs)
        span_id = active_span_id.get()

        def gen() -> Generator[ChatResponse, None, None]:
            assembler = ChatStreamAssembler()
            for chunk in self.router.stream_sync(**call):
                out = assembler.add(chunk)
                if out is not None:
                    yield out
            if assembler.response is None:  # never happens with a well-behaved provider
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=""))
            self._emit(assembler.response, call["model"], span_id)

        return gen()

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        """Stream a chat answer (async); the last response carries tool calls, usage and cost."""
        call = self._chat_call(messages, kwargs)
        span_id = active_span_id.get()

        async def gen() -> AsyncGenerator[ChatResponse, None]:
            assembler = ChatStreamAssembler()
            async for chunk in self.router.stream(**call):
                out = assembler.add(chunk)
                if out is not None:
                    yield out
            if assembler.response is None:
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=""))
            self._emit(assembler.response, call["model"], span_id)

        return gen()

    # ------------------------------------------------------------------ completion
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Complete a prompt (sent as one user message)."""
        call = self._prompt_call(prompt, kwargs)
        response = self.router.complete_sync(**call)
        self._emit(response, call["model"], active_span_id.get())
        return to_completion_response(response)

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        """Complete a prompt (async)."""
        call = self._prompt_call(prompt, kwargs)
        response = await self.router.complete(**call)
        self._emit(response, call["model"], active_span_id.get())
        return to_completion_response(response)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """Stream a completion; the last response carries usage and cost."""
        call = self._prompt_call(prompt, kwargs)
        span_id = active_span_id.get()

        def gen() -> Generator[CompletionResponse, None, None]:
            assembler = CompletionStreamAssembler()
            for chunk in self.router.stream_sync(**call):
                out = assembler.add(chunk)
                if out is not None:
                    yield out
            if assembler.response is None:
                yield CompletionResponse(text="")
            self._emit(assembler.response, call["model"], span_id)

        return gen()

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Stream a completion (async); the last response carries usage and cost."""
        call = self._prompt_call(prompt, kwargs)
        span_id = active_span_id.get()

        async def gen() -> AsyncGenerator[CompletionResponse, None]:
            assembler = CompletionStreamAssembler()
            async for chunk in self.router.stream(**call):
                out = assembler.add(chunk)
                if out is not None:
                    yield out
            if assembler.response is None:
                yield CompletionResponse(text="")
            self._emit(assembler.response, call["model"], span_id)

        return gen()

    # ------------------------------------------------------------------ tools
    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        tool_choice: str | dict[str, Any] | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Tools in OpenAI's shape, ``tool_choice`` (``required`` when a tool is required).

        Without ``allow_parallel_tool_calls``, the request asks for one call
        (``parallel_tool_calls=False``, which each provider adapter translates or, where its API
        has no such switch, drops), and answers are still trimmed to the first call (streams
        included).
        """
        messages = list(chat_history or [])
        if user_msg is not None:
            messages.append(
                ChatMessage(role=MessageRole.USER, content=user_msg)
                if isinstance(user_msg, str)
                else user_msg
            )
        specs = [tool.metadata.to_openai_tool(skip_length_check=True) for tool in tools]
        if strict is not None:
            for spec in specs:
                spec["function"]["strict"] = strict
        call: dict[str, Any] = {"messages": messages, **kwargs}
        if specs:
            call["tools"] = specs
            call["tool_choice"] = (
                tool_choice if tool_choice is not None else "required" if tool_required else "auto"
            )
            if not allow_parallel_tool_calls:
                call.setdefault("parallel_tool_calls", False)
        return call

    def stream_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponseGen:
        """Stream a chat with tools; the last response keeps one call unless parallel is allowed.

        (LlamaIndex does not validate streamed responses itself.)
        """
        responses = super().stream_chat_with_tools(
            tools,
            user_msg=user_msg,
            chat_history=chat_history,
            verbose=verbose,
            allow_parallel_tool_calls=allow_parallel_tool_calls,
            tool_required=tool_required,
            **kwargs,
        )

        def gen() -> Generator[ChatResponse, None, None]:
            for response in responses:
                yield self._validate_chat_with_tools_response(
                    response, tools, allow_parallel_tool_calls=allow_parallel_tool_calls
                )

        return gen()

    async def astream_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponseAsyncGen:
        """Async twin of :meth:`stream_chat_with_tools`."""
        responses = await super().astream_chat_with_tools(
            tools,
            user_msg=user_msg,
            chat_history=chat_history,
            verbose=verbose,
            allow_parallel_tool_calls=allow_parallel_tool_calls,
            tool_required=tool_required,
            **kwargs,
        )

        async def gen() -> AsyncGenerator[ChatResponse, None]:
            async for response in responses:
                yield self._validate_chat_with_tools_response(
                    response, tools, allow_parallel_tool_calls=allow_parallel_tool_calls
                )

        return gen()

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[BaseTool],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Keep only the first tool call unless parallel tool calls are allowed."""
        if allow_parallel_tool_calls:
            return response
        calls = tool_calls_of(response.message)
        if len(calls) <= 1:
            return response
        message = response.message
        blocks: list[Any] = []
        seen_call = False
        for block in message.blocks:
            if isinstance(block, ToolCallBlock):
                if seen_call:
                    continue
                seen_call = True
            blocks.append(block)
        message.blocks = blocks
        if "tool_calls" in message.additional_kwargs:
            message.additional_kwargs["tool_calls"] = [calls[0].model_dump()]
        return response

    def get_tool_calls_from_response(
        self,
        response: ChatResponse,
        error_on_no_tool_call: bool = True,
        **kwargs: Any,
    ) -> list[ToolSelection]:
        """The tool calls of a response as ``ToolSelection`` objects."""
        calls = tool_calls_of(response.message)
        if not calls and error_on_no_tool_call:
            raise ValueError(f"Expected at least one tool call, but got {len(calls)} tool calls.")
        return [
            ToolSelection(
                tool_id=call.id,
                tool_name=call.function.name,
                tool_kwargs=call.function.parsed_arguments(),
            )
            for call in calls
        ]
