"""LLMRouter edge cases against loopback servers: half-open probes that end without a verdict,
deadlines that pass in a queue, answers without usage, candidates that refuse a request, and rate
limits under retries and priorities."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import pytest

from llm_cache_router_integrations import (
    ChatRequest,
    ConfigurationError,
    InvalidRequestError,
    LLMRouter,
    ProviderTimeoutError,
    RateLimitError,
    UnsupportedInputError,
)
from llm_cache_router_integrations.cost.tokens import count_tokens
from llm_cache_router_integrations.providers import OpenAICompatibleProvider
from llm_cache_router_integrations.routing import CircuitState, Deployment, RateLimiter
from llm_cache_router_integrations.testing import JSONReply, StreamReply
from llm_cache_router_integrations.testing.anthropic_server import AnthropicServer
from llm_cache_router_integrations.testing.ollama_server import OllamaServer
from llm_cache_router_integrations.testing.openai_server import OpenAIServer
from llm_cache_router_integrations.testing.server import sse

from .conftest import KEY, provider

BOOM = JSONReply({"error": {"message": "boom", "type": "server_error"}}, status=500)
SLOW_BODY = {
    "id": "x",
    "object": "chat.completion",
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "slow ok"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}
AUDIO = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "transcribe this"},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        ],
    }
]


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    started = OpenAIServer()
    started.start()
    yield started
    started.stop()


@pytest.fixture
def anthropic() -> Iterator[AnthropicServer]:
    started = AnthropicServer()
    started.start()
    yield started
    started.stop()


async def half_open(server: OpenAIServer, **kwargs: Any) -> tuple[LLMRouter, Deployment]:
    """A router whose only deployment failed once and is now half-open (one probe allowed)."""
    router = LLMRouter(
        {"openai": provider(server, "gpt-4o-mini")},
        retry={"max_retries": 0},
        breaker={"failure_threshold": 1, "recovery_timeout": 0.2},
        **kwargs,
    )
    server.push(BOOM)
    with pytest.raises(Exception, match="boom"):
        await router.complete("fail once", cache_control="no-store")
    deployment = router.deployments["openai/gpt-4o-mini"]
    await asyncio.sleep(0.25)
    assert deployment.breaker.state is CircuitState.HALF_OPEN
    return router, deployment


async def assert_recovers(router: LLMRouter, deployment: Deployment) -> None:
    """The probe slot is free: the next call probes the (healthy) server and closes the circuit."""
    response = await router.complete("are you back?", cache_control="no-store")
    assert response.content
    assert deployment.breaker.state is CircuitState.CLOSED


# -- a half-open probe that ends without a verdict frees its slot --------------------------------


@pytest.mark.parametrize("how", ["aclose", "raise in the loop body"])
async def test_abandoned_probe_stream_frees_the_probe(server: OpenAIServer, how: str) -> None:
    router, deployment = await half_open(server)
    stream = router.stream("tell me a long story please", max_tokens=50)
    assert isinstance(stream, AsyncGenerator)
    if how == "aclose":
        async for _ in stream:
            break
        await stream.aclose()
    else:
        with pytest.raises(RuntimeError):
            async for _ in stream:
                raise RuntimeError("the caller's own bug")
        del stream
        await asyncio.sleep(0.05)  # the dropped generator is closed by the loop's finalizer
    # Abandoned: neither a success (still half-open) nor a failure (not re-opened).
    assert deployment.breaker.state is CircuitState.HALF_OPEN
    assert deployment.gate.active == 0
    await assert_recovers(router, deployment)
    await router.aclose()


async def test_cancelled_probe_call_frees_the_probe(server: OpenAIServer) -> None:
    router, deployment = await half_open(server)
    server.push(JSONReply({"choices": []}, delay=1.0))  # a slow probe the caller gives up on
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(router.complete("probe", cache_control="no-store"), 0.2)
    assert deployment.breaker.state is CircuitState.HALF_OPEN
    assert deployment.stats.snapshot()["failures"] == 1  # only the first, real failure
    await asyncio.sleep(0.9)  # let the server finish the abandoned reply
    await assert_recovers(router, deployment)
    await router.aclose()


async def test_probe_with_a_request_error_frees_the_probe(anthropic: AnthropicServer) -> None:
    router = LLMRouter(
        {"anthropic": {"api_key": KEY, "base_url": anthropic.base_url, "models": ["claude-x"]}},
        retry={"max_retries": 0},
        breaker={"failure_threshold": 1, "recovery_timeout": 0.2},
    )
    anthropic.push(BOOM)
    with pytest.raises(Exception, match="boom"):
        await router.complete("fail once")
    deployment = router.deployments["anthropic/claude-x"]
    await asyncio.sleep(0.25)
    bad_image = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}],
        }
    ]
    with pytest.raises(InvalidRequestError, match="data: URI"):
        await router.complete(bad_image)
    assert deployment.breaker.state is CircuitState.HALF_OPEN
    await assert_recovers(router, deployment)
    await router.aclose()


# -- the call's timeout also bounds the wait for a queue slot -----------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_timeout_ends_the_wait_in_the_queue(server: OpenAIServer, stream: bool) -> None:
    router = LLMRouter(
        {"openai": provider(server, "gpt-4o-mini")},
        deployments={"openai/gpt-4o-mini": {"max_concurrency": 1}},
        breaker={"failure_threshold": 1, "recovery_timeout": 60},
        budget={"daily_usd": 5.0},
    )
    server.push(JSONReply(SLOW_BODY, delay=1.0))  # slow but healthy
    first = asyncio.create_task(router.complete("first", cache_control="no-store"))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match="within the call's timeout"):
        if stream:
            async for _ in router.stream("second", timeout=0.3):
                pass
        else:
            await router.complete("second", timeout=0.3)
    waited = time.monotonic() - started
    assert 0.25 <= waited < 0.7, waited
    assert (await first).content
    deployment = router.deployments["openai/gpt-4o-mini"]
    assert deployment.breaker.state is CircuitState.CLOSED  # a queued call is no health failure
    assert deployment.stats.snapshot()["failures"] == 0
    assert deployment.gate.active == 0 and deployment.gate.queued == 0
    assert len(server.requests) == 1  # the timed-out call never reached the server
    assert (await router.complete("third", cache_control="no-store")).content
    await router.aclose()


# -- an answer without usage is charged an estimate, not $0 -------------------------------------


def no_usage_frames(text: str) -> list[bytes]:
    base = {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o"}
    frames = [sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})]
    for i in range(0, len(text), 20):
        frames.append(
            sse({**base, "choices": [{"index": 0, "delta": {"content": text[i : i + 20]}}]})
        )
    frames.append(sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    frames.append(b"data: [DONE]\n\n")
    return frames


async def collect(chunks: AsyncIterator[Any]) -> Any:
    final = None
    async for chunk in chunks:
        if chunk.is_final:
            final = chunk
    return final


@pytest.mark.parametrize("stream", [False, True])
async def test_answer_without_usage_is_estimated_and_charged(
    server: OpenAIServer, stream: bool
) -> None:
    router = LLMRouter(
        {"vllm": provider(server, "gpt-4o", kind="openai-compatible")},
        budget={"daily_usd": 10.0},
        retry={"max_retries": 0},
    )
    text = "word " * 500
    if stream:
        server.push(StreamReply(no_usage_frames(text)))
        answer = await collect(router.stream("write 500 words", "vllm/gpt-4o"))
    else:
        body = {
            "id": "x",
            "object": "chat.completion",
            "model": "gpt-4o",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
        }
        server.push(JSONReply(body))
        answer = await router.complete("write 500 words", "vllm/gpt-4o")
    price = router.deployments["vllm/gpt-4o"].price
    assert answer.usage.output_tokens == count_tokens(text, "gpt-4o")
    assert answer.usage.input_tokens > 0
    assert answer.usage.total_tokens == answer.usage.input_tokens + answer.usage.output_tokens
    assert answer.cost_usd == pytest.approx(price.cost(answer.usage)) and answer.cost_usd > 0.004
    assert (await router.budget.spent())["daily"] == pytest.approx(answer.cost_usd)
    assert router.stats()["total_cost_usd"] == pytest.approx(answer.cost_usd)
    await router.aclose()


async def test_reported_usage_is_kept(server: OpenAIServer) -> None:
    router = LLMRouter({"openai": provider(server, "gpt-4o")})
    response = await router.complete("hello there")
    reported = server.last_answer
    assert response.usage.input_tokens == reported.input_tokens
    assert response.usage.output_tokens == reported.output_tokens
    await router.aclose()


# -- a candidate that cannot take the request is skipped ----------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_refusing_candidate_is_skipped(
    server: OpenAIServer, anthropic: AnthropicServer, stream: bool
) -> None:
    router = LLMRouter(
        {
            "anthropic": {"api_key": KEY, "base_url": anthropic.base_url, "models": ["claude-x"]},
            "openai": provider(server, "gpt-4o-mini"),
        },
        fallback_chain=["anthropic/claude-x", "openai/gpt-4o-mini"],
        breaker={"failure_threshold": 1, "recovery_timeout": 0.2},
        retry={"max_retries": 0},
    )
    # Make Anthropic half-open first: the refused call must not keep its probe slot.
    anthropic.push(BOOM)
    await router.complete("fail over once")
    claude = router.deployments["anthropic/claude-x"]
    await asyncio.sleep(0.25)
    assert claude.breaker.state is CircuitState.HALF_OPEN
    if stream:
        answer = await collect(router.stream(AUDIO))
    else:
        answer = await router.complete(AUDIO)
    assert answer.provider_used == "openai"
    assert answer.route == ["openai/gpt-4o-mini"]
    assert len(anthropic.requests) == 1  # only the failed call: the audio call sent nothing
    assert claude.stats.snapshot()["failures"] == 1  # the refusal is no health failure
    assert claude.breaker.state is CircuitState.HALF_OPEN
    await assert_recovers_with(router, claude, "anthropic/claude-x")
    await router.aclose()


async def assert_recovers_with(router: LLMRouter, deployment: Deployment, model: str) -> None:
    response = await router.complete("a plain text question", model)
    assert response.provider_used == deployment.provider.name
    assert deployment.breaker.state is CircuitState.CLOSED


async def test_no_candidate_can_take_the_request(anthropic: AnthropicServer) -> None:
    ollama = OllamaServer(models={"llama3.2"})
    ollama.start()
    router = LLMRouter(
        {
            "anthropic": {"api_key": KEY, "base_url": anthropic.base_url, "models": ["claude-x"]},
            "ollama": {"base_url": ollama.base_url, "models": ["llama3.2"]},
        },
        fallback_chain=["anthropic/claude-x", "ollama/llama3.2"],
    )
    with pytest.raises(UnsupportedInputError) as raised:
        await router.complete(AUDIO)
    message = str(raised.value)
    assert "anthropic/claude-x: provider 'anthropic' does not accept audio input" in message
    assert "ollama/llama3.2:" in message and "Ollama accepts text and images only" in message
    assert anthropic.requests == [] and ollama.requests == []
    assert router.stats()["failures"] == 1
    await router.aclose()
    ollama.stop()


async def test_single_refusing_candidate_keeps_the_providers_words(
    anthropic: AnthropicServer,
) -> None:
    router = LLMRouter(
        {"anthropic": {"api_key": KEY, "base_url": anthropic.base_url, "models": ["claude-x"]}}
    )
    with pytest.raises(
        UnsupportedInputError, match=r"^provider 'anthropic' does not accept audio input"
    ):
        await router.complete(AUDIO)
    await router.aclose()


class _Refusing(OpenAICompatibleProvider):
    """An OpenAI-compatible provider that refuses every request while converting it.

    The router once told the two kinds of refusal apart by matching "data: URI must" in the
    message; each kind here says the opposite of what that matching would conclude.
    """

    error: type[InvalidRequestError] = InvalidRequestError
    reason = "messages[0].content: this field is wrong for every provider"

    def build_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        raise self.error(f"provider {self.name!r}: {self.reason}")


class _RefusingUnsupported(_Refusing):
    error = UnsupportedInputError
    reason = "a data: URI must be an https URL for this provider"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("unsupported", [False, True])
async def test_refusal_kind_is_told_by_type_not_message(
    server: OpenAIServer, unsupported: bool, stream: bool
) -> None:
    """UnsupportedInputError skips the candidate; a plain InvalidRequestError is raised at once."""
    kind = _RefusingUnsupported if unsupported else _Refusing
    first = kind({"base_url": server.base_url, "models": ["m"]}, name="picky")
    router = LLMRouter(
        {"picky": first, "openai": provider(server, "gpt-4o-mini")},
        fallback_chain=["picky/m", "openai/gpt-4o-mini"],
    )
    try:
        if unsupported:
            if stream:
                answer = await collect(router.stream("hello there"))
            else:
                answer = await router.complete("hello there")
            assert answer.route == ["openai/gpt-4o-mini"]
            assert len(server.requests) == 1
        else:
            with pytest.raises(InvalidRequestError, match="picky") as raised:
                if stream:
                    await collect(router.stream("hello there"))
                else:
                    await router.complete("hello there")
            assert not isinstance(raised.value, UnsupportedInputError)
            assert server.requests == []  # not passed on to the next candidate
    finally:
        await router.aclose()


async def test_request_wrong_for_every_provider_is_not_passed_on(
    server: OpenAIServer, anthropic: AnthropicServer
) -> None:
    """A malformed data: URI is the caller's mistake: it is raised, not sent to the next one."""
    router = LLMRouter(
        {
            "anthropic": {"api_key": KEY, "base_url": anthropic.base_url, "models": ["claude-x"]},
            "openai": provider(server, "gpt-4o-mini"),
        },
        fallback_chain=["anthropic/claude-x", "openai/gpt-4o-mini"],
    )
    bad_image = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}],
        }
    ]
    with pytest.raises(InvalidRequestError, match="data: URI must"):
        await router.complete(bad_image)
    assert server.requests == [] and anthropic.requests == []
    await router.aclose()


