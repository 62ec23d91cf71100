"""Faults: every provider fault x every routing strategy x complete/stream, against 127.0.0.1.

Each case runs a router whose first candidate is a fault-injecting loopback server and checks, with
a healthy fallback and without one, that the caller gets the correct answer (through a retry or a
fallback) or exactly one typed error; that no untyped exception escapes; that nothing partial or
failed is cached (the same request afterwards goes to the network, then hits the cache); that the
budget is charged at most once (only the answering attempt, or the text a broken stream delivered);
and that the router's and deployments' figures match the traffic the servers recorded. The circuit
breaker tests open a breaker with each fault, check it skips the deployment, half-opens after a
short cooldown, re-opens on a failed probe and closes on a good one.

Everything is bounded: provider timeouts of 0.15 s where a server stalls, retries with
millisecond backoff, Retry-After of tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from llm_cache_router_integrations import (
    AllCandidatesFailedError,
    CacheConfig,
    LLMRouter,
    LLMRouterError,
    NoDeploymentAvailableError,
    Priority,
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    RoutingStrategy,
    StreamInterruptedError,
)
from llm_cache_router_integrations.cache import CacheEngine
from llm_cache_router_integrations.cache.embeddings import HashingEncoder
from llm_cache_router_integrations.cost.budget import to_nano
from llm_cache_router_integrations.cost.pricing import ModelPrice
from llm_cache_router_integrations.cost.tokens import count_message_tokens, count_tokens
from llm_cache_router_integrations.providers import BaseProvider, create_provider
from llm_cache_router_integrations.routing import CircuitState
from llm_cache_router_integrations.testing.anthropic_server import AnthropicServer
from llm_cache_router_integrations.testing.brain import Answer, Brain, Turn
from llm_cache_router_integrations.testing.faults import (
    FAULTS,
    Corruption,
    FaultInjection,
    FaultyOpenAIServer,
    refused_url,
)
from llm_cache_router_integrations.testing.gemini_server import GeminiServer
from llm_cache_router_integrations.testing.minimax_server import MiniMaxServer
from llm_cache_router_integrations.testing.ollama_server import OllamaServer
from llm_cache_router_integrations.testing.openai_server import OpenAIServer
from llm_cache_router_integrations.testing.qwen_server import QwenServer
from llm_cache_router_integrations.testing.server import LoopbackServer
from llm_cache_router_integrations.types import ChatRequest

pytestmark = pytest.mark.timeout(30)

KEY = "sk-test-faults-0123456789abcdef"
CHEAP, DEAR = "fault-cheap", "fault-dear"
FAULTY, HEALTHY = f"faulty/{CHEAP}", f"healthy/{DEAR}"
PRICES = {
    CHEAP: ModelPrice(input=1.0, output=2.0),  # the faulty deployment is the cheap one...
    DEAR: ModelPrice(input=3.0, output=6.0),  # ...so cheapest_first tries it first
}
RETRY = {"max_retries": 1, "base_delay": 0.001, "max_delay": 0.005, "max_retry_after": 1.0}
STALL_TIMEOUT = 0.15  # provider timeout where the server stalls (it stalls 0.6 s)
DRIP = 0.05  # seconds between the pieces of a drip that outlives the call's deadline
DEADLINE = 0.25  # the call's overall timeout in that scenario
STRATEGIES = list(RoutingStrategy)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A fault and what the faulty deployment turns it into.

    ``error``: the typed error of the faulty deployment (``stream_error`` when a stream differs);
    ``retried``: the router retries it on the same deployment; ``mid_stream``: in a stream it
    strikes after text was delivered (no fallback is possible then); ``recovers``: not a failure,
    the faulty server answers correctly; ``deadline``: the call's own deadline (``call_timeout``)
    runs out, so no fallback can help either.
    """

    name: str
    error: type[ProviderError] | None
    stream_error: type[ProviderError] | None = None
    retried: bool = True
    mid_stream: bool = False
    recovers: bool = False
    deadline: bool = False
    timeout: float = 2.0
    call_timeout: float | None = None
    modes: tuple[bool, ...] = (False, True)
    min_elapsed: float = 0.0
    max_elapsed: float | None = None

    def error_for(self, stream: bool) -> type[ProviderError]:
        error = self.stream_error if stream and self.stream_error else self.error
        assert error is not None
        return error


