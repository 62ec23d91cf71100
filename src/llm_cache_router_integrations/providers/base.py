"""The provider base class: wire hooks implemented per provider, I/O implemented once.

A provider is *sans-IO* at heart: it turns a :class:`ChatRequest` into a :class:`WireRequest`, a
JSON body into an :class:`LLMResponse`, and stream events into :class:`StreamChunk` objects through
its :class:`StreamHandler`. This base class does the HTTP (httpx, pooled, async and sync) and maps
transport failures to typed errors, so adding a provider means writing conversions, not I/O.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import json
import os
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import httpx
from pydantic import SecretStr, ValidationError

from .._secrets import redact_json, redact_text
from ..errors import (
    ConfigurationError,
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
)
from ..streaming import ToolCallAssembler
from ..types import ChatRequest, FinishReason, LLMResponse, StreamChunk, ToolCallDelta, Usage
from .classify import classify_error, error_details
from .config import ProviderConfig
from .ndjson import NDJSONDecoder, NDJSONError
from .sse import SSEDecoder, SSEEvent

__all__ = ["BaseProvider", "StreamHandler", "WireRequest"]

# What reading a well-formed JSON body of the wrong shape raises (a missing key, a string where a
# number belongs, ``int()`` of ``Infinity`` or ``1e999``...): mapped to ProviderResponseError.
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError)
_MAX_TOKENS = 2**53  # a usage count above this is no token count (and overflows a USD float)


def _check_usage(usage: Usage | None, provider: str) -> None:
    """Reject token counts no answer can have (``1e400`` as an integer would break pricing)."""
    if usage is not None and max(usage.model_dump().values()) > _MAX_TOKENS:
        raise ProviderResponseError(
            "the usage reports an impossible token count", provider=provider
        )


@dataclass(slots=True)
class WireRequest:
    """One HTTP request as a provider wants it sent."""

    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    params: dict[str, str] = field(default_factory=dict)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context for every client (building one loads the CA bundle: ~15-40 ms each)."""
    return httpx.create_ssl_context()


def _header_safe(text: str) -> bool:
    """Whether ``text`` can travel in an HTTP header (printable ASCII, spaces allowed)."""
    return text.isascii() and text.isprintable()


class StreamHandler(abc.ABC):
    """Turns one provider's decoded stream events into :class:`StreamChunk` objects.

    Subclasses implement :meth:`handle` and set ``done`` when the provider signalled a complete
    answer; ``usage``, ``finish_reason`` and ``model`` are kept up to date as events arrive.
    """

    def __init__(self, provider: BaseProvider, request: ChatRequest) -> None:
        self.provider = provider
        self.request = request
        self.model = request.model
        self.usage: Usage | None = None
        self.finish_reason: FinishReason | None = None
        self.tools = ToolCallAssembler()
        self.done = False

    @abc.abstractmethod
    def handle(self, event: Any) -> list[StreamChunk]:
        """Process one event (an :class:`SSEEvent`, or a dict for NDJSON streams)."""

    def parse_json(self, data: str) -> Any:
        """Decode an event's JSON payload; malformed data is a typed, retryable error."""
        try:
            return json.loads(data)
        except json.JSONDecodeError:
            raise ProviderResponseError(
                f"malformed JSON in stream event: {data[:200]!r}", provider=self.provider.name
            ) from None

    def tool_delta(self, delta: ToolCallDelta) -> StreamChunk:
        """Record a tool-call piece and return the chunk that carries it."""
        self.tools.add(delta)
        return StreamChunk(tool_call_deltas=[delta])

    def final_chunk(self, latency_ms: float) -> StreamChunk:
        """The closing chunk; a stream that ended without its final event is an error."""
        if not self.done:
            raise ProviderResponseError(
                "the stream ended before the provider's final event (truncated response)",
                provider=self.provider.name,
            )
        _check_usage(self.usage, self.provider.name)
        tool_calls = self.tools.complete()
        finish = self.finish_reason or ("tool_calls" if tool_calls else "stop")
        return StreamChunk(
            is_final=True,
            finish_reason=finish,
            tool_calls=tool_calls,
            usage=self.usage or Usage(),
            provider_used=self.provider.name,
            model_used=self.model,
            latency_ms=latency_ms,
        )


