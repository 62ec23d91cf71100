"""The typed errors of the library.

Every error raised to a caller derives from :class:`LLMRouterError`. Provider failures are
:class:`ProviderError` subclasses that say whether a retry can help (``retryable``) and, for rate
limits, how long the provider asked to wait (``retry_after``). Messages never contain API keys:
provider bodies are redacted before they reach an exception.
"""

from __future__ import annotations

__all__ = [
    "AllCandidatesFailedError",
    "AllCandidatesSaturatedError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "BudgetUnavailableError",
    "ConfigurationError",
    "ContentPolicyError",
    "ContextLengthExceededError",
    "InvalidRequestError",
    "LLMRouterError",
    "ModelNotFoundError",
    "NoDeploymentAvailableError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "RateLimitError",
    "StreamInterruptedError",
    "SyncCallDeadlockError",
    "UnsupportedInputError",
]


class LLMRouterError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigurationError(LLMRouterError, ValueError):
    """The router, a provider or a cache was configured wrongly; the message names the fix."""


class InvalidRequestError(LLMRouterError, ValueError):
    """The request itself is malformed (caught before any HTTP call); the message names the field."""


class UnsupportedInputError(InvalidRequestError):
    """The request is valid but this provider cannot carry part of it (e.g. audio for Anthropic).

    Raised while a provider converts the request, before any HTTP call; the message names the
    provider and the field. The router skips such a candidate and tries the next one (a plain
    :class:`InvalidRequestError`, wrong for every provider, is raised at once instead). When no
    candidate can carry the request, the router raises this error with each one's reason.
    """


class ProviderError(LLMRouterError):
    """A provider call failed.

    Attributes:
        provider: the configured provider name (e.g. ``"openai"`` or ``"openai-eu"``).
        status_code: the HTTP status, or ``None`` for transport failures and in-stream errors.
        retryable: whether retrying the same deployment (after ``retry_after``) can succeed.
        retry_after: seconds the provider asked to wait, parsed from ``Retry-After`` headers.
        error_type: the provider's own error type or code, when it sent one.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status_code: int | None = None,
        retry_after: float | None = None,
        error_type: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status_code = status_code
        self.retry_after = retry_after
        self.error_type = error_type
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        where = f"[{self.provider}] " if self.provider else ""
        status = f"HTTP {self.status_code}: " if self.status_code is not None else ""
        return f"{where}{status}{self.message}"

    def __reduce__(self) -> tuple[object, ...]:  # keep errors picklable across processes
        return (_rebuild_error, (type(self), self.message, self.__dict__))


def _rebuild_error(
    cls: type[ProviderError], message: str, state: dict[str, object]
) -> ProviderError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class RateLimitError(ProviderError):
    """HTTP 429 or a provider's rate-limit code; honour ``retry_after`` when set."""

    retryable = True


class ProviderUnavailableError(ProviderError):
    """5xx, an overloaded provider or an error event inside a stream; retryable."""

    retryable = True


class ProviderTimeoutError(ProviderError):
    """The provider did not answer within the timeout; retryable."""

    retryable = True


class ProviderConnectionError(ProviderError):
    """The connection failed or was reset; retryable."""

    retryable = True


class ProviderResponseError(ProviderError):
    """The provider answered 2xx with a body that cannot be understood; retryable."""

    retryable = True


class AuthenticationError(ProviderError):
    """HTTP 401/403: the API key is missing, wrong or lacks permission. Not retryable."""


class ModelNotFoundError(ProviderError):
    """HTTP 404: the model or endpoint does not exist for this provider. Not retryable."""


class BadRequestError(ProviderError):
    """HTTP 400/422: the provider rejected the request. Not retryable."""


class ContextLengthExceededError(BadRequestError):
    """The prompt plus ``max_tokens`` exceed the model's context window.

    Not retryable on the same model; a router may fall back to a model with a larger window.
    """


class ContentPolicyError(BadRequestError):
    """The provider refused the input or output under its content policy. Not retryable."""


class BudgetExceededError(LLMRouterError):
    """A call was refused before reaching any provider because it could exceed a budget.

    Attributes:
        window: ``"daily"`` or ``"monthly"``.
        limit_usd: the budget of that window.
        spent_usd: spent plus reserved in that window when the call was refused.
        requested_usd: the worst-case cost the call would have reserved.
    """

    def __init__(
        self, window: str, limit_usd: float, spent_usd: float, requested_usd: float
    ) -> None:
        super().__init__(
            f"{window} budget exceeded: ${spent_usd:.6f} spent or reserved of ${limit_usd:.6f}, "
            f"this call could cost up to ${requested_usd:.6f}; raise the budget, lower max_tokens "
            "or wait for the next window"
        )
        self.window = window
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.requested_usd = requested_usd


class BudgetUnavailableError(LLMRouterError):
    """The budget store (e.g. Redis) could not be reached, so no call could be admitted safely.

    Budgets fail closed: spending without a working budget could overspend.
    """


class AllCandidatesSaturatedError(LLMRouterError):
    """Every candidate deployment's queue was full (backpressure); retry later or raise limits."""

    def __init__(self, model: str, candidates: list[str]) -> None:
        super().__init__(
            f"all candidates for {model!r} are saturated ({', '.join(candidates)}): their "
            "concurrency queues are full; retry later or raise max_concurrency/max_queue_depth"
        )
        self.model = model
        self.candidates = candidates


class NoDeploymentAvailableError(LLMRouterError):
    """No configured deployment serves the requested model, or every one is circuit-open/limited."""


class AllCandidatesFailedError(ProviderError):
    """Every candidate failed; ``errors`` holds each one's typed error in the order tried."""

    def __init__(self, model: str, errors: list[ProviderError]) -> None:
        tried = "; ".join(f"{e.provider or '?'}: {type(e).__name__}: {e.message}" for e in errors)
        last = errors[-1] if errors else None
        super().__init__(
            f"all candidates for {model!r} failed: {tried}",
            provider=last.provider if last else "",
            status_code=last.status_code if last else None,
            retry_after=last.retry_after if last else None,
            retryable=any(e.retryable for e in errors),
        )
        self.model = model
        self.errors = errors


class StreamInterruptedError(ProviderError):
    """A stream failed after its first chunk was delivered; ``partial_text`` holds what arrived.

    The router cannot fall back at that point without repeating text the caller already has.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        partial_text: str,
        provider: str = "",
        cause: ProviderError | None = None,
    ) -> None:
        super().__init__(
            message, provider=provider, status_code=cause.status_code if cause else None
        )
        self.partial_text = partial_text
        self.cause = cause


class SyncCallDeadlockError(LLMRouterError, RuntimeError):
    """A sync twin blocked an event loop whose own router calls it was waiting on.

    Raised when a blocking call (``complete_sync``, ``stream_sync``, ...) is made on a thread
    running an event loop, router calls are in flight as tasks on that loop, and the blocking call
    has not finished within :data:`~._sync.FROZEN_LOOP_TIMEOUT` seconds (3). Use the async method
    (``await router.complete(...)``) inside a running event loop instead.
    """