SCENARIOS = [
    Scenario("http-500", ProviderUnavailableError),
    Scenario("http-502", ProviderUnavailableError),
    Scenario("http-503", ProviderUnavailableError),
    Scenario("429-retry-after", RateLimitError, min_elapsed=0.05),
    Scenario("429-retry-after-ms", RateLimitError, min_elapsed=0.04),
    Scenario("429-no-retry-after", RateLimitError),
    Scenario("429-retry-after-over-cap", RateLimitError, retried=False, max_elapsed=1.0),
    Scenario(  # waiting 0.5 s would outlive the call's 0.25 s: fall back at once instead
        "429-retry-after-long", RateLimitError, retried=False, call_timeout=0.25, max_elapsed=0.45
    ),
    Scenario("connect-refused", ProviderConnectionError),
    Scenario("read-timeout", ProviderTimeoutError, timeout=STALL_TIMEOUT),
    Scenario("stream-stall", ProviderTimeoutError, timeout=STALL_TIMEOUT, modes=(True,)),
    Scenario("reset-before-headers", ProviderConnectionError),
    Scenario("reset-mid-body", ProviderConnectionError, mid_stream=True),
    Scenario(
        "truncated", ProviderConnectionError, stream_error=ProviderResponseError, mid_stream=True
    ),
    Scenario("malformed-json", ProviderResponseError),
    Scenario("wrong-shape", ProviderResponseError),
    Scenario("error-in-200", ProviderUnavailableError, mid_stream=True),
    Scenario("error-event-first", ProviderUnavailableError, modes=(True,)),
    Scenario("empty-choices", ProviderResponseError),
    Scenario("bad-content-encoding", ProviderResponseError),
    Scenario("slow-drip", None, recovers=True),
    Scenario(
        "slow-drip-past-deadline",
        ProviderTimeoutError,
        retried=False,
        mid_stream=True,
        deadline=True,
        call_timeout=DEADLINE,
    ),
]
BY_NAME = {s.name: s for s in SCENARIOS}
MATRIX = [
    pytest.param(
        s, strategy, stream, id=f"{s.name}-{strategy.value}-{'stream' if stream else 'complete'}"
    )
    for s in SCENARIOS
    for stream in s.modes
    for strategy in STRATEGIES
]
TALLY: Counter[str] = Counter()


# ---------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FaultyOpenAIServer, FaultyOpenAIServer]]:
    """The faulty and the healthy server, shared by the module (reset before every case)."""
    faulty, healthy = FaultyOpenAIServer().start(), FaultyOpenAIServer().start()
    yield faulty, healthy
    faulty.stop()
    healthy.stop()


def provider(name: str, url: str, model: str, timeout: float = 2.0) -> BaseProvider:
    """An OpenAI provider on ``url``. Its transport is httpx's own, without loading the CA bundle
    (~20 ms per client, and these URLs are plain HTTP on 127.0.0.1)."""
    config = {
        "type": "openai",
        "api_key": KEY,
        "base_url": url,
        "models": [model],
        "timeout": timeout,
        "connect_timeout": 1.0,
    }
    return create_provider(name, config, transport=httpx.AsyncHTTPTransport(verify=False))


def make_router(
    strategy: RoutingStrategy,
    faulty_url: str,
    healthy_url: str | None,
    *,
    timeout: float = 2.0,
    retry: dict[str, Any] | None = None,
    breaker: dict[str, Any] | None = None,
) -> tuple[LLMRouter, str | None]:
    """A router trying the faulty deployment first under ``strategy``; returns it and the model
    name to call. ``healthy_url=None`` builds it without a fallback."""
    providers = {"faulty": provider("faulty", faulty_url, CHEAP, timeout)}
    keys = [FAULTY]
    if healthy_url is not None:
        providers["healthy"] = provider("healthy", healthy_url, DEAR)
        keys.append(HEALTHY)
    routes: dict[str, Any] = {}
    model: str | None = None
    if strategy is RoutingStrategy.FALLBACK_CHAIN:
        routes["fallback_chain"] = keys
    elif strategy is RoutingStrategy.PRIORITY:
        routes["priority_routes"] = {Priority.NORMAL: {"targets": keys[:1], "fallbacks": keys[1:]}}
    else:  # cheapest (the faulty one is cheaper), fastest (unmeasured: in order), round robin
        routes["model_groups"] = {"chat": keys}
        model = "chat"
    router = LLMRouter(
        providers,
        strategy=strategy,
        cache=CacheEngine(CacheConfig(), encoder=HashingEncoder()),
        budget={"daily_usd": 5.0, "monthly_usd": 50.0},
        pricing={name: price.model_dump() for name, price in PRICES.items()},
        retry=retry or RETRY,
        breaker=breaker or {"failure_threshold": 50, "recovery_timeout": 30.0},
        **routes,
    )
    return router, model


@dataclass(slots=True)
class Outcome:
    text: str | None = None
    provider: str | None = None
    cost: float | None = None
    cache_hit: bool = False
    route: list[str] | None = None
    error: LLMRouterError | None = None
    untyped: BaseException | None = None
    received: str = ""
    elapsed: float = 0.0