class BaseProvider(abc.ABC):
    """Base class of every provider adapter.

    Subclass it (or :class:`OpenAICompatibleProvider`) and register it with
    ``@register_provider("name")`` to add a provider. Class attributes describe the defaults:
    ``api_key_env`` (env vars tried in order), ``default_base_url``, ``requires_api_key`` and
    ``stream_format`` (``"sse"`` or ``"ndjson"``).
    """

    type_name: ClassVar[str] = ""
    api_key_env: ClassVar[tuple[str, ...]] = ()
    base_url_env: ClassVar[tuple[str, ...]] = ()
    default_base_url: ClassVar[str | None] = None
    requires_api_key: ClassVar[bool] = True
    stream_format: ClassVar[Literal["sse", "ndjson"]] = "sse"

    def __init__(
        self,
        config: ProviderConfig | Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sync_transport: httpx.BaseTransport | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(config, ProviderConfig):
            settings: dict[str, Any] = {**config.model_dump(exclude_unset=True), **overrides}
            if config.api_key is not None and "api_key" not in overrides:
                settings["api_key"] = config.api_key
        else:
            settings = {**(config or {}), **overrides}
        self.name = name or self.type_name or type(self).__name__.lower()
        try:
            self.config = ProviderConfig.model_validate(settings)
        except ValidationError as exc:
            # Field and reason only: pydantic's own text echoes the input, which may be a key.
            details = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'config'}: {error['msg']}"
                for error in exc.errors(include_input=False)[:5]
            )
            raise ConfigurationError(
                f"invalid configuration for provider {self.name!r}: {details}"
            ) from None
        self._api_key = self._resolve_api_key()
        if self._api_key is not None and not _header_safe(self._api_key):
            # Never echo the key: it is a secret even when malformed.
            raise ConfigurationError(
                f"provider {self.name!r}: the API key must be printable ASCII (look for a stray "
                "newline, space or non-ASCII character)"
            )
        for header, value in self.config.headers.items():
            if not (_header_safe(header) and _header_safe(value)):
                raise ConfigurationError(
                    f"invalid configuration for provider {self.name!r}: headers: names and values "
                    f"must be printable ASCII (see header {header.encode('ascii', 'replace')!r})"
                )
        self.base_url = self._resolve_base_url()
        self._transport = transport
        self._sync_transport = sync_transport
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._async_clients = weakref.WeakKeyDictionary()
        self._sync_client: httpx.Client | None = None

    # ------------------------------------------------------------------ configuration
    def _resolve_api_key(self) -> str | None:
        key = self.config.api_key.get_secret_value() if self.config.api_key else None
        for var in self.api_key_env:
            key = key or os.environ.get(var) or None
        if self.requires_api_key and not key:
            names = " or ".join(self.api_key_env) or "api_key"
            raise ConfigurationError(
                f"provider {self.name!r} needs an API key: pass api_key=... in its config or set {names}"
            )
        return key

    def _resolve_base_url(self) -> str:
        url = self.config.base_url
        for var in self.base_url_env:
            url = url or os.environ.get(var) or None
        url = url or self.default_base_url
        if not url:
            raise ConfigurationError(f"provider {self.name!r} needs base_url=... in its config")
        if not url.startswith(("http://", "https://")):
            url = "http://" + url
        return url.rstrip("/")

    @property
    def api_key(self) -> SecretStr | None:
        """The resolved API key, wrapped so it never prints."""
        return SecretStr(self._api_key) if self._api_key else None

    @property
    def models(self) -> list[str]:
        """The models this instance serves (from its config)."""
        return list(self.config.models)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} base_url={self.base_url!r} models={self.models!r}>"

    def redact(self, text: str) -> str:
        """``text`` with this provider's API key (and any key-shaped string) removed."""
        return redact_text(text, [self._api_key] if self._api_key else [])

    # ------------------------------------------------------------------ wire hooks
    def auth_headers(self) -> dict[str, str]:
        """Authentication headers; the default is a bearer token."""
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def request_headers(self) -> dict[str, str]:
        """All headers of a request: content type, auth, then the configured extra headers."""
        return {"Content-Type": "application/json", **self.auth_headers(), **self.config.headers}

    @abc.abstractmethod
    def build_request(self, request: ChatRequest, *, stream: bool) -> WireRequest:
        """Translate ``request`` into this provider's HTTP request."""

    @abc.abstractmethod
    def parse_response(self, data: dict[str, Any], request: ChatRequest) -> LLMResponse:
        """Translate a successful JSON body into an :class:`LLMResponse`."""

    @abc.abstractmethod
    def stream_handler(self, request: ChatRequest) -> StreamHandler:
        """A fresh handler for one streamed answer."""

    def body_error(self, data: Any) -> ProviderError | None:
        """An error carried by a 2xx JSON body (``{"error": ...}``), or ``None``."""
        if isinstance(data, dict) and data.get("error"):
            message, kind = error_details(data)
            return self.make_error(None, message, kind)
        return None

    def make_error(
        self,
        status: int | None,
        message: str,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ProviderError:
        """A typed, redacted error (override to map a provider's own error codes)."""
        return classify_error(self.name, status, self.redact(message), error_type, headers)

    def error_from_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        """The typed error of a non-2xx answer."""
        message, kind = error_details(body)
        return self.make_error(status, message, kind, headers)

    def redacted_raw(self, data: dict[str, Any]) -> dict[str, Any]:
        """The provider's JSON with secrets removed, for :attr:`LLMResponse.raw`."""
        result = redact_json(data, [self._api_key] if self._api_key else [])
        return result if isinstance(result, dict) else {}

    # ------------------------------------------------------------------ I/O helpers
    def _timeout(self, timeout: float | None) -> httpx.Timeout:
        total = timeout if timeout is not None else self.config.timeout
        return httpx.Timeout(total, connect=min(self.config.connect_timeout, total))

    def _deadline_error(self, timeout: float | None) -> ProviderTimeoutError:
        total = timeout if timeout is not None else self.config.timeout
        return ProviderTimeoutError(
            f"timed out: no complete answer within {total:g}s", provider=self.name
        )

    def _limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.config.max_connections,
            max_keepalive_connections=min(20, self.config.max_connections),
        )

    def _async_client(self) -> httpx.AsyncClient:
        # One pooled client per event loop: a client must not be shared across loops.
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(
                timeout=self._timeout(None),
                limits=self._limits(),
                transport=self._transport,
                verify=_ssl_context(),
            )
            self._async_clients[loop] = client
        return client

    def _client(self) -> httpx.Client:
        if self._sync_client is None or self._sync_client.is_closed:
            self._sync_client = httpx.Client(
                timeout=self._timeout(None),
                limits=self._limits(),
                transport=self._sync_transport,
                verify=_ssl_context(),
            )
        return self._sync_client

    @contextmanager
    def _transport_errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException as exc:
            raise ProviderTimeoutError(
                f"timed out ({type(exc).__name__})", provider=self.name
            ) from None
        except httpx.DecodingError as exc:  # e.g. "Content-Encoding: gzip" on bytes that are not
            raise ProviderResponseError(
                self.redact(f"undecodable response body: {exc}"), provider=self.name
            ) from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise ProviderConnectionError(
                self.redact(f"connection failed: {type(exc).__name__}: {exc}"), provider=self.name
            ) from None
        except NDJSONError as exc:
            raise ProviderResponseError(self.redact(str(exc)), provider=self.name) from None

    def _decode_json(self, status: int, content: bytes) -> dict[str, Any]:
        try:
            data = json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ProviderResponseError(
                self.redact(f"malformed JSON body: {content[:200]!r}"),
                provider=self.name,
                status_code=status,
            ) from None
        error = self.body_error(data)
        if error is not None:
            raise error
        if not isinstance(data, dict):
            raise ProviderResponseError(
                "the response body is not a JSON object", provider=self.name
            )
        return data

    def _finish(self, data: dict[str, Any], request: ChatRequest, started: float) -> LLMResponse:
        try:
            response = self.parse_response(data, request)
        except ProviderError:
            raise
        except _SHAPE_ERRORS as exc:
            raise ProviderResponseError(
                self.redact(f"unexpected response shape: {type(exc).__name__}: {exc}"),
                provider=self.name,
            ) from None
        _check_usage(response.usage, self.name)
        response.latency_ms = (time.perf_counter() - started) * 1000.0
        return response

    def _decoder(self) -> SSEDecoder | NDJSONDecoder:
        return SSEDecoder() if self.stream_format == "sse" else NDJSONDecoder()

    @staticmethod
    def _handle_all(
        handler: StreamHandler, events: Iterable[SSEEvent | dict[str, Any]]
    ) -> list[StreamChunk]:
        chunks: list[StreamChunk] = []
        for event in events:
            try:
                chunks.extend(handler.handle(event))
            except ProviderError:
                raise
            except _SHAPE_ERRORS as exc:
                # A well-formed JSON event of the wrong shape: typed, like a bad JSON answer.
                provider = handler.provider
                raise ProviderResponseError(
                    provider.redact(f"unexpected stream event shape: {type(exc).__name__}: {exc}"),
                    provider=provider.name,
                ) from None
        return chunks

    def _check_stream_response(self, response: httpx.Response, content: bytes | None) -> None:
        """Raise for a non-2xx answer, or for a JSON body where an event stream was expected."""
        if response.status_code >= 400:
            raise self.error_from_response(response.status_code, response.headers, content or b"")
        ctype = response.headers.get("content-type", "")
        if (
            content is not None
            and ctype.startswith("application/json")
            and self.stream_format == "sse"
        ):
            self._decode_json(response.status_code, content)  # raises for an error body
            raise ProviderResponseError(
                "expected an event stream, got a JSON body",
                provider=self.name,
                status_code=response.status_code,
            )

    @staticmethod
    def _needs_body(response: httpx.Response, stream_format: str) -> bool:
        ctype = response.headers.get("content-type", "")
        return response.status_code >= 400 or (
            stream_format == "sse" and ctype.startswith("application/json")
        )

    # ------------------------------------------------------------------ public I/O
    async def acomplete(self, request: ChatRequest, *, timeout: float | None = None) -> LLMResponse:
        """Send ``request`` and return the complete answer.

        ``timeout`` (default: the configured one) bounds the whole request, body included: a
        server that sends its answer slowly in pieces is cut off with :class:`ProviderTimeoutError`.
        """
        wire = self.build_request(request, stream=False)
        started = time.perf_counter()
        limits = self._timeout(timeout)
        with self._transport_errors():
            try:
                async with asyncio.timeout(limits.read):
                    response = await self._async_client().request(
                        wire.method,
                        wire.url,
                        json=wire.body,
                        headers=wire.headers,
                        params=wire.params or None,
                        timeout=limits,
                    )
            except TimeoutError:  # our deadline (httpx's own timeouts are not TimeoutError)
                raise self._deadline_error(timeout) from None
        if response.status_code >= 400:
            raise self.error_from_response(response.status_code, response.headers, response.content)
        return self._finish(
            self._decode_json(response.status_code, response.content), request, started
        )

    def complete(self, request: ChatRequest, *, timeout: float | None = None) -> LLMResponse:
        """Blocking twin of :meth:`acomplete`.

        The whole-request deadline is checked as each piece of the body arrives; a read that
        stalls is cut off by the per-read timeout (the same number), so the call ends at most one
        read timeout past the deadline.
        """
        wire = self.build_request(request, stream=False)
        started = time.perf_counter()
        limits = self._timeout(timeout)
        deadline = time.monotonic() + (limits.read or 0.0)
        with (
            self._transport_errors(),
            self._client().stream(
                wire.method,
                wire.url,
                json=wire.body,
                headers=wire.headers,
                params=wire.params or None,
                timeout=limits,
            ) as response,
        ):
            pieces: list[bytes] = []
            for piece in response.iter_bytes():
                pieces.append(piece)
                if time.monotonic() > deadline:
                    raise self._deadline_error(timeout)
            content = b"".join(pieces)
        if response.status_code >= 400:
            raise self.error_from_response(response.status_code, response.headers, content)
        return self._finish(self._decode_json(response.status_code, content), request, started)

    async def astream(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> AsyncIterator[StreamChunk]:
        """Stream the answer; the last chunk has ``is_final=True`` with usage and tool calls."""
        wire = self.build_request(request, stream=True)
        handler = self.stream_handler(request)
        decoder = self._decoder()
        started = time.perf_counter()
        with self._transport_errors():
            async with self._async_client().stream(
                wire.method,
                wire.url,
                json=wire.body,
                headers=wire.headers,
                params=wire.params or None,
                timeout=self._timeout(timeout),
            ) as response:
                body = (
                    await response.aread()
                    if self._needs_body(response, self.stream_format)
                    else None
                )
                self._check_stream_response(response, body)
                async for raw in response.aiter_bytes():
                    for chunk in self._handle_all(handler, decoder.feed(raw)):
                        yield chunk
                for chunk in self._handle_all(handler, decoder.flush()):
                    yield chunk
        yield handler.final_chunk((time.perf_counter() - started) * 1000.0)

    def stream(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> Iterator[StreamChunk]:
        """Blocking twin of :meth:`astream`."""
        wire = self.build_request(request, stream=True)
        handler = self.stream_handler(request)
        decoder = self._decoder()
        started = time.perf_counter()
        with (
            self._transport_errors(),
            self._client().stream(
                wire.method,
                wire.url,
                json=wire.body,
                headers=wire.headers,
                params=wire.params or None,
                timeout=self._timeout(timeout),
            ) as response,
        ):
            body = response.read() if self._needs_body(response, self.stream_format) else None
            self._check_stream_response(response, body)
            for raw in response.iter_bytes():
                yield from self._handle_all(handler, decoder.feed(raw))
            yield from self._handle_all(handler, decoder.flush())
        yield handler.final_chunk((time.perf_counter() - started) * 1000.0)

    # ------------------------------------------------------------------ lifecycle
    async def aclose(self) -> None:
        """Close every pooled connection (async and sync)."""
        clients = list(self._async_clients.values())
        self._async_clients.clear()
        for client in clients:
            with suppress(RuntimeError):  # created on another, already closed event loop
                await client.aclose()
        self.close()

    def close(self) -> None:
        """Close the sync connection pool."""
        if self._sync_client is not None:
            self._sync_client.close()
            self._sync_client = None