# -- rate limits: every attempt takes a request, waiters are served by priority ------------------

OVERLOADED = JSONReply({"error": {"message": "overloaded", "type": "server_error"}}, status=503)
RETRIES = {"max_retries": 4, "base_delay": 0.001, "max_delay": 0.01}


async def answer(router: LLMRouter, prompt: str, stream: bool, **kwargs: Any) -> None:
    if stream:
        async for _ in router.stream(prompt, **kwargs):
            pass
    else:
        await router.complete(prompt, **kwargs)


@pytest.mark.parametrize("stream", [False, True])
async def test_retries_take_requests_from_the_rpm_limit(server: OpenAIServer, stream: bool) -> None:
    router = LLMRouter(
        {"openai": provider(server, "gpt-4o-mini")},
        retry=RETRIES,
        breaker={"failure_threshold": 100},
        deployments={"openai/gpt-4o-mini": {"rpm": 2}},
    )
    server.push(*[OVERLOADED] * 8)
    failures = []
    for i in range(4):
        with pytest.raises(Exception) as caught:
            await answer(router, f"q{i}", stream, max_tokens=10)
        failures.append(type(caught.value))
    assert len(server.requests) == 2  # rpm=2: the first call's attempt and one retry
    assert failures[1:] == [RateLimitError] * 3
    await router.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_retries_wait_for_the_limit(server: OpenAIServer, stream: bool) -> None:
    router = LLMRouter(
        {"openai": provider(server, "gpt-4o-mini")},
        retry=RETRIES,
        deployments={"openai/gpt-4o-mini": {"window": (1, 0.3), "on_limit": "wait"}},
    )
    server.push(OVERLOADED, OVERLOADED)
    started = time.monotonic()
    await answer(router, "retry me", stream, max_tokens=10)
    assert len(server.requests) == 3
    assert time.monotonic() - started >= 0.55  # one request per 0.3 s window
    await router.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_rate_limit_waiters_are_served_by_priority(
    server: OpenAIServer, stream: bool
) -> None:
    router = LLMRouter(
        {"openai": provider(server, "gpt-4o-mini")},
        deployments={"openai/gpt-4o-mini": {"window": (1, 0.3), "on_limit": "wait"}},
    )
    await router.complete("fill the window", max_tokens=5)
    queue = router.deployments["openai/gpt-4o-mini"].limit_queue
    tasks = []
    for i in range(3):
        tasks.append(asyncio.create_task(answer(router, f"low{i}", stream, priority="low")))
        for _ in range(2000):  # until it waits in the queue (arrival order is the test's)
            if queue.queued > i:
                break
            await asyncio.sleep(0.001)
    tasks.append(asyncio.create_task(answer(router, "critical", stream, priority="critical")))
    await asyncio.gather(*tasks)
    sent = [r.body["messages"][-1]["content"] for r in server.requests[1:]]
    assert sent == ["critical", "low0", "low1", "low2"]
    assert queue.queued == 0
    await router.aclose()