async def ask(
    router: LLMRouter, model: str | None, prompt: str, stream: bool, timeout: float | None = None
) -> Outcome:
    """One call; catches what escapes and sorts it into typed and untyped."""
    outcome = Outcome()
    started = time.monotonic()
    try:
        if stream:
            async for chunk in router.stream(prompt, model, temperature=0, timeout=timeout):
                outcome.received += chunk.delta
                if chunk.is_final:
                    outcome.text = outcome.received
                    outcome.provider = chunk.provider_used
                    outcome.cost = chunk.cost_usd
                    outcome.cache_hit = chunk.cache_hit
                    outcome.route = chunk.route
        else:
            response = await router.complete(prompt, model, temperature=0, timeout=timeout)
            outcome.text = response.content
            outcome.provider = response.provider_used
            outcome.cost = response.cost_usd
            outcome.cache_hit = response.cache_hit
            outcome.route = response.route
    except LLMRouterError as exc:
        outcome.error = exc
    except Exception as exc:  # what must never happen: recorded, then failed on
        outcome.untyped = exc
    outcome.elapsed = time.monotonic() - started
    if outcome.untyped is not None:
        TALLY["untyped"] += 1
        raise AssertionError(
            f"untyped exception escaped: {type(outcome.untyped).__module__}."
            f"{type(outcome.untyped).__name__}: {outcome.untyped}"
        ) from outcome.untyped
    return outcome


def expected(prompt: str) -> Answer:
    """What every loopback server answers to ``prompt`` (they share the deterministic brain)."""
    return Brain().answer(turns=[Turn("user", prompt)])


def cost_of(model: str, answer: Answer) -> float:
    price = PRICES[model]
    return (answer.input_tokens * price.input + answer.output_tokens * price.output) / 1e6


def billed(usd: float) -> float:
    """What the budget holds after settling ``usd`` (integer nano-dollars, rounded up)."""
    return to_nano(usd) / 1e9


async def spent(router: LLMRouter) -> float:
    return (await router.budget.spent())["daily"]


async def cached_texts(router: LLMRouter) -> list[str | None]:
    assert router.cache is not None
    return [entry.response.content async for entry, _ in router.cache.backend.entries()]


def prepare(scenario: Scenario, server: FaultyOpenAIServer, stream: bool, count: int) -> None:
    """Script ``count`` occurrences of the scenario's fault on ``server``."""
    if scenario.name == "connect-refused":
        return
    if scenario.recovers:
        server.drip(count=count)
    elif scenario.deadline:
        server.drip(DRIP, count=count)
    else:
        server.push(*[FAULTS[scenario.name].reply(stream=stream, model=CHEAP)] * count)