async def test_limit_wait_gives_up_at_max_wait_in_turn(server: OpenAIServer) -> None:
    router = LLMRouter(
        {"openai": provider(server, "gpt-4o-mini")},
        deployments={
            "openai/gpt-4o-mini": {"window": (1, 5.0), "on_limit": "wait", "max_wait": 0.2}
        },
    )
    await router.complete("fill the window", max_tokens=5)
    queue = router.deployments["openai/gpt-4o-mini"].limit_queue
    started = time.monotonic()
    results = await asyncio.gather(
        *(router.complete(f"w{i}", max_tokens=5) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RateLimitError) for r in results)
    assert time.monotonic() - started < 1.0
    assert queue.queued == 0 and len(server.requests) == 1
    await router.aclose()


@pytest.mark.parametrize("window", [(0, 60.0), (5, 0.0), (-1, 1.0)])
def test_empty_rate_window_is_a_configuration_error(
    server: OpenAIServer, window: tuple[int, float]
) -> None:
    with pytest.raises(ConfigurationError, match="window"):
        LLMRouter(
            {"openai": provider(server, "gpt-4o-mini")},
            deployments={"openai/gpt-4o-mini": {"window": window}},
        )
    with pytest.raises(ConfigurationError, match="window"):
        RateLimiter(window=window)