# ---------------------------------------------------------------- the matrix
async def run_topology(
    scenario: Scenario,
    strategy: RoutingStrategy,
    stream: bool,
    faulty: FaultyOpenAIServer,
    healthy: FaultyOpenAIServer,
    with_fallback: bool,
) -> str:
    """One case; returns ``"answered"`` or ``"typed"`` after checking everything."""
    faulty.reset()
    healthy.reset()
    refused = scenario.name == "connect-refused"
    faulty_url = refused_url() if refused else faulty.base_url
    router, model = make_router(
        strategy,
        faulty_url,
        healthy.base_url if with_fallback else None,
        timeout=scenario.timeout,
    )
    attempts = 1 if scenario.recovers or (stream and scenario.mid_stream) else 2
    if not scenario.retried:
        attempts = 1
    prepare(scenario, faulty, stream, attempts)
    topology = "fallback" if with_fallback else "alone"
    prompt = f"fault {scenario.name} {strategy.value} {'stream' if stream else 'complete'} {topology}: what is the capital of France?"
    truth = expected(prompt)
    outcome = await ask(router, model, prompt, stream, scenario.call_timeout)
    TALLY["calls"] += 1
    stats = await router.astats()
    deps = stats["deployments"]
    where = f"{scenario.name}/{strategy.value}/{'stream' if stream else 'complete'}/{topology}"

    # ---- what the caller got
    if scenario.recovers:
        kind, answered_by = "answered", FAULTY
    elif scenario.deadline or (stream and scenario.mid_stream):  # no fallback can help
        kind, answered_by = "typed", None
    elif with_fallback:
        kind, answered_by = "answered", HEALTHY
    else:
        kind, answered_by = "typed", None
    if kind == "answered":
        assert outcome.error is None, f"{where}: expected an answer, got {outcome.error!r}"
        assert outcome.text == truth.text, where
        assert outcome.provider == answered_by.split("/")[0] and not outcome.cache_hit, where
        assert outcome.route is not None and outcome.route[-1] == answered_by, where
        assert outcome.cost == pytest.approx(cost_of(answered_by.split("/")[1], truth)), where
    else:
        error = outcome.error
        assert error is not None, f"{where}: expected a typed error, got {outcome.text!r}"
        assert outcome.text is None, where
        if stream and scenario.mid_stream:
            assert isinstance(error, StreamInterruptedError), f"{where}: {error!r}"
            assert isinstance(error.cause, scenario.error_for(stream)), f"{where}: {error.cause!r}"
            assert error.partial_text and error.partial_text == outcome.received, where
            assert truth.text.startswith(error.partial_text) or error.partial_text == (
                "Partial answer "
            ), where
        elif scenario.deadline and with_fallback:
            assert isinstance(error, AllCandidatesFailedError), f"{where}: {error!r}"
            assert isinstance(error.errors[0], ProviderTimeoutError), where
        else:
            assert type(error) is scenario.error_for(stream) or isinstance(
                error, scenario.error_for(stream)
            ), f"{where}: {error!r}"
            assert not isinstance(error, AllCandidatesFailedError), where
    assert outcome.elapsed >= scenario.min_elapsed, f"{where}: Retry-After not honoured"
    if scenario.max_elapsed is not None:
        assert outcome.elapsed < scenario.max_elapsed, f"{where}: waited {outcome.elapsed:.2f}s"

    # ---- traffic: the faulty server saw exactly the attempts; the healthy one only a fallback
    tried = deps[FAULTY]["requests"]
    assert tried == attempts, f"{where}: {tried} attempts on the faulty deployment"
    assert len(faulty.requests) == (0 if refused else attempts), where
    assert len(healthy.requests) == (1 if answered_by == HEALTHY else 0), where
    if with_fallback:  # no phantom failures on a deployment that was never called
        assert deps[HEALTHY]["requests"] == len(healthy.requests), f"{where}: {deps[HEALTHY]}"
        assert deps[HEALTHY]["failures"] == 0, f"{where}: {deps[HEALTHY]}"
    assert deps[FAULTY]["successes"] == (1 if answered_by == FAULTY else 0), where
    assert deps[FAULTY]["failures"] == attempts - deps[FAULTY]["successes"], where

    # ---- the cache holds only the correct, complete answer
    texts = await cached_texts(router)
    assert texts == ([truth.text] if kind == "answered" else []), f"{where}: cached {texts}"
    if kind == "typed" and texts:
        TALLY["cached_failures"] += 1

    # ---- billing: once, for the answering attempt (or the text a broken stream delivered)
    if kind == "answered":
        due = cost_of(answered_by.split("/")[1], truth)  # type: ignore[union-attr]
    elif isinstance(outcome.error, StreamInterruptedError):
        name = router.model_name(model)
        request = LLMRouter.build_request(prompt, name, temperature=0)
        due = PRICES[CHEAP].estimate(
            count_message_tokens(request.messages, name),
            count_tokens(outcome.error.partial_text, CHEAP),
        )
    else:
        due = 0.0
    assert await spent(router) == pytest.approx(billed(due), abs=1e-12), where
    # the stats count the same spend as the budget, the partial text of a broken stream included
    assert stats["total_cost_usd"] == pytest.approx(billed(due), abs=1e-9), where
    assert stats["requests"] == 1 and stats["cache_hits"] == 0, where
    assert (stats["successes"], stats["failures"]) == ((1, 0) if kind == "answered" else (0, 1)), (
        where
    )
    if outcome.error is not None:
        assert stats["failures_by_error"] == {type(outcome.error).__name__: 1}, where
    assert router.deployments[FAULTY].breaker.state is CircuitState.CLOSED, where
    first_spend = await spent(router)

    # ---- afterwards: a failure was not cached, so the same request goes to the network...
    faulty.reset()
    healthy.reset()
    if kind == "typed":
        again = await ask(router, model, prompt, stream)
        network = len(faulty.requests) + len(healthy.requests)
        if refused and not with_fallback:  # still nothing listening: typed again, still uncached
            assert isinstance(again.error, ProviderConnectionError), where
            assert await cached_texts(router) == [], where
            await router.aclose()
            return kind
        assert again.error is None and again.text == truth.text, f"{where}: {again.error!r}"
        assert network == 1 and not again.cache_hit, f"{where}: {network} requests"
        assert await cached_texts(router) == [truth.text], where
        answered_model = (again.route or [""])[-1].split("/")[-1]
        assert await spent(router) == pytest.approx(
            first_spend + billed(cost_of(answered_model, truth)), abs=1e-12
        ), where
    # ...and then (or at once after an answer) it is a hit: no network, no charge
    before = await spent(router)
    faulty.reset()
    healthy.reset()
    hit = await ask(router, model, prompt, stream)
    assert hit.error is None and hit.cache_hit and hit.text == truth.text, where
    assert hit.cost == 0.0 and faulty.requests == [] and healthy.requests == [], where
    assert await spent(router) == before, where
    final = await router.astats()
    assert final["requests"] == final["successes"] + final["failures"], where
    assert final["cache_hits"] == 1 and final["cache"]["stores"] == 1, where
    await router.aclose()
    return kind


@pytest.mark.parametrize(("scenario", "strategy", "stream"), MATRIX)
async def test_fault_matrix(
    servers: tuple[FaultyOpenAIServer, FaultyOpenAIServer],
    scenario: Scenario,
    strategy: RoutingStrategy,
    stream: bool,
) -> None:
    faulty, healthy = servers
    kinds = Counter(
        [
            await run_topology(scenario, strategy, stream, faulty, healthy, with_fallback)
            for with_fallback in (True, False)
        ]
    )
    TALLY["cases"] += 2
    TALLY.update(kinds)
    TALLY[f"scenario:{scenario.name}"] += 1
    print(
        f"faults[{scenario.name}/{strategy.value}/{'stream' if stream else 'complete'}]: "
        f"2 topologies: {kinds['answered']} answered, {kinds['typed']} typed errors, 0 untyped, "
        "0 cached failures, billed at most once"
    )


# ---------------------------------------------------------------- retries that succeed
@pytest.mark.parametrize(
    ("scenario", "stream"),
    [
        pytest.param(s, stream, id=f"{s.name}-{'stream' if stream else 'complete'}")
        for s in SCENARIOS
        if s.retried and not s.recovers and s.name != "connect-refused"
        for stream in s.modes
        if not (stream and s.mid_stream)
    ],
)
async def test_transient_fault_is_retried_and_billed_once(
    servers: tuple[FaultyOpenAIServer, FaultyOpenAIServer], scenario: Scenario, stream: bool
) -> None:
    """One fault, then the same deployment answers: the retry gives the correct answer, the
    budget is charged for that one answer only, the breaker stays closed."""
    faulty, healthy = servers
    faulty.reset()
    healthy.reset()
    router, model = make_router(
        RoutingStrategy.FALLBACK_CHAIN,
        faulty.base_url,
        healthy.base_url,
        timeout=scenario.timeout,
        retry={**RETRY, "max_retries": 2},
    )
    prepare(scenario, faulty, stream, 1)
    prompt = f"transient {scenario.name} {stream}: name a prime number"
    truth = expected(prompt)
    outcome = await ask(router, model, prompt, stream)
    assert outcome.error is None, repr(outcome.error)
    assert outcome.text == truth.text and outcome.provider == "faulty"
    assert outcome.route == [FAULTY]
    assert len(faulty.requests) == 2 and healthy.requests == []
    assert outcome.elapsed >= scenario.min_elapsed
    assert await spent(router) == pytest.approx(billed(cost_of(CHEAP, truth)), abs=1e-12)
    stats = await router.astats()
    dep = stats["deployments"][FAULTY]
    assert (dep["requests"], dep["successes"], dep["failures"]) == (2, 1, 1)
    assert stats["total_cost_usd"] == pytest.approx(cost_of(CHEAP, truth))
    assert await cached_texts(router) == [truth.text]
    assert router.deployments[FAULTY].breaker.state is CircuitState.CLOSED
    await router.aclose()
    TALLY["transient"] += 1
    print(
        f"transient[{scenario.name}/{'stream' if stream else 'complete'}]: 1 fault + 1 retry -> "
        f"correct answer, 2 requests, billed once (${cost_of(CHEAP, truth):.9f}), 1 cache entry"
    )


# ---------------------------------------------------------------- the circuit breaker
BREAKER_FAULTS = [
    "http-503",
    "429-no-retry-after",
    "connect-refused",
    "read-timeout",
    "reset-before-headers",
    "reset-mid-body",
    "truncated",
    "malformed-json",
    "error-in-200",
    "empty-choices",
    "bad-content-encoding",
]
COOLDOWN = 0.1  # the breakers' recovery_timeout


@pytest.mark.parametrize(
    ("scenario", "stream"),
    [
        pytest.param(BY_NAME[name], stream, id=f"{name}-{'stream' if stream else 'complete'}")
        for name in BREAKER_FAULTS
        for stream in BY_NAME[name].modes
    ],
)
async def test_breaker_opens_skips_half_opens_and_closes(
    servers: tuple[FaultyOpenAIServer, FaultyOpenAIServer], scenario: Scenario, stream: bool
) -> None:
    faulty, healthy = servers
    faulty.reset()
    healthy.reset()
    refused = scenario.name == "connect-refused"
    url = refused_url() if refused else faulty.base_url
    breaker = {"failure_threshold": 2, "recovery_timeout": COOLDOWN, "success_threshold": 1}
    retry = {**RETRY, "max_retries": 0}
    router, model = make_router(
        RoutingStrategy.FALLBACK_CHAIN,
        url,
        healthy.base_url,
        timeout=scenario.timeout,
        retry=retry,
        breaker=breaker,
    )
    alone, alone_model = make_router(
        RoutingStrategy.FALLBACK_CHAIN,
        url,
        None,
        timeout=scenario.timeout,
        retry=retry,
        breaker=breaker,
    )
    state = router.deployments[FAULTY].breaker
    mid = stream and scenario.mid_stream

    def check(outcome: Outcome, *, via_fallback: bool) -> None:
        if via_fallback and not mid:
            assert outcome.error is None and outcome.provider == "healthy", repr(outcome.error)
        else:
            assert isinstance(outcome.error, LLMRouterError), outcome

    # closed -> open after 2 failures
    prepare(scenario, faulty, stream, 2)
    for n in range(2):
        check(await ask(router, model, f"breaker {scenario.name} {n}", stream), via_fallback=True)
        assert state.state is (CircuitState.CLOSED if n == 0 else CircuitState.OPEN)
    opened_at = time.monotonic()
    assert state.times_opened == 1
    sent = len(faulty.requests)
    assert sent == (0 if refused else 2)
    # open: skipped at once, the fallback answers; without a fallback: a typed error, no traffic
    # (calls only well inside the cooldown, so a slow machine cannot turn this into a probe)
    skips = 0
    while skips < 3 and time.monotonic() - opened_at < COOLDOWN / 2:
        skipped = await ask(router, model, f"while open {skips}", stream)
        assert (
            skipped.error is None and skipped.provider == "healthy" and skipped.route == [HEALTHY]
        )
        skips += 1
    assert skips >= 1 and len(faulty.requests) == sent
    prepare(scenario, faulty, stream, 2)
    for n in range(2):
        check(
            await ask(alone, alone_model, f"alone {scenario.name} {n}", stream), via_fallback=False
        )
    alone_sent = len(faulty.requests)
    rejected = await ask(alone, alone_model, "alone while open", stream)
    assert isinstance(rejected.error, NoDeploymentAvailableError), repr(rejected.error)
    assert "circuit open" in str(rejected.error) and len(faulty.requests) == alone_sent
    # half-open after the cooldown; a failed probe re-opens it
    await asyncio.sleep(COOLDOWN * 1.2)
    assert state.state is CircuitState.HALF_OPEN
    prepare(scenario, faulty, stream, 1)
    check(await ask(router, model, f"probe fails {scenario.name}", stream), via_fallback=True)
    assert state.state is CircuitState.OPEN and state.times_opened == 2
    # a good probe closes it (nothing ever listens on a refused port: it stays open there)
    await asyncio.sleep(COOLDOWN * 1.2)
    faulty.reset()
    probe = await ask(router, model, f"probe succeeds {scenario.name}", stream)
    if refused:
        assert probe.provider == "healthy" and state.state is CircuitState.OPEN
    else:
        assert probe.error is None and probe.provider == "faulty" and probe.route == [FAULTY]
        assert state.state is CircuitState.CLOSED and len(faulty.requests) == 1
    stats = await router.astats()
    assert stats["deployments"][FAULTY]["circuit"] == state.state.value
    assert stats["deployments"][HEALTHY]["failures"] == 0
    assert stats["requests"] == stats["successes"] + stats["failures"] == 4 + skips
    await router.aclose()
    await alone.aclose()
    TALLY["breaker"] += 1
    print(
        f"breaker[{scenario.name}/{'stream' if stream else 'complete'}]: closed -> open after 2 "
        f"failures -> {skips} calls skipped (0 requests), alone: rejected typed -> half_open "
        f"after {COOLDOWN}s -> failed probe "
        f"re-opened (opened {state.times_opened}x) -> "
        + ("still open (nothing listens)" if refused else "good probe closed it")
    )


@pytest.mark.parametrize("strategy", STRATEGIES, ids=[s.value for s in STRATEGIES])
async def test_open_breaker_is_skipped_by_every_strategy(
    servers: tuple[FaultyOpenAIServer, FaultyOpenAIServer], strategy: RoutingStrategy
) -> None:
    """Once open, no strategy sends traffic to the deployment (round robin would send half)."""
    faulty, healthy = servers
    faulty.reset()
    healthy.reset()
    router, model = make_router(
        strategy,
        faulty.base_url,
        healthy.base_url,
        retry={**RETRY, "max_retries": 0},
        breaker={"failure_threshold": 1, "recovery_timeout": 30.0},
    )
    faulty.push(FAULTS["http-503"].reply(stream=False))
    opened = await ask(router, model, "open it", False)
    assert opened.provider == "healthy" and len(faulty.requests) == 1
    assert router.deployments[FAULTY].breaker.state is CircuitState.OPEN
    calls = 6
    used = [(await ask(router, model, f"skip {n}", n % 2 == 1)).provider for n in range(calls)]
    assert used == ["healthy"] * calls and len(faulty.requests) == 1
    assert len(healthy.requests) == calls + 1
    await router.aclose()
    print(f"breaker[{strategy.value}]: open circuit skipped on {calls}/{calls} calls, 0 requests")


# ---------------------------------------------------------------- every wire protocol
PROTOCOLS: list[tuple[str, type[LoopbackServer], str]] = [
    ("openai", OpenAIServer, "gpt-4o-mini"),
    ("anthropic", AnthropicServer, "claude-3-5-haiku-latest"),
    ("gemini", GeminiServer, "gemini-2.0-flash"),
    ("ollama", OllamaServer, "llama3.1:8b"),
    ("qwen", QwenServer, "qwen-plus"),
    ("minimax", MiniMaxServer, "MiniMax-M2"),
]
CORRUPTIONS: list[Corruption] = ["truncate", "reset", "garble", "empty"]
GENERIC_FAULTS = [
    "http-503",
    "429-no-retry-after",
    "reset-before-headers",
    "malformed-json",
    "bad-content-encoding",
]


@pytest.mark.parametrize(
    ("kind", "server_class", "model", "stream"),
    [
        pytest.param(kind, cls, model, stream, id=f"{kind}-{'stream' if stream else 'complete'}")
        for kind, cls, model in PROTOCOLS
        for stream in (False, True)
    ],
)
async def test_every_protocol_fails_typed_and_uncached(
    servers: tuple[FaultyOpenAIServer, FaultyOpenAIServer],
    kind: str,
    server_class: type[LoopbackServer],
    model: str,
    stream: bool,
) -> None:
    """Each provider's own answers, truncated, reset half-way, garbled (valid JSON, wrong types)
    or empty, and generic HTTP faults: a typed error (or the fallback's answer), never an untyped
    one; nothing cached but the fallback's complete answer; no charge for a failed call."""
    _, healthy = servers
    faulty_class = type(f"Faulty{server_class.__name__}", (FaultInjection, server_class), {})
    counts: Counter[str] = Counter()
    with faulty_class() as faulty:
        assert isinstance(faulty, FaultInjection)
        for fault in [*CORRUPTIONS, *GENERIC_FAULTS]:
            for with_fallback in (True, False):
                faulty.reset()
                healthy.reset()
                if fault in GENERIC_FAULTS:
                    faulty.push(FAULTS[fault].reply(stream=stream, model=model))
                else:
                    faulty.corrupt(fault)  # type: ignore[arg-type]
                config: dict[str, Any] = {"type": kind, "base_url": faulty.base_url}
                if kind != "ollama":
                    config["api_key"] = KEY
                providers = {
                    "faulty": create_provider(
                        "faulty",
                        {**config, "models": [model]},
                        transport=httpx.AsyncHTTPTransport(verify=False),
                    )
                }
                chain = [f"faulty/{model}"]
                if with_fallback:
                    providers["healthy"] = provider("healthy", healthy.base_url, DEAR)
                    chain.append(HEALTHY)
                router = LLMRouter(
                    providers,
                    fallback_chain=chain,
                    cache=CacheEngine(CacheConfig(), encoder=HashingEncoder()),
                    budget={"daily_usd": 5.0},
                    pricing={DEAR: PRICES[DEAR].model_dump()},
                    retry={**RETRY, "max_retries": 0},
                )
                prompt = f"protocol {kind} {fault} {stream} {with_fallback}: how far is the moon?"
                truth = expected(prompt)
                where = f"{kind}/{fault}/{'stream' if stream else 'complete'}/{with_fallback}"
                outcome = await ask(router, None, prompt, stream)
                texts = await cached_texts(router)
                if outcome.error is None:
                    assert with_fallback and outcome.provider == "healthy", where
                    assert outcome.text == truth.text and texts == [truth.text], where
                    assert await spent(router) == pytest.approx(billed(cost_of(DEAR, truth)))
                    counts["answered"] += 1
                else:
                    assert texts == [], f"{where}: cached {texts}"
                    assert healthy.requests == [] or not with_fallback, where
                    if isinstance(outcome.error, StreamInterruptedError):
                        assert outcome.error.partial_text == outcome.received, where
                    else:
                        assert await spent(router) == 0.0, where
                        assert not with_fallback, f"{where}: {outcome.error!r}"
                    counts["typed"] += 1
                stats = await router.astats()
                assert stats["requests"] == stats["successes"] + stats["failures"] == 1, where
                await router.aclose()
    TALLY["protocol_cases"] += sum(counts.values())
    print(
        f"protocol[{kind}/{'stream' if stream else 'complete'}]: "
        f"{len(CORRUPTIONS) + len(GENERIC_FAULTS)} faults x 2 topologies: "
        f"{counts['answered']} answered, {counts['typed']} typed errors, 0 untyped, "
        "0 cached failures"
    )


# ---------------------------------------------------------------- regressions (src fixes)
def ask_request(text: str = "Hello there") -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": CHEAP, "messages": [{"role": "user", "content": text}]}
    )


@pytest.mark.parametrize("fault", ["bad-content-encoding", "wrong-shape", "empty-choices"])
async def test_regression_provider_raises_typed_response_errors(
    servers: tuple[FaultyOpenAIServer, FaultyOpenAIServer], fault: str
) -> None:
    """httpx's DecodingError (a bad Content-Encoding), a wrongly shaped JSON answer or stream
    event, and a stream of events without any choice used to escape untyped (or, for the last,
    pass as an empty answer): each is a ProviderResponseError, sync and async."""
    faulty, _ = servers
    faulty.reset()
    instance = provider("faulty", faulty.base_url, CHEAP)
    sync = create_provider(
        "faulty", {"type": "openai", "api_key": KEY, "base_url": faulty.base_url}
    )
    for stream in (False, True):
        faulty.push(*[FAULTS[fault].reply(stream=stream, model=CHEAP)] * 2)
        with pytest.raises(ProviderResponseError):
            if stream:
                [c async for c in instance.astream(ask_request())]
            else:
                await instance.acomplete(ask_request())
        with pytest.raises(ProviderResponseError):
            if stream:
                list(sync.stream(ask_request()))
            else:
                sync.complete(ask_request())
    await instance.aclose()
    sync.close()
    print(f"regression[{fault}]: ProviderResponseError for complete/stream x sync/async (4 calls)")


async def test_regression_spent_deadline_charges_no_phantom_failure(
    servers: tuple[FaultyOpenAIServer, FaultyOpenAIServer],
) -> None:
    """The deadline ran out on the first candidate: the next one used to be admitted and charged a
    failure (its breaker and stats) without any request. Now it is skipped."""
    faulty, healthy = servers
    faulty.reset()
    healthy.reset()
    router, model = make_router(
        RoutingStrategy.FALLBACK_CHAIN,
        faulty.base_url,
        healthy.base_url,
        breaker={"failure_threshold": 1, "recovery_timeout": 30.0},
    )
    faulty.drip(DRIP)
    outcome = await ask(router, model, "deadline", False, DEADLINE)
    assert isinstance(outcome.error, AllCandidatesFailedError), repr(outcome.error)
    assert [type(e) for e in outcome.error.errors] == [ProviderTimeoutError]
    assert healthy.requests == [] and await spent(router) == 0.0
    assert router.deployments[HEALTHY].breaker.state is CircuitState.CLOSED
    assert (await router.astats())["deployments"][HEALTHY]["failures"] == 0
    await router.aclose()
    print("regression[deadline]: the next candidate was skipped: 0 requests, 0 failures, closed")


async def test_regression_stream_never_waits_past_the_deadline(
    servers: tuple[FaultyOpenAIServer, FaultyOpenAIServer],
) -> None:
    """A stream's retry used to sleep a Retry-After past the call's deadline (then fail); like a
    complete call it now falls back at once."""
    faulty, healthy = servers
    faulty.reset()
    healthy.reset()
    router, model = make_router(RoutingStrategy.FALLBACK_CHAIN, faulty.base_url, healthy.base_url)
    faulty.push(FAULTS["429-retry-after-long"].reply(stream=True))
    outcome = await ask(router, model, "hurry", True, 0.25)
    assert outcome.error is None and outcome.provider == "healthy", repr(outcome.error)
    assert outcome.elapsed < 0.25 and len(faulty.requests) == 1
    await router.aclose()
    print(f"regression[stream deadline]: fell back in {outcome.elapsed * 1000:.0f} ms, not 500")


# ---------------------------------------------------------------- the whole picture
def test_summary() -> None:
    """Totals of the module (meaningful when the whole file runs, in order)."""
    if not TALLY["cases"]:
        pytest.skip("run the whole module for the summary")
    scenarios = len([k for k in TALLY if k.startswith("scenario:")])
    assert TALLY["untyped"] == 0 and TALLY["cached_failures"] == 0
    assert TALLY["answered"] + TALLY["typed"] == TALLY["cases"]
    print(
        f"faults: {scenarios} scenarios x {len(STRATEGIES)} strategies x complete/stream x "
        f"2 topologies = {TALLY['cases']} cases: {TALLY['answered']} answered, "
        f"{TALLY['typed']} typed errors, {TALLY['untyped']} untyped, "
        f"{TALLY['cached_failures']} cached failures; {TALLY['transient']} transient faults "
        f"retried to a correct answer; {TALLY['breaker']} breaker cycles; "
        f"{TALLY['protocol_cases']} cross-protocol cases"
    )
